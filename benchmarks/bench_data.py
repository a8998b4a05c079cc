"""The Part I input every training benchmark uses (imported by the scripts beside it)."""
from __future__ import annotations

import numpy as np


def part1_matrix(genes: int = 0, data_path=None, fallback: str = "error"):
    """van Galen bone marrow as ``(adata, X, y)``: X dense float32 log-normalised counts of the genes
    detected in >= 3 cells (``genes`` > 0: that many HVGs of them), y integer type codes."""
    import cellbook as cb
    from cellbook.preprocess.scrna import genes_detected, highly_variable, log_normalize

    adata = cb.datasets.load_scrna("vangalen2019", path=data_path, fallback=fallback)
    counts = adata.layers["counts"]
    keep = np.flatnonzero(genes_detected(counts, 3))
    if genes:
        keep = keep[highly_variable(log_normalize(counts[:, keep]), genes)]
    X = np.asarray(log_normalize(counts[:, keep]).toarray(), dtype=np.float32)
    y = np.unique(adata.obs["cell_type"].astype(str), return_inverse=True)[1].astype(np.int64)
    return adata, X, y
