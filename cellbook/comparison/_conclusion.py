"""Part I's pages, chapter I.6: annotating a new data set, and the conclusion of Part I."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ..annotation import to_lineage
from ..datasets.registry import DatasetNotFoundError
from ..datasets.scrna import gse194122
from ..metrics import classification, confusion
from ..report import pm
from ..results import load
from ._tables import BASELINE, STACKED
from ._zoo import PAPER_TABLE1, is_deep_name

# chapter I.6 ---------------------------------------------------------------------------------

def load_query(data_path=None, fallback: str = "error"):
    """The GSE194122 starter subset (chapter I.6's query), or None (with a sentence saying so) when it
    is missing and ``fallback`` is not "error"."""
    try:
        return gse194122(path=data_path, starter=True)
    except DatasetNotFoundError:
        if fallback == "error":
            raise
        print("GSE194122 starter subset not available: this chapter's annotation part is skipped")
        return None


def lineage_scores(adata, key: str = "predicted_cell_type") -> dict:
    """Agreement and macro-F1 with the query's own labels, at lineage level, over every cell whose own
    label has a lineage; a cell left "Unassigned" (or of no lineage) counts as a miss, it is not dropped.
    Returns ``{"agreement", "f1_macro", "n"}``."""
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
    lt, lp = to_lineage(adata.obs["cell_type"]), to_lineage(adata.obs[key])
    ok = pd.notna(lt)
    lp = np.where(pd.notna(lp), lp, "Unassigned").astype(object)
    right = pd.Series(lt == lp, index=adata.obs_names)[ok]
    cm = confusion(lt[ok].astype(str), lp[ok].astype(str))
    own = sorted(set(lt[ok].astype(str)))
    return cm.loc[[t for t in cm.index if t in own]], right


def scratch_dir(prefix: str = "cellbook-annotate-") -> Path:
    """A new temporary folder (for a chapter's model file and the command line's input and output)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def annotate_cli(query, model_path, directory) -> np.ndarray | None:
    """Annotate ``query`` with the model file ``model_path`` through the command line
    (``cellbook annotate query.h5ad --model <file> -o annotated.h5ad``, files in ``directory``): prints
    the command and the first lines it printed (file names only), returns the labels (None if it failed)."""
    d, model_path = Path(directory), Path(model_path)
    query.write_h5ad(d / "query.h5ad")
    cli = subprocess.run([sys.executable, "-m", "cellbook.cli", "annotate", str(d / "query.h5ad"), "--model",
                          str(model_path), "-o", str(d / "annotated.h5ad")], capture_output=True, text=True)
    print(f"$ cellbook annotate query.h5ad --model {model_path.name} -o annotated.h5ad")
    said = "\n".join(cli.stdout.strip().splitlines()[:6]) or cli.stderr.strip().splitlines()[-1]
    print(said.replace(str(d) + "/", "").replace(str(d), "."))
    if cli.returncode != 0:
        return None
    return ad.read_h5ad(d / "annotated.h5ad").obs["predicted_cell_type"].astype(str).values


def chapter_figures(name: str) -> dict | None:
    """The recorded figures of chapter ``name`` (e.g. "part1/03_table1"), or None if it has not run."""
    try:
        return load(name)["figures"]
    except FileNotFoundError:
        return None


#: The rows of Part I's conclusion table (chapter I.6), in order.
CONCLUSION_MODELS = [STACKED, BASELINE, "Linear SVM (calibrated)", "Gradient boosting (HVGs)", "CellTypist",
                     "scANVI", "SingleR", "Regularised MLP ensemble", "CNN ensemble (joint)",
                     "CNN ensemble (joint) (tuned)", "CNN", "kNN on PCA"]

#: The family of each model of the zoo that is not one of its deep classifiers (those are "deep classifier").
FAMILIES = {BASELINE: "linear", "Logistic regression (scaled)": "linear", "Linear SVM (calibrated)": "linear",
            "CellTypist": "linear", "CellTypist + majority voting": "linear",
            "Gradient boosting (HVGs)": "boosted trees", "kNN on PCA": "nearest neighbours",
            "SingleR": "correlation to references", "scANVI": "deep generative (scvi-tools)",
            STACKED: "stacked ensemble"}


def model_family(name: str) -> str:
    """The family of a zoo model: "deep classifier" (the paper's models and the book's MLPs), "linear",
    "boosted trees", "nearest neighbours", "correlation to references", "deep generative (scvi-tools)",
    "stacked ensemble" (or "other")."""
    return "deep classifier" if is_deep_name(name) else FAMILIES.get(name, "other")


def family_table(figures: dict, key: str = "acc", f1_key: str = "f1_macro") -> pd.DataFrame:
    """Each model family's best model in a chapter's recorded figures (``<key>::<model>`` = [mean, SD]; chapter
    I.3's ``acc`` / ``f1_macro``, or I.5's ``accuracy_heldout`` / ``f1_macro_heldout``): one row per family,
    best first (by mean accuracy), with ``family``, ``model``, ``accuracy``, ``accuracy_sd``, ``f1_macro``; the
    stacked ensemble, which mixes families, is left out."""
    rows = []
    for k, (mean, sd) in ((k, v) for k, v in figures.items() if k.startswith(f"{key}::")):
        name = k.split("::", 1)[1]
        if model_family(name) != "stacked ensemble":
            f1 = figures.get(f"{f1_key}::{name}", [np.nan])[0]
            rows.append({"family": model_family(name), "model": name, "accuracy": float(mean),
                         "accuracy_sd": float(sd or 0.0), "f1_macro": float(f1)})
    if not rows:
        return pd.DataFrame(columns=["family", "model", "accuracy", "accuracy_sd", "f1_macro"])
    table = pd.DataFrame(rows).sort_values(["accuracy", "f1_macro"], ascending=False, kind="stable")
    return table.drop_duplicates("family").reset_index(drop=True)


def family_verdict(figures: dict, key: str = "acc", f1_key: str = "f1_macro") -> dict | None:
    """Which family wins in a chapter's figures (see :func:`family_table`): ``winner`` and ``runner_up`` (rows
    of the table as dicts), ``margin`` (their accuracy difference) and ``level`` (whether it is within the seed
    spread: the larger SD of the two models); ``table`` is the whole table.  None with fewer than two families."""
    table = family_table(figures, key, f1_key)
    if len(table) < 2:
        return None
    win, run = table.iloc[0].to_dict(), table.iloc[1].to_dict()
    margin = win["accuracy"] - run["accuracy"]
    return {"winner": win, "runner_up": run, "margin": float(margin),
            "level": bool(margin <= max(win["accuracy_sd"], run["accuracy_sd"])), "table": table}


def conclusion_table(t1: dict | None, ho: dict | None, names=None, paper: dict | None = None) -> pd.DataFrame:
    """Part I's conclusion: per model, accuracy and macro-F1 (mean ± SD) on the random splits (chapter
    I.3's figures ``t1``) and on held-out donors (chapter I.5's ``ho``), and the paper's accuracy ("" where
    it has none); models neither chapter ran are left out."""
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
