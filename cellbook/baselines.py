"""Simple, strong baselines that stand beside every deep model (scikit-learn estimators).

- :class:`HVGLogisticRegression` -- CellTypist-style: log-normalise, highly variable genes
  (chosen on the training cells), scale, multinomial logistic regression.
- :class:`PCAKNN` -- log-normalise, HVG, scale, PCA, k-nearest neighbours.
- :func:`reconstruction_mse` -- PCA / NMF / kernel-PCA reconstruction error at a given dimension.

Each classifier has ``fit(X, y)``, ``predict(X)``, ``predict_proba(X)`` and ``classes_``;
``X`` is cells x genes raw counts (dense or sparse, a DataFrame or an AnnData) unless ``counts=False``.
Fitted with gene names (``gene_names=``, DataFrame columns, ``var_names``), predict matches genes by
name; predict before fit is scikit-learn's ``NotFittedError``.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted

from .preprocess.scrna import align_genes, highly_variable, log_normalize, matrix_and_names
from .splits import check_missing


class _ExpressionClassifier(BaseEstimator, ClassifierMixin):
    def _input(self, X, what: str = "X"):
        """A counts check (``counts=True``) and a matrix whose numbers are sane."""
        from .datasets.scrna import check_counts

        if not hasattr(X, "shape") or len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{what}: expected a non-empty 2-D cells x genes matrix; got "
                             f"{getattr(X, 'shape', type(X).__name__)}")
        if self.counts:
            check_counts(X, what)
        else:
            data = X.data if sp.issparse(X) else np.asarray(X)
            if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
                raise ValueError(f"{what}: expected finite numbers (NaN, infinite or non-numeric values found)")
        return X

    def _features_fit(self, X):
        Xl = log_normalize(X) if self.counts else (sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X, np.float32))
        self.genes_ = highly_variable(Xl, self.n_top_genes) if self.n_top_genes else np.arange(X.shape[1])
        Z = Xl[:, self.genes_]
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
        self.mean_, sd = Z.mean(axis=0), Z.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return np.clip((Z - self.mean_) / self.scale_, -10, 10)

    def _features(self, X, gene_names=None):
        check_is_fitted(self, "model_")
        X, names = matrix_and_names(X, gene_names, layer="counts" if self.counts else None)
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
            raise ValueError(f"X has {X.shape[1]} genes; the model was fitted on {self.n_features_in_}")
        Xl = log_normalize(X) if self.counts else X
        Z = Xl[:, self.genes_]
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z)
        return np.clip((Z - self.mean_) / self.scale_, -10, 10)

    def fit(self, X, y, gene_names=None):
        """Fit on ``X`` (cells x genes: matrix, DataFrame or AnnData) and labels ``y``.

        ``gene_names`` (or the DataFrame's columns / AnnData's var_names) let predict match genes by name.
        """
        X, names = matrix_and_names(X, gene_names, layer="counts" if self.counts else None)
        X = self._input(X)
        y = check_missing(y, "y")
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} cells but y has {len(y)} labels")
        if len(np.unique(y)) < 2:
            raise ValueError("need at least 2 classes")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = None if names is None else np.asarray(names, dtype=object)
        self._order_warned = False
        Z = self._features_fit(X)
        self.model_ = self._make().fit(self._embed_fit(Z), y)
        self.classes_ = self.model_.classes_
        return self

    def _embed_fit(self, Z):
        return Z

    def _embed(self, Z):
        return Z

    def predict_proba(self, X, gene_names=None):
        """Class probabilities ``(cells, classes)``; ``X`` as in :meth:`fit` (genes matched by name when named)."""
        Z = self._embed(self._features(X, gene_names))      # checks fitted first
        return self.model_.predict_proba(Z)

    def predict(self, X, gene_names=None):
        proba = self.predict_proba(X, gene_names)
        return self.classes_[proba.argmax(1)]


class HVGLogisticRegression(_ExpressionClassifier):
    """Logistic regression on scaled log-normalised highly variable genes (CellTypist-style)."""

    def __init__(self, n_top_genes: int = 2000, C: float = 0.1, max_iter: int = 500, counts: bool = True,
                 seed: int = 0):
        self.n_top_genes, self.C, self.max_iter, self.counts, self.seed = n_top_genes, C, max_iter, counts, seed

    def _make(self):
        return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed)


class PCAKNN(_ExpressionClassifier):
    """k-nearest neighbours on the first ``n_pcs`` principal components of scaled HVG expression."""

    def __init__(self, n_top_genes: int = 2000, n_pcs: int = 50, k: int = 15, counts: bool = True, seed: int = 0):
        self.n_top_genes, self.n_pcs, self.k, self.counts, self.seed = n_top_genes, n_pcs, k, counts, seed

    def _make(self):
        return KNeighborsClassifier(n_neighbors=self.k, weights="distance")

    def _embed_fit(self, Z):
        self.pca_ = PCA(n_components=min(self.n_pcs, *Z.shape), random_state=self.seed).fit(Z)
        return self.pca_.transform(Z)

    def _embed(self, Z):
        return self.pca_.transform(Z)


def reconstruction_mse(method: str, X_train, X_test, n_components: int = 30, seed: int = 0) -> float:
    """Test-set reconstruction MSE of a linear/kernel decomposition fitted on ``X_train``.

    ``method``: ``"pca"``, ``"nmf"`` (needs non-negative data), ``"kpca_poly"``, ``"kpca_cosine"``,
    ``"kpca_rbf"`` (kernel PCA with ``fit_inverse_transform=True``).  Shapes: samples x genes.
    """
    from sklearn.decomposition import NMF, KernelPCA

    Xtr, Xte = np.asarray(X_train, dtype=np.float64), np.asarray(X_test, dtype=np.float64)
    if method == "pca":
        model = PCA(n_components=n_components, random_state=seed)
    elif method == "nmf":
        if (Xtr < 0).any() or (Xte < 0).any():
            raise ValueError("NMF needs non-negative data")
        model = NMF(n_components=n_components, init="nndsvda", max_iter=500, random_state=seed)
    elif method.startswith("kpca_"):
        kernel = method.split("_", 1)[1]
        if kernel not in ("poly", "cosine", "rbf"):
            raise ValueError(f"unknown kernel {kernel!r}; valid: poly, cosine, rbf")
        model = KernelPCA(n_components=n_components, kernel=kernel, fit_inverse_transform=True, random_state=seed)
    else:
        raise ValueError(f"unknown method {method!r}; valid: pca, nmf, kpca_poly, kpca_cosine, kpca_rbf")
    model.fit(Xtr)
    rec = model.inverse_transform(model.transform(Xte))
    return float(np.mean((rec - Xte) ** 2))


# ------------------------------------------------ Part III: RF / SVM on PCA or codes (appended)
def code_classifier(kind: str = "rf", seed: int = 0, n_trees: int = 500):
    """The paper's two classifiers for codes / PCA scores: ``"rf"`` (random forest, ``n_trees`` trees) or
    ``"svm"`` (RBF SVM on standardised features)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "rf":
        return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1)
    if kind == "svm":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed))
    raise ValueError(f"unknown classifier {kind!r}; valid: rf, svm")


def pca_classifier(kind: str = "rf", n_components: int = 30, seed: int = 0, n_trees: int = 500):
    """PCA (fitted on the training samples) to ``n_components``, then :func:`code_classifier`."""
    from sklearn.pipeline import make_pipeline

    return make_pipeline(PCA(n_components=n_components, random_state=seed), code_classifier(kind, seed, n_trees))


def logistic_all_genes(C: float = 0.1, seed: int = 0):
    """Plain baseline: standardised genes -> multinomial logistic regression."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
