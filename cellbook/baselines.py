"""Simple, strong baselines that stand beside every deep model (scikit-learn estimators).

- :class:`HVGLogisticRegression` -- CellTypist-style: log-normalise, highly variable genes
  (chosen on the training cells), scale, multinomial logistic regression (fixed ``C``).
- :class:`PCAKNN` -- log-normalise, HVG, scale, PCA, k-nearest neighbours.
- :class:`TunedLogisticRegression` -- what a careful user runs: log1p counts per ``target_sum``, HVGs of the
  training cells, *unscaled*, multinomial logistic regression whose ``C`` (and optionally class weights,
  ``target_sum``, ``n_top_genes``) is chosen by stratified inner K-fold CV on the training cells only.
- :class:`HVGGradientBoosting` -- LightGBM on log1p CP10k of the training cells' HVGs, early stopping on a
  stratified validation split of the training cells, then refitted on all of them.
- :class:`CellTypistClassifier` -- the real ``celltypist`` package (``celltypist.train`` / ``annotate``),
  optionally with its over-clustering + majority voting.
- :func:`reconstruction_mse` -- PCA / NMF / kernel-PCA reconstruction error at a given dimension.

Each classifier has ``fit(X, y, gene_names=None)``, ``predict(X, gene_names=None)``,
``predict_proba(X, gene_names=None)`` (columns in ``classes_`` order) and ``classes_``; ``X`` is cells x genes
raw counts (dense or sparse, a DataFrame or an AnnData) unless ``counts=False``.  Fitted with gene names
(``gene_names=``, DataFrame columns, ``var_names``), predict matches genes by name; predict before fit is
scikit-learn's ``NotFittedError``; labels are checked for missing values before anything stringifies them.
"""
from __future__ import annotations

import contextlib
import itertools
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted

from .preprocess.scrna import align_genes, highly_variable, log_normalize, matrix_and_names
from .splits import check_labels, check_missing


def torch_threads() -> int:
    """The threads this process may use for one fit: torch's count (set by each chapter's ``threads``, by
    ``cellbook run`` and by each Dask worker of :func:`cellbook.map_tasks`)."""
    import torch

    return int(torch.get_num_threads())


class _ExpressionClassifier(BaseEstimator, ClassifierMixin):
    """The shared machinery of the expression classifiers.

    :meth:`_fit_input` / :meth:`_predict_input` turn what the user passes (matrix, DataFrame, AnnData, with or
    without gene names) into a checked cells x genes matrix (at predict: the training genes, matched by name);
    a subclass implements ``_fit(X, y)`` (sets ``model_`` and ``classes_``) and ``_proba(X)``.  The default
    ``_fit`` / ``_proba`` are the scaled-HVG pipeline of :class:`HVGLogisticRegression` and :class:`PCAKNN`.
    """

    counts = True        # the input is raw counts (a constructor parameter of the two scaled-HVG baselines)

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

    def _fit_input(self, X, y, gene_names=None):
        """``(X, y)`` checked; records ``n_features_in_`` and ``feature_names_in_`` (``None`` without names)."""
        X, names = matrix_and_names(X, gene_names, layer="counts" if self.counts else None)
        X = self._input(X)
        y = check_missing(y, "y")
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} cells but y has {len(y)} labels")
        try:
            n_classes = len(np.unique(y))
        except TypeError:
            kinds = sorted({type(v).__name__ for v in y})
            raise ValueError(f"y mixes label types ({', '.join(kinds)}), which cannot be sorted into classes; "
                             f"give labels of one type (e.g. np.asarray(y).astype(str))") from None
        if n_classes < 2:
            raise ValueError("need at least 2 classes")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = None if names is None else np.asarray(names, dtype=object)
        self._order_warned = False
        return X, y

    def _predict_input(self, X, gene_names=None):
        """The checked matrix of the training genes, in the training order (matched by name when named)."""
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

    # -- the public API
    def fit(self, X, y, gene_names=None):
        """Fit on ``X`` (cells x genes: matrix, DataFrame or AnnData) and labels ``y``.

        ``gene_names`` (or the DataFrame's columns / AnnData's var_names) let predict match genes by name.
        """
        X, y = self._fit_input(X, y, gene_names)
        self._fit(X, y)
        return self

    def predict_proba(self, X, gene_names=None):
        """Class probabilities ``(cells, classes)``; ``X`` as in :meth:`fit` (genes matched by name when named)."""
        return self._proba(self._predict_input(X, gene_names))      # checks fitted first

    def predict(self, X, gene_names=None):
        proba = self.predict_proba(X, gene_names)
        return self.classes_[proba.argmax(1)]


def _log_hvg(X, target_sum: float, genes) -> sp.csr_matrix:
    """log1p of counts per ``target_sum`` (per cell, so no other cell is involved) at the columns ``genes``."""
    return sp.csr_matrix(log_normalize(sp.csr_matrix(X), target_sum)[:, genes])


def _hvg(X_log, n_top) -> np.ndarray:
    """:func:`highly_variable` of ``X_log`` (its cells only), or every gene when ``n_top`` is ``None``."""
    return np.arange(X_log.shape[1]) if n_top is None else highly_variable(X_log, int(n_top))


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


# ------------------------------------------------------------------------------ issue 11: careful-user baselines
#: The default search of :class:`TunedLogisticRegression`: ``C`` x ``target_sum`` (10 candidates; about 6 s
#: single-threaded on 2,400 cells x 2,000 HVGs with 3 inner folds).  Measured on van Galen 2019 (3 splits),
#: counts per 1e3 need a ~10x larger ``C`` than per 1e4, so both are searched with a wide ``C`` range.
TUNED_LR_GRID = {"C": (0.01, 0.03, 0.1, 0.3, 1.0), "target_sum": (1e3, 1e4)}
#: A wider search (40 candidates: also class weights and 4,000 HVGs), about 4x slower.
TUNED_LR_WIDE_GRID = {**TUNED_LR_GRID, "class_weight": (None, "balanced"), "n_top_genes": (2000, 4000)}
_GRID_KEYS = ("C", "class_weight", "target_sum", "n_top_genes")


def _check_grid(grid) -> dict:
    """``{key: tuple of values}`` for the keys of :data:`_GRID_KEYS`; a clear ``ValueError`` otherwise."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"param_grid must be a non-empty dict of lists over {', '.join(_GRID_KEYS)}, e.g. "
                         f"{TUNED_LR_GRID}; got {grid!r}")
    unknown = sorted(set(grid) - set(_GRID_KEYS))
    if unknown:
        raise ValueError(f"param_grid has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(_GRID_KEYS)}")
    out = {}
    for k, v in grid.items():
        vals = (v,) if isinstance(v, (str, int, float)) or v is None else tuple(v)
        if not vals:
            raise ValueError(f"param_grid[{k!r}] is empty; give at least one value")
        for x in vals:
            ok = {"C": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0,
                  "target_sum": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0,
                  "class_weight": lambda x: x is None or x == "balanced" or isinstance(x, dict),
                  "n_top_genes": lambda x: x is None or (isinstance(x, (int, np.integer)) and x > 0)}[k](x)
            if not ok:
                raise ValueError(f"param_grid[{k!r}] has the invalid value {x!r}; C and target_sum are > 0, "
                                 f"class_weight is None, 'balanced' or a dict, n_top_genes a positive int or None")
        out[k] = tuple(v for i, v in enumerate(vals) if all(repr(v) != repr(w) for w in vals[:i]))  # unique
    return out


class TunedLogisticRegression(_ExpressionClassifier):
    """Logistic regression as a careful user tunes it: unscaled log-normalised HVGs, ``C`` chosen by inner CV.

    Features: ``log1p`` of counts per ``target_sum`` of the ``n_top_genes`` highly variable genes of the training
    cells (sparse, *not* scaled).  Model: multinomial logistic regression (lbfgs on the CSR matrix).  The
    candidates are the product of ``param_grid`` (keys ``C``, ``class_weight``, ``target_sum``,
    ``n_top_genes``; a key left out keeps the constructor's value; ``None``: :data:`TUNED_LR_GRID`).  Each is
    scored by stratified ``n_folds``-fold CV on the training cells only, with the HVGs chosen inside each inner
    fold from that fold's training cells (no leakage); along ``C`` (ascending) the fits warm-start.  The winner
    has the best mean inner accuracy, then macro-F1, then the smaller ``C`` / no class weights / fewer genes /
    smaller ``target_sum``; it is refitted on all the training cells.

    Attributes: ``best_params_`` (all four keys), ``best_score_`` (its mean inner accuracy), ``cv_results_``
    (one row per candidate: the parameters, ``mean_/std_accuracy``, ``mean_/std_f1_macro``, ``split<k>_*``,
    ``mean_fit_time``, ``mean_n_iter``, ``rank``), ``cv_folds_`` (the inner ``(train, validation)`` row indices
    into the fitted cells), ``genes_`` (HVG column indices), ``model_``, ``classes_``, ``n_parameters_``.
    """

    def __init__(self, n_top_genes: int | None = 2000, target_sum: float = 1e4, C: float = 0.1,
                 class_weight=None, param_grid: dict | None = None, n_folds: int = 3, max_iter: int = 1000,
                 tol: float = 1e-4, seed: int = 0):
        self.n_top_genes, self.target_sum, self.C, self.class_weight = n_top_genes, target_sum, C, class_weight
        self.param_grid, self.n_folds, self.max_iter, self.tol, self.seed = param_grid, n_folds, max_iter, tol, seed

    def _lr(self, C, class_weight, warm_start=False):
        return LogisticRegression(C=C, class_weight=class_weight, max_iter=self.max_iter, tol=self.tol,
                                  warm_start=warm_start, random_state=self.seed)

    def _fit(self, X, y):
        from sklearn.model_selection import StratifiedKFold

        from .metrics import classification

        if int(self.n_folds) < 2:
            raise ValueError(f"n_folds must be >= 2, got {self.n_folds}")
        grid = _check_grid(TUNED_LR_GRID if self.param_grid is None else self.param_grid)
        grid = {k: grid.get(k, (getattr(self, k),)) for k in _GRID_KEYS}
        _check_grid(grid)                                   # the constructor's values, too
        check_labels(y, n_folds=int(self.n_folds), what="y")
        X = sp.csr_matrix(X, dtype=np.float32)
        if all(len(v) == 1 for v in grid.values()):          # one candidate: nothing to choose, no inner CV
            self.best_params_ = {k: grid[k][0] for k in _GRID_KEYS}
            self.best_score_, self.cv_folds_ = float("nan"), []
            self.cv_results_ = pd.DataFrame([self.best_params_])
            return self._refit(X, y)
        classes = np.unique(y)
        skf = StratifiedKFold(n_splits=int(self.n_folds), shuffle=True, random_state=int(self.seed))
        self.cv_folds_ = [(np.sort(a), np.sort(b)) for a, b in skf.split(np.zeros(len(y)), y)]
        Cs = sorted(set(grid["C"]))
        scores = {}                                         # (ts, ng, cw index, C) -> list of per-fold dicts
        for ts in grid["target_sum"]:
            Xl = log_normalize(X, ts)                       # per cell: no other cell involved
            for a, b in self.cv_folds_:
                Xa, Xb = Xl[a], Xl[b]
                for ng in grid["n_top_genes"]:
                    g = _hvg(Xa, ng)                        # HVGs of this fold's training cells only
                    Za, Zb = Xa[:, g], Xb[:, g]
                    for iw, cw in enumerate(grid["class_weight"]):
                        lr = self._lr(Cs[0], cw, warm_start=True)
                        for C in Cs:
                            t0 = time.perf_counter()
                            lr.set_params(C=C).fit(Za, y[a])
                            dt = time.perf_counter() - t0
                            m = classification(y[b], lr.predict(Zb), labels=classes)
                            scores.setdefault((ts, ng, iw, C), []).append(
                                {"accuracy": m["accuracy"], "f1_macro": m["f1_macro"], "fit_time": dt,
                                 "n_iter": int(np.max(lr.n_iter_))})
        rows = []
        for ts, ng, (iw, cw), C in itertools.product(grid["target_sum"], grid["n_top_genes"],
                                                     enumerate(grid["class_weight"]), grid["C"]):
            per = pd.DataFrame(scores[(ts, ng, iw, C)])
            row = {"C": C, "class_weight": cw, "target_sum": ts, "n_top_genes": ng, "_iw": iw}
            for k in ("accuracy", "f1_macro"):
                row[f"mean_{k}"], row[f"std_{k}"] = float(per[k].mean()), float(per[k].std(ddof=0))
                row.update({f"split{i}_{k}": float(v) for i, v in enumerate(per[k])})
            row["mean_fit_time"], row["mean_n_iter"] = float(per["fit_time"].mean()), float(per["n_iter"].mean())
            rows.append(row)
        res = pd.DataFrame(rows)
        # best: accuracy, then macro-F1 (rounded so that float noise is no tie-breaker), then the simpler model
        order = res.assign(_a=-res["mean_accuracy"].round(12), _f=-res["mean_f1_macro"].round(12),
                           _ng=res["n_top_genes"].map(lambda v: np.inf if v is None or pd.isna(v) else float(v)),
                           _cw=res["class_weight"].map(lambda v: v is not None))
        order = order.sort_values(["_a", "_f", "C", "_cw", "_ng", "target_sum"], kind="stable")
        res["rank"] = 0
        res.loc[order.index, "rank"] = np.arange(1, len(res) + 1)
        best = res.loc[order.index[0]]
        self.cv_results_ = res.drop(columns="_iw").reset_index(drop=True)
        self.best_params_ = {"C": float(best["C"]), "class_weight": best["class_weight"],
                             "target_sum": float(best["target_sum"]),
                             "n_top_genes": None if best["n_top_genes"] is None or pd.isna(best["n_top_genes"])
                             else int(best["n_top_genes"])}
        self.best_score_ = float(best["mean_accuracy"])
        return self._refit(X, y)

    def _refit(self, X, y):
        """Fit the chosen candidate on every training cell."""
        Xl = log_normalize(X, self.best_params_["target_sum"])
        self.genes_ = _hvg(Xl, self.best_params_["n_top_genes"])
        self.model_ = self._lr(self.best_params_["C"], self.best_params_["class_weight"]).fit(Xl[:, self.genes_], y)
        self.classes_ = self.model_.classes_
        self.n_parameters_ = int(self.model_.coef_.size + self.model_.intercept_.size)

    @property
    def chosen_params_(self) -> dict:
        """Constructor parameters that fix the chosen candidate (refits then skip the inner CV)."""
        check_is_fitted(self, "best_params_")
        return {"param_grid": {k: (v,) for k, v in self.best_params_.items()}}

    def _proba(self, X):
        return self.model_.predict_proba(_log_hvg(X, self.best_params_["target_sum"], self.genes_))


class HVGGradientBoosting(_ExpressionClassifier):
    """LightGBM on log1p counts per ``target_sum`` of the training cells' ``n_top_genes`` HVGs (multiclass).

    A stratified ``validation_fraction`` of the training cells (at least one cell per class) stops the boosting
    when the validation multi-class log-loss has not improved for ``early_stopping_rounds`` rounds; with
    ``refit=True`` the model is then retrained on all the training cells for that best number of rounds.
    LightGBM rather than scikit-learn's ``HistGradientBoostingClassifier``: on van Galen 2019 (2,428 training
    cells x 2,000 HVGs, one thread) a whole fit here (search + refit) takes ~10-16 s; HGB's early-stopped
    search alone took ~127 s at the same settings, for the same accuracy.  Deterministic
    (``deterministic=True``, ``seed``; ``n_jobs`` threads, default :func:`torch_threads`: column-wise histograms
    give the same model for any thread count, 15.5 s with 1 thread and 10.2 s with 2 on 2,427 cells x 2,000
    HVGs).  Defaults (learning rate 0.1, 15 leaves,
    >= 10 cells a leaf, half the genes per tree, L2 penalty 1, 63 histogram bins) come from a small check by
    3-fold CV within the training cells of one split (L2 1 vs 0: accuracy 0.804 vs 0.793; learning rate 0.05:
    0.806 at 1.6x the time; 31 leaves / 20 cells: 0.800).

    Attributes: ``best_iteration_`` (early-stopped rounds), ``n_iter_`` (rounds of the final model),
    ``best_score_`` (validation log-loss there), ``genes_``, ``model_`` (a ``lightgbm.Booster``), ``classes_``,
    ``n_parameters_`` (split thresholds + leaf values of all trees).  ``early_stopping_rounds=None`` trains
    ``max_iter`` rounds on every cell (``chosen_params_`` fixes a fitted model's rounds this way).
    """

    def __init__(self, n_top_genes: int | None = 2000, target_sum: float = 1e4, learning_rate: float = 0.1,
                 num_leaves: int = 15, min_child_samples: int = 10, colsample_bytree: float = 0.5,
                 reg_lambda: float = 1.0, max_bin: int = 63, max_iter: int = 1000, early_stopping_rounds: int = 25,
                 validation_fraction: float = 0.1, refit: bool = True, n_jobs: int | None = None, seed: int = 0):
        self.n_top_genes, self.target_sum, self.learning_rate = n_top_genes, target_sum, learning_rate
        self.num_leaves, self.min_child_samples, self.colsample_bytree = num_leaves, min_child_samples, colsample_bytree
        self.reg_lambda, self.max_bin, self.max_iter = reg_lambda, max_bin, max_iter
        self.early_stopping_rounds, self.validation_fraction = early_stopping_rounds, validation_fraction
        self.refit = refit
        self.n_jobs, self.seed = n_jobs, seed

    def _params(self, n_classes: int) -> dict:
        return {"objective": "multiclass", "num_class": int(n_classes), "learning_rate": float(self.learning_rate),
                "num_leaves": int(self.num_leaves), "min_data_in_leaf": int(self.min_child_samples),
                "feature_fraction": float(self.colsample_bytree), "lambda_l2": float(self.reg_lambda),
                "max_bin": int(self.max_bin), "seed": int(self.seed),
                "num_threads": int(self.n_jobs) if self.n_jobs is not None else torch_threads(),
                "deterministic": True, "force_col_wise": True, "verbose": -1}

    def _fit(self, X, y):
        import lightgbm as lgb
        from sklearn.model_selection import train_test_split

        if not 0 < float(self.validation_fraction) < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if int(self.max_iter) < 1 or (self.early_stopping_rounds is not None and int(self.early_stopping_rounds) < 1):
            raise ValueError("max_iter and early_stopping_rounds must be >= 1 (early_stopping_rounds=None: no early "
                             "stopping, max_iter rounds on every cell)")
        check_labels(y, min_per_class=2, what="y")         # a validation cell and a training cell per class
        self.classes_, yi = np.unique(y, return_inverse=True)
        Xl = log_normalize(sp.csr_matrix(X, dtype=np.float32), self.target_sum)
        self.genes_ = _hvg(Xl, self.n_top_genes)
        Z = sp.csr_matrix(Xl[:, self.genes_])
        k = len(self.classes_)
        if self.early_stopping_rounds is None:               # a fixed number of rounds (e.g. one chosen before)
            import lightgbm as lgb

            params = self._params(k)
            self.model_ = lgb.train(params, lgb.Dataset(Z, yi, params=params), num_boost_round=int(self.max_iter))
            self.best_iteration_ = self.n_iter_ = int(self.model_.current_iteration())
            self.best_score_ = float("nan")
            leaves = [t["num_leaves"] for t in self.model_.dump_model()["tree_info"]]
            self.n_parameters_ = int(sum(2 * n - 1 for n in leaves))
            return
        n_val = max(int(np.ceil(float(self.validation_fraction) * len(yi))), k)
        if len(yi) - n_val < k:
            raise ValueError(f"{len(yi)} training cells are too few for a validation split with one cell per class "
                             f"({k} classes); give more cells or fewer classes")
        tr, va = train_test_split(np.arange(len(yi)), test_size=n_val, stratify=yi, random_state=int(self.seed))
        params = self._params(k)
        dtr = lgb.Dataset(Z[tr], yi[tr], params=params)
        dva = lgb.Dataset(Z[va], yi[va], reference=dtr, params=params)
        booster = lgb.train(params, dtr, num_boost_round=int(self.max_iter), valid_sets=[dva],
                            callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)])
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.best_score_ = float(booster.best_score["valid_0"]["multi_logloss"])
        if self.refit:
            booster = lgb.train(params, lgb.Dataset(Z, yi, params=params), num_boost_round=self.best_iteration_)
        else:
            booster.model_from_string(booster.model_to_string(num_iteration=self.best_iteration_))
        self.model_ = booster
        self.n_iter_ = int(booster.current_iteration())
        leaves = [t["num_leaves"] for t in booster.dump_model()["tree_info"]]
        self.n_parameters_ = int(sum(2 * n - 1 for n in leaves))

    @property
    def chosen_params_(self) -> dict:
        """Constructor parameters that fix the chosen number of rounds (refits then skip the early stopping)."""
        check_is_fitted(self, "best_iteration_")
        return {"max_iter": int(self.best_iteration_), "early_stopping_rounds": None}

    def _proba(self, X):
        P = self.model_.predict(_log_hvg(X, self.target_sum, self.genes_))
        return np.asarray(P).reshape(X.shape[0], len(self.classes_))


# ------------------------------------------------------------------------------ CellTypist
class _OvRLogisticRegression(LogisticRegression):
    """``LogisticRegression(multi_class="ovr")`` for CellTypist on scikit-learn >= 1.8, which removed
    ``multi_class`` (celltypist 1.7.1's default ``train`` then fails; Teichlab/celltypist#164): one binary
    logistic regression per class (a single one for two classes), as older scikit-learn fitted it.  ``n_jobs``
    classes are fitted at once in threads, as scikit-learn's own one-vs-rest did (each fit is independent and
    deterministic; with ``n_jobs > 1`` BLAS runs single-threaded inside them, so threads are not multiplied)."""

    def __init__(self, multi_class: str = "ovr", n_jobs: int | None = None, **kwargs):
        self.multi_class, self.ovr_jobs = multi_class, n_jobs
        self._lr_kwargs = dict(kwargs)
        super().__init__(**self._lr_kwargs)

    def fit(self, X, y, sample_weight=None):
        from joblib import Parallel, delayed

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        targets = self.classes_[1:] if len(self.classes_) == 2 else self.classes_

        def one(c):
            return LogisticRegression(**self._lr_kwargs).fit(X, (y == c).astype(int), sample_weight=sample_weight)

        jobs = 1 if self.ovr_jobs is None else int(self.ovr_jobs)
        if jobs == 1 or len(targets) == 1:
            fits = [one(c) for c in targets]
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                fits = Parallel(n_jobs=jobs, prefer="threads")(delayed(one)(c) for c in targets)
        self.coef_ = np.vstack([f.coef_ for f in fits])
        self.intercept_ = np.concatenate([f.intercept_ for f in fits])
        self.n_iter_ = np.array([int(np.max(f.n_iter_)) for f in fits])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X):
        from scipy.special import expit

        p = expit(self.decision_function(X))
        if p.ndim == 1:
            return np.column_stack([1 - p, p])
        return p / p.sum(axis=1, keepdims=True)


def _celltypist():
    """``import celltypist``, undoing what its import does to the whole process: celltypist.classifier sets
    global ``ignore`` filters for User/Runtime/FutureWarnings and celltypist.logger calls ``logging.basicConfig``
    (root logger at INFO)."""
    import logging
    import sys

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
    arrays (gene names) hashes.  numpy compares object arrays pair by pair, which made each ``annotate`` spend
    ~6 s matching 27,899 query genes against 20,000 model genes; the mask is the same."""

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
    restored, its gene matching hashed (:class:`_NumpyFastIsin`), and on scikit-learn >= 1.8
    :class:`_OvRLogisticRegression` in place of ``multi_class='ovr'``."""
    import importlib
    import inspect
    import logging
    from unittest import mock

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
    import scanpy as sc

    from .config import keep_torch_threads

    _celltypist()
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

    Speed (van Galen 2019, 2,428 training cells x 27,899 genes, one thread): the default fit takes ~26 s
    (dense scaled matrix, 15 binary fits); ``with_mean=False`` (CellTypist's own option: no centring, the matrix
    stays sparse) fits in ~2 s; ``feature_selection=True`` with ``with_mean=True`` takes minutes (its SGD pass on
    the dense matrix).  ``n_jobs`` binary fits run at once (default: :func:`torch_threads`), with single-threaded
    BLAS inside them, so the coefficients are those of the fits one after another with single-threaded BLAS:
    24.5 s with 1 job, 13.0 s with 2 on 2,427 cells x 17,043 genes.  CellTypist's gene matching compares object
    arrays pairwise (~6 s an ``annotate``); it is
    hashed here (:class:`_NumpyFastIsin`, same result).  The last annotation is cached, so ``predict`` after
    ``predict_proba`` on the same cells costs nothing.

    Deterministic: ``seed`` goes to SGD (``random_state``), to numpy's global RNG during ``train`` (mini-batch
    sampling; restored after) and to Leiden.  CellTypist's log lines are silenced.  On scikit-learn >= 1.8 the
    one-vs-rest model CellTypist asks for is fitted by :class:`_OvRLogisticRegression` (CellTypist 1.7.1 passes
    the removed ``multi_class`` argument).  Attributes: ``model_`` (a ``celltypist.models.Model``),
    ``classes_``, ``features_`` (the model's genes), ``n_parameters_``.
    """

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
        from .datasets.scrna import check_unique_genes

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
        import hashlib

        import anndata as ad

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
