"""Datasets: one registry of sources (``registry``/``sources``), builders and the cache (``build``/``cache``),
and one module per data family (``scrna``, ``bulk``, ``images``)."""
from . import build, bulk, cache, images, scrna, sources  # noqa: F401  (sources registers the entries)
from .cache import DownloadError, ensure, fetch, status, verify_dataset
from .images import ImageSet, image_folder, load_images  # noqa: F401  (Part II)
from .registry import (
    REGISTRY,
    ChecksumError,
    DataInfo,
    Dataset,
    DatasetChangedError,
    DatasetNotFoundError,
    RawFile,
    announce,
    cache_dir,
    candidates,
    get,
    info_for,
    locate,
    register,
    sha256sum,
)
from .scrna import (  # noqa: F401  (Part I)
    as_counts_adata,
    bmmc,
    check_counts,
    gse194122,
    load_scrna,
    pbmc10k_multiome,
    select_cells,
    synthetic_counts,
    vangalen2019,
)

__all__ = [
    "ChecksumError", "DatasetChangedError", "DownloadError", "RawFile", "ensure", "fetch", "status", "verify_dataset",
    "REGISTRY", "DataInfo", "Dataset", "DatasetNotFoundError", "announce", "cache_dir", "candidates", "get",
    "info_for", "locate", "register", "sha256sum", "as_counts_adata", "check_counts", "gse194122",
    "load_scrna", "synthetic_counts", "vangalen2019",
]
