"""Datasets: one registry of sources (``registry``/``sources``), builders and the cache (``build``/``cache``),
and one module per data family."""
from . import sources  # noqa: F401  (registers the entries)
from . import bulk, images, scrna  # noqa: F401  (one module per data family)
from .registry import (REGISTRY, ChecksumError, DataInfo, Dataset, DatasetNotFoundError, RawFile, announce,
                       cache_dir, candidates, get, info_for, locate, register, sha256sum)
from . import build, cache  # noqa: F401  (builders; fetch / verify / ensure)
from .cache import DownloadError, ensure, fetch, status, verify_dataset
from .scrna import as_counts_adata, check_counts, gse194122, load_scrna, synthetic_counts, vangalen2019
from .scrna import bmmc, pbmc10k_multiome, select_cells  # noqa: F401  (Part I)
from .images import ImageSet, image_folder, load_images  # noqa: F401  (Part II)

__all__ = [
    "ChecksumError", "DownloadError", "RawFile", "ensure", "fetch", "status", "verify_dataset",
    "REGISTRY", "DataInfo", "Dataset", "DatasetNotFoundError", "announce", "cache_dir", "candidates", "get",
    "info_for", "locate", "register", "sha256sum", "as_counts_adata", "check_counts", "gse194122",
    "load_scrna", "synthetic_counts", "vangalen2019",
]
