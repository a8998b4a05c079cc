"""Part II figures: captions of one row never hide under the row above."""
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cellbook.plots import imaging as pim  # noqa: E402


def test_example_grid_two_line_captions_do_not_overlap():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (384, 512, 3), dtype=np.uint8) for _ in range(16)]
    labels = np.array(["early_P2"] * 8 + ["late_P6_P7"] * 8)
    fig = pim.example_grid(imgs, labels, captions=[f"P{i}-1{i}.tif" for i in range(16)], title="raw tiles")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    top_row, second_row = fig.axes[:4], fig.axes[4:8]
    for upper, lower in zip(top_row, second_row):
        assert lower.title.get_window_extent(r).y1 <= upper.get_window_extent(r).y0
    plt.close(fig)


def test_log_axes_label_plain_numbers_inside_a_narrow_range():
    import pandas as pd

    from cellbook.plots import curves, readable_log_axis

    df = pd.DataFrame({"epoch": range(1, 21), "mse": np.linspace(1.6, 1.2, 20), "se": 0.01})
    fig = curves(df, x="epoch", y="mse", err="se", hue=None, logy=True)
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    inside = [t for t in ax.get_yticks() if lo <= t <= hi]
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(inside) >= 3, f"ticks {ax.get_yticks()} in range {lo:.2f}-{hi:.2f}"
    assert labels and not any("10^" in s or "times" in s or "×" in s for s in labels), labels
    fig2, ax2 = plt.subplots()
    ax2.plot([1, 2], [0.001, 50])
    ax2.set_yscale("log")
    readable_log_axis(ax2, "y")
    fig2.canvas.draw()
    assert all("×" not in t.get_text() and "10^" not in t.get_text() for t in ax2.get_yticklabels())
    plt.close(fig), plt.close(fig2)


def test_frame_mosaic_and_classification_maps():
    tiles = [np.full((4, 6), v, dtype=np.uint8) for v in (10, 20, 30, 40)]
    mosaic = pim.frame_mosaic(tiles, rows=[0, 0, 1, 1], cols=[0, 1, 0, 1])
    assert mosaic.shape == (8, 12) and mosaic[0, 0] == 10 and mosaic[0, 11] == 20 and mosaic[7, 0] == 30
    frames = {"P2-1.tif": {"image": mosaic, "rows": [0, 0, 1, 1], "cols": [0, 1, 0, 1],
                           "maps": {"truth": [1, 1, 1, 1], "SCNN": [0.9, 0.8, 0.4, 0.7]}}}
    fig = pim.classification_maps(frames, positive="early_P2")
    ax = fig.axes[1]
    assert sorted(t.get_text() for t in ax.texts) == ["0.40", "0.70", "0.80", "0.90"]
    plt.close(fig)


def test_learning_curves_mark_the_papers_values():
    import pandas as pd

    summary = pd.DataFrame({"model": ["SCNN"] * 3, "size": [20, 60, 100], "accuracy_mean": [0.6, 0.7, 0.75],
                            "accuracy_sd": [0.05, 0.04, 0.03]})
    fig = pim.learning_curves(summary, paper={"SCNN": {100: (0.8956, 0.0309)}})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["SCNN", "SCNN, paper"]
    plt.close(fig)
