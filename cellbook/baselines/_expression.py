"""The shared input handling of the expression classifiers, and the two scaled-HVG baselines."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..datasets.scrna import check_counts
from ..preprocess.scrna import align_genes, highly_variable, log_normalize, matrix_and_names
from ..splits import check_missing
from ..validation import SEED, Interval, check_params

#: A seed: what NumPy's and scikit-learn's ``random_state`` take.


def _check_shape(X, what: str = "X") -> None:
    """A ``ValueError`` naming ``what`` unless ``X`` is a 2-D matrix with at least one cell and one gene."""
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{what}: expected a 2-D cells x genes matrix; got "
                         f"{type(X).__name__ if shape is None else f'shape {shape}'}. Reshape your data: one row "
                         f"per cell, one column per gene")
    for n, kind in ((shape[0], "sample(s) (cells)"), (shape[1], "feature(s) (genes)")):
        if n == 0:
            raise ValueError(f"{what}: found 0 {kind.split()[0]} (shape={tuple(shape)}) while a minimum of 1 is "
                             f"required. Give at least one cell and one gene ({kind.split()[1][1:-1]})")


def _array_like(X):
    """``X`` itself when it is a dense, CSR or CSC matrix, a DataFrame or an AnnData; another sparse format as
    CSR; another array-like (a list) as a numpy array; a dense matrix of dtype object as floats (a
    ``TypeError`` when an entry is not a number)."""
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if sp.issparse(X) and X.format not in ("csr", "csc"):
        X = sp.csr_matrix(X)
    if isinstance(X, np.ndarray) and X.dtype == object:
        X = X.astype(np.float64)
    return X


def label_values(y: np.ndarray) -> np.ndarray:
    """Labels in their own type: a NumPy array as it is; an object array (a pandas Categorical's or nullable
    integer array's values, a list of Python objects) of only integers becomes ``int64``, of only booleans
    ``bool``; other object arrays (text, mixed) are left as they are."""
    arr = np.asarray(y)
    if arr.dtype != object or not arr.size:
        return arr
    kinds = {type(v) for v in arr.ravel()}
    if all(issubclass(k, (bool, np.bool_)) for k in kinds):
        return arr.astype(bool)
    if all(issubclass(k, numbers.Integral) and not issubclass(k, (bool, np.bool_)) for k in kinds):
        return arr.astype(np.int64)
    return arr


def _check_y(y, owner: str) -> np.ndarray:
    """The labels as a 1-D array in their own type (:func:`label_values`; a column vector is raveled with a
    warning); a ``ValueError`` naming ``y`` when they are missing (``None``, NaN, empty strings)."""
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    if isinstance(y, str):
        return check_missing(y, "y")                    # refused with a message that names the string
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return label_values(check_missing(y, "y"))


def torch_threads() -> int:
    """The threads this process may use for one fit: torch's count (set by each chapter's ``threads``, by
    ``cellbook run`` and by each Dask worker of :func:`cellbook.map_tasks`)."""
    return int(torch.get_num_threads())


class _ExpressionClassifier(ClassifierMixin, BaseEstimator):
    """The shared machinery of the expression classifiers.

    :meth:`_fit_input` / :meth:`_predict_input` turn what the user passes (matrix, DataFrame, AnnData, with or
    without gene names) into a checked cells x genes matrix (at predict: the training genes, matched by name);
    a subclass implements ``_fit(X, y)`` (sets ``model_`` and ``classes_``) and ``_proba(X)``.  The default
    ``_fit`` / ``_proba`` are the scaled-HVG pipeline of :class:`HVGLogisticRegression` and :class:`PCAKNN`.

    ``_parameter_constraints`` declares what each constructor parameter takes; :meth:`fit` checks them first
    (:func:`cellbook.validation.check_params`): a wrong value is an ``InvalidParameterError`` naming it.
    Labels keep their own type: integers in, integers out (``classes_``, ``predict``); text in, text out; a
    pandas Categorical gives its values (``classes_`` holds the category values seen, sorted).
    """

    _parameter_constraints: dict = {}
    counts = True        # the input is raw counts (a constructor parameter of the two scaled-HVG baselines)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = bool(self.counts)      # raw counts are >= 0
        tags.input_tags.sparse = True
        return tags

    def _input(self, X, what: str = "X"):
        """A counts check (``counts=True``) and a matrix whose numbers are sane."""
        _check_shape(X, what)
        if np.iscomplexobj(X.data if sp.issparse(X) else X):
            raise ValueError(f"{what}: Complex data not supported; expected real numbers")
        if self.counts:
            check_counts(X, what)
        else:
            data = X.data if sp.issparse(X) else np.asarray(X)
            if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
                raise ValueError(f"{what}: expected finite numbers (NaN, infinite or non-numeric values found)")
        return X

    def _fit_input(self, X, y, gene_names=None):
        """``(X, y)`` checked; records ``n_features_in_`` and ``feature_names_in_`` (``None`` without names)."""
        X, names = matrix_and_names(_array_like(X), gene_names, layer="counts" if self.counts else None)
        X = self._input(X)
        y = _check_y(y, type(self).__name__)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} cells but y has {len(y)} labels")
        try:
            n_classes = len(np.unique(y))
        except TypeError:
            kinds = sorted({type(v).__name__ for v in y})
            raise ValueError(f"y mixes label types ({', '.join(kinds)}), which cannot be sorted into classes; "
                             f"give labels of one type (e.g. np.asarray(y).astype(str))") from None
        if n_classes < 2:
            raise ValueError("y: need at least 2 classes; got one class")
        check_classification_targets(y)                 # "Unknown label type" for a continuous target
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = None if names is None else np.asarray(names, dtype=object)
        self._order_warned = False
        return X, y

    def _predict_input(self, X, gene_names=None):
        """The checked matrix of the training genes, in the training order (matched by name when named)."""
        check_is_fitted(self, "model_")
        X, names = matrix_and_names(_array_like(X), gene_names, layer="counts" if self.counts else None)
        known = getattr(self, "feature_names_in_", None)
        if names is not None:
            if known is None:
                raise ValueError(f"{type(self).__name__} was fitted without gene names, so genes cannot be matched "
                                 f"by name; refit with fit(X, y, gene_names=...) (or a DataFrame / AnnData), or "
                                 f"pass a bare matrix whose columns are the training genes in the training order")
            if list(names) != list(known):
                X, _ = align_genes(X, names, known, "X", stacklevel=5)
        elif known is not None and not getattr(self, "_order_warned", False):
            self._order_warned = True
            warnings.warn(f"{type(self).__name__}: predict got a bare matrix without gene names, so its columns are "
                          f"taken to be the {self.n_features_in_} training genes in the training order; pass "
                          f"gene_names=..., an AnnData or a DataFrame to match genes by name (warned once)",
                          UserWarning, stacklevel=4)
        X = self._input(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (the genes it was fitted on)")
        return X

    # -- the scaled-HVG pipeline (HVGLogisticRegression, PCAKNN)
    def _features_fit(self, X):
        Xl = log_normalize(X) if self.counts else (sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X, np.float32))
        self.genes_ = highly_variable(Xl, self.n_top_genes) if self.n_top_genes else np.arange(X.shape[1])
        Z = Xl[:, self.genes_]
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
        self.mean_, sd = Z.mean(axis=0), Z.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return np.clip((Z - self.mean_) / self.scale_, -10, 10)

    def _scaled(self, X):
        Xl = log_normalize(X) if self.counts else X
        Z = Xl[:, self.genes_]
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
        return np.clip((Z - self.mean_) / self.scale_, -10, 10)

    def _features(self, X, gene_names=None):
        return self._scaled(self._predict_input(X, gene_names))

    def _fit(self, X, y):
        Z = self._features_fit(X)
        self.model_ = self._make().fit(self._embed_fit(Z), y)
        self.classes_ = self.model_.classes_

    def _proba(self, X):
        return self.model_.predict_proba(self._embed(self._scaled(X)))

    def _embed_fit(self, Z):
        return Z

    def _embed(self, Z):
        return Z

    def _check_params(self) -> None:
        """The declared constraints (a subclass adds what they cannot say); run before anything is read."""
        check_params(type(self).__name__, self.get_params(deep=False), self._parameter_constraints)

    # -- the public API
    def fit(self, X, y, gene_names=None):
        """Fit on ``X`` (cells x genes: matrix, DataFrame or AnnData) and labels ``y``.

        ``gene_names`` (or the DataFrame's columns / AnnData's var_names) let predict match genes by name.
        A parameter outside ``_parameter_constraints`` is an ``InvalidParameterError`` before anything is read.
        """
        self._check_params()
        X, y = self._fit_input(X, y, gene_names)
        self._fit(X, y)
        return self

    def predict_proba(self, X, gene_names=None):
        """Class probabilities ``(cells, classes)``; ``X`` as in :meth:`fit` (genes matched by name when named)."""
        return self._proba(self._predict_input(X, gene_names))      # checks fitted first

    def predict(self, X, gene_names=None):
        """The most probable class per cell (a label of ``classes_``)."""
        proba = self.predict_proba(X, gene_names)
        return self.classes_[proba.argmax(1)]


def _log_hvg(X, target_sum: float, genes) -> sp.csr_matrix:
    """log1p of counts per ``target_sum`` (per cell, so no other cell is involved) at the columns ``genes``."""
    return sp.csr_matrix(log_normalize(sp.csr_matrix(X), target_sum)[:, genes])


def _hvg(X_log, n_top) -> np.ndarray:
    """:func:`highly_variable` of ``X_log`` (its cells only), or every gene when ``n_top`` is ``None``."""
    return np.arange(X_log.shape[1]) if n_top is None else highly_variable(X_log, int(n_top))


class HVGLogisticRegression(_ExpressionClassifier):
    """Logistic regression on scaled log-normalised highly variable genes (CellTypist-style).

    ``counts=False``: ``X`` is already normalised (any finite numbers), so it is used as it is.
    Attributes: ``genes_`` (HVG column indices), ``mean_``, ``scale_``, ``model_``, ``classes_``, ``n_iter_``.
    """

    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)],
                              "C": Interval(float, 0, None, closed="neither"), "max_iter": Interval(int, 1, None),
                              "counts": bool, "seed": SEED}

    def __init__(self, n_top_genes: int = 2000, C: float = 0.1, max_iter: int = 500, counts: bool = True,
                 seed: int = 0):
        self.n_top_genes, self.C, self.max_iter, self.counts, self.seed = n_top_genes, C, max_iter, counts, seed

    def _make(self):
        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)

    def _fit(self, X, y):
        super()._fit(X, y)
        self.n_iter_ = self.model_.n_iter_


class PCAKNN(_ExpressionClassifier):
    """k-nearest neighbours on the first ``n_pcs`` principal components of scaled HVG expression."""

    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)], "n_pcs": Interval(int, 1, None),
                              "k": Interval(int, 1, None), "counts": bool, "seed": SEED}

    def __init__(self, n_top_genes: int = 2000, n_pcs: int = 50, k: int = 15, counts: bool = True, seed: int = 0):
        self.n_top_genes, self.n_pcs, self.k, self.counts, self.seed = n_top_genes, n_pcs, k, counts, seed

    def _make(self):
        return KNeighborsClassifier(n_neighbors=self.k, weights="distance")

    def _embed_fit(self, Z):
        self.pca_ = PCA(n_components=min(self.n_pcs, *Z.shape), random_state=self.seed).fit(Z)
        return self.pca_.transform(Z)

    def _embed(self, Z):
        return self.pca_.transform(Z)
