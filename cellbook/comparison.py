"""Part I's comparison: every model of Table 1, strong baselines and a stacked ensemble, split by split.

    zoo = model_zoo(k=5)                        # name -> spec
    records, predictions, fitted = evaluate_models(X, y, repeated_splits(y, seeds), zoo, gene_names=genes)
    verdict = paired_verdict(records, baseline="Logistic regression (tuned)")

A spec is one of

- ``CellTypeClassifier`` arguments (a deep model).  With ``"grid"`` (a list of setting overrides,
  the first being the paper's settings) the model is trained once per setting, each with early
  stopping on the same validation split of the training cells, and gives two entries: ``name``
  with the paper's settings and ``name + TUNED`` with the setting of best validation accuracy
  (:func:`fit_tuned`).  The test cells are never looked at.
- ``{"baseline": kind}`` for a scikit-learn baseline of :mod:`cellbook.baselines`.
- ``{"shares": other, ...}``: a voting ensemble or CellTypist variant that reuses another entry's
  fitted members (no retraining).
- ``{"stack": [member names], "n_folds": 3}``: a :class:`StackedEnsemble` whose members and weights
  are chosen on out-of-fold predictions of the training cells only.

Every model is fitted on the training cells of a split and scored once on its test cells.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .annotate import CellTypeClassifier
from .splits import as_labels

TUNED = " (tuned)"
PAPER = " (paper settings)"


def with_voting(clf: CellTypeClassifier, mode: str) -> CellTypeClassifier:
    """The same independently trained members, combined by another voting ``mode`` (no retraining)."""
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
}


def deep_settings(params: dict, device: bool = True) -> dict:
    """The deep models' training settings from a Part I chapter's parameters: the keyword arguments of
    :class:`~cellbook.annotate.CellTypeClassifier` (and of :func:`evaluate_models`) that every chapter shares.
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
    models' ``n_genes`` for a comparison on the same genes).
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
    }
    if stack_members:
        bad = [m for m in stack_members if m not in zoo and not (m.endswith(TUNED) and "grid" in zoo.get(m[: -len(TUNED)], {}))]
        if bad:
            raise ValueError(f"unknown stack member(s) {', '.join(bad)}; valid: {', '.join(entry_names(zoo))}")
        zoo["Stacked ensemble"] = dict(stack=list(stack_members), n_folds=int(stack_folds))
    if include is not None:
        known = set(zoo) | {n + TUNED for n, s in zoo.items() if "grid" in s}
        unknown = sorted(set(include) - known)
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(zoo)}")
        wanted = {n if n in zoo else n[: -len(TUNED)] for n in include}   # "X (tuned)" comes with a grid entry X
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
    """A fresh, unfitted baseline of kind ``logreg_tuned``, ``logreg_scaled``, ``celltypist``, ``gbm``, ``knn``."""
    from . import baselines as b

    hv = {"n_top_genes": BASELINE_GENES, **params}
    if kind == "logreg_tuned":
        return b.TunedLogisticRegression(seed=seed, **hv)
    if kind == "logreg_scaled":
        return b.HVGLogisticRegression(seed=seed, **hv)
    if kind == "celltypist":
        return b.CellTypistClassifier(seed=seed, **params)
    if kind == "gbm":
        return b.HVGGradientBoosting(seed=seed, **hv)
    if kind == "knn":
        return b.PCAKNN(seed=seed, **hv)
    raise ValueError(f"unknown baseline {kind!r}; valid: logreg_tuned, logreg_scaled, celltypist, gbm, knn")


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
    best = int(table.sort_values(["val_accuracy", "val_loss", "setting"], ascending=[False, True, True]).iloc[0]["setting"])
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
            est = copy.copy(src)
            est.majority_voting = bool(spec.get("majority_voting", False))
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


def _proba(est, X, gene_names, classes) -> np.ndarray:
    """``est``'s class probabilities for ``X``, as columns in ``classes`` order (0 for unseen classes)."""
    P = est.predict_proba(X, gene_names=gene_names) if gene_names is not None else est.predict_proba(X)
    out = np.zeros((P.shape[0], len(classes)))
    out[:, np.searchsorted(classes, np.asarray(est.classes_).astype(str))] = P
    return out


def _log_loss(P: np.ndarray, codes: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(codes)), codes], 1e-12, None))))


class StackedEnsemble:
    """Models of different kinds averaged with weights chosen on out-of-fold predictions.

    Greedy forward selection with replacement (Caruana et al. 2004): starting from nothing, add
    the member whose inclusion most lowers the log-loss of the averaged out-of-fold class
    probabilities of the training cells, until no member helps; the weights are how often each
    member was picked.  Out-of-fold predictions come from ``n_folds`` stratified folds of the
    training cells, so the test cells are never seen.  Members already fitted on all training
    cells (``prefit``) are reused for prediction.

    ``factories`` maps a member name to ``f(seed) -> unfitted estimator`` (for the out-of-fold fits).
    After ``fit``: ``weights_`` (every member, zeros included), ``oof_`` (per-member out-of-fold
    scores: accuracy, macro-F1, log-loss, and the ensemble's), ``path_`` (the selection, round by
    round) and ``ablation_`` (the ensemble's out-of-fold accuracy and macro-F1 without each chosen
    member: what each member adds).
    """

    def __init__(self, factories: dict, n_folds: int = 3, max_rounds: int = 30, seed: int = 0):
        if len(factories) < 2:
            raise ValueError("a stacked ensemble needs at least 2 candidate members")
        if int(n_folds) < 2:
            raise ValueError(f"n_folds must be >= 2, got {n_folds}")
        self.factories, self.n_folds, self.max_rounds, self.seed = dict(factories), int(n_folds), int(max_rounds), int(seed)

    def fit(self, X, y, gene_names=None, prefit: dict | None = None) -> "StackedEnsemble":
        from . import metrics
        from .splits import stratified_kfold

        y = as_labels(y, "y")
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        t0 = time.perf_counter()
        oof = {name: np.zeros((len(y), len(self.classes_))) for name in self.factories}
        for fold, (tr, va) in enumerate(stratified_kfold(y, self.n_folds, seed=self.seed)):
            for name, make in self.factories.items():
                est = make(self.seed * 100 + fold)
                est.fit(X[tr], y[tr], gene_names=gene_names)
                oof[name][va] = _proba(est, X[va], gene_names, self.classes_)
        names = list(self.factories)
        counts = dict.fromkeys(names, 0)
        total = np.zeros_like(oof[names[0]])
        best_loss, path = np.inf, []
        for rnd in range(self.max_rounds):
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
        self.weights_ = pd.Series(w / w.sum(), index=names, name="weight")
        self.path_ = pd.DataFrame(path)

        def score(P):
            pred = self.classes_[P.argmax(1)]
            c = metrics.classification(y, pred, labels=self.classes_)
            return {"accuracy": c["accuracy"], "f1_macro": c["f1_macro"], "log_loss": _log_loss(P, codes)}

        blend = sum(self.weights_[m] * oof[m] for m in names)
        self.oof_ = pd.DataFrame({**{m: score(oof[m]) for m in names}, "ensemble": score(blend)}).T
        abl = []
        for m in [m for m in names if self.weights_[m] > 0]:
            rest = self.weights_.drop(m)
            if rest.sum() == 0:
                continue
            P = sum(rest[k] * oof[k] for k in rest.index) / rest.sum()
            s = score(P)
            abl.append({"member": m, "weight": self.weights_[m],
                        "accuracy without it": s["accuracy"], "macro-F1 without it": s["f1_macro"],
                        "accuracy it adds": self.oof_.loc["ensemble", "accuracy"] - s["accuracy"],
                        "macro-F1 it adds": self.oof_.loc["ensemble", "f1_macro"] - s["f1_macro"]})
        self.ablation_ = pd.DataFrame(abl)
        prefit = dict(prefit or {})
        self.members_ = {}
        for m in names:
            if self.weights_[m] > 0:
                if m in prefit:
                    self.members_[m] = prefit[m]
                else:
                    self.members_[m] = self.factories[m](self.seed).fit(X, y, gene_names=gene_names)
        self.fit_seconds_ = time.perf_counter() - t0   # out-of-fold fits (+ refits of members not prefit)
        self.n_parameters_ = 0
        return self

    def predict_proba(self, X, gene_names=None) -> np.ndarray:
        if not hasattr(self, "members_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this StackedEnsemble is not fitted yet; call fit(X, y) first")
        return sum(self.weights_[m] * _proba(est, X, gene_names, self.classes_) for m, est in self.members_.items())

    def predict(self, X, gene_names=None) -> np.ndarray:
        return self.classes_[self.predict_proba(X, gene_names).argmax(1)]


def _factory(spec: dict, fitted_est, common: dict):
    """``f(seed) -> unfitted estimator`` with the settings ``fitted_est`` was chosen with (for OOF fits).

    A tuned model keeps its chosen setting (chosen on all training cells: the out-of-fold
    predictions of tuned members are therefore slightly optimistic, for every kind alike).
    """
    if "baseline" in spec:
        params = {k: v for k, v in spec.items() if k not in ("baseline", "shares")}
        params.update(getattr(fitted_est, "chosen_params_", {}) or {})   # e.g. a tuned C, fixed for the folds

        def make(seed):
            return make_baseline(spec["baseline"], seed, **params)
        return make
    settings = {**common, **{k: v for k, v in spec.items() if k not in ("shares", "grid")}}
    chosen = getattr(fitted_est, "tuning_", None)
    if chosen is not None:
        row = chosen.loc[chosen["chosen"]].iloc[0]
        settings.update(spec["grid"][int(row["setting"])])

    def make(seed):
        return CellTypeClassifier(**settings, seed=seed)
    return make


def _epochs(est) -> tuple[float, bool] | tuple[None, None]:
    """(mean epochs trained, whether early stopping ended every member) for a deep model."""
    hist = getattr(est, "histories_", None)
    if not hist:
        return None, None
    max_epochs = est.trainer_kwargs.get("max_epochs")
    n = [len(h) for h in hist]
    return float(np.mean(n)), bool(max_epochs is None or all(k < max_epochs for k in n))


def evaluate_split(X, y, split_id, train, test, zoo: dict, gene_names=None, labels=None, progress: bool = True,
                   keep_fitted: bool = True, **common):
    """Fit every zoo model on ``train`` and score it on ``test``: one task of :func:`evaluate_models`.

    Seeds everything with the split's seed first (``split_id`` when it is an integer, else 0), so the split
    gives the same numbers whichever process runs it. Returns ``(rows, predictions, fitted)``: one dict per
    model (metrics, fit seconds, parameters, epochs), ``{model: predicted test labels}`` and the fitted models
    (``None`` unless ``keep_fitted``).
    """
    from . import metrics
    from .config import seed_everything

    y = as_labels(y, "y")
    labels = np.unique(y) if labels is None else labels
    tr, te = np.asarray(train), np.asarray(test)
    seed = int(split_id) if str(split_id).lstrip("-").isdigit() else 0
    seed_everything(seed)
    order = sorted(zoo, key=lambda n: ("stack" in zoo[n], "shares" in zoo[n]))   # sources first
    fitted, secs_of, npar_of, shown = {}, {}, {}, set()
    for name in order:
        spec = zoo[name]
        if "stack" in spec:   # a member may be a tuned deep model: "X (tuned)"
            facs = {m: _factory(zoo[m] if m in zoo else zoo[m[: -len(TUNED)]], fitted[m], common)
                    for m in spec["stack"]}
            est = StackedEnsemble(facs, n_folds=spec.get("n_folds", 3), seed=seed)
            est.fit(X[tr], y[tr], gene_names=gene_names, prefit={m: fitted[m] for m in spec["stack"]})
            fitted[name], secs_of[name], npar_of[name] = est, est.fit_seconds_, 0
        elif "grid" in spec:
            paper, tuned, _ = fit_tuned(spec, X[tr], y[tr], gene_names, seed=seed, **common)
            fitted[name], secs_of[name], npar_of[name] = paper, paper.fit_seconds_, paper.n_parameters_
            fitted[name + TUNED] = tuned
            secs_of[name + TUNED], npar_of[name + TUNED] = tuned.fit_seconds_, tuned.n_parameters_
        else:
            fitted[name], secs_of[name], npar_of[name] = fit_model(spec, X[tr], y[tr], gene_names, seed=seed,
                                                                   fitted=fitted, **common)
        if progress:   # as each fit ends, so a run stopped part-way still says where the time went
            for done in (name, name + TUNED):
                if done in secs_of and done not in shown:
                    shown.add(done)
                    ep = _epochs(fitted[done])[0]
                    print(f"  split {split_id}: fitted {done} in {secs_of[done]:.1f} s"
                          f"{'' if ep is None else f' ({ep} epochs)'}", flush=True)
    rows, preds = [], {}
    for name in entry_names(zoo):
        est = fitted[name]
        pred = np.asarray(est.predict(X[te], gene_names=gene_names) if gene_names is not None
                          else est.predict(X[te])).astype(str)
        preds[name] = pred
        epochs, early = _epochs(est)
        row = {"model": name, "split": split_id, **metrics.classification(y[te], pred, labels=labels),
               "fit_seconds": secs_of[name], "n_parameters": npar_of[name], "epochs": epochs,
               "stopped_early": early}
        rows.append(row)
        if progress:
            print(f"  split {split_id}: {name:42s} acc {row['accuracy']:.3f}  macro-F1 {row['f1_macro']:.3f}"
                  f"  {row['fit_seconds']:6.1f} s", flush=True)
    return rows, preds, (fitted if keep_fitted else None)


def evaluate_models(X, y, splits, zoo: dict, gene_names=None, labels=None, progress: bool = True,
                    on_fit=None, **common):
    """Fit and score every zoo model on every split.

    ``splits`` is a list of ``(split_id, train_idx, test_idx)`` (e.g. :func:`cellbook.splits.repeated_splits`).
    Each split is one task of :func:`cellbook.parallel.map_tasks` (:func:`evaluate_split`), so the splits run
    in this process or on a Dask cluster (``cellbook run --jobs`` / ``--scheduler``) with the same numbers.
    Returns ``(records, predictions, fitted)``: a DataFrame with one row per model and split (all of
    :func:`cellbook.metrics.classification`, ``fit_seconds``, ``n_parameters``, and for deep models
    ``epochs`` and ``stopped_early``: whether early stopping, not the epoch cap, ended training), a
    dict ``{(model, split_id): predicted labels of the test cells}``, and the last split's fitted models
    (tuned models keep their per-setting table in ``.tuning_``; the stacked ensemble its weights).
    ``on_fit(split_id, fitted)`` is called for each split, in split order, once all have run (e.g. to keep
    the stacking weights).
    """
    from .parallel import map_tasks

    y = as_labels(y, "y")
    labels = np.unique(y) if labels is None else labels
    splits = list(splits)
    tasks = [dict(X=X, y=y, split_id=sid, train=tr, test=te, zoo=zoo, gene_names=gene_names, labels=labels,
                  progress=progress, keep_fitted=on_fit is not None or i == len(splits) - 1, **common)
             for i, (sid, tr, te) in enumerate(splits)]
    out = map_tasks(evaluate_split, tasks, desc="splits", progress=progress and len(tasks) > 1)
    rows, preds, fitted = [], {}, {}
    for (sid, _, _), (r, p, f) in zip(splits, out):
        rows += r
        preds.update({(name, sid): v for name, v in p.items()})
        if on_fit is not None:
            on_fit(sid, f)
        fitted = f if f is not None else fitted
    return pd.DataFrame(rows), preds, fitted


def paired_verdict(records: pd.DataFrame, baseline: str, metrics=("accuracy", "f1_macro")) -> pd.DataFrame:
    """Every model against ``baseline`` on the same splits: paired differences and tests.

    One row per model: mean ± SD of each metric over splits, the mean paired difference to the
    baseline, the paired t-test p-value, and ``beats baseline``: whether the mean difference is
    larger than the seed spread (the larger of the model's and the baseline's SD over splits), for
    every metric.  On a fixed split a deterministic baseline has SD 0; the model's own spread
    then sets the bar.
    """
    from .metrics import ttest

    if baseline not in set(records["model"]):
        raise ValueError(f"baseline {baseline!r} is not among the models: {', '.join(sorted(set(records['model'])))}")
    base = records[records["model"] == baseline].set_index("split")
    out = []
    for model, grp in records.groupby("model", sort=False):
        g = grp.set_index("split")
        shared = g.index.intersection(base.index)
        row = {"model": model, "splits": len(shared)}
        beats = []
        for m in metrics:
            a, b = g.loc[shared, m].to_numpy(float), base.loc[shared, m].to_numpy(float)
            d = a - b
            row[f"{m} mean"], row[f"{m} SD"] = a.mean(), a.std(ddof=1) if len(a) > 1 else np.nan
            row[f"{m} - baseline"] = d.mean()
            p = ttest(a, b, paired=True)["p_value"] if len(d) > 1 and model != baseline and np.any(d != d[0]) else np.nan
            row[f"{m} p (paired t)"] = p
            spread = max(a.std(ddof=1), b.std(ddof=1)) if len(b) > 1 else 0.0
            beats.append(model != baseline and d.mean() > spread)
        row["beats baseline"] = bool(all(beats))
        out.append(row)
    return pd.DataFrame(out).sort_values(f"{metrics[0]} mean", ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# Part I's pages: the bookkeeping the chapters share (tables for the page, recorded figures,
# files for the next chapters), kept here so that the notebooks show the method only.

BASELINE = BASELINES["logreg_tuned"]
STACKED = "Stacked ensemble"


class FitCollector:
    """``on_fit`` callback of :func:`evaluate_models` that keeps what the pages show after the run.

    ``stacks[split_id]``: the stacked ensemble fitted on that split (its weights, out-of-fold scores and
    ablation); ``tunings[(model, split_id)]``: a tuned deep model's per-setting table. With
    ``verbose`` it prints one line per split as the split's models come back.
    """

    def __init__(self, verbose: bool = True):
        self.stacks: dict = {}
        self.tunings: dict = {}
        self.verbose = bool(verbose)

    def __call__(self, split_id, fitted: dict) -> None:
        for name, est in (fitted or {}).items():
            if hasattr(est, "weights_"):
                self.stacks[split_id] = est
            if getattr(est, "tuning_", None) is not None and name.endswith(TUNED):
                self.tunings[(name[: -len(TUNED)], split_id)] = est.tuning_
        if self.verbose:
            print(f"split {split_id}: {len(fitted or {})} models fitted", flush=True)


def is_deep(records: pd.DataFrame, name: str) -> bool:
    """Whether ``name`` is a deep model in ``records``: one trained by epochs on every split."""
    rows = records.loc[records["model"] == name, "epochs"]
    return bool(len(rows)) and bool(rows.notna().all())


def deep_models(records: pd.DataFrame) -> list[str]:
    """The deep models of ``records`` in their order of first appearance."""
    return [n for n in dict.fromkeys(records["model"]) if is_deep(records, n)]


def mean_sd_by_model(records: pd.DataFrame, metric: str, models) -> list[str]:
    """``report.mean_sd`` of ``metric`` over the splits, one string per model of ``models``."""
    from .report import mean_sd

    return [mean_sd(records.loc[records["model"] == n, metric]) for n in models]


def table1(records: pd.DataFrame, summary: pd.DataFrame, paper: dict | None = None) -> pd.DataFrame:
    """Table 1 as the page shows it: one row per model of ``summary`` (in its order), accuracy and
    macro-F1 as mean ± SD over the splits (strings, same decimals), mean fit seconds (a number) and the
    paper's accuracy (a number; NaN where the paper has none)."""
    paper = PAPER_TABLE1 if paper is None else paper
    models = list(summary["model"])
    return pd.DataFrame({"model": models,
                         "accuracy": mean_sd_by_model(records, "accuracy", models),
                         "macro-F1": mean_sd_by_model(records, "f1_macro", models),
                         "fit (s)": summary["fit_seconds_mean"].to_numpy(float),
                         "paper": [paper.get(m, np.nan) for m in models]})


def table1_record(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`table1` in the form the results JSON has always kept: fit seconds rounded to 0.1 and the
    paper's value as a 4-decimal string ("" where there is none)."""
    out = table.copy()
    out["fit (s)"] = out["fit (s)"].round(1)
    out["paper"] = out["paper"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    return out


def summary_figures(summary: pd.DataFrame, records: pd.DataFrame) -> dict:
    """The key figures of chapter I.3's summary table, as the results JSON records them:
    ``best_model`` (the deep model of best mean accuracy), ``best_overall``, and per model
    ``acc::`` / ``f1_macro::`` ([mean, SD]), ``fit_s::`` (mean seconds) and ``params::``."""
    row = summary.set_index("model")
    deep = [n for n in summary["model"] if records.loc[records.model == n, "epochs"].notna().all()]
    out = {"best_model": row.loc[deep, "accuracy_mean"].idxmax(), "best_overall": row["accuracy_mean"].idxmax()}
    for name in summary["model"]:
        out[f"acc::{name}"] = [row.loc[name, "accuracy_mean"], row.loc[name, "accuracy_sd"]]
        out[f"f1_macro::{name}"] = [row.loc[name, "f1_macro_mean"], row.loc[name, "f1_macro_sd"]]
        out[f"fit_s::{name}"] = row.loc[name, "fit_seconds_mean"]
        out[f"params::{name}"] = int(row.loc[name, "n_parameters_mean"])
    return out


def record_summary(rec, summary: pd.DataFrame, records: pd.DataFrame) -> dict:
    """Record :func:`summary_figures` in the chapter's recorder ``rec``; returns them."""
    figures = summary_figures(summary, records)
    rec.update(figures)
    return figures


def artifacts_dir():
    """Where Part I's chapters leave files for the next ones: ``<results>/../artifacts/part1``."""
    from .results import results_dir

    return results_dir().parent / "artifacts" / "part1"


def write_for_next_chapters(records: pd.DataFrame, predictions: dict, models, split, obs_names,
                            directory=None) -> list:
    """What chapters I.4 and I.5 read from chapter I.3, written atomically to ``directory``
    (:func:`artifacts_dir`): every split's records (``03_records.csv``) and the first split's test
    predictions of every model, indexed by cell (``03_predictions_split<id>.csv``).
    ``split`` is that split's ``(split_id, train, test)``. Returns the paths written."""
    from .fsutil import write_text

    art = Path(directory) if directory is not None else artifacts_dir()
    sid, _, test = split
    paths = [art / "03_records.csv", art / f"03_predictions_split{sid}.csv"]
    write_text(paths[0], records.to_csv(index=False))
    write_text(paths[1], pd.DataFrame({m: predictions[(m, sid)] for m in models},
                                      index=pd.Index(obs_names)[test]).to_csv())
    return paths


def mean_sd_text(pair) -> str:
    """A recorded ``[mean, SD]`` as prose: ``"0.776 ± 0.010"`` (3 decimals; the mean alone without SD)."""
    m, s = pair
    return f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "")


def tuning_choices(tunings: dict, grid) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From :attr:`FitCollector.tunings`: one row per deep model and split (the chosen setting, the
    validation accuracy of the paper's setting and of the chosen one), and how often each setting was
    chosen per model (columns ``setting i: <setting>``, "paper" for the paper's)."""
    chosen = pd.DataFrame([{"model": m, "split": s, "chosen setting": int(t.loc[t["chosen"], "setting"].iloc[0]),
                            "val accuracy, paper": t.loc[0, "val_accuracy"],
                            "val accuracy, chosen": t.loc[t["chosen"], "val_accuracy"].iloc[0]}
                           for (m, s), t in tunings.items()])
    counts = chosen.groupby("model")["chosen setting"].value_counts().unstack(fill_value=0)
    counts.columns = [f"setting {c}: {grid[c] or 'paper'}" for c in counts.columns]
    return chosen, counts


def model_sizes(inputs, k: int, chunk: int) -> pd.DataFrame:
    """Parameter counts of the paper's models (MLP, CNN, LSTM, LSTM + attention, and the joint CNN
    ensemble of ``k`` members) for each ``(n_genes, n_types)`` of ``inputs``: one column per input,
    named ``parameters (<genes> genes, <types> types)``."""
    from .annotate import build_model
    from .models.ensemble import JointEnsemble
    from .train import count_parameters

    cols = [f"parameters ({g} genes, {c} types)" for g, c in inputs]
    rows = []
    for label, arch in [("MLP", "mlp"), ("CNN", "cnn"), ("LSTM", "lstm"), ("LSTM + attention", "lstm_att")]:
        kw = {"chunk": chunk} if "lstm" in arch else {}
        rows.append({"model": label, **{col: count_parameters(build_model(arch, g, c, **kw))
                                        for col, (g, c) in zip(cols, inputs)}})
    rows.append({"model": f"CNN ensemble (K = {k})", **{
        col: count_parameters(JointEnsemble([build_model("cnn", g, c) for _ in range(k)]))
        for col, (g, c) in zip(cols, inputs)}})
    return pd.DataFrame(rows)


# chapter I.4 ---------------------------------------------------------------------------------

#: Part I's cell types along the haematopoietic hierarchy (neighbouring lineages next to each other).
HIERARCHY = ["HSC", "Prog", "GMP", "ProMono", "Mono", "cDC", "pDC", "earlyEry", "lateEry", "ProB", "B",
             "Plasma", "T", "CTL", "NK"]
#: Stem and progenitor types: an error with one of them on either side takes an early stage for a
#: committed one (or the reverse); the lineage map gives them lineages of their own.
EARLY_TYPES = ("HSC", "Prog", "GMP")


def hierarchy_order(labels) -> list[str]:
    """``labels`` in :data:`HIERARCHY` order, unknown labels last (sorted)."""
    present = set(labels)
    return [t for t in HIERARCHY if t in present] + sorted(present - set(HIERARCHY))


def chapter3_predictions(X, y, split, obs_names, *, model=None, k: int = 5, grid=None, gene_names=None,
                         directory=None, **common) -> tuple[str, np.ndarray, str]:
    """The test predictions of chapter I.3's best deep model (or of ``model``) on ``split``
    (``(split_id, train, test)``): read from chapter I.3's saved predictions when they cover exactly
    these test cells, else retrained here with the same split and settings (``common``: the deep
    settings). Returns ``(model name, predicted labels, where they come from)``."""
    from .results import load

    sid, tr, te = split
    art = (Path(directory) if directory is not None else artifacts_dir()) / f"03_predictions_split{sid}.csv"
    try:
        chosen = model or load("part1/03_table1")["figures"]["best_model"]
    except FileNotFoundError:
        chosen = model or "CNN ensemble (joint)"
    if art.exists():
        saved = pd.read_csv(art, index_col=0)
        if chosen in saved and list(saved.index) == list(np.asarray(obs_names)[te]):
            return chosen, saved[chosen].astype(str).values, "chapter I.3's saved predictions"
    zoo = model_zoo(k=k, include=[chosen], grid=grid)
    _, pr, _ = evaluate_models(X, y, [(sid, tr, te)], zoo, gene_names=gene_names, progress=False, **common)
    return chosen, pr[(chosen, sid)], "retrained here (chapter I.3's predictions were not found)"


def error_anatomy(truth, pred, connectivities, early=EARLY_TYPES) -> dict:
    """Where the wrongly classified cells sit, as chapter I.4 records it.

    ``wrong_in_predicted_neighbourhood``: share of wrong cells whose neighbours (``connectivities``, the
    test cells' kNN graph) hold more cells of the predicted type than of the true one;
    ``wrong_within_lineage``: share of errors inside one lineage; ``n_wrong``, ``n_wrong_early``
    (errors with an ``early`` type on either side) and ``rest_within_lineage`` (the other errors'
    share inside one lineage). NaN where there is nothing to count.
    """
    from .annotate import to_lineage

    truth, pred = np.asarray(truth), np.asarray(pred)
    conn = connectivities.tocsr()
    wrong = np.flatnonzero(truth != pred)
    agree = []
    for i in wrong:
        nb = conn[i].indices
        if len(nb):
            agree.append(np.mean(truth[nb] == pred[i]) > np.mean(truth[nb] == truth[i]))
    out = {"wrong_in_predicted_neighbourhood": float(np.mean(agree)) if agree else float("nan")}
    lt, lp = to_lineage(truth[wrong]), to_lineage(pred[wrong])
    out["wrong_within_lineage"] = float(np.mean(lt == lp)) if len(wrong) else float("nan")
    is_early = np.isin(truth[wrong], list(early)) | np.isin(pred[wrong], list(early))
    out["n_wrong"], out["n_wrong_early"] = int(len(wrong)), int(is_early.sum())
    rest = ~is_early
    out["rest_within_lineage"] = float(np.mean(lt[rest] == lp[rest])) if rest.any() else float("nan")
    return out


# chapter I.5 ---------------------------------------------------------------------------------

def random_split_records(models, directory=None):
    """Chapter I.3's per-split records of ``models`` (``03_records.csv``), or None when they are missing
    or do not hold exactly these models."""
    art = (Path(directory) if directory is not None else artifacts_dir()) / "03_records.csv"
    rand = pd.read_csv(art) if art.exists() else pd.DataFrame(columns=["model"])
    rand = rand[rand.model.isin(list(models))]
    if rand.empty or set(rand.model) != set(models):
        return None
    return rand


def first_split_predictions(directory=None, split_id=0):
    """Chapter I.3's test predictions of split ``split_id`` (cells x models), or None if it saved none."""
    art = (Path(directory) if directory is not None else artifacts_dir()) / f"03_predictions_split{split_id}.csv"
    return pd.read_csv(art, index_col=0) if art.exists() else None


def healthy_donors(obs: pd.DataFrame) -> list[str]:
    """Chapter I.5's test donors: those whose ``condition`` is "healthy" (van Galen: BM1-BM3); without a
    healthy donor (e.g. the synthetic stand-in) the first donor."""
    donor = obs["donor"].astype(str)
    if "condition" in obs and (obs["condition"] == "healthy").any():
        return sorted(donor[obs["condition"] == "healthy"].unique())
    return sorted(set(donor))[:1]


def random_split_results(X, y, zoo: dict, seeds, test_size: float, gene_names=None, directory=None,
                         **common) -> tuple[pd.DataFrame, str]:
    """The random-split records of the ``zoo``'s models: chapter I.3's (:func:`random_split_records`), or,
    when it has not run exactly these models, the same random 2:1 splits (``seeds``) computed here.
    Returns ``(records, where they come from)``."""
    from .splits import repeated_splits

    rand = random_split_records(entry_names(zoo), directory=directory)
    if rand is not None:
        return rand, "chapter I.3"
    rand, _, _ = evaluate_models(X, y, repeated_splits(y, seeds=seeds, test_size=test_size), zoo,
                                 gene_names=gene_names, progress=False, **common)
    return rand, "computed here (chapter I.3's records were missing or had other models)"


def random_vs_heldout(both: pd.DataFrame, models) -> tuple[pd.DataFrame, dict]:
    """Random split against held-out donors, per model: ``both`` holds the records of both kinds of split
    (``split_kind`` "random 2:1" / "held-out donors"). Returns the page's table (mean ± SD strings per
    metric and kind, and the change of the mean, held-out minus random, as numbers) and the figures the
    results JSON records: ``<metric>_random::<model>`` and ``<metric>_heldout::<model>`` ([mean, SD])."""
    from .metrics import summarize
    from .report import pm

    models = list(models)
    s = summarize(both, by=["model", "split_kind"], metrics=["accuracy", "f1_macro"])
    wide = s.pivot(index="model", columns="split_kind").loc[models]
    comp = pd.DataFrame(index=pd.Index(models, name="model"))
    figures = {}
    for m, label in (("accuracy", "accuracy"), ("f1_macro", "macro-F1")):
        for kind, short in (("random 2:1", "random"), ("held-out donors", "held-out")):
            comp[f"{label}, {short}"] = [pm(wide.loc[x, (m + "_mean", kind)], wide.loc[x, (m + "_sd", kind)])
                                         for x in models]
        comp[f"{label} change"] = [wide.loc[x, (m + "_mean", "held-out donors")]
                                   - wide.loc[x, (m + "_mean", "random 2:1")] for x in models]
        for x in models:
            figures[f"{m}_random::{x}"] = [wide.loc[x, (m + "_mean", "random 2:1")],
                                           wide.loc[x, (m + "_sd", "random 2:1")]]
            figures[f"{m}_heldout::{x}"] = [wide.loc[x, (m + "_mean", "held-out donors")],
                                            wide.loc[x, (m + "_sd", "held-out donors")]]
    return comp, figures


def heldout_change(figures, model: str, metric: str = "accuracy") -> float:
    """Held-out minus random-split mean of ``metric`` for ``model`` (from :func:`random_vs_heldout`'s
    figures, or a recorder holding them)."""
    return figures[f"{metric}_heldout::{model}"][0] - figures[f"{metric}_random::{model}"][0]


def per_type_recall(y_test, heldout_pred: dict, names, seed, truth=None, random_pred=None) -> pd.DataFrame:
    """Per-type recall on the held-out donors (``heldout_pred[(name, seed)]``, test labels ``y_test``)
    and, where chapter I.3's first-split predictions ``random_pred`` (cells x models) cover the model, on
    the random split (``truth``: every cell's label, indexed by cell); plus the held-out cells per type."""
    from .metrics import per_class

    rows = []
    for name in names:
        rows.append(per_class(y_test, heldout_pred[(name, seed)])["recall"].rename(f"{name}: held-out donors"))
        if random_pred is not None and name in random_pred and set(random_pred.index) <= set(truth.index):
            rows.append(per_class(truth[random_pred.index].values, random_pred[name].astype(str).values)["recall"]
                        .rename(f"{name}: random split"))
    out = pd.concat(rows, axis=1)
    out["cells (held-out)"] = pd.Series(y_test).value_counts()
    return out


def lodo_figures(lodo_summary: pd.DataFrame) -> dict:
    """``lodo::<model>`` = [accuracy mean, SD, macro-F1 mean, SD] per row of the leave-donors-out summary."""
    return {f"lodo::{r['model']}": [r["accuracy_mean"], r["accuracy_sd"], r["f1_macro_mean"], r["f1_macro_sd"]]
            for _, r in lodo_summary.iterrows()}


def mean_sd_columns(summary: pd.DataFrame, metrics=(("accuracy", "accuracy"), ("f1_macro", "macro-F1")),
                    key: str = "model") -> pd.DataFrame:
    """A :func:`cellbook.metrics.summarize` table as the page shows it: ``key`` and one "mean ± SD"
    column per ``(metric, label)``."""
    from .report import pm

    out = pd.DataFrame({key: summary[key]})
    for m, label in metrics:
        out[label] = [pm(a, s) for a, s in zip(summary[f"{m}_mean"], summary[f"{m}_sd"])]
    return out


# chapter I.6 ---------------------------------------------------------------------------------

def load_query(data_path=None, fallback: str = "error"):
    """The GSE194122 starter subset (chapter I.6's query), or None (with a sentence saying so) when it
    is missing and ``fallback`` is not "error"."""
    from . import datasets

    try:
        return datasets.gse194122(path=data_path, starter=True)
    except datasets.DatasetNotFoundError:
        if fallback == "error":
            raise
        print("GSE194122 starter subset not available: this chapter's annotation part is skipped")
        return None


def lineage_scores(adata, key: str = "predicted_cell_type") -> dict:
    """Agreement and macro-F1 with the query's own labels, at lineage level, over every cell whose own
    label has a lineage; a cell left "Unassigned" (or of no lineage) counts as a miss, it is not dropped.
    Returns ``{"agreement", "f1_macro", "n"}``."""
    from .annotate import to_lineage
    from .metrics import classification

    import warnings

    t, p = to_lineage(adata.obs["cell_type"]), to_lineage(adata.obs[key])
    ok = pd.notna(t)
    p = np.where(pd.notna(p), p, "Unassigned").astype(str)
    with warnings.catch_warnings():
        # "Unassigned" is a predicted class that is never a true lineage, on purpose: such cells count as
        # misses. scikit-learn's balanced accuracy warns about exactly that ("y_pred contains classes not in
        # y_true"), which says nothing new here.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
        m = classification(t[ok].astype(str), p[ok], labels=sorted(set(t[ok].astype(str))))
    return {"agreement": float((t[ok].astype(str) == p[ok]).mean()), "f1_macro": m["f1_macro"], "n": int(ok.sum())}


def lineage_confusion(adata, key: str = "predicted_cell_type") -> tuple[pd.DataFrame, pd.Series]:
    """Row-normalised lineage confusion of an annotated query (own lineage x predicted lineage, predicted
    cells of no lineage as "Unassigned": a column, never a row), and per cell with a lineage whether the
    lineages agree."""
    from .annotate import to_lineage
    from .metrics import confusion

    lt, lp = to_lineage(adata.obs["cell_type"]), to_lineage(adata.obs[key])
    ok = pd.notna(lt)
    lp = np.where(pd.notna(lp), lp, "Unassigned").astype(object)
    right = pd.Series(lt == lp, index=adata.obs_names)[ok]
    cm = confusion(lt[ok].astype(str), lp[ok].astype(str))
    own = sorted(set(lt[ok].astype(str)))
    return cm.loc[[t for t in cm.index if t in own]], right


def scratch_dir(prefix: str = "cellbook-annotate-") -> Path:
    """A new temporary folder (for a chapter's model file and the command line's input and output)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix))


def annotate_cli(query, model_path, directory) -> np.ndarray | None:
    """Annotate ``query`` with the model file ``model_path`` through the command line
    (``cellbook annotate query.h5ad --model <file> -o annotated.h5ad``, files in ``directory``): prints
    the command and the first lines it printed (file names only), returns the labels (None if it failed)."""
    import subprocess
    import sys

    import anndata as ad

    d, model_path = Path(directory), Path(model_path)
    query.write_h5ad(d / "query.h5ad")
    cli = subprocess.run([sys.executable, "-m", "cellbook.run", "annotate", str(d / "query.h5ad"), "--model",
                          str(model_path), "-o", str(d / "annotated.h5ad")], capture_output=True, text=True)
    print(f"$ cellbook annotate query.h5ad --model {model_path.name} -o annotated.h5ad")
    said = "\n".join(cli.stdout.strip().splitlines()[:6]) or cli.stderr.strip().splitlines()[-1]
    print(said.replace(str(d) + "/", "").replace(str(d), "."))
    if cli.returncode != 0:
        return None
    return ad.read_h5ad(d / "annotated.h5ad").obs["predicted_cell_type"].astype(str).values


def chapter_figures(name: str) -> dict | None:
    """The recorded figures of chapter ``name`` (e.g. "part1/03_table1"), or None if it has not run."""
    from .results import load

    try:
        return load(name)["figures"]
    except FileNotFoundError:
        return None


#: The rows of Part I's conclusion table (chapter I.6), in order.
CONCLUSION_MODELS = [STACKED, BASELINE, "Gradient boosting (HVGs)", "CellTypist", "Regularised MLP ensemble",
                     "CNN ensemble (joint)", "CNN ensemble (joint) (tuned)", "CNN", "kNN on PCA"]


def conclusion_table(t1: dict | None, ho: dict | None, names=None, paper: dict | None = None) -> pd.DataFrame:
    """Part I's conclusion: per model, accuracy and macro-F1 (mean ± SD) on the random splits (chapter
    I.3's figures ``t1``) and on held-out donors (chapter I.5's ``ho``), and the paper's accuracy ("" where
    it has none); models neither chapter ran are left out."""
    from .report import pm

    paper = PAPER_TABLE1 if paper is None else paper
    rows = []
    for name in names or CONCLUSION_MODELS:
        row = {"model": name}
        if t1 and f"acc::{name}" in t1:
            row["random split: accuracy"] = pm(*t1[f"acc::{name}"])
            row["random split: macro-F1"] = pm(*t1[f"f1_macro::{name}"])
        if ho and f"accuracy_heldout::{name}" in ho:
            row["held-out donors: accuracy"] = pm(*ho[f"accuracy_heldout::{name}"])
            row["held-out donors: macro-F1"] = pm(*ho[f"f1_macro_heldout::{name}"])
        row["paper (accuracy)"] = paper.get(name, "")
        if len(row) > 2:
            rows.append(row)
    return pd.DataFrame(rows)


#: The zoo's deep models (trained by epochs); a tuned one is ``name + TUNED``.
DEEP_MODELS = frozenset(n for n, s in model_zoo(k=2).items() if "architecture" in s)


def is_deep_name(name: str) -> bool:
    """Whether the zoo entry ``name`` (tuned or not) is a deep model."""
    return name in DEEP_MODELS or (name.endswith(TUNED) and name[: -len(TUNED)] in DEEP_MODELS)


def deep_verdict(t1: dict) -> dict:
    """What chapter I.3's figures ``t1`` say about the deep models against the tuned logistic regression:
    ``deep_winners`` (deep models that beat it), ``other_winners`` (models that beat it and are not deep,
    e.g. the stacked ensemble), ``best_deep`` (chapter I.3's best deep model), ``stack_weights`` (mean
    weight per stack candidate, largest first) and ``deep_weight`` (the deep candidates' total weight)."""
    win = list(t1.get("beats_baseline", []))
    weights = pd.Series(t1.get("stack_weights_mean") or {}, dtype=float).sort_values(ascending=False)
    deep_w = [n for n in weights.index if is_deep_name(n)]
    return {"deep_winners": [w for w in win if is_deep_name(w)],
            "other_winners": [w for w in win if not is_deep_name(w)],
            "best_deep": t1.get("best_model"), "stack_weights": weights.to_dict(),
            "deep_weight": float(weights[deep_w].sum()) if deep_w else 0.0,
            "deep_members": deep_w}
