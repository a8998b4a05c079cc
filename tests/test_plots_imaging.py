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
