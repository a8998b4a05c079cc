"""The real CellTypist as a scikit-learn estimator, with the few shims the installed celltypist needs."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import logging
import sys
import warnings
from unittest import mock

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ..config import keep_torch_threads
from ..datasets.scrna import check_unique_genes
from ..preprocess.scrna import log_normalize
from ..validation import SEED, Interval, Options
from ._expression import _ExpressionClassifier, torch_threads


class _OvRLogisticRegression(LogisticRegression):
    """``LogisticRegression(multi_class="ovr")`` for celltypist's ``train``, which passes ``multi_class``: a
    scikit-learn without that argument gets this in its place (see :func:`_celltypist_session`).

    One binary logistic regression per class (a single one for two classes), the one-vs-rest fit of
    scikit-learn's ``multi_class="ovr"``.  ``n_jobs`` classes are fitted at once in threads (each fit is
    independent and deterministic; with ``n_jobs > 1`` BLAS runs single-threaded inside them, so threads are
    not multiplied)."""

    def __init__(self, multi_class: str = "ovr", n_jobs: int | None = None, **kwargs):
        self.multi_class, self.ovr_jobs = multi_class, n_jobs
        self._lr_kwargs = dict(kwargs)
        super().__init__(**self._lr_kwargs)

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_

        def one(c):
            return LogisticRegression(**self._lr_kwargs).fit(X, (y == c).astype(int), sample_weight=sample_weight)

        jobs = 1 if self.ovr_jobs is None else int(self.ovr_jobs)
        if jobs == 1 or len(targets) == 1:
            fits = [one(c) for c in targets]
        else:
            with threadpool_limits(1):
                fits = Parallel(n_jobs=jobs, prefer="threads")(delayed(one)(c) for c in targets)
        self.coef_ = np.vstack([f.coef_ for f in fits])
        self.intercept_ = np.concatenate([f.intercept_ for f in fits])
        self.n_iter_ = np.array([int(np.max(f.n_iter_)) for f in fits])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X):
        p = expit(self.decision_function(X))
        if p.ndim == 1:
            return np.column_stack([1 - p, p])
        return p / p.sum(axis=1, keepdims=True)


def _celltypist():
    """``import celltypist``, undoing what its import does to the whole process: celltypist.classifier sets
    global ``ignore`` filters for User/Runtime/FutureWarnings and celltypist.logger calls ``logging.basicConfig``
    (root logger at INFO)."""
    if "celltypist" in sys.modules:
        return sys.modules["celltypist"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with warnings.catch_warnings():             # restores the filters on exit
            warnings.simplefilter("ignore")
            import celltypist
    except ImportError as e:                         # pragma: no cover - a dependency of cellbook
        raise ImportError("CellTypistClassifier needs the celltypist package: pip install 'celltypist>=1.6'") from e
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return celltypist


class _NumpyFastIsin:
    """numpy as ``celltypist.classifier`` sees it during our calls: the same, except that ``isin`` on object
    arrays hashes.  celltypist matches the query's genes to the model's with ``np.isin`` on object arrays, which
    numpy compares pair by pair (slow for tens of thousands of genes); the mask is the same."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def isin(element, test_elements, *args, **kwargs):
        e, t = np.asarray(element), np.asarray(test_elements)
        if args or kwargs or (e.dtype != object and t.dtype != object):
            return np.isin(element, test_elements, *args, **kwargs)
        return pd.Series(e.ravel(), dtype=object).isin(pd.Series(t.ravel(), dtype=object)).to_numpy().reshape(e.shape)


@contextlib.contextmanager
def _celltypist_session(seed: int):
    """CellTypist quiet (its logger at ERROR), numpy's global RNG seeded (mini-batch SGD samples with it) and
    restored, its gene matching hashed (:class:`_NumpyFastIsin`), and, where scikit-learn's
    ``LogisticRegression`` has no ``multi_class`` argument, :class:`_OvRLogisticRegression` in its place."""
    ct = _celltypist()
    log = logging.getLogger("celltypist.logger")
    level, state = log.level, np.random.get_state()
    log.setLevel(logging.ERROR)
    np.random.seed(int(seed) % 2 ** 32)
    shim = contextlib.nullcontext()
    if "multi_class" not in inspect.signature(LogisticRegression).parameters:
        shim = mock.patch.object(importlib.import_module("celltypist.train"), "LogisticRegression",
                                 _OvRLogisticRegression)
    fast_isin = mock.patch.object(importlib.import_module("celltypist.classifier"), "np", _NumpyFastIsin())
    try:
        with shim, fast_isin, warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield ct
    finally:
        log.setLevel(level)
        np.random.set_state(state)


def celltypist_over_clustering(adata, resolution: float | None = None, seed: int = 0) -> np.ndarray:
    """CellTypist's own over-clustering of log-normalised cells (``celltypist.classifier.Classifier.over_cluster``):
    its neighbourhood graph (HVGs, scaling, 50 PCs, 10 neighbours) and Leiden (igraph, 2 iterations) at its
    size-based resolution (5 below 5,000 cells ... 30 above 200,000) unless ``resolution`` is given, with
    ``random_state=seed``.  CellTypist leaves the random state at scanpy's default 0, so ``seed=0`` reproduces its
    clusters.  Returns one cluster label per cell (strings)."""
    _celltypist()
    import scanpy as sc  # celltypist's own dependency, loaded with it
    from celltypist.classifier import Classifier

    g = adata.copy()
    # scanpy's neighbour graph raises torch's thread count (numba's OpenMP layer): kept, so the models trained
    # after it in this process run as before it
    with warnings.catch_warnings(), keep_torch_threads():   # scanpy's notes on CellTypist's steps (views, dense)
        warnings.simplefilter("ignore", UserWarning)
        g.obsm["X_pca"], g.obsp["connectivities"], g.obsp["distances"], g.uns["neighbors"] = \
            Classifier._construct_neighbor_graph(adata.copy())
    if resolution is None:
        n = g.n_obs
        resolution = next(r for lim, r in ((5000, 5), (20000, 10), (40000, 15), (100000, 20), (200000, 25),
                                            (np.inf, 30)) if n < lim)
    sc.tl.leiden(g, resolution=float(resolution), key_added="over_clustering", flavor="igraph", n_iterations=2,
                 random_state=int(seed))
    return g.obs["over_clustering"].astype(str).to_numpy()


class CellTypistClassifier(_ExpressionClassifier):
    """The real CellTypist (``celltypist.train`` / ``celltypist.annotate``) as a scikit-learn estimator.

    ``fit`` log-normalises the counts to 10,000 per cell + ``log1p`` (what CellTypist requires) and calls
    ``celltypist.train(X, labels, genes, check_expression=..., feature_selection=..., n_jobs=..., ...)`` with
    CellTypist's defaults for everything not set here: all genes, scaled (``with_mean=True``), one-vs-rest
    logistic regression with ``C=1`` (``use_SGD=True``: SGD; ``feature_selection=True``: a first SGD pass keeps
    the ``top_genes`` genes with the largest coefficients of each class, then a second fit).  ``predict`` /
    ``predict_proba`` call ``celltypist.annotate(mode="best match")``; with ``majority_voting=True`` the cells
    are over-clustered as CellTypist does (:func:`celltypist_over_clustering`, Leiden with ``seed``; needs more
    than 50 cells, else a warning and per-cell predictions) and every cell gets its cluster's majority label.

    ``predict_proba``: CellTypist's ``probability_matrix`` is the sigmoid of each class's one-vs-rest decision
    score, columns that do not sum to 1 (``mode="prob match"`` thresholds them into multi-label calls, not a
    probability per class); here each row is divided by its sum (scikit-learn's one-vs-rest normalisation), so
    its argmax is CellTypist's best-match label.  With majority voting a row is the share of the cell's
    over-cluster predicted as each class (its argmax is the majority label).  ``predict`` returns CellTypist's
    label (``predicted_labels`` / ``majority_voting``); :meth:`annotation` returns CellTypist's whole result.

    Speed: the default fit scales a dense matrix (one binary fit per class); ``with_mean=False`` (CellTypist's
    own option: no centring) keeps the matrix sparse and fits much faster; ``feature_selection=True`` with
    ``with_mean=True`` is the slowest (its SGD pass on the dense matrix).  ``n_jobs`` binary fits run at once
    (default: :func:`torch_threads`), with single-threaded BLAS inside them, so the coefficients are those of
    the fits one after another with single-threaded BLAS.  CellTypist's gene matching is hashed here
    (:class:`_NumpyFastIsin`, same result).  The last annotation is cached, so ``predict`` after
    ``predict_proba`` on the same cells costs nothing.

    Deterministic: ``seed`` goes to SGD (``random_state``), to numpy's global RNG during ``train`` (mini-batch
    sampling; restored after) and to Leiden.  CellTypist's log lines are silenced.  Where scikit-learn has no
    ``multi_class`` argument, the one-vs-rest model CellTypist asks for is fitted by
    :class:`_OvRLogisticRegression`.  Attributes: ``model_`` (a ``celltypist.models.Model``),
    ``classes_``, ``features_`` (the model's genes), ``n_parameters_``.  CellTypist names the classes by text;
    ``classes_`` and ``predict`` keep the labels' own type (integers in, integers out).
    """

    _parameter_constraints = {
        "majority_voting": bool, "feature_selection": bool, "top_genes": Interval(int, 1, None),
        "C": Interval(float, 0, None, closed="neither"),
        "solver": Options(None, "lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga"),
        "max_iter": [None, Interval(int, 1, None)], "use_SGD": bool, "alpha": Interval(float, 0, None),
        "mini_batch": bool, "balance_cell_type": bool, "epochs": Interval(int, 1, None), "with_mean": bool,
        "check_expression": bool, "resolution": [None, Interval(float, 0, None, closed="neither")],
        "n_jobs": [None, Options(-1), Interval(int, 1, None)], "seed": SEED}

    def __init__(self, majority_voting: bool = False, feature_selection: bool = False, top_genes: int = 300,
                 C: float = 1.0, solver: str | None = None, max_iter: int | None = None, use_SGD: bool = False,
                 alpha: float = 1e-4, mini_batch: bool = False, balance_cell_type: bool = False, epochs: int = 10,
                 with_mean: bool = True, check_expression: bool = True, resolution: float | None = None,
                 n_jobs: int | None = None, seed: int = 0):
        self.majority_voting, self.feature_selection, self.top_genes = majority_voting, feature_selection, top_genes
        self.C, self.solver, self.max_iter, self.use_SGD, self.alpha = C, solver, max_iter, use_SGD, alpha
        self.mini_batch, self.balance_cell_type, self.epochs = mini_batch, balance_cell_type, epochs
        self.with_mean, self.check_expression, self.resolution = with_mean, check_expression, resolution
        self.n_jobs, self.seed = n_jobs, seed

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_annotation_cache", None)            # the last query's AnnData: not part of the model
        return state

    def _gene_ids(self) -> np.ndarray:
        if self.feature_names_in_ is not None:
            return np.asarray(self.feature_names_in_, dtype=str)
        return np.array([f"gene{i}" for i in range(self.n_features_in_)])

    def _fit(self, X, y):
        if self.feature_names_in_ is not None:
            check_unique_genes(self.feature_names_in_, "gene names",
                               fix="CellTypist matches genes by name: sum or drop the duplicates first")
        X = sp.csr_matrix(X, dtype=np.float32)
        empty = np.flatnonzero(np.asarray(X.sum(axis=1)).ravel() == 0)
        if len(empty):
            raise ValueError(f"X has {len(empty)} cell(s) without any counts (rows {', '.join(map(str, empty[:5]))}"
                             f"{', ...' if len(empty) > 5 else ''}); CellTypist normalises every cell to 10,000 "
                             f"counts, so drop empty cells first (e.g. scanpy.pp.filter_cells(adata, min_counts=1))")
        self.classes_, yi = np.unique(y, return_inverse=True)
        names = np.array([str(c) for c in self.classes_])     # CellTypist names classes by text
        self._class_names = names
        # n_jobs None: the threads this process may use (torch's count, which `cellbook run`, each chapter's
        # `threads` and each Dask worker set); the one-vs-rest fits then run that many at once
        n_jobs = int(self.n_jobs) if self.n_jobs is not None else max(1, torch_threads())
        kwargs = dict(C=self.C, solver=self.solver, max_iter=self.max_iter, n_jobs=n_jobs,
                      use_SGD=self.use_SGD, alpha=self.alpha, mini_batch=self.mini_batch,
                      balance_cell_type=self.balance_cell_type, epochs=self.epochs,
                      feature_selection=self.feature_selection, top_genes=self.top_genes, with_mean=self.with_mean,
                      check_expression=self.check_expression)
        if self.use_SGD or self.feature_selection:
            kwargs["random_state"] = int(self.seed)     # SGDClassifier's shuffling (lbfgs has no randomness)
        with _celltypist_session(self.seed) as ct:
            self.model_ = ct.train(log_normalize(X, 1e4), labels=names[yi], genes=self._gene_ids(), **kwargs)
        clf = self.model_.classifier
        self.features_ = np.asarray(clf.features, dtype=object)
        self.n_parameters_ = int(np.size(clf.coef_) + np.size(clf.intercept_))
        self._annotation_cache = None

    def _annotate(self, X):
        """CellTypist's ``AnnotationResult`` for the checked matrix ``X`` (cached for the last ``X``)."""
        Xl = sp.csr_matrix(log_normalize(sp.csr_matrix(X, dtype=np.float32), 1e4))
        h = hashlib.blake2b(digest_size=16)
        for part in (np.asarray(Xl.shape), Xl.indptr, Xl.indices, Xl.data):
            h.update(np.ascontiguousarray(part).tobytes())
        key = (h.hexdigest(), bool(self.majority_voting), self.resolution, int(self.seed))
        cache = getattr(self, "_annotation_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        # CellTypist's own scaling step fails on a sparse matrix when it does not subtract means
        query = ad.AnnData(Xl if self.with_mean else Xl.toarray())
        query.var_names = self._gene_ids()
        query.obs_names = [f"cell{i}" for i in range(query.n_obs)]
        mv, clusters = bool(self.majority_voting), None
        if mv and query.n_obs <= 50:
            warnings.warn(f"CellTypistClassifier: {query.n_obs} cells are too few for CellTypist's over-clustering "
                          f"(it needs more than 50), so no majority voting is done: these are per-cell predictions",
                          UserWarning, stacklevel=4)
            mv = False
        with _celltypist_session(self.seed) as ct:
            if mv:
                clusters = celltypist_over_clustering(query, self.resolution, self.seed)
            result = ct.annotate(query, model=self.model_, mode="best match", majority_voting=mv,
                                 over_clustering=clusters)
        result.cellbook_majority_voting = mv
        self._annotation_cache = (key, result)
        return result

    def annotation(self, X, gene_names=None):
        """CellTypist's ``AnnotationResult`` (``predicted_labels``, ``decision_matrix``, ``probability_matrix``,
        ``adata``) for ``X`` (cells x genes counts; genes matched by name as in :meth:`predict`)."""
        return self._annotate(self._predict_input(X, gene_names))

    def _index(self, labels) -> np.ndarray:
        pos = pd.Index(self._class_names).get_indexer(np.asarray(labels, dtype=str))
        if (pos < 0).any():                          # cannot happen with min_prop=0; guard anyway
            bad = sorted(set(np.asarray(labels, dtype=str)[pos < 0]))
            raise ValueError(f"CellTypist returned labels that are not classes of the model: {bad[:5]}")
        return pos

    def _proba(self, X):
        r = self._annotate(X)
        if r.cellbook_majority_voting:
            pred = self._index(r.predicted_labels["predicted_labels"])
            clusters = r.predicted_labels["over_clustering"].astype(str).to_numpy()
            onehot = np.eye(len(self.classes_))[pred]
            shares = pd.DataFrame(onehot).groupby(clusters).transform("mean").to_numpy()
            return shares
        P = r.probability_matrix.to_numpy(dtype=np.float64)[:, self._index(r.probability_matrix.columns).argsort()]
        s = P.sum(axis=1, keepdims=True)
        return np.divide(P, s, out=np.full_like(P, 1 / P.shape[1]), where=s > 0)

    def predict(self, X, gene_names=None):
        """CellTypist's label per cell (after majority voting when ``majority_voting=True``)."""
        r = self._annotate(self._predict_input(X, gene_names))
        col = "majority_voting" if r.cellbook_majority_voting else "predicted_labels"
        return self.classes_[self._index(r.predicted_labels[col])]

