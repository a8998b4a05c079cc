"""Bulk expression preprocessing (Part III): log2, quantile normalisation, gene selection, scaling.

Everything that learns from data (the quantile reference, the top-variance genes, the
per-gene minimum and maximum) is fitted on the training samples only and then applied
unchanged to test samples::

    pre = BulkPreprocessor(counts=True, quantile=True, n_top_genes=1000, scale01=False)
    X_train = pre.fit_transform(counts_train)    # samples x genes
    X_test = pre.transform(counts_test)          # same genes, same reference

Shapes: samples in rows, genes in columns (AnnData convention).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from ..validation import Interval, validate_params


def _dense(X, what: str = "X") -> np.ndarray:
    if sp.issparse(X):
        X = X.toarray()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D samples x genes array; got shape {X.shape}")
    if X.size == 0:
        raise ValueError(f"{what} is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).sum())
        raise ValueError(f"{what} contains {bad} NaN or infinite values; remove or impute them first")
    return X


@validate_params({"offset": Interval(float, 0, None, closed="neither"), "cpm": bool})
def log2_transform(X, offset: float = 1.0, cpm: bool = True) -> np.ndarray:
    """``log2(X + offset)``; with ``cpm=True`` each sample is first scaled to counts per million.

    ``X``: samples x genes, non-negative (raw counts when ``cpm=True``).
    """
    X = _dense(X)
    if (X < 0).any():
        raise ValueError(f"X has {int((X < 0).sum())} negative values; log2 needs non-negative "
                         f"expression (pass already-logged data with log=False)")
    if cpm:
        lib = X.sum(axis=1, keepdims=True)
        if (lib == 0).any():
            raise ValueError(f"{int((lib == 0).sum())} samples have no counts at all; drop them first")
        X = X / lib * 1e6
    return np.log2(X + offset)


def _sorted_and_ranks(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``X`` sorted, and each value's 0-based average rank within its row (tied values share the
    mean of their positions): ``scipy.stats.rankdata(X, axis=1, method="average") - 1``, bit for bit, from the one
    sort that also gives the sorted rows."""
    order = np.argsort(X, axis=1)                    # any sort: ties are averaged, so their order is irrelevant
    srt = np.take_along_axis(X, order, axis=1)
    n = X.shape[1]
    pos = np.broadcast_to(np.arange(n), X.shape)
    first = np.ones(X.shape, dtype=bool)             # where a run of equal values starts ...
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    last = np.ones(X.shape, dtype=bool)              # ... and where it ends
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(X.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, 0.5 * (start + end), axis=1)   # exact: integers and halves
    return srt, ranks


def quantile_reference(X) -> np.ndarray:
    """Mean of the sorted samples: the target distribution (length n_genes)."""
    X = _dense(X)
    return np.sort(X, axis=1).mean(axis=0)


def quantile_apply(X, reference: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """Give every sample (row) the ``reference`` distribution, keeping its gene ranks.

    Tied values get the mean of the reference values at their positions (linear
    interpolation at the average rank), so equal inputs stay equal.  ``ranks``: the 0-based average
    ranks of ``X`` within rows when already known.
    """
    X = _dense(X)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape != (X.shape[1],):
        raise ValueError(f"reference has {reference.size} values but X has {X.shape[1]} genes")
    if ranks is None:
        ranks = _sorted_and_ranks(X)[1]
    lo = np.floor(ranks).astype(np.int64)
    hi = np.minimum(lo + 1, reference.size - 1)
    frac = ranks - lo
    return reference[lo] * (1 - frac) + reference[hi] * frac


def quantile_normalize(X) -> np.ndarray:
    """Quantile normalisation across samples (rows): every sample gets the same distribution."""
    return _quantile_fit(_dense(X))[1]


def _quantile_fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(reference, X normalised to it)`` from one sort of ``X`` (:func:`quantile_reference`,
    :func:`quantile_apply`)."""
    srt, ranks = _sorted_and_ranks(X)
    reference = srt.mean(axis=0)
    return reference, quantile_apply(X, reference, ranks=ranks)


@validate_params({"n": Interval(int, 1, None)})
def top_variance_genes(X, n: int) -> np.ndarray:
    """Column indices of the ``n`` genes with the highest variance across samples (sorted)."""
    X = _dense(X)
    n = min(int(n), X.shape[1])
    var = X.var(axis=0)
    idx = np.argsort(-var, kind="stable")[:n]
    return np.sort(idx)


class MinMaxPerGene:
    """Scale each gene to [0, 1] with the training samples' min and max (constant genes -> 0)."""

    def fit(self, X):
        X = _dense(X)
        self.min_, mx = X.min(axis=0), X.max(axis=0)
        rng = mx - self.min_
        self.range_ = np.where(rng > 0, rng, 1.0)
        return self

    def transform(self, X):
        if not hasattr(self, "min_"):
            raise NotFittedError("this MinMaxPerGene is not fitted yet; call fit(X_train) first")
        X = _dense(X)
        if X.shape[1] != self.min_.size:
            raise ValueError(f"X has {X.shape[1]} genes; the scaler was fitted on {self.min_.size}")
        return (X - self.min_) / self.range_

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class BulkPreprocessor:
    """log2(CPM + offset) -> quantile normalisation -> top-variance genes -> optional [0,1] per gene.

    Parameters
    ----------
    counts : bool
        Input is raw counts: take ``log2(CPM + offset)``.  ``False``: input is already on a
        log scale (e.g. CellNet's log2 microarray values) and is used as is.
    quantile : bool
        Quantile-normalise across samples (reference = mean sorted training sample).
    n_top_genes : int or None
        Keep the genes with the highest variance across training samples (after normalisation).
    scale01 : bool
        Scale each gene to [0, 1] with the training samples' min / max (the paper's denoising set-up).
    """

    def __init__(self, counts: bool = True, offset: float = 1.0, quantile: bool = True,
                 n_top_genes: int | None = None, scale01: bool = False):
        self.counts, self.offset, self.quantile = counts, offset, quantile
        self.n_top_genes, self.scale01 = n_top_genes, scale01

    def _log(self, X):
        return log2_transform(X, self.offset) if self.counts else _dense(X)

    def fit(self, X):
        self._fit(X)
        return self

    def _fit(self, X) -> np.ndarray:
        """Fit; return the training samples normalised (all genes), for :meth:`fit_transform`."""
        X = self._log(X)
        self.n_features_in_ = X.shape[1]
        self.reference_, Xq = _quantile_fit(X) if self.quantile else (None, X)
        self.genes_ = (top_variance_genes(Xq, self.n_top_genes) if self.n_top_genes
                       else np.arange(X.shape[1]))
        self.scaler_ = MinMaxPerGene().fit(Xq[:, self.genes_]) if self.scale01 else None
        return Xq

    def transform(self, X) -> np.ndarray:
        if not hasattr(self, "genes_"):
            raise NotFittedError("this BulkPreprocessor is not fitted yet; call fit(X_train) first")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} genes; the preprocessor was fitted on {self.n_features_in_}")
        X = self._log(X)
        if self.quantile:
            X = quantile_apply(X, self.reference_)
        return self._select(X)

    def _select(self, Xq: np.ndarray) -> np.ndarray:
        X = Xq[:, self.genes_]
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        return X.astype(np.float32)

    def fit_transform(self, X) -> np.ndarray:
        """``fit(X).transform(X)``, normalising ``X`` once."""
        return self._select(self._fit(X))


def split_transform(X, train_idx, test_idx, **kwargs):
    """Fit a :class:`BulkPreprocessor` (``kwargs``) on ``X[train_idx]``; return ``(X_train, X_test, pre)``."""
    pre = BulkPreprocessor(**kwargs)
    X_train = pre.fit_transform(X[train_idx])
    return X_train, pre.transform(X[test_idx]), pre
