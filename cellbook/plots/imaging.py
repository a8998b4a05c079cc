"""Part II figures: images through the preprocessing chain, example tiles, the bands of a spectral
stack, the WS x SSN heatmap, learning curves with error bars, brightness by class and classification
maps on whole frames.  Every figure is drawn at the book's column width (:data:`cellbook.plots.COLUMN_IN`)
with text of at least :data:`cellbook.plots.MIN_FONT_PT`; every figure function returns the Figure.

Helpers that prepare what a figure shows: :func:`band_images` (a stack's bands as 8-bit images),
:func:`frame_mosaic`, :func:`choose_frames` and :func:`map_frames` (tiles put back into frames).
"""
from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import COLUMN_IN, PALETTE, heatmap

TITLE_ROOM_IN = 0.42      # height of a two-line 9 pt panel title (inches)


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


def _panel_aspect(images) -> float:
    """Height / width of the widest-aspect image among ``images`` (the panels' shape)."""
    return max(np.asarray(im).shape[0] / np.asarray(im).shape[1] for im in images)


def pipeline_figure(steps: dict, title: str = "", ncols: int = 4, details: bool = True):
    """One image through every preprocessing step (``{step: image}``); subtitles give size and mean
    (``details=False``: the step's name only, e.g. for images rescaled for display).

    Drawn at the column width: ``ncols`` panels a row, as many rows as needed."""
    n = len(steps)
    if n == 0:
        raise ValueError("pipeline_figure: no images given")
    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    panel = COLUMN_IN / ncols
    room = TITLE_ROOM_IN if details else TITLE_ROOM_IN / 2
    height = nrows * (panel * _panel_aspect(steps.values()) + room) + (0.35 if title else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_IN, height), layout="constrained", squeeze=False)
    axes = axes.ravel()
    for ax, (name, img) in zip(axes, steps.items()):
        img = np.asarray(img)
        _show(ax, img, f"{name}\n{img.shape[0]}x{img.shape[1]} px, mean {img.mean():.0f}" if details else name)
    for ax in axes[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def example_grid(images, labels, n_per_class: int = 4, title: str = "", seed: int = 0, captions=None):
    """``n_per_class`` random images of each class, one row per class, at the column width."""
    labels = np.asarray(labels)
    classes = sorted(np.unique(labels))
    rng = np.random.default_rng(seed)
    panel = COLUMN_IN / n_per_class
    aspect = _panel_aspect(images[:1]) if len(images) else 1.0
    room = TITLE_ROOM_IN if captions is not None else TITLE_ROOM_IN / 2
    height = len(classes) * (panel * aspect + room) + (0.35 if title else 0)
    # constrained layout reserves room for the two-line captions, so a row's titles never hide under the row above
    fig, axes = plt.subplots(len(classes), n_per_class, figsize=(COLUMN_IN, height), layout="constrained")
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


def band_images(stack, names) -> dict:
    """The bands of one spectral stack ``(H, W, B)`` as 8-bit images for display, ``{band name: image}``:
    each band's 1st-99th percentile stretched to 0-255 (display only; the stack itself is unchanged)."""
    stack = np.asarray(stack)
    names = list(names)
    if stack.ndim != 3 or stack.shape[2] != len(names):
        raise ValueError(f"band_images: a stack (H, W, {len(names)}) is needed for {len(names)} names, "
                         f"got shape {stack.shape}")
    panels = {}
    for b, name in enumerate(names):
        band = stack[..., b]
        lo, hi = np.percentile(band, [1, 99])
        panels[name] = np.clip((band - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return panels


def ssn_heatmap(grid: pd.DataFrame, title: str = "", paper_best: tuple | None = None):
    """Mean accuracy per (WS, SSN) as a heatmap; the best cell outlined (red), the paper's best (dashed)."""
    table = grid.groupby(["ws", "ssn"])["accuracy"].mean().unstack("ssn").sort_index()
    best = table.stack().idxmax()
    fig, ax = plt.subplots(figsize=(COLUMN_IN, max(3.2, 0.45 * len(table) + 1.6)))
    heatmap(table, title=title or f"Accuracy by window size and SSN count\n(best WS={best[0]}, "
                                  f"SSN={best[1]}: {table.loc[best]:.3f})",
            fmt=".3f", vmin=None, vmax=None, cbar_label="image-level accuracy\n(grouped CV)", mark=best, ax=ax)
    for text in ax.texts:       # the cell values: 9 pt, readable at the column width
        text.set_fontsize(9)
    ax.set_xlabel("SSN (neighbours per training pixel)")
    ax.set_ylabel("WS (window size, px)")
    if paper_best is not None and paper_best[0] in table.index and paper_best[1] in table.columns:
        r, c = list(table.index).index(paper_best[0]), list(table.columns).index(paper_best[1])
        ax.add_patch(plt.Rectangle((c + 0.08, r + 0.08), 0.84, 0.84, fill=False, edgecolor="white", lw=1.5, ls="--"))
    fig.tight_layout()
    return fig


def learning_curves(summary: pd.DataFrame, x: str = "size", y: str = "accuracy_mean", err: str = "accuracy_sd",
                    hue: str = "model", title: str = "", ylabel: str = "accuracy (held-out frames)", chance=None,
                    ax=None, paper: dict | None = None):
    """Mean +- SD error bars per model over training-set sizes (Fig. 5a).

    ``paper``: ``{model: {size: (mean, sd)}}`` on the same scale as ``y``, drawn as open diamonds in the
    model's colour at every size the paper reports in its text (for Liu et al. only 100 images).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 4.2))
    else:
        fig = ax.figure
    groups = list(summary.groupby(hue, sort=False))
    colors = sns.color_palette(PALETTE, len(groups))
    offsets = np.linspace(-0.8, 0.8, len(groups)) if len(groups) > 1 else [0]
    for (label, g), color, off in zip(groups, colors, offsets):
        g = g.sort_values(x)
        ax.errorbar(g[x] + off, g[y], yerr=g[err], marker="o", ms=4, capsize=3, label=str(label), color=color)
        for size, (m, sd) in ((paper or {}).get(label) or {}).items():
            ax.errorbar(size + off, m, yerr=sd, marker="D", ms=7, mfc="white", mec=color, color=color, capsize=3,
                        ls="none", label=f"{label}, paper")
    if chance is not None:
        ax.axhline(chance, ls=":", color="0.5", lw=1)
        ax.annotate("majority class", xy=(0, chance), xycoords=("axes fraction", "data"), fontsize=9,
                    color="0.4", xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("training images")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)   # beside the curves
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


def frame_mosaic(tiles, rows, cols) -> np.ndarray:
    """Tiles of one frame put back together by their ``(row, col)`` grid position -> one gray image."""
    gray = [t if np.asarray(t).ndim == 2 else cv2.cvtColor(np.asarray(t), cv2.COLOR_BGR2GRAY) for t in tiles]
    h, w = np.asarray(gray[0]).shape[:2]
    if any(np.asarray(g).shape[:2] != (h, w) for g in gray):
        raise ValueError("frame_mosaic: the tiles of one frame must have one size")
    rows, cols = np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)
    out = np.zeros(((rows.max() + 1) * h, (cols.max() + 1) * w), dtype=np.asarray(gray[0]).dtype)
    for g, r, c in zip(gray, rows, cols):
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = g
    return out


def choose_frames(labels, groups, per_class: int = 2, seed: int = 0) -> list:
    """``per_class`` source frames of each class, drawn at random (a generator seeded with ``seed``), in
    class order: the frames :func:`classification_maps` shows."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    return [g for cls in sorted(np.unique(labels))
            for g in rng.choice(sorted(np.unique(groups[labels == cls])), per_class, replace=False)]


def map_frames(images, labels, groups, meta: pd.DataFrame, frames, maps: dict) -> dict:
    """The input of :func:`classification_maps`: each frame of ``frames`` put back together from its tiles.

    ``images``, ``labels``, ``groups`` and the rows of ``meta`` (with ``tile_row`` / ``tile_col``) are per
    tile; ``maps`` is ``{map name: value per tile}`` (e.g. ``{"truth": y, "SCNN": P(positive)}``).
    Returns ``{"<frame> (<label>)": {"image", "rows", "cols", "maps"}}``, or ``{}`` when ``meta`` has no
    tile positions (images that are not tiles of frames).
    """
    if not {"tile_row", "tile_col"} <= set(meta.columns):
        return {}
    labels, groups = np.asarray(labels), np.asarray(groups)
    out = {}
    for g in frames:
        idx = np.flatnonzero(groups == g)
        rows, cols = meta.loc[idx, "tile_row"].to_numpy(), meta.loc[idx, "tile_col"].to_numpy()
        out[f"{g} ({labels[idx[0]]})"] = {
            "image": frame_mosaic([images[i] for i in idx], rows, cols), "rows": rows, "cols": cols,
            "maps": {name: np.asarray(v)[idx] for name, v in maps.items()}}
    return out


def classification_maps(frames: dict, title: str = "", positive: str = "positive", cmap: str = "coolwarm"):
    """Per-tile maps on whole frames (the paper's Figs. 4a-c truth maps and 5d-g classification maps).

    ``frames``: ``{frame name: {"image": mosaic (H, W), "rows": tile rows, "cols": tile cols,
    "maps": {"truth": 0/1 per tile, "<model>": P(positive) per tile, ...}}}``.  One row per frame, one
    column per map, at the column width; each tile is tinted by its value (1 = ``positive``) and shows it
    as a number; the colour bar runs under the panels.
    """
    if not frames:
        raise ValueError("classification_maps: no frames given")
    names = list(next(iter(frames.values()))["maps"])
    panel = COLUMN_IN / len(names)
    aspect = _panel_aspect([f["image"] for f in frames.values()])
    height = len(frames) * (panel * aspect + 0.1) + TITLE_ROOM_IN + 0.9 + (0.35 if title else 0)
    fig, axes = plt.subplots(len(frames), len(names), figsize=(COLUMN_IN, height),
                             layout="constrained", squeeze=False)
    cm = plt.get_cmap(cmap)
    for r, (frame, f) in enumerate(frames.items()):
        img = np.asarray(f["image"])
        n_r, n_c = int(np.max(f["rows"])) + 1, int(np.max(f["cols"])) + 1
        th, tw = img.shape[0] // n_r, img.shape[1] // n_c
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            for value, tr, tc in zip(f["maps"][name], f["rows"], f["cols"]):
                ax.add_patch(plt.Rectangle((tc * tw, tr * th), tw, th, color=cm(float(value)), alpha=0.45, lw=0))
                ax.text((tc + 0.5) * tw, (tr + 0.5) * th, f"{float(value):.2f}" if name != "truth" else
                        ("+" if value else "-"), ha="center", va="center", fontsize=9, color="black",
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7, "edgecolor": "none"})
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"{name}" if r == 0 else "", fontsize=9)
            if c == 0:
                ax.set_ylabel(frame.replace(" (", "\n("), fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cm, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes, orientation="horizontal", shrink=0.6, aspect=40,
                 label=f"P({positive}); truth: 1 = {positive}")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig
