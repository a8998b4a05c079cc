"""Figures for the results summary page."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..report import lower_is_better
from . import PALETTE


def ours_vs_paper(table: pd.DataFrame, title: str = "Our numbers relative to the papers'", ax=None):
    """Horizontal bars of ``ours / paper`` per headline metric (1 = the paper's figure).

    ``table`` is :func:`cellbook.report.headline_table` output; rows without a ratio (no paper
    number, or a text value) are left out. Bars are coloured by part; the dashed line is 1.
    Whether above 1 is better depends on the metric (accuracy: higher; MSE, errors, minutes:
    lower): the note column of the table says which.
    """
    need = {"part", "metric", "ours / paper"}
    if not need <= set(table.columns):
        raise ValueError(f"ours_vs_paper: table needs columns {sorted(need)}, has {list(table.columns)}")
    df = table.dropna(subset=["ours / paper"]).copy()
    if df.empty:
        raise ValueError("ours_vs_paper: no row has both our number and the paper's")
    df["label"] = [f"{m} (lower is better)" if lower_is_better(m) else str(m) for m in df["metric"]]
    parts = list(dict.fromkeys(df["part"]))
    colors = dict(zip(parts, sns.color_palette(PALETTE, len(parts))))
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.38 * len(df) + 1.2)))
    else:
        fig = ax.figure
    pos = np.arange(len(df))[::-1]
    ax.barh(pos, df["ours / paper"], color=[colors[p] for p in df["part"]])
    ax.set_yticks(pos, df["label"])
    ax.axvline(1.0, ls="--", lw=1, color="0.3")
    for y, v in zip(pos, df["ours / paper"]):
        ax.annotate(f"{v:.2f}", xy=(v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("ours / paper (1 = the paper's number)")
    ax.set_xlim(0, max(1.2, float(df["ours / paper"].max()) * 1.15))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[p]) for p in parts]
    ax.legend(handles, parts, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="part", title_fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
