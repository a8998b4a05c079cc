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
