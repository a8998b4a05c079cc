"""The model zoo of Part I: names, specs, and fitting one entry (a deep model, tuned or not, or a baseline)."""
from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ..annotation import CellTypeClassifier
from ..baselines import (
    ANCHORS,
    PCAKNN,
    CellTypistClassifier,
    HVGGradientBoosting,
    HVGLogisticRegression,
    LinearSVMClassifier,
    TunedLogisticRegression,
    make_anchor,
    missing_package,
)
from ..models.ensemble import VotingEnsemble

TUNED = " (tuned)"
PAPER = " (paper settings)"


def with_voting(clf: CellTypeClassifier, mode: str) -> CellTypeClassifier:
    """The same independently trained members, combined by another voting ``mode`` (no retraining)."""
    check_is_fitted(clf, "module_")
    if clf.ensemble not in ("soft", "hard"):
        raise ValueError(f"with_voting needs a voting ensemble (soft/hard), not {clf.ensemble!r}")
    out = copy.copy(clf).set_params(ensemble=mode)    # a shallow copy: the fitted members are shared
    out.trainer_ = copy.copy(clf.trainer_)
    out.trainer_.model = VotingEnsemble(list(clf.module_.members), mode)
    out.module_ = out.trainer_.model
    out.fit_seconds_ = 0.0   # the members were trained once, for both voting modes
    return out


# The paper's Table 1 (every metric = accuracy: micro-averaged; see REFERENCE trap 1).
PAPER_TABLE1 = {"MLP": 0.7651, "CNN": 0.904, "CNN ensemble (joint)": 0.9143, "LSTM": 0.8146,
                "LSTM + attention": 0.8983, "LSTM ensemble (joint)": 0.8797, "CNN + LSTM": 0.8704}

# The book's own deep recipe: a wider-regularised MLP (input dropout, dropout, label smoothing,
# AdamW) whose members are trained independently and averaged (a deep ensemble).
REGULARISED_MLP = dict(architecture="mlp", model_kwargs={"mlp": {"hidden": (512, 256), "dropout": 0.5,
                                                                 "input_dropout": 0.3}},
                       optimizer="adamw", weight_decay=1e-2, label_smoothing=0.1)

BASELINES = {
    "logreg_tuned": "Logistic regression (tuned)",
    "logreg_scaled": "Logistic regression (scaled)",
    "celltypist": "CellTypist",
    "gbm": "Gradient boosting (HVGs)",
    "knn": "kNN on PCA",
    "linear_svm": "Linear SVM (calibrated)",
    "scanvi": "scANVI",
    "singler": "SingleR",
}
#: The optional zoo entries (their package is an extra: ``pip install 'cellbook[anchors]'``): name -> kind.
OPTIONAL = {BASELINES[kind]: kind for kind in ANCHORS}


def skipped_models(include=None) -> dict:
    """``{name: one-line note}`` for the optional zoo entries (scANVI, SingleR) that :func:`model_zoo` leaves out
    because their package is not installed; only those ``include`` names (``None``: every optional entry)."""
    names = OPTIONAL if include is None else [n for n in include if n in OPTIONAL]
    notes = {}
    for name in names:
        why = missing_package(OPTIONAL[name])
        if why:
            notes[name] = f"{name} skipped: {why}"
    return notes


def deep_settings(params: dict, device: bool = True) -> dict:
    """The deep models' training settings from a Part I chapter's parameters: the keyword arguments of
    :class:`~cellbook.CellTypeClassifier` (and of :func:`evaluate_models`) that every chapter shares.
    ``device=False`` leaves the device out (for calls that take it separately)."""
    out = dict(transform=params["transform"], n_genes=params["n_genes"], max_epochs=params["epochs"],
               lr=params["lr"], batch_size=params["batch_size"], model_kwargs={"chunk": params["chunk"]},
               patience=params["patience"])
    if device:
        out["device"] = params.get("device", "auto")
    return out


def model_zoo(k: int = 5, include=None, grid=None, stack_members=None, stack_folds: int = 3,
              celltypist: dict | None = None, baseline_genes: int | None = None) -> dict:
    """The compared models: name -> spec (see the module docstring).

    ``grid``: setting overrides for the deep models' tuning (the first is the paper's: ``{}``);
    ``None`` trains each deep model with the given settings only.  ``stack_members``: names of
    the entries a stacked ensemble may choose from (``None``: no stacked ensemble).
    ``celltypist``: parameters of :class:`cellbook.baselines.CellTypistClassifier` (``None``: its
    defaults, i.e. CellTypist's own).  ``baseline_genes``: the HVGs of the training cells that the
    HVG-based baselines use (``None``: :data:`BASELINE_GENES`, a careful user's 2000; give the deep
    models' ``n_genes`` for a comparison on the same genes).  The optional entries (scANVI, SingleR: the
    ``anchors`` extra) are in it only when their package is installed; otherwise they are left out, also from
    ``include``, and :func:`skipped_models` gives the note a chapter prints.
    """
    ct = dict(celltypist or {})
    hv = {"n_top_genes": int(baseline_genes)} if baseline_genes is not None else {}
    g = {"grid": [dict(s) for s in grid]} if grid else {}
    zoo = {
        "MLP": dict(architecture="mlp", **g),
        "MLP ensemble (joint)": dict(architecture="mlp", ensemble="joint", k=k, **g),
        "CNN": dict(architecture="cnn", **g),
        "CNN ensemble (joint)": dict(architecture="cnn", ensemble="joint", k=k, **g),
        "CNN ensemble (soft vote)": dict(architecture="cnn", ensemble="soft", k=k, **g),
        "CNN ensemble (hard vote)": dict(architecture="cnn", ensemble="hard", k=k, shares="CNN ensemble (soft vote)"),
        "LSTM": dict(architecture="lstm", **g),
        "LSTM + attention": dict(architecture="lstm_att", **g),
        "LSTM ensemble (joint)": dict(architecture="lstm", ensemble="joint", k=k, **g),
        "CNN + LSTM": dict(architecture=["cnn", "lstm"], ensemble="joint", **g),
        "Regularised MLP": dict(REGULARISED_MLP),
        "Regularised MLP ensemble": dict(REGULARISED_MLP, ensemble="soft", k=k),
        BASELINES["logreg_tuned"]: dict(baseline="logreg_tuned", **hv),
        BASELINES["logreg_scaled"]: dict(baseline="logreg_scaled", **hv),
        BASELINES["celltypist"]: dict(baseline="celltypist", **ct),
        BASELINES["celltypist"] + " + majority voting": dict(baseline="celltypist", **{**ct, "majority_voting": True},
                                                               shares=BASELINES["celltypist"]),
        BASELINES["gbm"]: dict(baseline="gbm", **hv),
        BASELINES["knn"]: dict(baseline="knn", **hv),
        BASELINES["linear_svm"]: dict(baseline="linear_svm", **hv),
    }
    skipped = skipped_models()
    zoo.update({name: dict(baseline=kind, **hv) for name, kind in OPTIONAL.items() if name not in skipped})
    if stack_members:
        bad = [m for m in stack_members
               if m not in zoo and not (m.endswith(TUNED) and "grid" in zoo.get(m[: -len(TUNED)], {}))]
        if bad:
            raise ValueError(f"unknown stack member(s) {', '.join(bad)}; valid: {', '.join(entry_names(zoo))}")
        zoo["Stacked ensemble"] = dict(stack=list(stack_members), n_folds=int(stack_folds))
    if include is not None:
        known = set(zoo) | {n + TUNED for n, s in zoo.items() if "grid" in s}
        unknown = sorted(set(include) - known - set(skipped))
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(zoo)}")
        # "X (tuned)" comes with a grid entry X; an optional entry whose package is missing is left out
        wanted = {n if n in zoo else n[: -len(TUNED)] for n in include if n not in skipped}
        for name in list(wanted):   # a shared entry or a stack needs its sources
            spec = zoo[name]
            wanted |= {spec["shares"]} if "shares" in spec else set()
            wanted |= {m if m in zoo else m[: -len(TUNED)] for m in spec.get("stack", [])}
        zoo = {n: s for n, s in zoo.items() if n in wanted}
    return zoo


def entry_names(zoo: dict) -> list[str]:
    """The result rows a zoo gives: a tuned deep model adds ``name + TUNED``."""
    out = []
    for name, spec in zoo.items():
        out.append(name)
        if "grid" in spec:
            out.append(name + TUNED)
    return out


BASELINE_GENES = 2000   # HVGs for the baselines, whatever the deep models get (their usual setting)


def make_baseline(kind: str, seed: int = 0, **params):
    """A fresh, unfitted baseline of kind ``logreg_tuned``, ``logreg_scaled``, ``celltypist``, ``gbm``, ``knn``,
    ``linear_svm``, or (when their package is installed) ``scanvi``, ``singler``."""
    hv = {"n_top_genes": BASELINE_GENES, **params}
    if kind == "logreg_tuned":
        return TunedLogisticRegression(seed=seed, **hv)
    if kind == "logreg_scaled":
        return HVGLogisticRegression(seed=seed, **hv)
    if kind == "celltypist":
        return CellTypistClassifier(seed=seed, **params)
    if kind == "gbm":
        return HVGGradientBoosting(seed=seed, **hv)
    if kind == "knn":
        return PCAKNN(seed=seed, **hv)
    if kind == "linear_svm":
        return LinearSVMClassifier(seed=seed, **hv)
    if kind in ANCHORS:
        return make_anchor(kind, seed=seed, **hv)
    raise ValueError(f"unknown baseline {kind!r}; valid: logreg_tuned, logreg_scaled, celltypist, gbm, knn, "
                     f"linear_svm, scanvi, singler")


def _n_parameters(est) -> int:
    if hasattr(est, "n_parameters_"):
        return int(est.n_parameters_)
    model = getattr(est, "model_", None)
    coef = getattr(model, "coef_", None)
    return int(coef.size + model.intercept_.size) if coef is not None else 0


def _validation_score(clf: CellTypeClassifier) -> tuple[float, float]:
    """(validation accuracy, validation loss) at the restored (best) epoch, averaged over members."""
    accs, losses = [], []
    for h in clf.histories_:
        if "val_loss" not in h or h.empty:
            raise ValueError("tuning needs a validation split (val_fraction > 0)")
        best = h.loc[h["val_loss"].idxmin()]
        accs.append(float(best.get("val_accuracy", np.nan)))
        losses.append(float(best["val_loss"]))
    return float(np.mean(accs)), float(np.mean(losses))


def fit_tuned(spec: dict, X, y, gene_names=None, *, seed: int = 0, **common):
    """Train a deep model once per setting of ``spec["grid"]`` and choose on the validation split.

    Every setting is trained with early stopping on the *same* validation split of the training
    cells (the Trainer's split depends only on the seed).  The chosen setting has the best
    validation accuracy (ties: the lower validation loss, then the earlier setting).  Returns
    ``(paper_model, tuned_model, table)``: the first setting's model (the paper's settings), the
    chosen one (maybe the same object) and one row per setting.
    """
    grid = spec["grid"]
    base = {k: v for k, v in spec.items() if k not in ("grid", "shares")}
    rows, models = [], []
    for i, override in enumerate(grid):
        clf = CellTypeClassifier(**{**common, **base, **override}, seed=seed).fit(X, y, gene_names=gene_names)
        acc, loss = _validation_score(clf)
        rows.append({"setting": i, **{k: str(v) for k, v in override.items()}, "val_accuracy": acc, "val_loss": loss,
                     "epochs": int(np.mean([len(h) for h in clf.histories_])), "fit_seconds": clf.fit_seconds_})
        models.append(clf)
    table = pd.DataFrame(rows)
    ranked = table.sort_values(["val_accuracy", "val_loss", "setting"], ascending=[False, True, True])
    best = int(ranked.iloc[0]["setting"])
    table["chosen"] = table["setting"] == best
    tuned = copy.copy(models[best])           # its own record, even when the paper's setting wins
    tuned.tuning_ = table
    tuned.fit_seconds_ = float(table["fit_seconds"].sum())   # tuning is part of what the tuned model costs
    return models[0], tuned, table


def fit_model(spec: dict, X, y, gene_names=None, *, seed: int = 0, fitted: dict | None = None, **common):
    """Fit one zoo entry (not a tuned or stacked one); returns ``(estimator, fit_seconds, n_parameters)``.

    ``common`` are :class:`CellTypeClassifier` arguments shared by all deep models (transform,
    n_genes, max_epochs, lr, model_kwargs, device, ...); the entry's own settings win over them.
    Baselines use their own ``BASELINE_GENES`` HVGs (chosen on the training cells).
    """
    if "shares" in spec and fitted and spec["shares"] in fitted:
        src = fitted[spec["shares"]]
        if "baseline" in spec:   # the same fitted CellTypist model, annotated with majority voting
            est = copy.copy(src).set_params(majority_voting=bool(spec.get("majority_voting", False)))
            return est, 0.0, _n_parameters(src)
        clf = with_voting(src, spec["ensemble"])
        return clf, src.fit_seconds_, clf.n_parameters_
    if "baseline" in spec:
        params = {k: v for k, v in spec.items() if k not in ("baseline", "shares")}
        est = make_baseline(spec["baseline"], seed, **params)
        t0 = time.perf_counter()
        est.fit(X, y, gene_names=gene_names)
        return est, time.perf_counter() - t0, _n_parameters(est)
    args = {k: v for k, v in spec.items() if k not in ("shares", "grid")}
    clf = CellTypeClassifier(**{**common, **args}, seed=seed).fit(X, y, gene_names=gene_names)
    return clf, clf.fit_seconds_, clf.n_parameters_



#: The zoo's deep models (trained by epochs); a tuned one is ``name + TUNED``.
DEEP_MODELS = frozenset(n for n, s in model_zoo(k=2).items() if "architecture" in s)


def is_deep_name(name: str) -> bool:
    """Whether the zoo entry ``name`` (tuned or not) is a deep model."""
    return name in DEEP_MODELS or (name.endswith(TUNED) and name[: -len(TUNED)] in DEEP_MODELS)
