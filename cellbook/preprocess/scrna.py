"""scRNA-seq preprocessing that works on matrices (so it can be fitted on training cells only).

scanpy does the same on AnnData (``sc.pp.normalize_total``, ``sc.pp.log1p``,
``sc.pp.highly_variable_genes``); these helpers exist because a classifier must learn
its gene selection from the training split alone and then apply it to new cells.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..validation import Interval, validate_params


@validate_params({"target_sum": Interval(float, 0, None, closed="neither")})
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


@validate_params({"n_top": Interval(int, 0, None), "n_bins": Interval(int, 1, None)})
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


@validate_params({"min_cells": Interval(int, 0, None)})
def genes_detected(X, min_cells: int = 1) -> np.ndarray:
    """Boolean mask of genes with a non-zero count in at least ``min_cells`` cells."""
    nz = (X > 0).sum(axis=0) if not sp.issparse(X) else (X > 0).sum(axis=0)
    return np.asarray(nz).ravel() >= int(min_cells)


@validate_params({"layer": [None, str], "what": str})
def matrix_and_names(X, gene_names=None, layer: str | None = "counts", what: str = "X"):
    """``(matrix, gene names or None)`` from an AnnData, a DataFrame or a matrix (+ ``gene_names``).

    AnnData: ``layers[layer]`` (else ``X``) and ``var_names``; DataFrame: its values and columns (cells in
    rows); a matrix: itself and ``gene_names`` (checked to have one name per column).
    """
    if hasattr(X, "var_names") and hasattr(X, "obs"):
        if gene_names is not None:
            raise ValueError(f"{what} is an AnnData: its var_names are the gene names; do not pass gene_names too")
        M = X.layers[layer] if layer and layer in X.layers else X.X
        return M, list(map(str, X.var_names))
    if isinstance(X, pd.DataFrame):
        if gene_names is not None:
            raise ValueError(f"{what} is a DataFrame: its columns are the gene names; do not pass gene_names too")
        return X.to_numpy(), list(map(str, X.columns))
    if gene_names is not None:
        if isinstance(gene_names, str):
            raise ValueError(f"gene_names is the string {gene_names[:30]!r}; pass one name per column of {what}")
        gene_names = list(map(str, gene_names))
        n = X.shape[1] if hasattr(X, "shape") and len(X.shape) == 2 else None
        if n is not None and len(gene_names) != n:
            raise ValueError(f"gene_names has {len(gene_names)} entries but {what} has {n} genes (columns)")
    return X, gene_names


@validate_params({"what": str, "min_overlap": Interval(float, 0, 1), "stacklevel": Interval(int, 1, None)})
def align_genes(X, names, target, what: str = "X", min_overlap: float = 0.5, stacklevel: int = 3):
    """Columns of ``X`` (cells x genes named ``names``) rearranged to the genes ``target``, by name.

    Returns ``(CSR float32 of shape (cells, len(target)), number of target genes found)``.  Target genes
    missing from ``names`` are zero columns (counted in a warning); fewer than ``min_overlap`` of them
    present, or duplicated ``names``, is a ``ValueError``.  ``stacklevel`` is that of the
    warning, counted as if ``warnings.warn`` were called here (2: the caller of this function).
    """
    names = pd.Index(list(map(str, names)))
    if not names.is_unique:
        dup = sorted(set(names[names.duplicated()]))
        raise ValueError(f"{what}: gene names occur more than once ({', '.join(dup[:5])}"
                         f"{', ...' if len(dup) > 5 else ''}); genes are matched by name, so make them unique "
                         f"(sum or drop the duplicates) first")
    target = list(map(str, target))
    pos = names.get_indexer(target)
    present = pos >= 0
    n_model, n_found = len(target), int(present.sum())
    if n_found < max(1, int(np.ceil(min_overlap * n_model))):
        raise ValueError(f"only {n_found} of the model's {n_model} genes are in {what}'s gene names "
                         f"(need >= {min_overlap:.0%}); are the gene names the same kind (symbols vs Ensembl ids) "
                         f"and the same species?")
    if n_found < n_model:
        missing = [g for g, ok in zip(target, present) if not ok]
        warnings.warn(f"{n_model - n_found} of the model's {n_model} genes are missing from {what} "
                      f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); they are filled with zeros",
                      UserWarning, stacklevel=stacklevel + 1)   # + 1: the frame of validate_params' check
    X = sp.csr_matrix(X)
    sel = X[:, pos[present]].tocoo()
    cols = np.flatnonzero(present)[sel.col]
    return sp.csr_matrix((sel.data, (sel.row, cols)), shape=(X.shape[0], n_model), dtype=np.float32), n_found

