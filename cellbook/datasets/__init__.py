"""Datasets: one registry of sources (``registry``/``sources``) and one module per data family."""
from . import sources  # noqa: F401  (registers the entries)
from . import bulk, images, scrna  # noqa: F401  (one module per data family)
from .registry import (REGISTRY, DataInfo, Dataset, DatasetNotFoundError, announce, cache_dir, candidates,
                       get, info_for, locate, register, sha256sum)
from .scrna import as_counts_adata, check_counts, gse194122, load_scrna, synthetic_counts, vangalen2019
from .scrna import bmmc, pbmc10k_multiome, select_cells  # noqa: F401  (Part I)
from .images import ImageSet, image_folder, load_images  # noqa: F401  (Part II)

__all__ = [
    "REGISTRY", "DataInfo", "Dataset", "DatasetNotFoundError", "announce", "cache_dir", "candidates", "get",
    "info_for", "locate", "register", "sha256sum", "as_counts_adata", "check_counts", "gse194122",
    "load_scrna", "synthetic_counts", "vangalen2019",
]
