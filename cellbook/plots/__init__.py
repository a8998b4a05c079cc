"""Figures: one function per figure kind, one consistent style.

Generic figures live here; part-specific ones in ``plots/scrna.py``, ``plots/imaging.py``
and ``plots/codes.py``.  Every function returns the matplotlib Figure.
"""
from __future__ import annotations

import base64
import io
import warnings

import matplotlib
import matplotlib.pyplot as plt  # the backend is the caller's: inline in notebooks, Agg when headless
import numpy as np
import pandas as pd
import seaborn as sns
from IPython import get_ipython
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

PALETTE = "colorblind"      # categorical (Okabe-Ito-like), colour-blind safe
SEQUENTIAL = "viridis"      # heatmaps, perceptually uniform
#: The book's text column: figures are drawn at this width (inches, at :data:`DPI`) and never shrunk by the
#: browser, so that their text is shown at its drawn size.
COLUMN_IN = 7.8
DPI = 100
#: Smallest text a figure may carry (points); at :data:`DPI` and full column width this is 9.7 px.
MIN_FONT_PT = 7.0
#: PNG text chunk with the smallest text of a figure in pixels (at 1:1); read by the page linter.
MIN_TEXT_KEY = "cellbook:min_text_px"


def set_style(context: str = "notebook") -> None:
    """The book's one style: seaborn whitegrid, colour-blind palette, text sized for the column."""
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titleweight": "bold",
                      "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
                      "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9,
                      "figure.titlesize": 12, "legend.frameon": False})


def column_size(aspect: float = 0.55, width: float = 1.0) -> tuple[float, float]:
    """``(width, height)`` in inches for a figure ``width`` of the column wide (1: the whole column)."""
    w = COLUMN_IN * float(width)
    return (w, w * float(aspect))


def min_text_px(fig, dpi: float = DPI) -> float | None:
    """The smallest visible, non-empty text of ``fig`` in pixels at ``dpi`` (None: no text)."""
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and _drawn(t)]
    return round(min(sizes) * dpi / 72, 2) if sizes else None


def _drawn(text) -> bool:
    """False for tick labels of ticks outside their axis' view (matplotlib keeps them but does not draw them)."""
    ax = getattr(text, "axes", None)
    if ax is None:
        return True
    for axis in (ax.xaxis, ax.yaxis):
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if text in (tick.label1, tick.label2):
                lo, hi = sorted(axis.get_view_interval())
                slack = 1e-9 * abs(hi - lo)
                return tick.get_loc() is not None and lo - slack <= tick.get_loc() <= hi + slack
    return True


def fit_to_column(fig, width: float = COLUMN_IN):
    """Make ``fig`` at most ``width`` inches wide (its height shrinks less, so panels keep room for text),
    and lay it out again. Text keeps its size in points: narrowing a figure never shrinks its text."""
    w, h = fig.get_size_inches()
    if w > width + 1e-6:
        factor = width / w
        fig.set_size_inches(width, h * max(factor, 0.75), forward=False)
        if fig.get_layout_engine() is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
    return fig


def page_png(fig, dpi: float = DPI) -> bytes:
    """``fig`` as the book's PNG: at most one column wide at ``dpi`` (see :func:`fit_to_column`), tight
    borders, and the smallest text size in the PNG's :data:`MIN_TEXT_KEY` text chunk."""
    fit_to_column(fig)
    for _ in range(3):   # a legend or label outside the axes can make the tight box wider than the figure
        fig.canvas.draw()
        bbox = fig.get_tightbbox(fig.canvas.get_renderer())
        over = (bbox.width + 0.1) / COLUMN_IN
        if over <= 1.0:
            break
        fit_to_column(fig, fig.get_size_inches()[0] / over)
    small = min_text_px(fig, dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05,
                metadata={MIN_TEXT_KEY: "" if small is None else f"{small:g}"})
    return buf.getvalue()


def use_page_figures() -> bool:
    """In a notebook kernel: show every matplotlib figure through :func:`page_png`, so that it is drawn at the
    book's column width. Returns False outside IPython (nothing to do)."""
    ip = get_ipython()
    if ip is None:
        return False
    try:
        backend = str(matplotlib.get_backend(auto_select=False))
    except TypeError:   # matplotlib < 3.10
        backend = str(matplotlib.rcParams._get("backend"))
    if "inline" in backend:
        # Loading the inline backend registers its own PNG formatter (at the first figure, after this call
        # otherwise): load it now, so that the formatter below is the one that stays.
        import matplotlib_inline.backend_inline  # noqa: F401
    ip.display_formatter.formatters["image/png"].for_type(
        Figure, lambda fig: base64.b64encode(page_png(fig)).decode("ascii"))
    return True


def heatmap(df: pd.DataFrame, title: str = "", fmt: str = ".2f", cmap: str = SEQUENTIAL, annot: bool | None = None,
            vmin=None, vmax=None, cbar_label: str = "", ax=None, mark: tuple | None = None):
    """A labelled heatmap of a DataFrame (e.g. a row-normalised confusion matrix).

    ``mark=(row_label, col_label)`` outlines one cell (e.g. the best grid point).
    """
    annot = (df.size <= 400) if annot is None else annot
    if ax is None:
        w = max(4.5, 0.5 * df.shape[1] + 2.5)
        h = max(3.5, 0.42 * df.shape[0] + 1.5)
        fig, ax = plt.subplots(figsize=(w, h))
    else:
        fig = ax.figure
    sns.heatmap(df, annot=annot, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, ax=ax, square=False,
                cbar_kws={"label": cbar_label} if cbar_label else None, annot_kws={"size": 8})
    if mark is not None:
        r, c = list(df.index).index(mark[0]), list(df.columns).index(mark[1])
        ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, edgecolor="red", lw=2.5))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_heatmap(cm: pd.DataFrame, title: str = "Confusion (rows sum to 1)", ax=None):
    """Row-normalised confusion matrix: the diagonal is per-class accuracy."""
    return heatmap(cm, title=title, vmin=0, vmax=1, cbar_label="share of true class", ax=ax)


def bar_with_error(df: pd.DataFrame, x: str, y: str, err: str | None = None, hue: str | None = None,
                   title: str = "", ylabel: str = "", ax=None, reference: dict | None = None, horizontal=False):
    """Bars of means with SD error bars; ``reference={label: value}`` draws dashed paper values."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(df) + 2), 4) if not horizontal
                               else (6, max(3, 0.35 * len(df) + 1)))
    else:
        fig = ax.figure
    if hue is None:
        pos = np.arange(len(df))
        colors = sns.color_palette(PALETTE, len(df))
        if horizontal:
            ax.barh(pos, df[y], xerr=df[err] if err else None, color=colors, capsize=3)
            ax.set_yticks(pos, df[x])
            ax.set_xlabel(ylabel or y)
        else:
            ax.bar(pos, df[y], yerr=df[err] if err else None, color=colors, capsize=3)
            ax.set_xticks(pos, df[x], rotation=40, ha="right")
            ax.set_ylabel(ylabel or y)
    else:
        sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax, errorbar="sd")
        ax.set_ylabel(ylabel or y)
    for label, value in (reference or {}).items():
        (ax.axvline if horizontal else ax.axhline)(value, ls="--", lw=1, color="0.3")
        ax.annotate(label, xy=(value, 0) if horizontal else (0, value), xycoords=("data", "axes fraction")
                    if horizontal else ("axes fraction", "data"), fontsize=8, color="0.3",
                    xytext=(2, 2), textcoords="offset points")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def curves(df: pd.DataFrame, x: str, y: str, err: str | None = None, hue: str | None = None, title: str = "",
           xlabel: str = "", ylabel: str = "", ax=None, logy: bool = False):
    """Lines with error bands (mean ± err), one per ``hue`` level (learning curves, loss curves)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    groups = df.groupby(hue, sort=False) if hue else [(y, df)]
    colors = sns.color_palette(PALETTE, len(groups) if hue else 1)
    for color, (label, g) in zip(colors, groups):
        g = g.sort_values(x)
        ax.plot(g[x], g[y], marker="o", ms=3, label=str(label), color=color)
        if err:
            ax.fill_between(g[x], g[y] - g[err], g[y] + g[err], alpha=0.2, color=color)
    if logy:
        ax.set_yscale("log")
        readable_log_axis(ax, "y")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    if hue:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def readable_log_axis(ax, axis: str = "x"):
    """Plain-number tick labels on a log axis, several inside the data range.

    Matplotlib's log axis labels only powers of ten: data within one decade (an MSE from 1.2 to 1.6)
    gets no label at all, or minor labels like "2.8×10⁰".  Call after plotting (the limits are read).
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    lo, hi = min(lo, hi), max(lo, hi)
    if lo <= 0 or not np.isfinite([lo, hi]).all():
        return ax
    if hi / lo < 30:   # less than ~1.5 decades: five round numbers spread evenly (in log) over the range
        ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 7)[1:-1]})
        a.set_major_locator(FixedLocator(ticks))
    else:
        a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())
    return ax


def roc_curves(curves_by_name: dict, title: str = "ROC", ax=None):
    """ROC curves on one axes: ``{label: DataFrame(fpr, tpr)}`` (from :func:`cellbook.metrics.roc`)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 4.5))
    else:
        fig = ax.figure
    for (label, df), color in zip(curves_by_name.items(), sns.color_palette(PALETTE, len(curves_by_name))):
        ax.plot(df["fpr"], df["tpr"], label=label, color=color, lw=2)
    ax.plot([0, 1], [0, 1], ls=":", color="0.5")
    ax.set_xlabel("1 - specificity (FPR)")
    ax.set_ylabel("sensitivity (TPR)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def counts_bar(series: pd.Series, title: str = "", xlabel: str = "cells", ax=None):
    """Horizontal bars of counts per category, largest first (e.g. cells per type)."""
    s = series.sort_values()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, max(3, 0.3 * len(s) + 1)))
    else:
        fig = ax.figure
    ax.barh(s.index.astype(str), s.values, color=sns.color_palette(PALETTE)[0])
    for i, v in enumerate(s.values):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def histograms(df: pd.DataFrame, columns: list[str], hue: str | None = None, log: bool = True, title: str = "",
               bins: int = 40):
    """One histogram per column side by side (e.g. library size, genes per cell)."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.6))
    axes = np.atleast_1d(axes)
    for ax, col in zip(axes, columns):
        sns.histplot(data=df, x=col, hue=hue, bins=bins, log_scale=log, ax=ax, element="step",
                     stat="count", common_norm=False, legend=ax is axes[-1])
        ax.set_title(col)
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


set_style()
