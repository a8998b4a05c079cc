"""Your own images: a folder with a metadata table, chain steps switched off by name, aspect-ratio-keeping
resize, and the size + brightness baseline; and the "Classify your own images" example of book/reproduce.md."""
import re
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cellbook import sweeps
from cellbook.datasets import images as dsi
from cellbook.models import vision
from cellbook.preprocess import imaging as im
from cellbook.validation import InvalidParameterError

REPO = Path(__file__).resolve().parents[1]


def _table_folder(root: Path, rows=None, extra=()) -> Path:
    """Six crops in two sub-folders (names that fit no class or donor rule) and a metadata.csv."""
    rows = rows if rows is not None else [(f"run{i % 2}/img_{i}.png", "big" if i < 3 else "small", f"donor{i % 3}")
                                          for i in range(6)]
    for f, *_ in rows:
        if isinstance(f, str):
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / f), np.full((12, 16), 40 + 10 * len(f), np.uint8))
    for f in extra:
        cv2.imwrite(str(root / f), np.zeros((12, 16), np.uint8))
    pd.DataFrame(rows, columns=["file", "label", "donor"]).to_csv(root / "metadata.csv", index=False)
    return root


# ------------------------------------------------------------------------------------- the metadata table
def test_a_metadata_table_gives_labels_groups_and_relative_paths(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ims = dsi.image_folder(_table_folder(tmp_path), groups="donor")       # "donor" is a column, not a regex
    assert ims.files == [f"run{i % 2}/img_{i}.png" for i in range(6)]
    assert list(ims.labels) == ["big"] * 3 + ["small"] * 3
    assert list(ims.groups) == [f"donor{i % 3}" for i in range(6)]
    assert list(ims.meta.columns) == ["file", "label", "donor"] and ims.images[0].shape == (12, 16)
    assert "column 'donor' of metadata.csv" in ims.info.note and len(ims.info.sha256) == 64


def test_a_group_column_by_default_and_other_tables(tmp_path):
    root = _table_folder(tmp_path)
    meta = pd.read_csv(root / "metadata.csv").rename(columns={"donor": "group", "label": "cell_type"})
    (root / "tables").mkdir()
    meta.to_csv(root / "tables" / "t.csv", index=False)
    ims = dsi.image_folder(root, metadata="tables/t.csv", label="cell_type")           # relative to the folder
    assert list(ims.groups) == [f"donor{i % 3}" for i in range(6)] and ims.classes == ["big", "small"]
    same = dsi.image_folder(root, metadata=root / "tables" / "t.csv", label="cell_type")   # absolute
    assert same.files == ims.files
    rule = dsi.image_folder(root, groups=r"img_(\d)")       # not a column: a regex on the file names
    assert list(rule.groups) == [str(i) for i in range(6)]
    with pytest.warns(UserWarning, match=r"its own group.*or name a column of metadata\.csv \(columns: file, "
                                         r"label, donor\)"):
        dsi.image_folder(root)                               # no column "group" in metadata.csv


def test_without_a_table_the_class_folders_are_read(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        cv2.imwrite(str(tmp_path / cls / "f1_t1.png"), np.full((4, 4), 100, np.uint8))
    ims = dsi.image_folder(tmp_path, groups="from_filename")         # no metadata.csv: sub-folders
    assert ims.classes == ["a", "b"] and ims.info.sha256 is None
    _table_folder(tmp_path / "a")                                    # a table in a class folder is not the folder's
    pd.DataFrame({"file": ["a/f1_t1.png"], "label": ["a"]}).to_csv(tmp_path / "metadata.csv", index=False)
    assert dsi.image_folder(tmp_path, metadata=None, groups="from_filename").classes == ["a", "b"]


def test_bad_tables_are_clear_errors(tmp_path):
    root = _table_folder(tmp_path)
    with pytest.raises(ValueError, match=r"label='cell_type' is not a column of .*metadata\.csv; its columns: "
                                         r"file, label, donor"):
        dsi.image_folder(root, label="cell_type", groups="donor")
    with pytest.raises(FileNotFoundError, match=r"metadata='nope\.csv': no table at"):
        dsi.image_folder(root, metadata="nope.csv")
    with pytest.raises(ValueError, match=r"groups='donor_id'.*do not fit the regex.*or name a column of "
                                         r"metadata\.csv \(columns: file, label, donor\)"):
        dsi.image_folder(root, groups="donor_id")
    (root / "run1" / "img_1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv lists 1 file\(s\) that do not exist .*"
                                                r"run1/img_1\.png.*relative to the image folder"):
        dsi.image_folder(root, groups="donor")


def test_missing_labels_and_groups_name_the_argument(tmp_path):
    rows = [(f"i{i}.png", None if i == 2 else "ab"[i % 2], "d1" if i else None) for i in range(4)]
    with pytest.raises(ValueError, match=r"image_folder\(label='label'\).*1 of 4 images have a missing label.*"
                                         r"i2\.png"):
        dsi.image_folder(_table_folder(tmp_path / "a", rows), groups="donor")
    rows = [(f"i{i}.png", "ab"[i % 2], "d1" if i else None) for i in range(4)]
    with pytest.raises(ValueError, match=r"image_folder\(groups='donor'\).*missing group.*i0\.png"):
        dsi.image_folder(_table_folder(tmp_path / "b", rows), groups="donor")


def test_images_the_table_does_not_list_are_left_out_loudly(tmp_path):
    with pytest.warns(UserWarning, match=r"1 image file\(s\) .* not in metadata\.csv .*stray\.png"):
        ims = dsi.image_folder(_table_folder(tmp_path, extra=["stray.png"]), groups="donor")
    assert ims.unlisted == ["stray.png"] and len(ims) == 6


# ------------------------------------------------------------------------------ the chain, step by step
def _old_chain(img, size=im.PAPER_SIZE):
    """The chain as it was before steps could be switched off, step by step from the public functions."""
    g = im.resize(im.normalize_brightness(im.to_gray8(img), im.PAPER_TARGET_V), size)
    return im.equalize(im.enhance_contrast(im.median_denoise(g, 3), 1.0, 99.0), "clahe")


def test_the_default_chain_is_unchanged(data_root):
    stem = dsi.load_images("stemcell_passage_phase", path=data_root / "stemcell_passage_phase")
    hek = dsi.load_images("hek293a_ht1080_brightfield", path=data_root / "hek293a_ht1080_brightfield")
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the book's images are not stretched by more than 10 %
        for images, size in ((stem.images[::19], im.PAPER_SIZE), (hek.images[::25], (224, 224))):
            X, keep, report = im.preprocess_set(images, size=size)
            assert keep.all() and np.array_equal(X, np.stack([_old_chain(x, size) for x in images]))
            assert report["step"][2] == "grayscale, brightness -> 130, resize, median 3, contrast, clahe equalisation"
        assert list(im.pipeline_steps(stem.images[0])) == [
            "original", "8-bit grayscale", "brightness -> mean 130", "resized 220x300", "median 3x3",
            "contrast stretch", "equalised (clahe)"]
        assert im.downsample(X, (48, 48)).shape == (len(X), 48, 48)


def test_steps_are_switched_off_by_name():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 200, (40, 60), dtype=np.uint8) for _ in range(3)]
    X, _, report = im.preprocess_set(images, size=(20, 30), skip=("brightness", "contrast"))
    expected = [im.equalize(im.median_denoise(im.resize(im.to_gray8(x), (20, 30)), 3), "clahe") for x in images]
    assert np.array_equal(X, np.stack(expected))
    assert report["step"][2] == "grayscale, resize, median 3, clahe equalisation (brightness, contrast switched off)"
    steps = im.pipeline_steps(images[0], size=(20, 30), skip="brightness")          # one name is a name
    assert "brightness -> mean 130" not in steps and list(steps)[-1] == "equalised (clahe)"
    assert np.array_equal(im.preprocess(images[0], skip=im.STEPS), im.to_gray8(images[0]))   # all off: grayscale
    same_size, _, _ = im.preprocess_set(images, skip=["resize"])
    assert same_size.shape == (3, 40, 60)
    with pytest.raises(ValueError, match=r"resize switched off .* sizes, which differ \(40x50, 40x60\)"):
        im.preprocess_set(images + [images[0][:50, :50].copy()], skip=("resize",))


def test_an_unknown_step_lists_the_valid_ones():
    with pytest.raises(InvalidParameterError, match=r"preprocess_set: skip=\('brightnes',\) is not valid: it must be "
                                                    r"one of 'brightness', 'resize', 'median', 'contrast', "
                                                    r"'equalization'"):
        im.preprocess_set([np.zeros((4, 4), np.uint8)], skip=("brightnes",))
    for call in (lambda: im.preprocess(np.zeros((4, 4)), skip=5),
                 lambda: im.pipeline_steps(np.zeros((4, 4)), fit="crop")):
        with pytest.raises(InvalidParameterError):
            call()


# ------------------------------------------------------------------------------------ stretch or pad
def test_pad_keeps_the_aspect_ratio_centred_on_the_border_median():
    img = np.full((100, 100), 30, np.uint8)
    img[40:60, 40:60] = 200
    padded = im.resize(img, (220, 300), fit="pad")
    assert padded.shape == (220, 300)
    assert (padded[:, :40] == 30).all() and (padded[:, -40:] == 30).all()       # 220 x 220 in the middle
    assert padded[110, 150] == 200 and (padded[:, 40:260] == cv2.resize(img, (220, 220),
                                                                         interpolation=cv2.INTER_CUBIC)).all()
    colour = im.resize(np.dstack([img, img // 2, img // 3]), (50, 100), fit="pad")
    assert colour.shape == (50, 100, 3) and tuple(colour[0, 0]) == (30, 15, 10)
    X, _, _ = im.preprocess_set([img, img[:, :80]], size=(64, 64), fit="pad")
    assert X.shape == (2, 64, 64)


def test_a_stretch_warns_only_beyond_ten_percent():
    def warned(shape, size):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = im.resize(np.zeros(shape, np.uint8), size)
        assert out.shape == size
        return [w for w in caught if "stretched" in str(w.message)]

    assert not warned((384, 512), (220, 300))          # the stem-cell tiles: 2 %
    assert not warned((100, 109), (100, 100)) and warned((100, 112), (100, 100))
    w = warned((100, 100), (220, 300))
    assert len(w) == 1 and "by up to 36%" in str(w[0].message) and "fit='pad'" in str(w[0].message)
    assert Path(w[0].filename).name == Path(__file__).name                # at the caller's line
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 200, shape, dtype=np.uint8) for shape in ((100, 100), (150, 150), (220, 300))]
    with pytest.warns(UserWarning, match=r"^2 of 3 image\(s\) are stretched to 220x300") as caught:
        im.preprocess_set(noise)
    assert len([w for w in caught if "stretched" in str(w.message)]) == 1          # once for the set
    assert Path(caught[0].filename).name == Path(__file__).name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im.preprocess_set(noise[:2], size=(50, 50))
        im.preprocess_set(noise, fit="pad")
        im.preprocess_set(noise[:1] * 2, skip="resize")
        im.downsample(np.stack(noise[:1] * 2), (50, 50))
    with pytest.warns(UserWarning, match="2 of 2 image"):
        im.downsample(np.stack(noise[:1] * 2), (50, 100))


# --------------------------------------------------------------------------------- size + brightness
def test_size_features_see_the_cell_and_the_baseline_fits():
    small, large = np.full((80, 80), 50, np.uint8), np.full((80, 80), 50, np.uint8)
    cv2.circle(small, (40, 40), 10, 160, -1)
    cv2.circle(large, (40, 40), 25, 160, -1)
    f = vision.size_features([small, large, np.zeros((8, 8), np.uint8)])
    assert list(f.columns) == list(vision.SIZE_FEATURES)
    assert f["object_area_px"][1] > 5 * f["object_area_px"][0] > 0 and f["fg_fraction"][1] > f["fg_fraction"][0]
    assert abs(f["equivalent_diameter_px"][1] - 50) < 4 and abs(f["perimeter_px"][1] - 2 * np.pi * 25) < 12
    assert f.iloc[2].tolist() == [0.0, 0.0, 0.0, 0.0]                          # nothing to find
    assert "size + brightness + LR" in sweeps.FEATURE_BASELINES and "size + brightness + LR" in sweeps.IMAGE_MODELS
    raw = [small, large] * 10
    F = vision.size_brightness_features(raw)
    assert list(F.columns) == [*im.BRIGHTNESS_FEATURES, *vision.SIZE_FEATURES]
    labels = np.array(["small", "large"] * 10)
    out = sweeps.fit_image_model(F.to_numpy(), labels, np.arange(14), np.arange(14, 20), "size + brightness + LR",
                                 seed=0, positive="large", keep=True)
    assert (out["pred"] == labels[14:]).all() and out["score"].shape == (6,)
    proba = vision.predict_from_raw(out["estimator"], raw[:2], "size_brightness")
    assert proba.shape == (2, 2)


# ------------------------------------------------------------------------- the book's example, as written
#: The example of the "Classify your own images" section (book/reproduce.md): keep the two the same.
SNIPPET = '''
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import cellbook as cb
from cellbook.models import vision
from cellbook.preprocess import imaging

# 1. A tiny folder of square single-cell crops and its table (file, label, donor).
#    Synthetic: "small" and "large" cells of random brightness, 6 crops per donor.
folder = Path(tempfile.mkdtemp()) / "my_crops"
(folder / "crops").mkdir(parents=True)
rng = np.random.default_rng(0)
rows = []
for d in range(8):
    # the same rim area, so the same brightness: only the size differs
    for label, radius, rim in (("small", 14, 3), ("large", 21, 2)):
        for k in range(3):
            background = rng.uniform(40, 110)
            img = rng.normal(background, 8, (96, 96))
            centre = (48 + int(rng.integers(-6, 7)), 48 + int(rng.integers(-6, 7)))
            r = radius + int(rng.integers(-3, 4))
            cv2.circle(img, centre, r, background + 80, rim)
            file = f"crops/donor{d}_{label}_{k}.png"
            cv2.imwrite(str(folder / file), np.clip(img, 0, 255).astype(np.uint8))
            rows.append({"file": file, "label": label, "donor": f"D{d}"})
pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)

# 2. Read it: labels from the column "label", groups from the column "donor"
#    (a column name, not a file-name rule).
ims = cb.datasets.image_folder(folder, groups="donor")
print(ims.counts())

# 3. Preprocess without the brightness and contrast steps;
#    pad the square crops instead of stretching them.
X, keep, report = imaging.preprocess_set(
    ims.images, size=(72, 96), fit="pad", skip=("brightness", "contrast"))
print(report.to_string(index=False))
labels = ims.labels[keep]
raw = [im for im, k in zip(ims.images, keep) if k]

# 4. Features per baseline: brightness of the raw crops, cell size beside it,
#    and morphology + texture.
inputs = {
    "brightness only + LR": imaging.brightness_features(raw).to_numpy(),
    "size + brightness + LR": vision.size_brightness_features(raw).to_numpy(),
    "hand-crafted + LR": imaging.handcrafted_features(X).to_numpy(),
}

# 5. Grouped 4-fold cross-validation (a donor is never on both sides),
#    every model on the same folds.
folds = cb.splits.grouped_folds(labels, ims.groups[keep], n_splits=4, seed=0)
meta, tasks = vision.fit_tasks(folds, inputs, seed=0, by="fold", labels=labels,
                               positive="large", keep=True)
outputs = cb.map_tasks(cb.sweeps.fit_image_model, tasks, progress=False)
scores = vision.score_fits(meta, outputs, labels, keys=("fold",))
held_out, _ = vision.held_out_scores(meta, outputs, len(labels))
auc = {m: cb.metrics.screening(labels, s, positive="large")["auc"]
       for m, s in held_out.items()}
mean = scores.groupby("model")[["accuracy", "f1_macro"]].mean()
print(mean.assign(auc=pd.Series(auc)).round(2))
'''


def test_the_own_images_example_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scope = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        exec(compile(SNIPPET, "own_images_example", "exec"), scope)
    assert scope["auc"]["size + brightness + LR"] >= 0.9 and scope["auc"]["brightness only + LR"] <= 0.75
    assert "brightness, contrast switched off" in capsys.readouterr().out


def test_the_book_shows_the_example_as_tested():
    page = (REPO / "book" / "reproduce.md").read_text(encoding="utf-8")
    if "### Classify your own images" not in page:
        pytest.skip("book/reproduce.md has no 'Classify your own images' section yet")
    section = page.split("### Classify your own images", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block.strip() == SNIPPET.strip()
