"""Part II figures: drawn for the book's column, captions of one row never hide under the row above, and the
helpers that prepare what they show."""
import matplotlib
import numpy as np
import pytest

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


def _widths_and_text(fig):
    from cellbook import plots

    w, _ = fig.get_size_inches()
    return w, plots.min_text_px(fig)


def test_part2_figures_are_drawn_for_the_column_with_readable_text():
    """Every Part II figure is drawn at the book's column width (never shrunk by the browser) and carries no
    text below plots.MIN_FONT_PT."""
    import pandas as pd

    from cellbook import plots

    min_px = plots.MIN_FONT_PT * plots.DPI / 72
    rng = np.random.default_rng(0)
    steps = {f"step {i}": rng.integers(0, 255, (220, 300), dtype=np.uint8) for i in range(7)}
    tiles = [rng.integers(0, 255, (384, 512, 3), dtype=np.uint8) for _ in range(16)]
    labels = np.array(["early_P2"] * 8 + ["late_P6_P7"] * 8)
    grid = pd.DataFrame([{"ws": ws, "ssn": k, "fold": f, "accuracy": rng.uniform(0.5, 0.7)}
                         for ws in (1, 5, 9, 13) for k in (2, 8, 12, 16) for f in range(3)])
    summary = pd.DataFrame({"model": ["SCNN (separable)"] * 3 + ["hand-crafted + LR"] * 3,
                            "size": [20, 60, 100] * 2, "accuracy_mean": rng.uniform(0.5, 0.8, 6),
                            "accuracy_sd": rng.uniform(0.01, 0.1, 6)})
    mosaic = rng.integers(0, 255, (440, 600), dtype=np.uint8)
    frames = {f"P2-{i}.tif (early_P2)": {"image": mosaic, "rows": [0, 0, 1, 1], "cols": [0, 1, 0, 1],
                                         "maps": {"truth": [1, 1, 1, 1], "SCNN (separable)": [0.9, 0.8, 0.4, 0.7],
                                                  "hand-crafted + LR": [0.5] * 4, "brightness only + LR": [0.2] * 4}}
              for i in range(4)}
    figs = {
        "pipeline": pim.pipeline_figure(steps, title="Preprocessing chain on P6-12.tif"),
        "bands": pim.pipeline_figure({f"gradmag_s{i}": v for i, v in enumerate(steps.values())}, title="bands",
                                     ncols=5, details=False),
        "grid": pim.example_grid(tiles, labels, captions=[f"P{i}.tif" for i in range(16)], title="tiles"),
        "heatmap": pim.ssn_heatmap(grid, paper_best=(9, 12)),
        "curves": pim.learning_curves(summary, chance=0.53, paper={"SCNN (separable)": {100: (0.8956, 0.0309)}}),
        "maps": pim.classification_maps(frames, positive="early_P2", title="maps"),
    }
    for name, fig in figs.items():
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        titles = [ax.title.get_window_extent(r) for ax in fig.axes if ax.title.get_text()]
        for a in titles:      # panel titles of one row never run into each other
            for b in titles:
                if a is not b and abs(a.y0 - b.y0) < 1 and a.x0 < b.x0:
                    assert a.x1 <= b.x0 + 0.5, (name, a, b)
        width, small = _widths_and_text(fig)
        assert abs(width - plots.COLUMN_IN) < 1e-6, (name, width)
        assert small is not None and small >= min_px - 1e-6, (name, small)
        plt.close(fig)


def test_pipeline_figure_rows_and_empty_panels():
    imgs = {f"s{i}": np.full((10, 20), 10 * i, np.uint8) for i in range(6)}
    fig = pim.pipeline_figure(imgs, ncols=4)
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 8 and len(shown) == 6
    assert shown[0].get_title().startswith("s0\n10x20 px, mean 0")
    plt.close(fig)
    with pytest.raises(ValueError, match="no images"):
        pim.pipeline_figure({})


def test_band_images_stretch_each_band_for_display_only():
    rng = np.random.default_rng(1)
    stack = np.stack([rng.normal(0, 1, (12, 16)), rng.normal(100, 5, (12, 16))], axis=-1).astype(np.float32)
    before = stack.copy()
    bands = pim.band_images(stack, ["a", "b"])
    assert list(bands) == ["a", "b"]
    for img in bands.values():
        assert img.dtype == np.uint8 and img.shape == (12, 16) and img.min() == 0 and img.max() == 255
    np.testing.assert_array_equal(stack, before)
    with pytest.raises(ValueError, match="stack"):
        pim.band_images(stack, ["a"])


def test_choose_frames_and_map_frames():
    import pandas as pd

    labels = np.array(["a"] * 12 + ["b"] * 12)
    groups = np.repeat([f"f{i}" for i in range(6)], 4)
    chosen = pim.choose_frames(labels, groups, per_class=2, seed=0)
    assert len(chosen) == 4 and set(chosen[:2]) <= {"f0", "f1", "f2"} and set(chosen[2:]) <= {"f3", "f4", "f5"}
    assert chosen == pim.choose_frames(labels, groups, per_class=2, seed=0)   # seeded
    tiles = [np.full((4, 6), i, np.uint8) for i in range(24)]
    meta = pd.DataFrame({"tile_row": [0, 0, 1, 1] * 6, "tile_col": [0, 1, 0, 1] * 6})
    score = np.linspace(0, 1, 24)
    frames = pim.map_frames(tiles, labels, groups, meta, ["f1"], {"truth": (labels == "a").astype(int), "m": score})
    (name, f), = frames.items()
    assert name == "f1 (a)" and f["image"].shape == (8, 12) and f["image"][7, 11] == 7
    np.testing.assert_allclose(f["maps"]["m"], score[4:8])
    assert list(f["maps"]["truth"]) == [1, 1, 1, 1]
    assert pim.map_frames(tiles, labels, groups, meta[["tile_row"]], ["f1"], {"m": score}) == {}
