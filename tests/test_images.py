"""cellbook.datasets.images: class-per-folder reader, registered image sets, grouped splits."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellbook import splits as cbsplits
from cellbook.datasets import images as dsi


def _write(path: Path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_image_folder_reads_classes_and_skips_corrupt(tmp_path):
    _write(tmp_path / "a" / "x1.png", np.full((10, 12), 50, np.uint8))
    _write(tmp_path / "a" / "x2.tif", np.full((20, 8, 3), 60, np.uint8))          # other size, colour
    _write(tmp_path / "b" / "y1.png", np.full((10, 12), 1000, np.uint16))         # 16-bit
    _write(tmp_path / "b" / "y2.jpg", np.full((10, 12), 70, np.uint8))
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "b" / "notes.txt").write_text("ignored: not an image extension")
    with pytest.warns(UserWarning, match="unreadable"), pytest.warns(UserWarning, match="its own group"):
        ims = dsi.image_folder(tmp_path)
    assert len(ims) == 4
    assert sorted(ims.labels.tolist()) == ["a", "a", "b", "b"]
    assert ims.skipped == [("b/broken.png", ims.skipped[0][1])]
    assert ims.images[ims.files.index("b/y1.png")].dtype == np.uint16
    assert ims.images[ims.files.index("a/x2.tif")].shape == (20, 8, 3)
    assert ims.counts().loc["a", "images"] == 2


def test_image_folder_empty_class_and_single_class(tmp_path):
    _write(tmp_path / "a" / "x1.png", np.zeros((5, 5), np.uint8))
    (tmp_path / "empty").mkdir()
    with pytest.warns(UserWarning, match="empty"), pytest.raises(ValueError, match="at least 2"):
        dsi.image_folder(tmp_path)
    with pytest.warns(UserWarning, match="empty"), pytest.warns(UserWarning, match="its own group"):
        ims = dsi.image_folder(tmp_path, min_classes=1)
    assert ims.classes == ["a"]


def test_image_folder_missing_and_flat(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dsi.image_folder(tmp_path / "nope")
    _write(tmp_path / "x.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="no class sub-folders"):
        dsi.image_folder(tmp_path)


def test_synthetic_images_labelled():
    ims = dsi.synthetic_images(n_per_class=8, per_group=4, size=(40, 50), seed=1)
    assert len(ims) == 16 and not ims.info.real
    assert ims.classes == ["round", "spread"]
    assert len(np.unique(ims.groups)) == 4
    assert ims.binary("spread").sum() == 8
    with pytest.raises(ValueError, match="positive class"):
        ims.binary("other")


def test_grouped_size_splits_keep_groups_apart():
    labels = np.repeat(["a", "b"], [40, 32])
    groups = np.repeat([f"g{i}" for i in range(18)], 4)
    splits = cbsplits.grouped_size_splits(labels, groups, sizes=[8, 20, 40], n_repeats=3, seed=0)
    assert len(splits) == 9
    for s in splits:
        assert len(s["train"]) == s["size"]
        assert not set(groups[s["train"]]) & set(groups[s["test"]])
        assert len(set(labels[s["train"]])) == 2 or s["size"] < 8
    r0 = [s for s in splits if s["repeat"] == 0]
    assert set(r0[0]["train"]) <= set(r0[1]["train"]) <= set(r0[2]["train"])    # nested
    with pytest.raises(ValueError, match="exceeds"):
        cbsplits.grouped_size_splits(labels, groups, sizes=[70], n_repeats=1)


def test_grouped_folds():
    labels = np.repeat(["a", "b"], 20)
    groups = np.repeat(np.arange(10), 4).astype(str)
    folds = cbsplits.grouped_folds(labels, groups, n_splits=5, seed=0)
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(40))
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
    with pytest.raises(ValueError, match="groups cannot make"):
        cbsplits.grouped_folds(labels, groups, n_splits=11)


def _real(data_root, name):
    folder = data_root / name
    if not folder.is_dir():
        pytest.skip(f"{name} is not in the real-data folder {data_root}")
    return folder


def test_stemcell_passage_real(data_root):
    ims = dsi.stemcell_passage(path=_real(data_root, "stemcell_passage_phase"))
    assert len(ims) == 152 and ims.info.real and not ims.skipped
    assert ims.classes == ["early_P2", "late_P6_P7"]
    assert len(np.unique(ims.groups)) == 38
    assert ims.images[0].shape == (384, 512, 3)
    assert len(ims.info.sha256) == 64
    # every frame has one label
    assert ims.meta.groupby("source_image")["binary_label"].nunique().max() == 1


def test_hek_real(data_root):
    ims = dsi.hek293a_ht1080(path=_real(data_root, "hek293a_ht1080_brightfield"))
    assert len(ims) == 200 and ims.classes == ["HEK293A", "HT1080"]
    assert len(np.unique(ims.groups)) == 62
    assert ims.images[0].shape == (224, 224)


def test_load_images_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        ims = dsi.load_images("stemcell_passage_phase", fallback="synthetic")
    assert not ims.info.real
    with pytest.raises(FileNotFoundError, match="was not found"):
        dsi.load_images("stemcell_passage_phase", fallback="error")
    with pytest.raises(ValueError, match="source=.nope. is not valid: it must be one of .stemcell_passage_phase."):
        dsi.load_images("nope")
