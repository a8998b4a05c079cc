"""Part I's pages, chapters I.4 and I.5: the cell types a model confuses, and random splits against held-out
donors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..annotation import to_lineage
from ..metrics import per_class, summarize
from ..report import pm
from ..results import load
from ..splits import repeated_splits
from ._evaluate import evaluate_models
from ._tables import artifacts_dir
from ._zoo import entry_names, model_zoo

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
    out = pd.DataFrame({key: summary[key]})
    for m, label in metrics:
        out[label] = [pm(a, s) for a, s in zip(summary[f"{m}_mean"], summary[f"{m}_sd"])]
    return out

