"""cellbook.preprocess.spectral: stack definition, SSCD and SSN selection on hand-checked examples."""
import numpy as np
import pytest

from cellbook.preprocess import spectral as sp


def test_spectral_stack_bands():
    g = np.zeros((20, 24), np.uint8)
    g[8:12, 10:14] = 200
    st = sp.spectral_stack(g)
    assert st.shape == (20, 24, 10) and st.dtype == np.float32
    assert len(sp.band_names()) == 10
    assert st[0, 0, 0] == 0 and st[10, 11, 0] == pytest.approx(200 / 255)     # band 0 = intensity
    assert st[..., 7:].max() > 0                                              # edges respond
    stz = sp.spectral_stack(g, standardize=True)
    assert np.allclose(stz.mean(axis=(0, 1)), 0, atol=1e-5)
    assert sp.stack_images(np.stack([g, g])).shape == (2, 10, 20, 24)
    with pytest.raises(ValueError, match="2-D"):
        sp.spectral_stack(np.zeros((3, 3, 3)))


def test_sscd_hand_checked():
    # one band: value 0 everywhere except a 1 at (2, 2); patch radius 0 -> pure pixel distance
    s = np.zeros((5, 5, 1))
    s[2, 2, 0] = 1.0
    # spectral part |1 - 0| = 1; spatial part 0.5 * 1 / r with r = (3 - 1) / 2 = 1
    assert sp.sscd(s, (2, 2), (2, 3), ws=3, patch_radius=0, spatial_weight=0.5) == pytest.approx(1.5)
    assert sp.sscd(s, (0, 0), (0, 2), ws=5, patch_radius=0, spatial_weight=0.5) == pytest.approx(0.5)
    # patch radius 1: the 3x3 patches of (1,1) and (1,3) see the 1 at different offsets:
    # two of the nine offsets differ by 1 -> sqrt(2 / 9); spatial 0.5 * 2 / 1
    d = sp.sscd(s, (1, 1), (1, 3), ws=3, patch_radius=1, spatial_weight=0.5)
    assert d == pytest.approx(np.sqrt(2 / 9) + 1.0)
    assert sp.sscd(s, (1, 1), (1, 1), ws=3) == 0
    with pytest.raises(ValueError, match="odd"):
        sp.sscd(s, (0, 0), (1, 1), ws=4)
    with pytest.raises(ValueError, match="outside"):
        sp.sscd(s, (0, 0), (9, 1))


def test_select_ssn_hand_checked():
    s = np.zeros((7, 7, 1))
    s[3, 4, 0] = 0.1          # right neighbour: nearly the same as the centre (value 0.1 vs 0)?
    s[3, 3, 0] = 0.1          # centre
    s[2, 3, 0] = 5.0          # upper neighbour: very different
    coords, dist = sp.select_ssn(s, [(3, 3)], ws=3, k=2, patch_radius=0, spatial_weight=0.0)
    assert coords.shape == (1, 2, 2)
    assert tuple(coords[0, 0]) == (3, 4)                  # identical value -> distance 0, chosen first
    assert dist[0, 0] == pytest.approx(0.0)
    assert (2, 3) not in [tuple(c) for c in coords[0]]    # the outlier is never among the 2 nearest
    # with a spatial weight, among equal spectra the 4-neighbours (distance 1) beat the diagonals
    flat = np.zeros((7, 7, 1))
    c2, d2 = sp.select_ssn(flat, [(3, 3)], ws=3, k=4, patch_radius=0, spatial_weight=1.0)
    assert sorted(map(tuple, c2[0])) == [(2, 3), (3, 2), (3, 4), (4, 3)]
    assert np.allclose(d2, 1.0)
    # WS = 1 has no neighbours; k is capped at WS^2 - 1
    assert sp.select_ssn(flat, [(3, 3)], ws=1, k=5)[0].shape == (1, 0, 2)
    assert sp.select_ssn(flat, [(3, 3)], ws=3, k=16)[0].shape == (1, 8, 2)
    # border: window positions outside the image reflect back inside
    cb, _ = sp.select_ssn(flat, [(0, 0)], ws=5, k=24, patch_radius=0)
    assert cb.min() >= 0 and cb.max() < 7


def test_enlarge_labels_and_origin():
    s = np.random.default_rng(0).normal(size=(9, 9, 3)).astype(np.float32)
    X, y, origin = sp.enlarge(s, [(4, 4), (2, 6)], np.array([0, 1]), ws=3, k=4)
    assert X.shape == (2 + 2 * 4, 3)
    assert y.tolist() == [0, 1] + [0] * 4 + [1] * 4
    assert origin.tolist() == [0, 1] + [0] * 4 + [1] * 4
    assert np.allclose(X[0], s[4, 4])


def test_ssn_grid_runs_and_is_grouped():
    rng = np.random.default_rng(0)
    stacks = rng.normal(size=(12, 16, 16, 2)).astype(np.float32)
    stacks[6:, :, :, 0] += 1.5                       # class 1 brighter in band 0
    labels = np.repeat(["a", "b"], 6)
    groups = np.repeat(np.arange(6), 2).astype(str)
    res = sp.ssn_grid(stacks, labels, groups, ws_values=(1, 3), ssn_values=(2, 4), n_pixels=10, n_splits=3)
    assert len(res) == 2 * 2 * 3
    assert res["accuracy"].mean() > 0.9
    assert (res.query("ws == 1")["ssn_used"] == 0).all()
    assert res.query("ws == 3 and ssn == 4")["n_train_pixels"].iloc[0] == 8 * 10 * 5
    with pytest.raises(ValueError, match="grouped folds"):
        sp.ssn_grid(stacks, labels, groups, n_splits=7)
