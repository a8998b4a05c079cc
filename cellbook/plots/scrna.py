"""Part I figures: QC histograms, training curves, attention, model comparison, per-type heatmap (Fig. 1),
UMAP panels (Fig. 2) and the random-split vs held-out-donor bars.

Every function draws at the book's column width (:data:`cellbook.plots.COLUMN_IN`) with text of at least
:data:`cellbook.plots.MIN_FONT_PT`, returns the matplotlib Figure (or a list of them, one per panel, where
the panels cannot share the column) and uses the book's colour-blind palette.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import COLUMN_IN, MIN_FONT_PT, PALETTE, column_size, readable_log_axis

#: Annotations inside heatmap cells and small labels: the smallest text the book allows.
SMALL_PT = max(MIN_FONT_PT, 7.0)


def wrap_title(text: str, width_in: float = COLUMN_IN, size: float = 11.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``size`` points (bold: ~0.6 em a char)."""
    chars = max(20, int(width_in * 72 / (0.6 * size)))
    return "\n".join(textwrap.wrap(str(text), chars)) if text else ""


def qc_histograms(obs: pd.DataFrame, hue: str | None = None,
                  title: str = "Library size and detected genes per cell", bins: int = 40):
    """Library size (``total_counts``) and detected genes (``n_genes_by_counts``) per cell, log x axis,
    one panel each; ``hue`` (an ``obs`` column) splits the histograms, its legend under the panels."""
    cols = {"total_counts": "UMIs per cell", "n_genes_by_counts": "genes per cell"}
    df = obs.rename(columns=cols)
    fig, axes = plt.subplots(1, 2, figsize=column_size(0.46), layout="constrained")
    for ax, col in zip(axes, cols.values()):
        sns.histplot(data=df, x=col, hue=hue, bins=bins, log_scale=True, ax=ax, element="step", stat="count",
                     common_norm=False, legend=hue is not None and ax is axes[-1])
        ax.set_title(col)
        readable_log_axis(ax, "x")
    if hue is not None and axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "lower center", bbox_to_anchor=(-0.1, -0.42), ncol=4, title=hue,
                        frameon=False)
    if title:
        fig.suptitle(wrap_title(title, size=12), fontweight="bold")
    return fig


def best_epoch_of(history: pd.DataFrame) -> int:
    """The epoch early stopping restores: the lowest validation loss (the training loss without one)."""
    col = "val_loss" if "val_loss" in history else "train_loss"
    return int(history.loc[history[col].idxmin(), "epoch"])


def training_curve(history: pd.DataFrame, title: str = "Training curve", best_epoch: int | None = None):
    """Loss (left) and validation accuracy (right) per epoch from ``Trainer.history``; a dashed line marks
    ``best_epoch``, the epoch whose weights were kept (default: :func:`best_epoch_of`, the lowest validation
    loss, which is what :class:`cellbook.Trainer` restores)."""
    if history is None or len(history) == 0:
        raise ValueError("empty training history; fit the model first")
    best = best_epoch_of(history) if best_epoch is None else int(best_epoch)
    colors = sns.color_palette(PALETTE, 3)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=column_size(0.45), layout="constrained")
    ax1.plot(history["epoch"], history["train_loss"], marker="o", ms=3, color=colors[0], label="train")
    if "val_loss" in history:
        ax1.plot(history["epoch"], history["val_loss"], marker="o", ms=3, color=colors[1], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_title("loss")
    for ax in (ax1, ax2):
        ax.axvline(best, ls="--", lw=1, color="0.35", label=f"kept: epoch {best}" if ax is ax1 else None)
    ax1.legend()
    if "val_accuracy" in history:
        ax2.plot(history["epoch"], history["val_accuracy"], marker="o", ms=3, color=colors[2])
        at = history.loc[history["epoch"] == best, "val_accuracy"]
        if len(at):   # at the foot of the dashed line, clear of the curve
            ax2.text(best, 0.04, f" epoch {best}: {float(at.iloc[0]):.3f}", transform=ax2.get_xaxis_transform(),
                     ha="left", va="bottom", fontsize=9, bbox=dict(facecolor="white", edgecolor="none", pad=1))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("validation accuracy")
    fig.suptitle(wrap_title(title, size=12), fontweight="bold")
    return fig


def attention_bars(weights, chunk: int, title: str = ""):
    """Mean attention weight per gene chunk (bars) against the uniform weight (dashed line)."""
    w = np.asarray(weights, float)
    fig, ax = plt.subplots(figsize=column_size(0.36), layout="constrained")
    ax.bar(np.arange(len(w)), w, color=sns.color_palette(PALETTE)[0])
    ax.axhline(1 / len(w), ls="--", color="0.4", lw=1, label="uniform")
    ax.set_xticks(np.arange(len(w)))
    ax.set_xlabel(f"gene chunk ({chunk} genes each, in the data's gene order)")
    ax.set_ylabel("mean attention")
    ax.set_ylim(0, max(w.max(), 1 / len(w)) * 1.3)   # room for the legend above the bars
    ax.legend(loc="upper left")
    if title:
        ax.set_title(wrap_title(title))
    return fig


def model_comparison(summary: pd.DataFrame, metrics=("accuracy", "f1_macro"), paper: dict | None = None,
                     title: str = "Models on the random 2:1 split (mean ± SD over seeds)"):
    """Grouped horizontal bars, one group per model, mean ± SD of each metric; paper values as ◆.

    ``summary`` has a ``model`` column and ``<metric>_mean`` / ``<metric>_sd`` columns
    (:func:`cellbook.metrics.summarize`); ``paper`` maps model -> the paper's accuracy. The legend sits
    under the bars, never on them.
    """
    models = list(summary["model"])
    colors = sns.color_palette(PALETTE, len(metrics) + 1)
    height = 0.27 * len(models) * max(1, len(metrics) / 1.5) + 1.4
    fig, ax = plt.subplots(figsize=(COLUMN_IN, height), layout="constrained")
    h = 0.8 / len(metrics)
    pos = np.arange(len(models))
    names = {"f1_macro": "macro-F1"}
    for i, m in enumerate(metrics):
        ax.barh(pos + (i - (len(metrics) - 1) / 2) * h, summary[f"{m}_mean"], height=h,
                xerr=summary.get(f"{m}_sd"), color=colors[i], capsize=2, label=names.get(m, m.replace("_", " ")))
    if paper:
        xs = [paper.get(m, np.nan) for m in models]
        ax.scatter(xs, pos, marker="D", color="black", zorder=3, s=22, label="paper (accuracy)")
    ax.set_yticks(pos, models)
    ax.invert_yaxis()
    lo = np.nanmin([summary[f"{m}_mean"].min() for m in metrics])
    ax.set_xlim(max(0, lo - 0.15), 1.0)
    ax.set_xlabel("score")
    ax.set_title(wrap_title(title))
    ax.margins(y=0.01)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    return fig


def per_type_heatmap(cm: pd.DataFrame, title: str = "Per-type accuracy (rows sum to 1)",
                     cbar_label: str = "share of true type"):
    """Fig. 1: row-normalised confusion matrix at the column's width; the diagonal is each type's accuracy
    (recall). Cell values with two decimals at the smallest allowed text size."""
    n = max(cm.shape)
    fig, ax = plt.subplots(figsize=(COLUMN_IN, min(COLUMN_IN * 0.95, 0.4 * n + 1.8)), layout="constrained")
    sns.heatmap(cm, annot=cm.size <= 400, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, square=False,
                annot_kws={"size": SMALL_PT}, cbar_kws={"label": cbar_label, "shrink": 0.8})
    ax.set_xlabel(f"predicted{'' if cm.columns.name in (None, 'predicted') else ' ' + str(cm.columns.name)}")
    ax.set_ylabel(f"true{'' if cm.index.name in (None, 'true') else ' ' + str(cm.index.name)}")
    ax.tick_params(axis="x", rotation=90)
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(wrap_title(title))
    return fig


def umap_panels(adata, keys=("true", "predicted", "correct"), titles=None, basis: str = "X_umap",
                title: str = ""):
    """Fig. 2: one figure per ``obs`` key, each a UMAP at the column's width with its legend beside it
    (categorical colours from the colour-blind palette; wrong cells drawn on top). ``title`` heads the
    first figure. Returns the list of figures.

    ``adata.obsm[basis]`` must hold the embedding (``scanpy.tl.umap``).
    """
    if basis not in adata.obsm:
        raise ValueError(f"adata.obsm[{basis!r}] is missing; run scanpy.tl.umap first")
    emb = np.asarray(adata.obsm[basis])
    figs = []
    for i, (key, t) in enumerate(zip(keys, titles or keys)):
        values = adata.obs[key].astype(str)
        cats = sorted(values.unique())
        if set(cats) <= {"correct", "wrong"}:
            cmap = {"correct": "#bbbbbb", "wrong": sns.color_palette(PALETTE)[3]}
        else:
            pal = sns.color_palette(PALETTE if len(cats) <= 10 else "tab20", len(cats))
            cmap = dict(zip(cats, pal))
        fig, ax = plt.subplots(figsize=column_size(0.62), layout="constrained")
        order = np.argsort(values.values == "wrong", kind="stable")  # wrong cells drawn last, on top
        ax.scatter(emb[order, 0], emb[order, 1], c=[cmap[v] for v in values.values[order]], s=7, linewidths=0)
        for c in cats:
            ax.scatter([], [], color=cmap[c], label=c, s=24)
        ax.set_title(wrap_title(t, COLUMN_IN * 0.7))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False,
                  ncol=1 if len(cats) <= 16 else 2)
        if title and i == 0:
            fig.suptitle(wrap_title(title, size=12), fontweight="bold")
        figs.append(fig)
    return figs


def split_comparison(df: pd.DataFrame, x: str = "split", metrics=("accuracy", "f1_macro"), hue: str = "model",
                     title: str = "Random split vs held-out donors"):
    """Bars of mean ± SD per split and model, one panel per metric, each with its own title and y-label
    (the metric); one legend for both panels, under them."""
    names = {"f1_macro": "macro-F1"}
    fig, axes = plt.subplots(1, len(metrics), figsize=column_size(0.62), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, metrics):
        label = names.get(m, m.replace("_", " "))
        sns.barplot(data=df, x=x, y=m, hue=hue, ax=ax, errorbar="sd", palette=PALETTE, capsize=0.05)
        ax.set_title(label)
        ax.set_ylabel(label)
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), frameon=False)
    fig.suptitle(wrap_title(title, size=12), fontweight="bold")
    return fig


def annotation_scaling(table: pd.DataFrame, machine: str = "", labels: dict | None = None):
    """Time (left) and peak memory (right) of annotating against query cells, one line per method, log axes;
    ``table``: :func:`cellbook.scaling.scaling_table` rows (the ``predict`` stage, those that finished).
    ``labels``: method -> legend text.  ``machine`` goes under the title."""
    done = table[(table["stage"] == "predict") & (table["status"] == "ok")]
    if done.empty:
        raise ValueError("no finished annotation run to plot")
    fig, axes = plt.subplots(1, 2, figsize=column_size(0.5), layout="constrained")
    colours = sns.color_palette(PALETTE)
    for i, (method, grp) in enumerate(done.groupby("method", sort=False)):
        grp = grp.sort_values("cells")
        name = (labels or {}).get(method, method)
        for ax, col in zip(axes, ("seconds", "peak_rss_gb")):
            ax.plot(grp["cells"], grp[col], marker="o", color=colours[i % len(colours)], label=name)
    cells = sorted(done["cells"].unique())
    for ax, ylabel, col in zip(axes, ("wall time (s)", "peak memory (GB)"), ("seconds", "peak_rss_gb")):
        ax.set_ylim(done[col].min() / 1.4, done[col].max() * 1.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("query cells (resampled)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(cells, labels=[_cells_text(c) for c in cells])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlim(cells[0] / 1.5, cells[-1] * 1.5)
        readable_log_axis(ax, "y")
        ax.grid(True, which="major", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, frameon=False)
    title = wrap_title("Annotating a query: time and memory against cells", size=11)
    fig.suptitle(title + (f"\n{wrap_title(machine, size=9)}" if machine else ""), fontweight="bold")
    return fig


def _cells_text(n: float) -> str:
    """``25k``, ``1M``: a number of cells for an axis."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:g}{unit}"
    return f"{n:g}"
