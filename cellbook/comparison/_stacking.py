"""A stacked ensemble of models of different kinds, weighted on out-of-fold predictions."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..baselines._expression import _array_like, _check_shape, _check_y
from ..metrics import classification
from ..splits import stratified_kfold
from ..validation import SEED, Interval, InvalidParameterError, check_params


def _proba(est, X, gene_names, classes) -> np.ndarray:
    """``est``'s class probabilities for ``X``, as columns in ``classes`` order (0 for unseen classes)."""
    P = est.predict_proba(X, gene_names=gene_names) if gene_names is not None else est.predict_proba(X)
    out = np.zeros((P.shape[0], len(classes)))
    out[:, np.searchsorted(classes, np.asarray(est.classes_).astype(str))] = P
    return out


def _rows(X, idx):
    """Rows ``idx`` of a matrix, a DataFrame or an AnnData."""
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else X[idx]


def _log_loss(P: np.ndarray, codes: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(codes)), codes], 1e-12, None))))


class StackedEnsemble(ClassifierMixin, BaseEstimator):
    """Models of different kinds averaged with weights chosen on out-of-fold predictions.

    Greedy forward selection with replacement (Caruana et al. 2004): starting from nothing, add
    the member whose inclusion most lowers the log-loss of the averaged out-of-fold class
    probabilities of the training cells, until no member helps (at most ``max_rounds`` picks); the
    weights are how often each member was picked.  Out-of-fold predictions come from ``n_folds``
    stratified folds of the training cells, so the test cells are never seen.  Members already fitted
    on all training cells (``prefit``) are reused for prediction.

    ``factories`` maps a member name to ``f(seed) -> unfitted estimator`` (for the out-of-fold fits).
    After ``fit``: ``classes_``, ``weights_`` (every member, zeros included), ``oof_`` (per-member
    out-of-fold scores: accuracy, macro-F1, log-loss, and the ensemble's), ``path_`` (the selection,
    round by round), ``ablation_`` (the ensemble's out-of-fold accuracy and macro-F1 without each chosen
    member: what each member adds), ``members_`` (the chosen members, fitted on all training cells),
    ``n_features_in_``, ``fit_seconds_`` and ``n_parameters_`` (0: the members count their own).

    The members see the labels as strings (``np.asarray(y).astype(str)``); ``classes_`` and ``predict`` keep
    the labels' own type, and ``predict_proba``'s columns follow ``classes_``.  The parameters are checked by
    ``fit`` against ``_parameter_constraints`` first (an ``InvalidParameterError`` naming the parameter).
    """

    _parameter_constraints = {"factories": dict, "n_folds": Interval(int, 2, None),
                              "max_rounds": Interval(int, 1, None), "seed": SEED}

    def __init__(self, factories: dict, n_folds: int = 3, max_rounds: int = 30, seed: int = 0):
        self.factories, self.n_folds, self.max_rounds, self.seed = factories, n_folds, max_rounds, seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True            # as far as the members take sparse matrices
        return tags

    def _check_params(self) -> None:
        """The declared constraints, then what they cannot say: ``factories`` holds at least 2 callables."""
        check_params(type(self).__name__, self.get_params(deep=False), self._parameter_constraints)
        bad = sorted(str(k) for k, f in self.factories.items() if not callable(f))
        if bad or len(self.factories) < 2:
            raise InvalidParameterError(
                f"{type(self).__name__}: factories is not valid: it must map at least 2 member names to "
                f"f(seed) returning an unfitted estimator; got {len(self.factories)} member(s)"
                + (f", of which not callable: {', '.join(bad)}" if bad else ""))

    def fit(self, X, y, gene_names=None, prefit: dict | None = None) -> StackedEnsemble:
        """Choose the weights on out-of-fold predictions of ``X`` (cells x genes) and labels ``y``; then fit the
        chosen members on every cell (or reuse the ``prefit`` ones: member name -> fitted estimator)."""
        self._check_params()
        X = _array_like(X)
        _check_shape(X)
        given = _check_y(y, type(self).__name__)
        y = given.astype(str)
        self._labels = np.unique(y)                  # the members' classes: the labels as strings, sorted
        if len(self._labels) < 2:
            raise ValueError("y: need at least 2 classes; got one class")
        check_classification_targets(given)          # "Unknown label type" for a continuous target
        try:
            self.classes_ = np.unique(given)
        except TypeError:
            raise ValueError("y mixes label types that cannot be sorted into classes; give labels of one type "
                             "(e.g. np.asarray(y).astype(str))") from None
        self.n_features_in_ = X.shape[1]
        codes = np.searchsorted(self._labels, y)
        t0 = time.perf_counter()
        oof = self._out_of_fold(X, y, gene_names)
        names = list(self.factories)
        self.weights_, self.path_ = self._select(oof, names, codes)
        self.oof_, self.ablation_ = self._scores(oof, names, y, codes)
        prefit = dict(prefit or {})
        self.members_ = {}
        for m in names:
            if self.weights_[m] > 0:
                if m in prefit:
                    self.members_[m] = prefit[m]
                else:
                    self.members_[m] = self.factories[m](int(self.seed)).fit(X, y, gene_names=gene_names)
        self.fit_seconds_ = time.perf_counter() - t0   # out-of-fold fits (+ refits of members not prefit)
        self.n_parameters_ = 0
        return self

    def _out_of_fold(self, X, y, gene_names) -> dict:
        """``{member: out-of-fold class probabilities of every training cell}`` (columns in ``classes_`` order)."""
        seed = int(self.seed)
        oof = {name: np.zeros((len(y), len(self._labels))) for name in self.factories}
        for fold, (tr, va) in enumerate(stratified_kfold(y, int(self.n_folds), seed=seed)):
            for name, make in self.factories.items():
                est = make(seed * 100 + fold)
                est.fit(_rows(X, tr), y[tr], gene_names=gene_names)
                oof[name][va] = _proba(est, _rows(X, va), gene_names, self._labels)
        return oof

    def _select(self, oof: dict, names: list, codes) -> tuple[pd.Series, pd.DataFrame]:
        """Greedy forward selection with replacement: ``(weights, the selection round by round)``."""
        counts = dict.fromkeys(names, 0)
        total = np.zeros_like(oof[names[0]])
        best_loss, path = np.inf, []
        for rnd in range(int(self.max_rounds)):
            n = sum(counts.values())
            trial = {m: _log_loss((total + oof[m]) / (n + 1), codes) for m in names}
            m = min(names, key=lambda k: (trial[k], names.index(k)))
            if trial[m] >= best_loss - 1e-6:
                break
            counts[m] += 1
            total += oof[m]
            best_loss = trial[m]
            path.append({"round": rnd + 1, "added": m, "oof_log_loss": best_loss})
        w = np.array([counts[m] for m in names], float)
        return pd.Series(w / w.sum(), index=names, name="weight"), pd.DataFrame(path)

    def _scores(self, oof: dict, names: list, y, codes) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Out-of-fold scores of each member and of the ensemble, and what each chosen member adds."""
        def score(P):
            pred = self._labels[P.argmax(1)]
            c = classification(y, pred, labels=self._labels)
            return {"accuracy": c["accuracy"], "f1_macro": c["f1_macro"], "log_loss": _log_loss(P, codes)}

        blend = sum(self.weights_[m] * oof[m] for m in names)
        scores = pd.DataFrame({**{m: score(oof[m]) for m in names}, "ensemble": score(blend)}).T
        abl = []
        for m in [m for m in names if self.weights_[m] > 0]:
            rest = self.weights_.drop(m)
            if rest.sum() == 0:
                continue
            P = sum(rest[k] * oof[k] for k in rest.index) / rest.sum()
            s = score(P)
            abl.append({"member": m, "weight": self.weights_[m],
                        "accuracy without it": s["accuracy"], "macro-F1 without it": s["f1_macro"],
                        "accuracy it adds": scores.loc["ensemble", "accuracy"] - s["accuracy"],
                        "macro-F1 it adds": scores.loc["ensemble", "f1_macro"] - s["f1_macro"]})
        return scores, pd.DataFrame(abl)

    def predict_proba(self, X, gene_names=None) -> np.ndarray:
        """The weighted average of the chosen members' class probabilities (columns in ``classes_`` order)."""
        check_is_fitted(self, "members_")
        X = _array_like(X)
        P = sum(self.weights_[m] * _proba(est, X, gene_names, self._labels) for m, est in self.members_.items())
        return P[:, np.searchsorted(self._labels, self.classes_.astype(str))]

    def predict(self, X, gene_names=None) -> np.ndarray:
        """The most probable class per cell."""
        P = self.predict_proba(X, gene_names)
        return self.classes_[P.argmax(1)]
