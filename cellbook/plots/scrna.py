"""Part I figures: training curves, model comparison, per-type heatmap (Fig. 1), UMAP panels (Fig. 2).

Every function returns the matplotlib Figure and uses the book's colour-blind palette.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import PALETTE, confusion_heatmap


def training_curve(history: pd.DataFrame, title: str = "Training curve"):
    """Loss (left) and validation accuracy (right) per epoch from ``Trainer.history``."""
    if history is None or len(history) == 0:
        raise ValueError("empty training history; fit the model first")
    colors = sns.color_palette(PALETTE, 3)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(history["epoch"], history["train_loss"], marker="o", ms=3, color=colors[0], label="train")
    if "val_loss" in history:
        ax1.plot(history["epoch"], history["val_loss"], marker="o", ms=3, color=colors[1], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy loss")
    ax1.legend()
    ax1.set_title("loss")
    if "val_accuracy" in history:
        ax2.plot(history["epoch"], history["val_accuracy"], marker="o", ms=3, color=colors[2])
        best = history["val_accuracy"].idxmax()
        ax2.annotate(f"best {history['val_accuracy'].max():.3f}",
                     (history.loc[best, "epoch"], history.loc[best, "val_accuracy"]),
                     xytext=(0, -14), textcoords="offset points", ha="center", fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("validation accuracy")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def model_comparison(summary: pd.DataFrame, metrics=("accuracy", "f1_macro"), paper: dict | None = None,
                     title: str = "Models on the random 2:1 split (mean ± SD over seeds)"):
    """Grouped horizontal bars, one group per model, mean ± SD of each metric; paper values as ◆.

    ``summary`` has a ``model`` column and ``<metric>_mean`` / ``<metric>_sd`` columns
    (:func:`cellbook.metrics.summarize`); ``paper`` maps model -> the paper's accuracy.
    """
    models = list(summary["model"])
    colors = sns.color_palette(PALETTE, len(metrics) + 1)
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(models) * max(1, len(metrics) / 1.5) + 1.5))
    h = 0.8 / len(metrics)
    pos = np.arange(len(models))
    for i, m in enumerate(metrics):
        ax.barh(pos + (i - (len(metrics) - 1) / 2) * h, summary[f"{m}_mean"], height=h,
                xerr=summary.get(f"{m}_sd"), color=colors[i], capsize=2, label=m.replace("_", " "))
    if paper:
        xs = [paper.get(m, np.nan) for m in models]
        ax.scatter(xs, pos, marker="D", color="black", zorder=3, s=22, label="paper (accuracy)")
    ax.set_yticks(pos, models)
    ax.invert_yaxis()
    lo = np.nanmin([summary[f"{m}_mean"].min() for m in metrics])
    ax.set_xlim(max(0, lo - 0.15), 1.0)
    ax.set_xlabel("score")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)   # beside the bars, never on them
    fig.tight_layout()
    return fig


def per_type_heatmap(cm: pd.DataFrame, title: str = "Per-type accuracy (rows sum to 1)"):
    """Fig. 1: row-normalised confusion matrix; the diagonal is each type's accuracy (recall)."""
    return confusion_heatmap(cm, title=title)


def umap_panels(adata, keys=("true", "predicted", "correct"), titles=None, basis: str = "X_umap",
                title: str = ""):
    """Fig. 2: one UMAP panel per ``obs`` key (categorical colours from the colour-blind palette).

    ``adata.obsm[basis]`` must hold the embedding (``scanpy.tl.umap``).
    """
    if basis not in adata.obsm:
        raise ValueError(f"adata.obsm[{basis!r}] is missing; run scanpy.tl.umap first")
    emb = np.asarray(adata.obsm[basis])
    # one panel per row: at page width the legends stay readable (side by side they shrank to ~5 px)
    fig, axes = plt.subplots(len(keys), 1, figsize=(8.0, 5.6 * len(keys)))
    axes = np.atleast_1d(axes)
    for ax, key, t in zip(axes, keys, titles or keys):
        values = adata.obs[key].astype(str)
        cats = sorted(values.unique())
        if set(cats) <= {"correct", "wrong"}:
            cmap = {"correct": "#bbbbbb", "wrong": sns.color_palette(PALETTE)[3]}
        else:
            pal = sns.color_palette(PALETTE if len(cats) <= 10 else "tab20", len(cats))
            cmap = dict(zip(cats, pal))
        order = np.argsort(values.values == "wrong", kind="stable")  # wrong cells drawn last, on top
        ax.scatter(emb[order, 0], emb[order, 1], c=[cmap[v] for v in values.values[order]], s=6, linewidths=0)
        for c in cats:
            ax.scatter([], [], color=cmap[c], label=c, s=20)
        ax.set_title(t)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.legend(fontsize=11, markerscale=1.5, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False,
                  ncol=1 if len(cats) <= 16 else 2)
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def split_comparison(df: pd.DataFrame, x: str = "split", metrics=("accuracy", "f1_macro"), hue: str = "model",
                     title: str = "Random split vs held-out donors"):
    """Bars of mean ± SD per split and model for each metric (one panel per metric)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, metrics):
        sns.barplot(data=df, x=x, y=m, hue=hue, ax=ax, errorbar="sd", palette=PALETTE, capsize=0.05)
        ax.set_ylabel(m.replace("_", " "))
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
        if ax is not axes[-1] and ax.get_legend():
            ax.get_legend().remove()
    if axes[-1].get_legend():
        sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig
