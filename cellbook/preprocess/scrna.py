"""scRNA-seq preprocessing that works on matrices (so it can be fitted on training cells only).

scanpy does the same on AnnData (``sc.pp.normalize_total``, ``sc.pp.log1p``,
``sc.pp.highly_variable_genes``); these helpers exist because a classifier must learn
its gene selection from the training split alone and then apply it to new cells.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def log_normalize(X, target_sum: float = 1e4):
    """log1p of counts scaled to ``target_sum`` per cell (scanpy's normalize_total + log1p).

    Keeps sparsity: a CSR matrix in gives a CSR matrix out.  Shape is unchanged.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32, copy=True)
        totals = np.asarray(X.sum(axis=1)).ravel()
        scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
        X = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ X)
        X.data = np.log1p(X.data)
        return X
    X = np.asarray(X, dtype=np.float32)
    totals = X.sum(axis=1, keepdims=True)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(X * scale)


def _mean_var(X):
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        return mean, np.maximum(sq - mean ** 2, 0)
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0), X.var(axis=0)


def highly_variable(X_log, n_top: int = 2000, n_bins: int = 20) -> np.ndarray:
    """Indices of the ``n_top`` most variable genes of log-normalised data.

    Seurat-style: dispersion (variance / mean) z-scored within bins of mean expression,
    as ``scanpy.pp.highly_variable_genes(flavor="seurat")`` does.  Returns sorted indices.
    """
    mean, var = _mean_var(X_log)
    n_top = min(int(n_top), X_log.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(np.where(mean > 0, var / mean, np.nan))
    bins = np.digitize(mean, np.quantile(mean[mean > 0], np.linspace(0, 1, n_bins + 1)[1:-1])) if (mean > 0).any() \
        else np.zeros_like(mean, dtype=int)
    z = np.full_like(mean, -np.inf, dtype=np.float64)
    for b in np.unique(bins):
        m = (bins == b) & np.isfinite(disp)
        if m.sum() == 0:
            continue
        sd = disp[m].std()
        z[m] = (disp[m] - disp[m].mean()) / (sd if sd > 0 else 1.0)
    return np.sort(np.argsort(-z, kind="stable")[:n_top])


def genes_detected(X, min_cells: int = 1) -> np.ndarray:
    """Boolean mask of genes with a non-zero count in at least ``min_cells`` cells."""
    nz = (X > 0).sum(axis=0) if not sp.issparse(X) else (X > 0).sum(axis=0)
    return np.asarray(nz).ravel() >= int(min_cells)
