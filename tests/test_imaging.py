"""cellbook.preprocess.imaging: each step on small made-up images with known results."""
import numpy as np
import pytest

from cellbook.preprocess import imaging as im


def test_to_gray8_from_colour_16bit_float_bool():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255                                  # pure red in OpenCV's BGR order
    g = im.to_gray8(bgr)
    assert g.shape == (4, 5) and g.dtype == np.uint8
    assert abs(int(g[0, 0]) - 76) <= 1                 # 0.299 * 255
    assert im.to_gray8(np.full((3, 3), 65535, np.uint16)).max() == 255
    assert im.to_gray8(np.full((3, 3), 257 * 100, np.uint16))[0, 0] == 100
    assert im.to_gray8(np.full((3, 3), 0.5))[0, 0] == 128
    assert im.to_gray8(np.ones((2, 2), bool))[0, 0] == 255
    assert im.to_gray8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5)   # BGRA


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        im.to_gray8(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="None"):
        im.to_gray8(None)
    with pytest.raises(ValueError, match="shape"):
        im.to_gray8(np.zeros((3, 3, 2), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        im.to_gray8(np.full((3, 3), np.nan))


def test_hsv_value_and_brightness_check():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 200                                   # V = max(B, G, R) = 200
    assert im.hsv_value(bgr) == pytest.approx(200)
    assert im.hsv_value(np.full((2, 2), 17, np.uint8)) == pytest.approx(17)
    imgs = [np.full((4, 4), 250, np.uint8), np.full((4, 4), 100, np.uint8), np.full((4, 4), 240, np.uint8)]
    keep, v = im.brightness_check(imgs, 240)
    assert keep.tolist() == [False, True, True]
    assert v.tolist() == [250, 100, 240]


def test_normalize_brightness_reaches_target():
    rng = np.random.default_rng(0)
    g = rng.integers(10, 60, size=(50, 60)).astype(np.uint8)       # dark image, mean ~35
    out = im.normalize_brightness(g, 130)
    assert abs(out.mean() - 130) < 1.5
    assert np.corrcoef(out.ravel(), g.ravel())[0, 1] > 0.99       # a gain, not a shuffle
    assert (im.normalize_brightness(np.zeros((3, 3), np.uint8), 130) == 130).all()   # constant image
    with pytest.raises(ValueError, match="target"):
        im.normalize_brightness(g, 300)


def test_resize_median_contrast_equalize():
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    assert im.resize(g, (220, 300)).shape == (220, 300)
    assert im.resize(g, (3, 4)).shape == (3, 4)
    with pytest.raises(ValueError, match="size"):
        im.resize(g, (0, 4))
    noisy = np.full((9, 9), 100, np.uint8)
    noisy[4, 4] = 255                                              # salt pixel
    assert im.median_denoise(noisy, 3)[4, 4] == 100
    assert (im.median_denoise(noisy, 1) == noisy).all()
    with pytest.raises(ValueError, match="odd"):
        im.median_denoise(noisy, 4)
    low = np.linspace(100, 150, 100).astype(np.uint8).reshape(10, 10)
    st = im.enhance_contrast(low, 0, 100)
    assert st.min() == 0 and st.max() == 255
    eq = im.equalize(low, "global")
    assert eq.max() == 255 and eq.min() < 10
    cl = im.equalize(low, "clahe")
    assert cl.shape == low.shape and cl.std() > low.std()
    assert (im.equalize(low, None) == low).all()
    with pytest.raises(ValueError, match="method=.magic. is not valid"):
        im.equalize(low, "magic")


def test_preprocess_set_counts_removed_images():
    rng = np.random.default_rng(1)
    normal = rng.integers(20, 80, size=(30, 40)).astype(np.uint8)
    colour16 = (rng.integers(0, 20000, size=(50, 30, 3))).astype(np.uint16)   # other size and depth
    white = np.full((30, 40), 255, np.uint8)                                   # all white: dropped
    flat = np.full((30, 40), 90, np.uint8)                                     # no contrast: dropped
    with pytest.warns(UserWarning, match="1 of 3 image"):     # 50 x 30 stretched to 22 x 30
        X, keep, report = im.preprocess_set([normal, colour16, white, flat], size=(22, 30), median_ksize=3)
    assert X.shape == (2, 22, 30) and X.dtype == np.uint8
    assert keep.tolist() == [True, True, False, False]
    assert report["removed"].tolist() == [0, 1, 0, 1]
    assert report["out"].iloc[-1] == 2
    with pytest.raises(ValueError, match="no images"):
        im.preprocess_set([])


def test_pipeline_steps_order():
    g = np.random.default_rng(0).integers(0, 60, size=(40, 50)).astype(np.uint8)
    steps = im.pipeline_steps(g, size=(22, 30))
    names = list(steps)
    assert names[0] == "original" and names[1] == "8-bit grayscale"
    assert steps[names[2]].mean() == pytest.approx(130, abs=1.5)
    assert steps[names[-1]].shape == (22, 30)


def test_features():
    img = np.full((60, 80), 40, np.uint8)
    import cv2
    for x in (15, 40, 65):
        cv2.circle(img, (x, 30), 8, 220, -1)
    f = im.handcrafted_features([img])
    assert f.shape[0] == 1 and f.shape[1] >= 20
    assert f.loc[0, "objects_per_10k_px"] == pytest.approx(3 / (60 * 80) * 1e4)
    assert 0.8 < f.loc[0, "circularity_mean"] <= 1.0
    assert f.filter(like="lbp_").sum(axis=1).iloc[0] == pytest.approx(1.0)
    flat = im.glcm_features(np.full((10, 10), 77, np.uint8))
    assert flat["glcm_contrast"] == 0 and flat["glcm_energy"] == pytest.approx(1.0)
    b = im.brightness_features([np.full((4, 4), 10, np.uint8), np.full((4, 4, 3), 30, np.uint8)])
    assert b["mean_gray"].tolist() == [10, 30] and b["mean_v"].tolist() == [10, 30]


def test_feature_classifier_learns():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (30, 3)), rng.normal(2, 1, (30, 3))]
    y = np.repeat([0, 1], 30)
    assert im.feature_classifier().fit(X, y).score(X, y) > 0.85


def test_plots_imaging_smoke():
    import matplotlib.pyplot as plt
    import pandas as pd

    from cellbook.plots import imaging as pim

    g = np.random.default_rng(0).integers(0, 60, size=(40, 50)).astype(np.uint8)
    fig = pim.pipeline_figure(im.pipeline_steps(g, size=(22, 30)))
    assert len([a for a in fig.axes if a.images]) == 7
    grid = pd.DataFrame({"ws": [1, 1, 3, 3], "ssn": [2, 4, 2, 4], "fold": 0, "accuracy": [0.5, 0.5, 0.6, 0.7]})
    fig2 = pim.ssn_heatmap(grid, paper_best=(3, 2))
    assert "WS=3, SSN=4" in fig2.axes[0].get_title()
    summ = pd.DataFrame({"model": ["a", "a", "b", "b"], "size": [10, 20, 10, 20],
                         "accuracy_mean": [0.5, 0.6, 0.55, 0.7], "accuracy_sd": [0.1, 0.1, 0.05, 0.05]})
    fig3 = pim.learning_curves(summ, chance=0.5)
    assert len(fig3.axes[0].get_legend().get_texts()) == 2
    plt.close("all")


def test_chain_on_real_tiles(data_root):
    from cellbook.datasets import images as dsi

    folder = data_root / "stemcell_passage_phase"
    if not folder.is_dir():
        pytest.skip(f"stemcell_passage_phase is not in the real-data folder {data_root}")
    ims = dsi.stemcell_passage(path=folder)
    pick = [0, 1, len(ims) - 1]
    raw = [ims.images[i] for i in pick]
    X, keep, report = im.preprocess_set(raw)
    assert X.shape == (3, 220, 300) and keep.all()
    assert report["removed"].sum() == 0                      # no tile is over-exposed (mean V < 240)
    b = im.brightness_features(raw)
    assert (b["mean_gray"] < 100).all()                      # dark phase-contrast fields
    steps = im.pipeline_steps(raw[0])
    assert abs(list(steps.values())[2].mean() - 130) < 2     # brightness normalised to ~130


def test_images_outside_0_255_are_scaled_by_their_range_not_clipped():
    a = np.linspace(0, 1000, 100).reshape(10, 10)
    with pytest.warns(UserWarning, match=r"values from 0 to 1000 \(outside 0\.\.255\) was scaled by its range"):
        u = im.to_uint8(a)
    assert u.min() == 0 and u.max() == 255 and (u == 255).mean() == 0.01     # clipping would saturate 75 %
    with pytest.warns(UserWarning, match="scaled by its range"):
        assert im.to_uint8(np.array([[-5, 5]], np.int32)).tolist() == [[0, 255]]
    assert im.to_uint8(np.array([[0, 3.4], [200, 255.0]])).tolist() == [[0, 3], [200, 255]]   # within 0..255: kept


def test_complex_images_and_an_emptied_set_are_errors():
    with pytest.raises(ValueError, match="expected real numbers"):
        im.to_uint8(np.ones((4, 4), complex))
    with pytest.raises(ValueError, match=r"every one of the 2 images was removed: 2 by the brightness check"):
        im.preprocess_set([np.full((30, 30), 255, np.uint8)] * 2)
