"""Fitting and scoring the zoo split by split, and the paired verdict against a baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..annotation import CellTypeClassifier
from ..config import seed_everything
from ..metrics import classification, ttest
from ..parallel import map_tasks
from ..splits import as_labels
from ._stacking import StackedEnsemble
from ._zoo import TUNED, entry_names, fit_model, fit_tuned, make_baseline


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
    max_epochs = est.get_params().get("max_epochs")
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
        row = {"model": name, "split": split_id, **classification(y[te], pred, labels=labels),
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
            tested = len(d) > 1 and model != baseline and np.any(d != d[0])
            p = ttest(a, b, paired=True)["p_value"] if tested else np.nan
            row[f"{m} p (paired t)"] = p
            spread = max(a.std(ddof=1), b.std(ddof=1)) if len(b) > 1 else 0.0
            beats.append(model != baseline and d.mean() > spread)
        row["beats baseline"] = bool(all(beats))
        out.append(row)
    return pd.DataFrame(out).sort_values(f"{metrics[0]} mean", ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# Part I's pages: the bookkeeping the chapters share (tables for the page, recorded figures,


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

