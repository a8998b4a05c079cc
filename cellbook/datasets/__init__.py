"""Datasets: one registry of sources (``registry``/``sources``) and one module per data family."""
from . import sources  # noqa: F401  (registers the entries)
from .registry import (REGISTRY, DataInfo, Dataset, DatasetNotFoundError, announce, cache_dir, candidates,
                       get, info_for, locate, register, sha256sum)
from .scrna import as_counts_adata, check_counts, gse194122, load_scrna, synthetic_counts, vangalen2019

__all__ = [
    "REGISTRY", "DataInfo", "Dataset", "DatasetNotFoundError", "announce", "cache_dir", "candidates", "get",
    "info_for", "locate", "register", "sha256sum", "as_counts_adata", "check_counts", "gse194122",
    "load_scrna", "synthetic_counts", "vangalen2019",
]
