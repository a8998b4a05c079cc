"""Part I's comparison: the model zoo of Table 1 and its baselines, fitted and scored split by split.

    zoo = model_zoo(k=5)                                   # name -> spec (deep model or baseline)
    records, predictions, fitted = evaluate_models(X, y, repeated_splits(y, seeds), zoo, gene_names=genes)

A spec is either ``CellTypeClassifier`` arguments or ``{"baseline": kind}``; ``"shares"`` marks a
voting ensemble that reuses another entry's independently trained members (:func:`with_voting`).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .annotate import CellTypeClassifier
from .splits import as_labels


def with_voting(clf: CellTypeClassifier, mode: str) -> CellTypeClassifier:
    """The same independently trained members, combined by another voting ``mode`` (no retraining)."""
    import copy

    from .models.ensemble import VotingEnsemble

    clf._check_fitted()
    if clf.ensemble not in ("soft", "hard"):
        raise ValueError(f"with_voting needs a voting ensemble (soft/hard), not {clf.ensemble!r}")
    out = copy.copy(clf)
    out.ensemble = mode
    out.trainer_ = copy.copy(clf.trainer_)
    out.trainer_.model = VotingEnsemble(list(clf.module_.members), mode)
    out.module_ = out.trainer_.model
    out.fit_seconds_ = 0.0   # the members were trained once, for both voting modes
    return out


# The paper's Table 1 (every metric = accuracy: micro-averaged; see REFERENCE trap 1).
PAPER_TABLE1 = {"MLP": 0.7651, "CNN": 0.904, "CNN ensemble (joint)": 0.9143, "LSTM": 0.8146,
                "LSTM + attention": 0.8983, "LSTM ensemble (joint)": 0.8797, "CNN + LSTM": 0.8704}


def model_zoo(k: int = 5, include=None) -> dict:
    """Table 1's models: name -> spec (``CellTypeClassifier`` arguments, or a baseline).

    ``"shares"`` marks a voting ensemble that reuses another entry's members (trained once).
    """
    zoo = {
        "MLP": dict(architecture="mlp"),
        "MLP ensemble (joint)": dict(architecture="mlp", ensemble="joint", k=k),
        "CNN": dict(architecture="cnn"),
        "CNN ensemble (joint)": dict(architecture="cnn", ensemble="joint", k=k),
        "CNN ensemble (soft vote)": dict(architecture="cnn", ensemble="soft", k=k),
        "CNN ensemble (hard vote)": dict(architecture="cnn", ensemble="hard", k=k, shares="CNN ensemble (soft vote)"),
        "LSTM": dict(architecture="lstm"),
        "LSTM + attention": dict(architecture="lstm_att"),
        "LSTM ensemble (joint)": dict(architecture="lstm", ensemble="joint", k=k),
        "CNN + LSTM": dict(architecture=["cnn", "lstm"], ensemble="joint"),
        "Logistic regression (HVG)": dict(baseline="logreg"),
        "kNN on PCA": dict(baseline="knn"),
    }
    if include is not None:
        unknown = sorted(set(include) - set(zoo))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(zoo)}")
        zoo = {name: zoo[name] for name in include}
        for name, spec in zoo.items():   # a shared voting entry needs its source
            if "shares" in spec and spec["shares"] not in zoo:
                zoo[name] = {k_: v for k_, v in spec.items() if k_ != "shares"}
    return zoo


BASELINE_GENES = 2000   # HVGs for the baselines, whatever the deep models get (their usual setting)


def _baseline(kind: str, seed):
    from .baselines import PCAKNN, HVGLogisticRegression

    if kind == "logreg":
        return HVGLogisticRegression(n_top_genes=BASELINE_GENES, seed=seed)
    return PCAKNN(n_top_genes=BASELINE_GENES, seed=seed)


def fit_model(spec: dict, X, y, gene_names=None, *, seed: int = 0, fitted: dict | None = None, **common):
    """Fit one zoo entry; returns ``(estimator, fit_seconds, n_parameters)``.

    ``common`` are :class:`CellTypeClassifier` arguments shared by all deep models (transform,
    n_genes, max_epochs, lr, model_kwargs, device, ...); baselines use their own ``BASELINE_GENES``
    HVGs (chosen on the training cells) and are deterministic given the training cells.
    """
    if "baseline" in spec:
        est = _baseline(spec["baseline"], seed)
        t0 = time.perf_counter()
        est.fit(X, y, gene_names=gene_names)
        secs = time.perf_counter() - t0
        coef = getattr(est.model_, "coef_", None)
        n_par = int(coef.size + est.model_.intercept_.size) if coef is not None else 0
        return est, secs, n_par
    if "shares" in spec and fitted and spec["shares"] in fitted:
        clf = with_voting(fitted[spec["shares"]], spec["ensemble"])
        return clf, fitted[spec["shares"]].fit_seconds_, clf.n_parameters_
    args = {k_: v for k_, v in spec.items() if k_ != "shares"}
    clf = CellTypeClassifier(**args, seed=seed, **common).fit(X, y, gene_names=gene_names)
    return clf, clf.fit_seconds_, clf.n_parameters_


def evaluate_models(X, y, splits, zoo: dict, gene_names=None, labels=None, progress: bool = True, **common):
    """Fit and score every zoo model on every split.

    ``splits`` is a list of ``(split_id, train_idx, test_idx)`` (e.g. :func:`cellbook.splits.repeated_splits`).
    Returns ``(records, predictions, fitted)``: a DataFrame with one row per model and split (all of
    :func:`cellbook.metrics.classification`, ``fit_seconds``, ``n_parameters``), a dict
    ``{(model, split_id): predicted labels of the test cells}``, and the last split's fitted models.
    """
    from . import metrics

    y = as_labels(y, "y")
    labels = np.unique(y) if labels is None else labels
    rows, preds, cache = [], {}, {}
    for split_id, tr, te in splits:
        seed = int(split_id) if str(split_id).lstrip("-").isdigit() else 0
        fitted = {}
        for name, spec in zoo.items():
            key = (name, np.asarray(tr).tobytes())
            if "baseline" in spec and key in cache:     # deterministic: same training cells, same model
                est, secs, n_par = cache[key]
            else:
                est, secs, n_par = fit_model(spec, X[tr], y[tr], gene_names, seed=seed, fitted=fitted, **common)
                if "baseline" in spec:
                    cache[key] = (est, secs, n_par)
            fitted[name] = est
            pred = np.asarray(est.predict(X[te], gene_names=gene_names) if gene_names is not None
                              else est.predict(X[te])).astype(str)
            preds[(name, split_id)] = pred
            row = {"model": name, "split": split_id, **metrics.classification(y[te], pred, labels=labels),
                   "fit_seconds": secs, "n_parameters": n_par}
            rows.append(row)
            if progress:
                print(f"  split {split_id}: {name:28s} acc {row['accuracy']:.3f}  macro-F1 {row['f1_macro']:.3f}"
                      f"  {secs:6.1f} s", flush=True)
    return pd.DataFrame(rows), preds, fitted
