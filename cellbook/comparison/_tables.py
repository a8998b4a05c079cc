"""Part I's pages, chapter I.3: the bookkeeping Table 1 needs (tables for the page, recorded figures, files
for the next chapters), kept here so that the notebooks show the method only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..annotation import build_model
from ..fsutil import write_text
from ..models.ensemble import JointEnsemble
from ..report import mean_sd
from ..results import results_dir
from ..train import count_parameters
from ._zoo import BASELINES, PAPER_TABLE1

BASELINE = BASELINES["logreg_tuned"]
STACKED = "Stacked ensemble"


def is_deep(records: pd.DataFrame, name: str) -> bool:
    """Whether ``name`` is a deep model in ``records``: one trained by epochs on every split."""
    rows = records.loc[records["model"] == name, "epochs"]
    return bool(len(rows)) and bool(rows.notna().all())


def deep_models(records: pd.DataFrame) -> list[str]:
    """The deep models of ``records`` in their order of first appearance."""
    return [n for n in dict.fromkeys(records["model"]) if is_deep(records, n)]


def mean_sd_by_model(records: pd.DataFrame, metric: str, models) -> list[str]:
    """``report.mean_sd`` of ``metric`` over the splits, one string per model of ``models``."""
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
    """:func:`table1` in the form the results JSON keeps: fit seconds rounded to 0.1 and the
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
    return results_dir().parent / "artifacts" / "part1"


def write_for_next_chapters(records: pd.DataFrame, predictions: dict, models, split, obs_names,
                            directory=None) -> list:
    """What chapters I.4 and I.5 read from chapter I.3, written atomically to ``directory``
    (:func:`artifacts_dir`): every split's records (``03_records.csv``) and the first split's test
    predictions of every model, indexed by cell (``03_predictions_split<id>.csv``).
    ``split`` is that split's ``(split_id, train, test)``. Returns the paths written."""
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
