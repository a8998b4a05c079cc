"""Part I figures: drawn at the book's column width, text readable, legends never on top of the data."""
import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cellbook import plots  # noqa: E402
from cellbook.plots import scrna as p1plots  # noqa: E402

LABELS = ["HSC", "Prog", "GMP", "ProMono", "Mono", "cDC", "pDC", "earlyEry", "lateEry", "ProB", "B", "Plasma",
          "T", "CTL", "NK"]


def _fits_the_column(fig):
    """Drawn at most one column wide (never shrunk by the browser), no text under the book's minimum."""
    fig.canvas.draw()
    assert fig.get_size_inches()[0] <= plots.COLUMN_IN + 1e-6
    bbox = fig.get_tightbbox(fig.canvas.get_renderer())
    assert bbox.width <= plots.COLUMN_IN + 0.15, f"drawn {bbox.width:.2f} in wide"
    assert plots.min_text_px(fig) >= round(plots.MIN_FONT_PT * plots.DPI / 72, 2)


def _history():
    return pd.DataFrame({"epoch": range(1, 10), "train_loss": np.linspace(2, 0.4, 9),
                         "val_loss": [2.2, 1.6, 1.27, 1.26, 1.14, 1.126, 1.197, 1.16, 1.18],
                         "val_accuracy": [.39, .56, .62, .59, .61, .634, .642, .597, .619]})


def test_umap_panels_one_figure_per_key_with_readable_legends():
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((60, 2), dtype=np.float32))
    a.obsm["X_umap"] = rng.normal(size=(60, 2))
    a.obs["true"] = pd.Categorical(rng.choice([f"type{i}" for i in range(15)], 60))
    a.obs["correct"] = np.where(rng.random(60) < 0.8, "correct", "wrong")
    figs = p1plots.umap_panels(a, keys=("true", "correct"), titles=("true type", "correct / wrong"),
                               title="Fig. 2 — UMAP of 60 test cells")
    assert len(figs) == 2 and all(len(f.axes) == 1 for f in figs)     # several figures, not one tall one
    assert figs[0].get_suptitle().startswith("Fig. 2") and not figs[1].get_suptitle()
    for fig in figs:
        _fits_the_column(fig)
        assert all(t.get_fontsize() >= 9 for t in fig.axes[0].get_legend().get_texts())
        plt.close(fig)
    with pytest.raises(ValueError, match="umap"):
        p1plots.umap_panels(ad.AnnData(np.zeros((3, 2), dtype=np.float32)))


def test_model_comparison_legend_sits_under_the_bars():
    summary = pd.DataFrame({"model": ["MLP", "CNN", "kNN on PCA"], "accuracy_mean": [0.75, 0.7, 0.63],
                            "accuracy_sd": [0.01, 0.02, 0.01], "f1_macro_mean": [0.7, 0.6, 0.55],
                            "f1_macro_sd": [0.01, 0.02, 0.02]})
    fig = p1plots.model_comparison(summary, paper={"MLP": 0.7651})
    _fits_the_column(fig)
    ax = fig.axes[0]
    legend = fig.legends[0]
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0 + 1   # under the plotting area
    assert {t.get_text() for t in legend.get_texts()} == {"accuracy", "macro-F1", "paper (accuracy)"}
    plt.close(fig)


def test_training_curve_marks_the_kept_epoch_not_the_best_accuracy():
    h = _history()
    assert p1plots.best_epoch_of(h) == 6                   # lowest validation loss; best accuracy is epoch 7
    fig = p1plots.training_curve(h, title="CNN")
    _fits_the_column(fig)
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert [ln.get_xdata()[0] for ln in lines] == [6]
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "epoch 6" in texts and "0.642" not in texts
    assert "kept: epoch 6" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    fig = p1plots.training_curve(h, best_epoch=3)           # the trainer's own choice wins
    assert [ln.get_xdata()[0] for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"] == [3]
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        p1plots.training_curve(pd.DataFrame())


def test_split_comparison_panels_have_their_own_titles_and_labels():
    rng = np.random.default_rng(1)
    rows = [{"model": m, "split_kind": k, "accuracy": rng.uniform(.6, .8), "f1_macro": rng.uniform(.5, .7)}
            for m in ("Logistic regression (tuned)", "Stacked ensemble", "CNN") for k in ("random", "held-out")
            for _ in range(2)]
    fig = p1plots.split_comparison(pd.DataFrame(rows), x="split_kind", title="Random vs held-out")
    _fits_the_column(fig)
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "macro-F1"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy", "macro-F1"]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    assert all(t.get_fontsize() >= 9 for t in fig.legends[0].get_texts())
    plt.close(fig)


def test_every_other_part1_figure_fits_the_column():
    rng = np.random.default_rng(2)
    cm = pd.DataFrame(rng.dirichlet(np.ones(15), 15), index=pd.Index(LABELS, name="true"),
                      columns=pd.Index(LABELS, name="predicted"))
    long = "Fig. 1 — Regularised MLP ensemble: per-type accuracy, rows sum to 1 (overall 0.768, macro-F1 0.720)"
    obs = pd.DataFrame({"total_counts": rng.lognormal(7, .5, 200), "n_genes_by_counts": rng.lognormal(6, .4, 200),
                        "condition": rng.choice(["AML_diagnosis", "healthy"], 200)})
    figs = [p1plots.per_type_heatmap(cm, title=long), p1plots.qc_histograms(obs, hue="condition"),
            p1plots.attention_bars(rng.random(10) / 5, 50, title="attention per chunk")]
    for fig in figs:
        _fits_the_column(fig)
        plt.close(fig)
    assert "\n" in p1plots.wrap_title(long) and p1plots.wrap_title("") == ""
