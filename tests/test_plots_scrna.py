"""Part I figures: legends readable at page width and never on top of the data."""
import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cellbook.plots import scrna as p1plots  # noqa: E402


def test_umap_panels_one_per_row_with_readable_legends():
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((60, 2), dtype=np.float32))
    a.obsm["X_umap"] = rng.normal(size=(60, 2))
    a.obs["true"] = pd.Categorical(rng.choice([f"type{i}" for i in range(15)], 60))
    a.obs["correct"] = np.where(rng.random(60) < 0.8, "correct", "wrong")
    fig = p1plots.umap_panels(a, keys=("true", "correct"))
    axes = fig.axes
    assert len(axes) == 2
    assert axes[0].get_position().y0 > axes[1].get_position().y1          # stacked, not side by side
    for ax in axes:
        assert all(t.get_fontsize() >= 10 for t in ax.get_legend().get_texts())
    with pytest.raises(ValueError, match="umap"):
        p1plots.umap_panels(ad.AnnData(np.zeros((3, 2), dtype=np.float32)))
    plt.close(fig)


def test_model_comparison_legend_sits_beside_the_bars():
    summary = pd.DataFrame({"model": ["MLP", "CNN", "kNN on PCA"], "accuracy_mean": [0.75, 0.7, 0.63],
                            "accuracy_sd": [0.01, 0.02, 0.01], "f1_macro_mean": [0.7, 0.6, 0.55],
                            "f1_macro_sd": [0.01, 0.02, 0.02]})
    fig = p1plots.model_comparison(summary, paper={"MLP": 0.7651})
    fig.canvas.draw()
    ax = fig.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1 - 1   # right of the plotting area: covers no bar
    plt.close(fig)
