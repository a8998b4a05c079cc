"""Figures for Part III (cell identity codes).  Every function returns the matplotlib Figure."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

from ..enrichment import short_term
from ..report import collapsible, fmt_p
from ..sweeps import paired_differences
from . import COLUMN_IN, PALETTE, curves, readable_log_axis


def _wrap(title: str, width: int = 80) -> str:
    """A long title on several lines, so that it stays inside the column."""
    return "\n".join(textwrap.fill(part, width) for part in str(title).split("\n")) if title else ""


def architecture_comparison(df: pd.DataFrame, x: str = "mse_mean", err: str = "mse_se", label: str = "architecture",
                            title: str = "", ax=None, highlight: str | None = None):
    """Points with SE bars on a log10 axis, best at the top (paper Fig. 8 / Fig. 9 style)."""
    d = df.sort_values(x, ascending=False).reset_index(drop=True)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_IN, max(3, 0.34 * len(d) + 1.4)))
    else:
        fig = ax.figure
    colors = sns.color_palette(PALETTE, 2)
    for i, r in d.iterrows():
        c = colors[1] if highlight and r[label] == highlight else colors[0]
        ax.errorbar(r[x], i, xerr=r[err] if err and np.isfinite(r[err]) else None, fmt="o", color=c, capsize=3)
    ax.set_yticks(range(len(d)), d[label])
    ax.set_xscale("log")
    readable_log_axis(ax, "x")
    ax.set_xlabel("test MSE (log scale), mean ± SE over folds")
    ax.set_title(_wrap(title))
    fig.tight_layout()
    return fig


def rank_shares(shares: dict, paper: dict | None = None, title: str = "", ax=None):
    """Grouped bars: share of test samples whose REP ranks 1st / 2nd / 3rd / lower.

    ``shares = {"Spearman": {"1": .9, "2": .05, ...}, "MSE": {...}}``; ``paper`` the same keys,
    drawn as black ticks over the bars.
    """
    rows = [{"measure": m, "rank": r, "share": v} for m, d in shares.items() for r, v in d.items()]
    df = pd.DataFrame(rows)
    if ax is None:
        fig, ax = plt.subplots(figsize=(COLUMN_IN * 0.8, 3.8))
    else:
        fig = ax.figure
    sns.barplot(data=df, x="rank", y="share", hue="measure", ax=ax, palette=PALETTE)
    if paper:
        measures = list(shares)
        n = len(measures)
        width = 0.8 / n
        ranks = list(df["rank"].unique())
        for j, m in enumerate(measures):
            for i, r in enumerate(ranks):
                v = (paper.get(m) or {}).get(r)
                if v is not None:
                    xc = i - 0.4 + width * (j + 0.5)
                    ax.plot([xc - width / 2.5, xc + width / 2.5], [v, v], color="black", lw=2)
        ax.plot([], [], color="black", lw=2, label="paper")
        ax.legend(fontsize=9)
    for p in ax.patches:
        h = p.get_height()
        if h > 0.005:
            ax.annotate(f"{h:.0%}", (p.get_x() + p.get_width() / 2, h), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("rank of the REP among all test GEPs")
    ax.set_ylabel("share of test samples")
    ax.set_title(_wrap(title, 70))
    fig.tight_layout()
    return fig


def pair_boxes(spearman: pd.DataFrame, mse: pd.DataFrame, title: str = "", p_values: tuple | None = None):
    """Two panels of box plots: GEP-REP vs GEP-nearest-other-GEP, Spearman r and MSE (log scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 3.8))
    for ax, df, name, log in ((axes[0], spearman, "Spearman r", False), (axes[1], mse, "MSE", True)):
        long = pd.DataFrame({"pair": ["GEP-REP"] * len(df) + ["GEP-nearest GEP"] * len(df),
                             name: np.r_[df["rep"].to_numpy(), df["nearest"].to_numpy()]})
        sns.boxplot(data=long, x="pair", y=name, hue="pair", ax=ax, palette=PALETTE, legend=False)
        if log:
            ax.set_yscale("log")
            readable_log_axis(ax, "y")
        ax.set_xlabel("")
    if p_values:
        for ax, p in zip(axes, p_values):
            ax.set_title(f"Wilcoxon p {'' if fmt_p(p).startswith('<') else '= '}{fmt_p(p)}", fontsize=10)
    if title:
        fig.suptitle(_wrap(title), fontweight="bold")
    fig.tight_layout()
    return fig


def unseen_tissues(df: pd.DataFrame, label: str = "tissue", title: str = ""):
    """Per held-out tissue: median Spearman r and median MSE of its REPs (paper Fig. 3)."""
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, max(3, 0.35 * len(df) + 1.6)), sharey=True)
    d = df.sort_values("median_spearman")
    colors = sns.color_palette(PALETTE, 2)
    axes[0].barh(d[label], d["median_spearman"], color=colors[0])
    axes[0].set_xlabel("median Spearman r (REP vs GEP)")
    axes[0].set_xlim(min(0.5, d["median_spearman"].min() - 0.05), 1)
    axes[1].barh(d[label], d["median_mse"], color=colors[1])
    axes[1].set_xlabel("median MSE (REP vs GEP)")
    if "median_mse_seen" in d:
        axes[1].scatter(d["median_mse_seen"], d[label], color="black", marker="|", s=200, zorder=3)
        axes[1].set_title("black tick: median MSE of the training\nsamples' own reconstructions", fontsize=9)
    if title:
        fig.suptitle(_wrap(title), fontweight="bold")
    fig.tight_layout()
    return fig


def error_counts(df: pd.DataFrame, title: str = "", ylabel: str = "misclassified test samples", fmt: str = "{:.0f}"):
    """Grouped bars: our test-set errors beside the paper's (columns ``method``, ``ours``, ``paper``)."""
    long = df.melt(id_vars="method", value_vars=[c for c in ("ours", "paper") if c in df], var_name="source",
                   value_name="errors").dropna()
    fig, ax = plt.subplots(figsize=(COLUMN_IN, 4.2))
    sns.barplot(data=long, x="method", y="errors", hue="source", ax=ax, palette=PALETTE)
    for p in ax.patches:
        h = p.get_height()
        if np.isfinite(h) and p.get_width() > 0:
            ax.annotate(fmt.format(h), (p.get_x() + p.get_width() / 2, h), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    ax.set_title(_wrap(title))
    fig.tight_layout()
    return fig


def network_layout(g, spacing: float = 1.0, radius: float = 0.28) -> dict:
    """Positions for a component-to-term graph: components on a grid (in number order), each one's own
    terms on a circle around it, a term shared by several components at their centroid (nudged)."""
    comps = sorted((n for n, d in g.nodes(data=True) if d.get("kind") == "component"),
                   key=lambda c: (len(str(c)), str(c)))
    ncols = max(1, int(np.ceil(np.sqrt(len(comps)))))
    pos = {c: np.array([(i % ncols) * spacing, -(i // ncols) * spacing]) for i, c in enumerate(comps)}
    shared_seen = 0
    for c in comps:
        own = [t for t in g.neighbors(c) if g.degree(t) == 1]
        for j, t in enumerate(own):
            angle = 2 * np.pi * j / max(len(own), 1) + np.pi / 2
            pos[t] = pos[c] + radius * np.array([np.cos(angle), np.sin(angle)])
    for t, d in g.nodes(data=True):
        if d.get("kind") == "term" and t not in pos:
            linked = [pos[c] for c in g.neighbors(t) if c in pos]
            centre = np.mean(linked, axis=0) if linked else np.zeros(2)
            shared_seen += 1
            pos[t] = centre + 0.12 * spacing * np.array([np.cos(shared_seen), np.sin(shared_seen)])
    return pos


def labelled_terms(g, max_labels: int = 15) -> list:
    """The terms of a component-to-term network that get a label: those linked to the most components
    first, then those with the smallest p-value on any link; at most ``max_labels``."""
    terms = [n for n, d in g.nodes(data=True) if d.get("kind") == "term"]

    def best_p(t):
        return min((d.get("p", 1.0) for _, _, d in g.edges(t, data=True)), default=1.0)

    return sorted(terms, key=lambda t: (-g.degree(t), best_p(t), str(t)))[:max_labels]


def component_network(g, title: str = "", seed: int = 0, label_width: int = 44, max_labels: int = 15):
    """Draw a component-to-term network (from :func:`cellbook.enrichment.component_term_network`) at the
    column's width.

    Components sit on a grid, each one's terms on a ring around it (:func:`network_layout`), so the
    clusters never pile up. At most ``max_labels`` terms (:func:`labelled_terms`) carry a number, and a key
    under the network names them; the chapter's term table lists every term. ``seed`` is kept for callers;
    the layout is deterministic.
    """
    comps = [n for n, d in g.nodes(data=True) if d.get("kind") == "component"]
    terms = [n for n, d in g.nodes(data=True) if d.get("kind") == "term"]
    if g.number_of_nodes() == 0:
        fig, ax = plt.subplots(figsize=(COLUMN_IN, 1.5))
        ax.text(0.5, 0.5, "no significant term", ha="center", va="center")
        ax.axis("off")
        ax.set_title(_wrap(title))
        return fig
    ncols = max(1, int(np.ceil(np.sqrt(len(comps)))))
    nrows = max(1, int(np.ceil(len(comps) / ncols)))
    shown = labelled_terms(g, max_labels)
    key_lines = int(np.ceil(len(shown) / 2))
    net_h = min(COLUMN_IN, max(2.6, COLUMN_IN * 0.82 * nrows / ncols))
    key_h = 0.2 * key_lines + 0.25 if shown else 0.05
    fig, (ax, key) = plt.subplots(2, 1, figsize=(COLUMN_IN, net_h + key_h + 0.4),
                                  gridspec_kw={"height_ratios": [net_h, key_h]})
    pos = network_layout(g)
    colors = sns.color_palette(PALETTE, 3)
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.3, width=0.8)
    nx.draw_networkx_nodes(g, pos, nodelist=comps, node_color=[colors[0]], node_size=520, ax=ax)
    nx.draw_networkx_nodes(g, pos, nodelist=terms, node_color=[colors[1]], node_size=22, node_shape="s", ax=ax)
    nx.draw_networkx_nodes(g, pos, nodelist=shown, node_color=[colors[2]], node_size=45, node_shape="s", ax=ax)
    nx.draw_networkx_labels(g, pos, labels={c: str(c) for c in comps}, font_size=8, font_weight="bold",
                            font_color="white", ax=ax)
    _number_terms(ax, g, pos, shown)
    xs = np.array([q[0] for q in pos.values()])
    ys = np.array([q[1] for q in pos.values()])
    ax.set_xlim(xs.min() - 0.45, xs.max() + 0.45)
    ax.set_ylim(ys.min() - 0.4, ys.max() + 0.4)
    ax.axis("off")
    note = (f"\n{len(comps)} components, {len(terms)} terms; the {len(shown)} numbered terms are named below"
            if shown else "")
    ax.set_title(_wrap(title) + note)
    _draw_key(key, g, shown, key_lines, label_width)
    fig.tight_layout()
    return fig


def _number_terms(ax, g, pos: dict, shown: list) -> None:
    """Number the ``shown`` terms of :func:`component_network`, each number set off its node away from the
    components it links to."""
    backing = {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    for i, t in enumerate(shown, 1):
        linked = [pos[c] for c in g.neighbors(t)]
        direction = pos[t] - np.mean(linked, axis=0) if linked else np.array([1.0, 0.0])
        norm = float(np.hypot(*direction)) or 1.0
        offset = 7 * direction / norm
        ax.annotate(str(i), pos[t], xytext=tuple(offset), textcoords="offset points", ha="center", va="center",
                    fontsize=8, fontweight="bold", bbox=backing)


def _draw_key(key, g, shown: list, half: int, label_width: int) -> None:
    """The key under :func:`component_network`: each numbered term, shortened, with its components, in two
    columns of ``half`` lines."""
    key.axis("off")
    for i, t in enumerate(shown):
        linked = sorted((str(c) for c in g.neighbors(t)), key=lambda c: (len(c), c))
        where = ", ".join(linked[:3]) + (f" +{len(linked) - 3}" if len(linked) > 3 else "")
        col, row = divmod(i, half)
        key.text(0.5 * col, 1 - (row + 0.5) / max(half, 1), f"{i + 1}. {short_term(t, label_width)} ({where})",
                 transform=key.transAxes, ha="left", va="center", fontsize=8)


def network_table(g, max_labels: int = 15) -> pd.DataFrame:
    """Every link of a component-to-term network as a table: component, the term's number in
    :func:`component_network`'s figure (missing when it is not numbered), the term, its overlap with the
    component's genes and the link's adjusted p-value; components in number order, smallest p first."""
    number = {t: i for i, t in enumerate(labelled_terms(g, max_labels), 1)}
    rows = []
    for u, v, d in g.edges(data=True):
        comp, term = (u, v) if g.nodes[u].get("kind") == "component" else (v, u)
        rows.append({"component": str(comp), "no.": number.get(term), "term": short_term(term, 80),
                     "genes in common": d.get("k"), "p (adjusted)": d.get("p")})
    df = pd.DataFrame(rows, columns=["component", "no.", "term", "genes in common", "p (adjusted)"])
    order = df["component"].str.extract(r"(\d+)$")[0].astype(float)
    return (df.assign(_c=order).sort_values(["_c", "component", "p (adjusted)"]).drop(columns="_c")
            .reset_index(drop=True))


def show_networks(networks: dict, max_labels: int = 15) -> None:
    """III.6: display each component-to-term network (``{label: (graph, Bonferroni cut-off)}``) at the
    column's width (:func:`component_network`), each followed by a folded table of every link
    (:func:`network_table`). In a notebook; returns nothing."""
    for label, (g, cut) in networks.items():
        fig = component_network(g, title=f"{label}: terms enriched in each code component "
                                         f"(Bonferroni ≤ {cut:g})", max_labels=max_labels)
        display(fig)
        plt.close(fig)
        links = network_table(g, max_labels).rename(columns={"p (adjusted)": "p (Bonferroni)"})
        display(collapsible(links, f"{label}: every link of the network", index=False))


def ae_vs_pca(final: pd.DataFrame, autoencoder: str, title: str = "", x: str = "code"):
    """III.2: the autoencoder's last-epoch test MSE and PCA's at the same dimension, by code size
    (``final``: :func:`cellbook.sweeps.final_summary`); ``autoencoder`` labels the first line."""
    long = final.melt(id_vars=x, value_vars=["test_mse_mean", "pca_mse_mean"], var_name="method", value_name="mse")
    long["method"] = long["method"].map({"test_mse_mean": autoencoder, "pca_mse_mean": "PCA, same dimension"})
    return curves(long, x=x, y="mse", hue="method", logy=True, xlabel="code size",
                  ylabel="test MSE (mean over folds)", title=_wrap(title, 70))


def noise_sweep(summary: pd.DataFrame, runs: pd.DataFrame, models, control: str, title: str = "",
                x: str = "test noise SD", xlabel: str = "test-noise SD (genes scaled to [0, 1])"):
    """III.7: accuracy as test noise grows (left) and each model's difference from the ``control`` (right).

    ``summary``: accuracy mean / SE per (``model``, ``x``) (:func:`cellbook.metrics.summarize`); ``runs``:
    the scores per fold it summarises, from which each model's accuracy minus the control's is taken
    fold by fold (:func:`cellbook.sweeps.paired_differences`, mean and SE over folds). ``models`` names
    the models in drawing order (the control among them). Each model has its own colour, marker and
    line style; the right panel draws a band of ± one SE around each difference and the control as the
    zero line."""
    differences = paired_differences(runs, control, x=x)
    n_folds = runs["fold"].nunique() if "fold" in runs else None
    styles = dict(zip(models, zip(sns.color_palette(PALETTE, len(models)), ("o", "s", "^", "D", "v"),
                                  ("-", "--", ":", "-.", (0, (5, 1))))))
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 3.9))
    ax = axes[0]
    for m in models:
        g = summary[summary["model"] == m].sort_values(x)
        color, marker, ls = styles[m]
        ax.errorbar(g[x], g["accuracy_mean"], yerr=g["accuracy_se"], color=color, marker=marker, ls=ls, ms=5,
                    capsize=2, label=m)
    ax.set_ylabel("accuracy (mean ± SE)")
    ax.set_title(f"accuracy{f' ({n_folds} folds)' if n_folds else ''}", fontsize=10)
    ax = axes[1]
    ax.axhline(0, color=styles[control][0], ls=styles[control][2], lw=1.5)   # the control itself
    for m in models:
        if m == control:
            continue
        g = differences[differences["model"] == m].sort_values(x)
        color, marker, ls = styles[m]
        se = g["difference_se"].fillna(0)
        ax.fill_between(g[x], g["difference_mean"] - se, g["difference_mean"] + se, color=color, alpha=0.2, lw=0)
        ax.plot(g[x], g["difference_mean"], color=color, marker=marker, ls=ls, ms=5)
    ax.set_ylabel("minus the control (± SE)")
    ax.set_title("difference from the control", fontsize=10)
    ticks = sorted(summary[x].unique())
    for ax in axes:
        ax.set_xscale("symlog", linthresh=max(min((t for t in ticks if t > 0), default=0.1), 1e-3))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(_wrap(title), fontweight="bold")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def accuracy_points(df: pd.DataFrame, x: str = "accuracy_mean", err: str = "accuracy_se", label: str = "group",
                    title: str = "", reference: dict | None = None, xlabel: str = "accuracy (mean ± SE)"):
    """Points with error bars on a zoomed linear axis (differences near 100% stay visible)."""
    d = df.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(COLUMN_IN * 0.9, max(2.8, 0.42 * len(d) + 1.2)))
    colors = sns.color_palette(PALETTE, len(d))
    for i, r in d.iterrows():
        ax.errorbar(r[x], i, xerr=r[err] if err and np.isfinite(r[err]) else None, fmt="o", color=colors[i], capsize=3)
        ax.annotate(f"{r[x]:.3f}", (r[x], i), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    for name, value in (reference or {}).items():
        ax.axvline(value, ls="--", lw=1, color="0.3")
        ax.annotate(name, (value, len(d) - 0.5), fontsize=8, color="0.3", xytext=(3, 0), textcoords="offset points")
    ax.set_yticks(range(len(d)), d[label])
    ax.set_ylim(-0.6, len(d) - 0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def rep_vs_gep(gep, rep, sample: int | None = None, title: str = ""):
    """Reproduced against original expression (the paper's Fig. 2d).

    gep, rep : ``(n_samples, n_genes)`` originals and their reproductions. Left: every gene of one sample
    (``sample``; default the one with the median Pearson r), with the identity line; right: every
    (sample, gene) pair of the set as a 2-D histogram. Each panel gives Pearson's r.
    """
    gep, rep = np.asarray(gep, dtype=float), np.asarray(rep, dtype=float)
    if gep.shape != rep.shape or gep.ndim != 2:
        raise ValueError(f"gep and rep must be matrices of the same shape, got {gep.shape} and {rep.shape}")
    r_each = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(gep, rep)])
    if sample is None:
        sample = int(np.argsort(r_each)[len(r_each) // 2])
    lo, hi = float(min(gep.min(), rep.min())), float(max(gep.max(), rep.max()))
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 3.9))
    ax = axes[0]
    ax.scatter(gep[sample], rep[sample], s=4, alpha=0.5, color=sns.color_palette(PALETTE, 1)[0], linewidths=0)
    ax.set_title(f"one test sample (#{sample}):\nr = {r_each[sample]:.3f}", fontsize=10)
    ax = axes[1]
    h = ax.hist2d(gep.ravel(), rep.ravel(), bins=80, range=[[lo, hi], [lo, hi]], cmap="viridis", cmin=1,
                  norm=plt.matplotlib.colors.LogNorm())
    fig.colorbar(h[3], ax=ax, label="(sample, gene) pairs")
    ax.set_title(f"all {len(gep)} test samples: r = {np.corrcoef(gep.ravel(), rep.ravel())[0, 1]:.3f}\n"
                 f"(per sample, median {np.median(r_each):.3f})", fontsize=10)
    for ax in axes:
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("original expression (GEP)")
        ax.set_ylabel("reproduced expression (REP)")
    fig.suptitle(_wrap(title))
    fig.tight_layout()
    return fig
