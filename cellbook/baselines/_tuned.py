"""The careful user's baselines: logistic regression tuned by inner CV, and gradient boosting on HVGs."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ..metrics import classification
from ..preprocess.scrna import log_normalize
from ..splits import check_labels
from ..validation import SEED, Interval, InvalidParameterError, Options
from ._expression import _ExpressionClassifier, _hvg, _log_hvg, torch_threads

#: The default search of :class:`TunedLogisticRegression`: ``C`` x ``target_sum`` (10 candidates).  Counts per
#: 1e3 need a larger ``C`` than per 1e4 (about 10x on van Galen 2019), so both are searched with a wide ``C`` range.
TUNED_LR_GRID = {"C": (0.01, 0.03, 0.1, 0.3, 1.0), "target_sum": (1e3, 1e4)}
#: A wider search (40 candidates: also class weights and 4,000 HVGs).
TUNED_LR_WIDE_GRID = {**TUNED_LR_GRID, "class_weight": (None, "balanced"), "n_top_genes": (2000, 4000)}
_GRID_KEYS = ("C", "class_weight", "target_sum", "n_top_genes")
_GRID_VALID = {"C": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0,
               "target_sum": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0,
               "class_weight": lambda x: x is None or x == "balanced" or isinstance(x, dict),
               "n_top_genes": lambda x: x is None or (isinstance(x, (int, np.integer)) and x > 0)}


def _check_grid(grid, example: dict = TUNED_LR_GRID) -> dict:
    """``{key: tuple of values}`` for the keys of :data:`_GRID_KEYS`; an ``InvalidParameterError`` (a
    ``ValueError``) naming the key and value otherwise (``example``: the grid its message shows)."""
    if not isinstance(grid, dict) or not grid:
        raise InvalidParameterError(f"param_grid must be a non-empty dict of lists over {', '.join(_GRID_KEYS)}, "
                                    f"e.g. {example}; got {grid!r}")
    unknown = sorted(set(grid) - set(_GRID_KEYS))
    if unknown:
        raise InvalidParameterError(f"param_grid has unknown key(s) {', '.join(map(repr, unknown))}; "
                                    f"valid: {', '.join(_GRID_KEYS)}")
    out = {}
    for k, v in grid.items():
        vals = (v,) if isinstance(v, (str, int, float)) or v is None else tuple(v)
        if not vals:
            raise InvalidParameterError(f"param_grid[{k!r}] is empty; give at least one value")
        for x in vals:
            if not _GRID_VALID[k](x):
                raise InvalidParameterError(f"param_grid[{k!r}] has the invalid value {x!r}; C and target_sum are "
                                            f"> 0, class_weight is None, 'balanced' or a dict, n_top_genes a "
                                            f"positive int or None")
        out[k] = tuple(v for i, v in enumerate(vals) if all(repr(v) != repr(w) for w in vals[:i]))  # unique
    return out


def _cv_table(scores: dict, grid: dict) -> pd.DataFrame:
    """One row per candidate of ``grid`` (in product order) from the per-fold ``scores``."""
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
    return pd.DataFrame(rows)


def _rank(res: pd.DataFrame) -> pd.Index:
    """The rows of ``res`` best first: accuracy, then macro-F1 (rounded so that float noise is no
    tie-breaker), then the simpler model (smaller ``C``, no class weights, fewer genes, smaller ``target_sum``)."""
    order = res.assign(_a=-res["mean_accuracy"].round(12), _f=-res["mean_f1_macro"].round(12),
                       _ng=res["n_top_genes"].map(lambda v: np.inf if v is None or pd.isna(v) else float(v)),
                       _cw=res["class_weight"].map(lambda v: v is not None))
    return order.sort_values(["_a", "_f", "C", "_cw", "_ng", "target_sum"], kind="stable").index


class _InnerCVTuned(_ExpressionClassifier):
    """The shared machinery of the linear baselines tuned by inner CV (:class:`TunedLogisticRegression`,
    :class:`~cellbook.baselines.LinearSVMClassifier`).

    Features: ``log1p`` of counts per ``target_sum`` of the ``n_top_genes`` highly variable genes of the training
    cells (sparse, *not* scaled).  The candidates are the product of ``param_grid`` (keys ``C``, ``class_weight``,
    ``target_sum``, ``n_top_genes``; a key left out keeps the constructor's value; ``None``: the subclass's
    ``_default_grid``).  Each is scored by stratified ``n_folds``-fold CV on the training cells only, with the HVGs
    chosen inside each inner fold from that fold's training cells (no leakage).  The winner has the best mean inner
    accuracy, then macro-F1, then the smaller ``C`` / no class weights / fewer genes / smaller ``target_sum``; it is
    refitted on all the training cells.  With more than ``max_tune_cells`` training cells, the candidates are scored
    on a stratified subsample of that many (``n_tune_cells_``), as CellTypist trains by mini-batches on large
    references: the choice of ``C`` settles long before, and the final fit still sees every cell.  A subclass gives
    ``_candidate(C, class_weight, warm_start)`` (the model an inner fold fits), ``_final(Z, y, C, class_weight)``
    (the fitted final model) and ``_size(model)``.
    """

    # the constructor parameters that every subclass takes (TunedLogisticRegression's, as they are)
    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)],
                              "target_sum": Interval(float, 0, None, closed="neither"),
                              "C": Interval(float, 0, None, closed="neither"),
                              "class_weight": [None, Options("balanced"), dict], "param_grid": [None, dict],
                              "n_folds": Interval(int, 2, None), "max_iter": Interval(int, 1, None),
                              "tol": Interval(float, 0, None), "seed": SEED,
                              "max_tune_cells": [None, Interval(int, 10, None)]}
    _default_grid: dict = TUNED_LR_GRID
    _folds_always = False     # whether the final model needs the inner folds too (then even with one candidate)

    def _check_params(self) -> None:
        super()._check_params()
        self._grid()                                        # param_grid's keys and values

    def _grid(self) -> dict:
        """The checked candidates: ``param_grid`` over the constructor's values (checked by ``fit``)."""
        grid = _check_grid(self._default_grid if self.param_grid is None else self.param_grid, self._default_grid)
        return {k: grid.get(k, (getattr(self, k),)) for k in _GRID_KEYS}

    def _fit(self, X, y):
        # OpenMP threads (scikit-learn's loss) as many as this process may use: with more, two notebooks or
        # Dask workers side by side spin against each other (a fit 10x slower); the results are the same
        with threadpool_limits(limits=max(1, torch_threads()), user_api="openmp"):
            return self._fit_limited(X, y)

    def _tuning_cells(self, y) -> np.ndarray:
        """The rows the inner CV scores candidates on: every cell, or a stratified subsample of
        ``max_tune_cells`` when there are more (seeded; each class keeps its share, at least ``n_folds``)."""
        n, cap = len(y), self.max_tune_cells
        if cap is None or n <= int(cap):
            return np.arange(n)
        rng = np.random.default_rng(int(self.seed))
        classes, yi, counts = np.unique(y, return_inverse=True, return_counts=True)
        take = np.maximum(np.minimum(counts, int(self.n_folds)), np.floor(counts * int(cap) / n).astype(int))
        return np.sort(np.concatenate([rng.choice(np.flatnonzero(yi == k), t, replace=False)
                                       for k, t in enumerate(take)]))

    def _stratified_folds(self, y, rows: np.ndarray) -> list:
        """Stratified, shuffled ``n_folds`` folds (seeded) over the cells ``rows``, as sorted row indices."""
        skf = StratifiedKFold(n_splits=int(self.n_folds), shuffle=True, random_state=int(self.seed))
        return [(rows[np.sort(a)], rows[np.sort(b)]) for a, b in skf.split(np.zeros(len(rows)), y[rows])]

    def _fit_limited(self, X, y):
        grid = self._grid()
        one = all(len(v) == 1 for v in grid.values())      # one candidate: nothing to choose, no inner CV
        folds = self._folds_always or not one
        check_labels(y, n_folds=int(self.n_folds) if folds else None, what="y")
        X = sp.csr_matrix(X, dtype=np.float32)
        self.cv_folds_ = []
        tune = self._tuning_cells(y) if not one else np.arange(len(y))
        self.n_tune_cells_ = len(tune)
        if folds:
            self.cv_folds_ = self._stratified_folds(y, tune)
        if one:
            self.best_params_ = {k: grid[k][0] for k in _GRID_KEYS}
            self.best_score_ = float("nan")
            self.cv_results_ = pd.DataFrame([self.best_params_])
            return self._refit(X, y)
        res = _cv_table(self._inner_scores(X, y, grid), grid)
        order = _rank(res)
        res["rank"] = 0
        res.loc[order, "rank"] = np.arange(1, len(res) + 1)
        best = res.loc[order[0]]
        self.cv_results_ = res.drop(columns="_iw").reset_index(drop=True)
        self.best_params_ = {"C": float(best["C"]), "class_weight": best["class_weight"],
                             "target_sum": float(best["target_sum"]),
                             "n_top_genes": None if best["n_top_genes"] is None or pd.isna(best["n_top_genes"])
                             else int(best["n_top_genes"])}
        self.best_score_ = float(best["mean_accuracy"])
        return self._refit(X, y)

    def _inner_scores(self, X, y, grid: dict) -> dict:
        """``{(target_sum, n_top_genes, class-weight index, C): [per inner fold: accuracy, macro-F1, fit
        time, iterations]}``; along ``C`` (ascending) each fit warm-starts from the previous one (where the
        model can)."""
        classes = np.unique(y)
        Cs = sorted(set(grid["C"]))
        scores = {}
        for ts in grid["target_sum"]:
            Xl = log_normalize(X, ts)                       # per cell: no other cell involved
            for a, b in self.cv_folds_:
                Xa, Xb = Xl[a], Xl[b]
                for ng in grid["n_top_genes"]:
                    g = _hvg(Xa, ng)                        # HVGs of this fold's training cells only
                    Za, Zb = Xa[:, g], Xb[:, g]
                    for iw, cw in enumerate(grid["class_weight"]):
                        model = self._candidate(Cs[0], cw, warm_start=True)
                        for C in Cs:
                            t0 = time.perf_counter()
                            model.set_params(C=C).fit(Za, y[a])
                            dt = time.perf_counter() - t0
                            m = classification(y[b], model.predict(Zb), labels=classes)
                            scores.setdefault((ts, ng, iw, C), []).append(
                                {"accuracy": m["accuracy"], "f1_macro": m["f1_macro"], "fit_time": dt,
                                 "n_iter": int(np.max(model.n_iter_))})
        return scores

    def _refit(self, X, y):
        """Fit the chosen candidate on every training cell."""
        Xl = log_normalize(X, self.best_params_["target_sum"])
        self.genes_ = _hvg(Xl, self.best_params_["n_top_genes"])
        self.model_ = self._final(Xl[:, self.genes_], y, self.best_params_["C"], self.best_params_["class_weight"])
        self.classes_ = self.model_.classes_
        self.n_parameters_, self.n_iter_ = self._size(self.model_)

    def __getstate__(self):
        """The state with ``cv_results_`` as plain columns (model files store no pandas objects)."""
        state = dict(super().__getstate__())   # a copy: the default state is the instance's own __dict__
        res = state.pop("cv_results_", None)
        if isinstance(res, pd.DataFrame):
            state["cv_results_columns_"] = [
                (str(c), res[c].tolist() if res[c].dtype == object else res[c].to_numpy()) for c in res.columns]
        return state

    def __setstate__(self, state):
        state = dict(state)
        state.setdefault("max_tune_cells", 20_000)        # a model saved before the parameter existed
        columns = state.pop("cv_results_columns_", None)
        super().__setstate__(state)
        if columns is not None:
            self.cv_results_ = pd.DataFrame({c: pd.Series(v, dtype=object) if isinstance(v, list) else v
                                             for c, v in columns})

    @property
    def chosen_params_(self) -> dict:
        """Constructor parameters that fix the chosen candidate (refits then skip the inner CV)."""
        check_is_fitted(self, "best_params_")
        return {"param_grid": {k: (v,) for k, v in self.best_params_.items()}}

    def _proba(self, X):
        return self.model_.predict_proba(_log_hvg(X, self.best_params_["target_sum"], self.genes_))


class TunedLogisticRegression(_InnerCVTuned):
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
    into the fitted cells), ``genes_`` (HVG column indices), ``model_``, ``classes_``, ``n_parameters_``,
    ``n_iter_`` (the final model's iterations), ``n_tune_cells_`` (the cells the inner CV used: at most
    ``max_tune_cells``, a stratified subsample of larger references; ``None``: every cell).
    """

    def __init__(self, n_top_genes: int | None = 2000, target_sum: float = 1e4, C: float = 0.1,
                 class_weight=None, param_grid: dict | None = None, n_folds: int = 3, max_iter: int = 1000,
                 tol: float = 1e-4, seed: int = 0, max_tune_cells: int | None = 20_000):
        self.n_top_genes, self.target_sum, self.C, self.class_weight = n_top_genes, target_sum, C, class_weight
        self.param_grid, self.n_folds, self.max_iter, self.tol, self.seed = param_grid, n_folds, max_iter, tol, seed
        self.max_tune_cells = max_tune_cells

    def _candidate(self, C, class_weight, warm_start=False):
        return LogisticRegression(C=C, class_weight=class_weight, max_iter=self.max_iter, tol=self.tol,
                                  warm_start=warm_start, random_state=self.seed)

    def _final(self, Z, y, C, class_weight):
        return self._candidate(C, class_weight).fit(Z, y)

    @staticmethod
    def _size(model) -> tuple[int, np.ndarray]:
        return int(model.coef_.size + model.intercept_.size), model.n_iter_


def _n_tree_parameters(booster) -> int:
    """Split thresholds + leaf values of all the trees of a LightGBM booster."""
    leaves = [t["num_leaves"] for t in booster.dump_model()["tree_info"]]
    return int(sum(2 * n - 1 for n in leaves))


class HVGGradientBoosting(_ExpressionClassifier):
    """LightGBM on log1p counts per ``target_sum`` of the training cells' ``n_top_genes`` HVGs (multiclass).

    A stratified ``validation_fraction`` of the training cells (at least one cell per class) stops the boosting
    when the validation multi-class log-loss has not improved for ``early_stopping_rounds`` rounds; with
    ``refit=True`` the model is then retrained on all the training cells for that best number of rounds.
    LightGBM rather than scikit-learn's ``HistGradientBoostingClassifier``: much faster for the same accuracy.
    Deterministic (``deterministic=True``, ``seed``; ``n_jobs``
    threads, default :func:`torch_threads`: column-wise histograms give the same model for any thread count).
    Defaults (learning rate 0.1, 15 leaves, >= 10 cells a leaf, half the genes per tree, L2 penalty 1, 63
    histogram bins) come from a small check by 3-fold CV within the training cells of one split.

    Attributes: ``best_iteration_`` (early-stopped rounds), ``n_iter_`` (rounds of the final model),
    ``best_score_`` (validation log-loss there), ``genes_``, ``model_`` (a ``lightgbm.Booster``), ``classes_``,
    ``n_parameters_`` (split thresholds + leaf values of all trees).  ``early_stopping_rounds=None`` trains
    ``max_iter`` rounds on every cell (``chosen_params_`` fixes a fitted model's rounds this way).
    """

    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)],
                              "target_sum": Interval(float, 0, None, closed="neither"),
                              "learning_rate": Interval(float, 0, None, closed="neither"),
                              "num_leaves": Interval(int, 2, None), "min_child_samples": Interval(int, 0, None),
                              "colsample_bytree": Interval(float, 0, 1, closed="right"),
                              "reg_lambda": Interval(float, 0, None), "max_bin": Interval(int, 2, None),
                              "max_iter": Interval(int, 1, None),
                              "early_stopping_rounds": [None, Interval(int, 1, None)],
                              "validation_fraction": Interval(float, 0, 1, closed="neither"), "refit": bool,
                              "n_jobs": [None, Interval(int, 1, None)], "seed": SEED}

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

        check_labels(y, min_per_class=2, what="y")         # a validation cell and a training cell per class
        self.classes_, yi = np.unique(y, return_inverse=True)
        Xl = log_normalize(sp.csr_matrix(X, dtype=np.float32), self.target_sum)
        self.genes_ = _hvg(Xl, self.n_top_genes)
        Z = sp.csr_matrix(Xl[:, self.genes_])
        params = self._params(len(self.classes_))
        if self.early_stopping_rounds is None:               # a fixed number of rounds (e.g. one chosen before)
            self.model_ = lgb.train(params, lgb.Dataset(Z, yi, params=params), num_boost_round=int(self.max_iter))
            self.best_iteration_ = self.n_iter_ = int(self.model_.current_iteration())
            self.best_score_ = float("nan")
        else:
            self.model_ = self._fit_early_stopped(Z, yi, params)
            self.n_iter_ = int(self.model_.current_iteration())
        self.n_parameters_ = _n_tree_parameters(self.model_)

    def _fit_early_stopped(self, Z, yi, params: dict):
        """Boost on a stratified training part until the validation part's log-loss stops improving; then the
        booster of that many rounds (refitted on every cell with ``refit=True``)."""
        import lightgbm as lgb

        k = len(self.classes_)
        n_val = max(int(np.ceil(float(self.validation_fraction) * len(yi))), k)
        if len(yi) - n_val < k:
            raise ValueError(f"{len(yi)} training cells are too few for a validation split with one cell per class "
                             f"({k} classes); give more cells or fewer classes")
        tr, va = train_test_split(np.arange(len(yi)), test_size=n_val, stratify=yi, random_state=int(self.seed))
        dtr = lgb.Dataset(Z[tr], yi[tr], params=params)
        dva = lgb.Dataset(Z[va], yi[va], reference=dtr, params=params)
        booster = lgb.train(params, dtr, num_boost_round=int(self.max_iter), valid_sets=[dva],
                            callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)])
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        self.best_score_ = float(booster.best_score["valid_0"]["multi_logloss"])
        if self.refit:
            return lgb.train(params, lgb.Dataset(Z, yi, params=params), num_boost_round=self.best_iteration_)
        booster.model_from_string(booster.model_to_string(num_iteration=self.best_iteration_))
        return booster

    def __getstate__(self):
        """The state with the booster as LightGBM's text model (plain data, rebuilt by :meth:`__setstate__`)."""
        state = dict(super().__getstate__())   # a copy: the default state is the instance's own __dict__
        booster = state.pop("model_", None)
        if booster is not None:
            state["model_text_"] = booster.model_to_string(num_iteration=-1)
        return state

    def __setstate__(self, state):
        state = dict(state)
        text = state.pop("model_text_", None)
        super().__setstate__(state)
        if text is not None:
            import lightgbm as lgb

            self.model_ = lgb.Booster(model_str=text)

    @property
    def chosen_params_(self) -> dict:
        """Constructor parameters that fix the chosen number of rounds (refits then skip the early stopping)."""
        check_is_fitted(self, "best_iteration_")
        return {"max_iter": int(self.best_iteration_), "early_stopping_rounds": None}

    def _proba(self, X):
        P = self.model_.predict(_log_hvg(X, self.target_sum, self.genes_))
        return np.asarray(P).reshape(X.shape[0], len(self.classes_))
