"""Part II figures: images through the preprocessing chain, example tiles, the WS x SSN heatmap,
learning curves with error bars and brightness by class.  Every function returns the Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import PALETTE, heatmap


def _show(ax, img, title=""):
    img = np.asarray(img)
    if img.ndim == 3:
        ax.imshow(img[:, :, ::-1])               # OpenCV BGR -> RGB for display
    else:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def pipeline_figure(steps: dict, title: str = "", ncols: int = 4):
    """One image through every preprocessing step (``{step: image}``); subtitles give size and mean."""
    n = len(steps)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.3 * nrows))
    axes = np.atleast_1d(axes).ravel()
    for ax, (name, img) in zip(axes, steps.items()):
        img = np.asarray(img)
        _show(ax, img, f"{name}\n{img.shape[0]}x{img.shape[1]} px, mean {img.mean():.0f}")
    for ax in axes[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def example_grid(images, labels, n_per_class: int = 4, title: str = "", seed: int = 0, captions=None):
    """``n_per_class`` random images of each class, one row per class."""
    labels = np.asarray(labels)
    classes = sorted(np.unique(labels))
    rng = np.random.default_rng(seed)
    # constrained layout reserves room for the two-line captions, so a row's titles never hide under the row above
    fig, axes = plt.subplots(len(classes), n_per_class, figsize=(2.6 * n_per_class, 2.7 * len(classes)),
                             layout="constrained")
    axes = np.atleast_2d(axes)
    for r, c in enumerate(classes):
        idx = rng.choice(np.flatnonzero(labels == c), size=min(n_per_class, int((labels == c).sum())), replace=False)
        for k in range(n_per_class):
            ax = axes[r, k]
            if k < len(idx):
                cap = captions[idx[k]] if captions is not None else ""
                _show(ax, images[idx[k]], f"{c}" + (f"\n{cap}" if cap else ""))
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def ssn_heatmap(grid: pd.DataFrame, title: str = "", paper_best: tuple | None = None):
    """Mean accuracy per (WS, SSN) as a heatmap; the best cell outlined (red), the paper's best (dashed)."""
    table = grid.groupby(["ws", "ssn"])["accuracy"].mean().unstack("ssn").sort_index()
    best = table.stack().idxmax()
    fig = heatmap(table, title=title or f"Accuracy by window size and SSN count (best WS={best[0]}, "
                                        f"SSN={best[1]}: {table.loc[best]:.3f})",
                  fmt=".3f", vmin=None, vmax=None, cbar_label="image-level accuracy (grouped CV)", mark=best)
    ax = fig.axes[0]
    ax.set_xlabel("SSN (neighbours per training pixel)")
    ax.set_ylabel("WS (window size, px)")
    if paper_best is not None and paper_best[0] in table.index and paper_best[1] in table.columns:
        r, c = list(table.index).index(paper_best[0]), list(table.columns).index(paper_best[1])
        ax.add_patch(plt.Rectangle((c + 0.08, r + 0.08), 0.84, 0.84, fill=False, edgecolor="white", lw=1.5, ls="--"))
    return fig


def learning_curves(summary: pd.DataFrame, x: str = "size", y: str = "accuracy_mean", err: str = "accuracy_sd",
                    hue: str = "model", title: str = "", ylabel: str = "accuracy (held-out frames)", chance=None,
                    ax=None):
    """Mean +- SD error bars per model over training-set sizes (Fig. 5a)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    groups = list(summary.groupby(hue, sort=False))
    colors = sns.color_palette(PALETTE, len(groups))
    offsets = np.linspace(-0.8, 0.8, len(groups)) if len(groups) > 1 else [0]
    for (label, g), color, off in zip(groups, colors, offsets):
        g = g.sort_values(x)
        ax.errorbar(g[x] + off, g[y], yerr=g[err], marker="o", ms=4, capsize=3, label=str(label), color=color)
    if chance is not None:
        ax.axhline(chance, ls=":", color="0.5", lw=1)
        ax.annotate("majority class", xy=(0, chance), xycoords=("axes fraction", "data"), fontsize=8,
                    color="0.4", xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("training images")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def brightness_by_class(df: pd.DataFrame, value: str = "mean_gray", by: str = "label", title: str = "",
                        ylabel: str = "mean 8-bit gray of the raw image"):
    """Strip + box plot of a brightness measure per class (the confound the baseline exploits)."""
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    sns.boxplot(data=df, x=by, y=value, ax=ax, color="white", showfliers=False)
    sns.stripplot(data=df, x=by, y=value, hue=by, ax=ax, palette=PALETTE, size=4, legend=False)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig
