"""Every bad input of issue 10 is a clear error (or a loud warning), never a silently wrong result.

One row per case: ``(id, trigger, expected exception, regex)``.  ``trigger(ctx)`` gets a context with
``ctx.tmp`` (a fresh folder) and ``ctx.fitted`` (tiny models fitted once per module).  Each regex asks
for the thing that is wrong (file, parameter, gene, label, ...) *and* the fix.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import anndata as ad
import cv2
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from synthetic_cells import marker_counts
from torch import nn

from cellbook import datasets, enrichment, splits
from cellbook.annotation import CellTypeClassifier
from cellbook.baselines import PCAKNN, HVGLogisticRegression
from cellbook.datasets import bulk
from cellbook.datasets import images as dsi
from cellbook.models.autoencoder import Autoencoder, parse_architecture
from cellbook.preprocess import imaging
from cellbook.preprocess.bulk import BulkPreprocessor, MinMaxPerGene
from cellbook.train import NotFittedError, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(n_genes=None, max_epochs=1, device="cpu", batch_size=32, min_cells_per_gene=1)


# ------------------------------------------------------------------ small synthetic inputs
def _counts(n=60, g=30, seed=0):
    """Counts with 3 types (20 cells each) whose marker genes differ; gene names G0..."""
    X, y = marker_counts(n, g, seed, width=8, high=9)
    return X, y, [f"G{j}" for j in range(g)]


def _adata(n=60, g=30, seed=0):
    X, y, genes = _counts(n, g, seed)
    return ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": y}, index=[f"c{i}" for i in range(n)]),
                      var=pd.DataFrame(index=genes))


def _with_missing(y, where=(3, 7), value=np.nan):
    y = np.asarray(y, dtype=object).copy()
    y[list(where)] = value
    return y


def _h5ad(tmp, adata=None, name="x.h5ad"):
    p = tmp / name
    (adata if adata is not None else _adata()).write_h5ad(p)
    return p


def _truncated_h5ad(tmp):
    p = _h5ad(tmp)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    return p


def _mlp(d=6, k=3):
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, k))


def _blobs(n=30, d=6):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), np.repeat(["a", "b", "c"], n // 3)


def _trainer(**kw):
    return Trainer(_mlp(kw.pop("d", 6), kw.pop("k", 3)), max_epochs=1, device="cpu", progress=False, **kw)


def _fit_vision(y):
    from cellbook.models.vision import fit_classifier

    return fit_classifier("scnn", np.zeros((len(y), 1, 16, 16), np.float32), y, widths=(4, 8), epochs=1)


def _png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _hek(tmp, rows=None, extra_files=(), unreadable=False, text=None):
    """A tiny registered-style image dataset (hek293a_ht1080 layout) in ``tmp/hek``; returns its folder."""
    root = tmp / "hek"
    rows = rows if rows is not None else [
        ("HEK293A/a1.png", "HEK293A", "f1"), ("HEK293A/a2.png", "HEK293A", "f1"),
        ("HT1080/b1.png", "HT1080", "f2"), ("HT1080/b2.png", "HT1080", "f3")]
    for f, *_ in rows:
        if isinstance(f, str):
            if unreadable:
                (root / f).parent.mkdir(parents=True, exist_ok=True)
                (root / f).write_bytes(b"not a png")
            else:
                _png(root / f, np.full((16, 16), 90, np.uint8))
    for f in extra_files:
        _png(root / f, np.full((16, 16), 90, np.uint8))
    root.mkdir(parents=True, exist_ok=True)
    if text is not None:
        (root / "metadata.csv").write_bytes(text)
    else:
        pd.DataFrame(rows, columns=["file", "class", "source_frame"]).to_csv(root / "metadata.csv", index=False)
    return root


def _gmt(tmp, text, encoding="utf-8", name="x.gmt"):
    p = tmp / name
    p.write_bytes(text.encode(encoding))
    return p


# ------------------------------------------------------------------ fitted once per module
@pytest.fixture(scope="module")
def fitted():
    X, y, genes = _counts()
    named = CellTypeClassifier("mlp", **TINY).fit(X, y, gene_names=genes)
    unnamed = CellTypeClassifier("mlp", **TINY).fit(X, y)
    logreg = HVGLogisticRegression(n_top_genes=20).fit(X, y, gene_names=genes)
    trainer = _trainer().fit(*_blobs())
    return SimpleNamespace(X=X, y=y, genes=genes, named=named, unnamed=unnamed, logreg=logreg, trainer=trainer)


@pytest.fixture
def ctx(tmp_path, fitted):
    return SimpleNamespace(tmp=tmp_path, fitted=fitted)


# ------------------------------------------------------------------ the table of errors
ERRORS = [
    # --- missing labels: one check (cellbook.splits.check_missing) before anything stringifies them
    ("fit-nan-labels", lambda c: CellTypeClassifier("mlp", **TINY).fit(c.fitted.X, _with_missing(c.fitted.y)),
     ValueError, r"y: 2 of 60 cells have a missing label .*rows 3, 7.*drop those cells.*or fill in their label"),
    ("fit-none-labels",
     lambda c: CellTypeClassifier("mlp", **TINY).fit(c.fitted.X, _with_missing(c.fitted.y, value=None)),
     ValueError, r"y: 2 of 60 cells have a missing label.*drop those cells"),
    ("fit_adata-nan-obs", lambda c: CellTypeClassifier("mlp", **TINY).fit_adata(_nan_obs_adata()),
     ValueError, r"obs\['cell_type'\]: 2 of 60 cells have a missing label .*e\.g\. c3, c7.*drop those cells"),
    ("trainer-nan-labels", lambda c: _trainer().fit(_blobs()[0], _with_missing(_blobs()[1], value=None)),
     ValueError, r"y: 2 of 30 rows have a missing label.*drop those rows"),
    ("vision-none-labels", lambda c: _fit_vision(np.array(["a", None, "b", "a"], dtype=object)),
     ValueError, r"y: 1 of 4 images have a missing label.*drop those images"),
    ("baseline-nan-labels", lambda c: HVGLogisticRegression().fit(c.fitted.X, _with_missing(c.fitted.y)),
     ValueError, r"y: 2 of 60 cells have a missing label.*fill in their label"),
    ("bmmc-nan-labels", lambda c: datasets.bmmc(_nan_obs_adata(), n_cells=None),
     ValueError, r"obs\['cell_type'\]: 2 of 60 cells have a missing label .*c3, c7.*drop those cells"),
    ("split-nan-labels", lambda c: splits.stratified_split(_with_missing(np.repeat(["a", "b"], 10))),
     ValueError, r"labels: 2 of 20 cells have a missing label.*fill in their label"),
    ("image-metadata-nan-label", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, rows=[
        ("HEK293A/a1.png", "HEK293A", "f1"), ("HEK293A/a2.png", None, "f1"), ("HT1080/b1.png", "HT1080", "f2")])),
     ValueError, r"metadata\.csv: column 'class': 1 of 3 images have a missing label .*HEK293A/a2\.png.*delete "
                 r"those rows .*or fill in their label"),
    ("image-metadata-nan-group", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, rows=[
        ("HEK293A/a1.png", "HEK293A", "f1"), ("HT1080/b1.png", "HT1080", None)])),
     ValueError, r"column 'source_frame': 1 of 2 images have a missing group .*HT1080/b1\.png.*fill in their group"),
    # --- bad h5ad files: one reader (cellbook.datasets.scrna.read_h5ad) for every scRNA / bulk loader
    ("h5ad-zero-bytes", lambda c: datasets.vangalen2019(path=_touch(c.tmp / "empty.h5ad")),
     ValueError, r"empty\.h5ad is empty \(0 bytes\).*download it again"),
    ("h5ad-not-hdf5", lambda c: datasets.vangalen2019(path=_write(c.tmp / "page.h5ad", b"<html>404</html>")),
     ValueError, r"page\.h5ad is not an HDF5 file .*<html>.*download it again"),
    ("h5ad-truncated", lambda c: datasets.vangalen2019(path=_truncated_h5ad(c.tmp)),
     ValueError, r"x\.h5ad could not be read .*truncated or corrupt.*download it again"),
    ("h5ad-zero-cells", lambda c: datasets.vangalen2019(path=_h5ad(c.tmp, _adata()[:0].copy())),
     ValueError, r"x\.h5ad holds 0 cells/samples x 30 genes.*download it again"),
    ("h5ad-zero-genes", lambda c: datasets.vangalen2019(path=_h5ad(c.tmp, _adata()[:, :0].copy())),
     ValueError, r"x\.h5ad holds 60 cells/samples x 0 genes"),
    ("bulk-h5ad-not-hdf5", lambda c: bulk.tcga6(path=_write(c.tmp / "t.h5ad", b"gene,s1\nA,1\n")),
     ValueError, r"t\.h5ad is not an HDF5 file.*download it again"),
    ("duplicate-gene-names", lambda c: datasets.bmmc(_dup_genes_adata(), n_cells=None),
     ValueError, r"2 gene name\(s\) occur more than once: G1 \(x2\), G2 \(x2\).*duplicate_genes='sum'.*or 'first'"),
    ("loader-duplicate-gene-names", lambda c: datasets.vangalen2019(path=_h5ad(c.tmp, _dup_genes_adata())),
     ValueError, r"var_names: 2 gene name\(s\) occur more than once.*duplicate_genes='sum'.*vangalen2019"),
    ("bulk-duplicate-gene-names", lambda c: bulk.check_expression(_dup_genes_adata()),
     ValueError, r"(?s)^(?!.*duplicate_genes).*G1 \(x2\).*give unique names"),
    ("fit-duplicate-gene-names", lambda c: CellTypeClassifier("mlp", **TINY).fit(
        c.fitted.X, c.fitted.y, gene_names=["G1"] * 2 + c.fitted.genes[2:]),
     ValueError, r"(?s)^gene_names: 1 gene name\(s\) occur more than once: "
                 r"G1 \(x2\)(?!.*duplicate_genes).*give unique"),
    ("non-integer-counts-hint-exists", lambda c: datasets.bmmc(_scaled_adata(0.5), n_cells=None),
     ValueError, r"(?s)^(?!.*counts=False).*non-integer values.*adata\.layers\['counts'\]"),
    # --- images and their metadata.csv
    ("metadata-duplicate-row", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, rows=[
        ("HEK293A/a1.png", "HEK293A", "f1"), ("HEK293A/a1.png", "HEK293A", "f1"), ("HT1080/b1.png", "HT1080", "f2")])),
     ValueError, r"metadata\.csv: 2 rows list the same image .*HEK293A/a1\.png \(lines 2, 3\).*delete the duplicate"),
    ("metadata-empty-file", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, text=b"")),
     ValueError, r"metadata\.csv is empty.*write it again with its header"),
    ("metadata-malformed", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, text=b"file,class,source_frame\n"
                                                                                b"a.png,A,f1,x,y,z\n\"b.png,B\n")),
     ValueError, r"metadata\.csv is not a well-formed table.*fix or re-create it"),
    ("metadata-header-only", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, text=b"file,class,source_frame\n")),
     ValueError, r"metadata\.csv has a header but no rows.*one row per image"),
    ("metadata-all-unreadable", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, unreadable=True)),
     ValueError, r"none of the 4 image file\(s\) listed in metadata\.csv could be read .*HEK293A/a1\.png.*replace "
                 r"the corrupt files"),
    ("image-folder-all-unreadable", lambda c: dsi.image_folder(_class_folders(c.tmp, unreadable=True)),
     ValueError, r"none of the 4 image file\(s\) could be read .*a/x0\.png.*replace the corrupt files"),
    ("image-folder-groups-rule-mismatch", lambda c: dsi.image_folder(_class_folders(c.tmp), groups=r"(frame\d+)"),
     ValueError, r"groups='\(frame\\d\+\)': 4 file name\(s\) do not fit the regex.*a/x0\.png.*pass another regex"),
    # --- GMT files and enrichment queries
    ("gmt-duplicate-term", lambda c: enrichment.read_gmt(_gmt(c.tmp, "SET1\td\tA\tB\nSET2\td\tC\nSET1\td\tD\n")),
     ValueError, r"x\.gmt: gene set 'SET1' occurs twice \(lines 1 and 3\).*delete or rename one"),
    ("gmt-utf16", lambda c: enrichment.read_gmt(_gmt(c.tmp, "SET1\td\tA\tB\n", encoding="utf-16")),
     ValueError, r"x\.gmt cannot be read as utf-8 \(UTF-16.*convert it to UTF-8.*encoding='utf-16'"),
    ("enrichment-query-is-a-string", lambda c: enrichment.overrepresentation(
        {"C1": "CD19"}, {"S": {"CD19", "MS4A1"}}, ["CD19", "MS4A1", "CD3E"]),
     ValueError, r"query 'C1' is the string 'CD19', not a list of genes.*pass a list"),
    ("enrichment-background-is-a-string", lambda c: enrichment.overrepresentation(
        {"C1": ["CD19"]}, {"S": {"CD19"}}, "CD19 MS4A1"),
     ValueError, r"background is the string 'CD19 MS4A1'.*pass a list"),
    # --- autoencoder architecture strings
    ("ae-architecture-too-wide", lambda c: parse_architecture("L99999999999"),
     ValueError, r"'L99999999999'.*99,999,999,999 units is more than the 100,000 .*use a smaller width"),
    ("ae-too-many-weights", lambda c: Autoencoder(60000, "L90000,L30"),
     ValueError, r"60000 -> 90000 -> 30 .*weights .*more than the .*use narrower layers"),
    # --- predict before fit: scikit-learn's NotFittedError (a ValueError and an AttributeError)
    ("classifier-predict-before-fit", lambda c: CellTypeClassifier("mlp").predict(c.fitted.X),
     NotFittedError, r"CellTypeClassifier \(MLP\) is not fitted yet; call fit\(X, y\)"),
    ("classifier-features-before-fit", lambda c: CellTypeClassifier("mlp").features(c.fitted.X),
     NotFittedError, r"not fitted yet; call fit"),
    ("logreg-predict-before-fit", lambda c: HVGLogisticRegression().predict(c.fitted.X),
     NotFittedError, r"HVGLogisticRegression instance is not fitted yet\. Call 'fit'"),
    ("knn-predict-proba-before-fit", lambda c: PCAKNN().predict_proba(c.fitted.X),
     NotFittedError, r"PCAKNN instance is not fitted yet\. Call 'fit'"),
    ("trainer-predict-before-fit", lambda c: Trainer(_mlp()).predict(_blobs()[0]),
     NotFittedError, r"Trainer \(Sequential\) is not fitted yet; call fit\(X, y\)"),
    ("bulk-preprocessor-before-fit", lambda c: BulkPreprocessor().transform(np.ones((3, 4))),
     NotFittedError, r"BulkPreprocessor is not fitted yet; call fit\(X_train\)"),
    ("minmax-before-fit", lambda c: MinMaxPerGene().transform(np.ones((3, 4))),
     NotFittedError, r"MinMaxPerGene is not fitted yet; call fit\(X_train\)"),
    # --- gene order: a model fitted without names cannot match names
    ("predict-names-for-unnamed-model", lambda c: c.fitted.unnamed.predict(c.fitted.X, gene_names=c.fitted.genes),
     ValueError, r"fitted without gene names.*refit with fit_adata\(adata\) or fit\(X, y, gene_names=\.\.\.\)"),
    ("predict-too-few-shared-genes",
     lambda c: c.fitted.named.predict(c.fitted.X, gene_names=[f"X{i}" for i in range(30)]),
     ValueError, r"only 0 of the model's 30 genes are in X's gene names.*same kind \(symbols vs Ensembl ids\)"),
    # --- implausible counts (1e30 pins the probabilities at 0/1)
    ("counts-1e30-fit",
     lambda c: CellTypeClassifier("mlp", transform="counts", **TINY).fit(c.fitted.X * 1e30, c.fitted.y),
     ValueError, r"values up to \S+e\+3\d .*above 1e\+09.*scaled or corrupt: give the raw \(integer\) counts"),
    ("counts-1e30-predict", lambda c: c.fitted.named.predict(c.fitted.X * 1e30, gene_names=c.fitted.genes),
     ValueError, r"X: contains values up to \S+e\+3\d.*give the raw \(integer\) counts"),
    # --- Trainer: clear errors instead of torch / scipy tracebacks
    ("trainer-more-classes-than-outputs", lambda c: _trainer(k=2).fit(*_blobs()),
     ValueError, r"y has 3 classes \(a, b, c\) but the model \(Sequential\) outputs 2 scores per row; build the "
                 r"model with one output per class \(n_classes=3\)"),
    ("trainer-unseen-validation-label",
     lambda c: _trainer().fit(*_blobs(), X_val=_blobs()[0][:3], y_val=["a", "zz", "b"]),
     ValueError, r"y_val has 1 label\(s\) never seen in training: zz \(1\).*Drop those validation rows"),
    ("trainer-wrong-input-width", lambda c: _trainer(d=5).fit(*_blobs()),
     ValueError, r"X has 6 columns \(features per row\) but the model \(Sequential\) expects 5"),
    ("trainer-wrong-image-channels",
     lambda c: Trainer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(3)),
                       max_epochs=1, device="cpu", progress=False).fit(
        np.zeros((6, 1, 8, 8), np.float32), np.repeat(["a", "b", "c"], 2)),
     ValueError, r"the model \(Sequential\) cannot take rows of shape \(1, 8, 8\)"
                 r".*give X the shape the model was built for"),
    ("trainer-predict-wrong-width", lambda c: c.fitted.trainer.predict(_blobs(d=4)[0]),
     ValueError, r"X has 4 columns .*expects 6"),
    ("trainer-class-weight-length", lambda c: _trainer(class_weight=[1.0, 2.0]).fit(*_blobs()),
     ValueError, r"class_weight has 2 value\(s\) .*but y has 3 classes \(a, b, c\); give one weight per class"),
    # --- rare classes: the hint names an option that exists
    ("rare-class-names-min_cells_per_type",
     lambda c: splits.stratified_kfold(np.repeat(["a", "b", "rare"], [10, 10, 2]), 5),
     ValueError, r"rare \(2\); drop these classes with min_cells_per_type=\.\.\. \(cellbook\.splits\.stratified_split"
                 r" / repeated_splits / stratified_kfold, or cellbook\.datasets\.bmmc / select_cells\)"),
    ("fit-rare-class-hint",
     lambda c: CellTypeClassifier("mlp", **TINY).fit(c.fitted.X, np.r_[c.fitted.y[:-1], ["solo"]]),
     ValueError, r"solo \(1\); drop these classes with min_cells_per_type="),
]


def _touch(p):
    p.write_bytes(b"")
    return p


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def _nan_obs_adata():
    a = _adata()
    a.obs["cell_type"] = pd.Categorical(_with_missing(a.obs["cell_type"]))
    return a


def _dup_genes_adata():
    a = _adata()
    a.var_names = ["G0", "G1", "G1", "G2", "G2"] + [f"G{j}" for j in range(5, a.n_vars)]
    return a


def _scaled_adata(factor):
    a = _adata()
    a.X = a.X * factor
    return a


def _class_folders(tmp, unreadable=False):
    root = tmp / "folder"
    for cls in ("a", "b"):
        for i in range(2):
            p = root / cls / f"{cls if cls == 'b' else 'x'}{i}.png"
            if unreadable:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b"broken")
            else:
                _png(p, np.full((12, 12), 60 + 20 * i, np.uint8))
    return root


@pytest.mark.parametrize("trigger,exc,pattern", [pytest.param(t, e, p, id=i) for i, t, e, p in ERRORS])
def test_bad_input_is_a_clear_error(ctx, trigger, exc, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # side warnings (e.g. skipped files) are tested below
        with pytest.raises(exc, match=pattern) as info:
            trigger(ctx)
    # raised at the edge with our message, not a library traceback re-labelled
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, (ValueError, FileNotFoundError))


# ------------------------------------------------------------------ loud warnings (and a record)
WARNINGS = [
    ("image-folder-each-image-own-group", lambda c: dsi.image_folder(_class_folders(c.tmp)),
     r"no groups= given, so each of the 4 images is its own group.*groups='from_filename'"),
    ("grouped-folds-singleton-groups", lambda c: splits.grouped_folds(np.repeat(["a", "b"], 6), np.arange(12), 3),
     r"every one of the 12 samples is its own group.*Give the real groups"),
    ("grouped-size-splits-singleton-groups", lambda c: splits.grouped_size_splits(
        np.repeat(["a", "b"], 8), np.arange(16), sizes=[4], n_repeats=1),
     r"every one of the 16 samples is its own group"),
    ("images-not-in-metadata", lambda c: dsi.hek293a_ht1080(path=_hek(c.tmp, extra_files=["HT1080/stray.png"])),
     r"1 image file\(s\) in .* not in metadata\.csv and are NOT loaded: HT1080/stray\.png; add rows"),
    ("predict-bare-matrix-of-named-model", lambda c: CellTypeClassifier("mlp", **TINY).fit(
        c.fitted.X, c.fitted.y, gene_names=c.fitted.genes).predict(c.fitted.X),
     r"predict got a bare matrix without gene names.*Pass gene_names=\.\.\., an AnnData or a DataFrame"),
    ("baseline-bare-matrix-of-named-model", lambda c: HVGLogisticRegression(n_top_genes=20).fit(
        c.fitted.X, c.fitted.y, gene_names=c.fitted.genes).predict(c.fitted.X),
     r"HVGLogisticRegression: predict got a bare matrix without gene names.*pass gene_names="),
    ("duplicate-genes-summed-loudly", lambda c: datasets.bmmc(_dup_genes_adata(), n_cells=None, duplicate_genes="sum"),
     r"2 duplicated gene name\(s\) summed: G1 \(x2\), G2 \(x2\)"),
]


@pytest.mark.parametrize("trigger,pattern", [pytest.param(t, p, id=i) for i, t, p in WARNINGS])
def test_questionable_input_is_a_loud_warning(ctx, trigger, pattern):
    with pytest.warns(UserWarning, match=pattern):
        trigger(ctx)


# ------------------------------------------------------------------ formerly silently wrong, now right
def test_not_fitted_error_is_value_and_attribute_error():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_12_bit_png_is_scaled_by_its_bit_depth(tmp_path):
    img = np.linspace(2, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)     # 12-bit data in a 16-bit PNG
    _png(tmp_path / "a" / "x.png", img)
    read = dsi.read_image(tmp_path / "a" / "x.png")
    assert read.dtype == np.uint16 and imaging.bit_depth(read) == 12
    gray = imaging.to_gray8(read)
    assert gray.min() == 0 and gray.max() == 255                  # not 0..16 (the /257 rule)
    full = np.array([[0, 257 * 100, 65535]], np.uint16)
    assert imaging.to_gray8(full).tolist() == [[0, 100, 255]]     # real 16-bit data: unchanged rule
    assert imaging.to_uint8(np.array([[0, 1000]], np.uint16), bits=16).tolist() == [[0, 4]]


def test_gene_order_is_matched_by_name(fitted):
    X, genes, clf = fitted.X, fitted.genes, fitted.named
    perm = np.random.default_rng(1).permutation(len(genes))
    ref = clf.predict_proba(X, gene_names=genes)
    assert np.allclose(clf.predict_proba(X[:, perm], gene_names=[genes[i] for i in perm]), ref, atol=1e-6)
    a = _adata()[:, [genes[i] for i in perm]].copy()
    assert np.allclose(clf.predict_proba(a), ref, atol=1e-6)
    df = pd.DataFrame(X[:, perm], columns=[genes[i] for i in perm])
    assert np.allclose(clf.predict_proba(df), ref, atol=1e-6)
    # the baseline too
    lr = fitted.logreg
    assert np.allclose(lr.predict_proba(X[:, perm], gene_names=[genes[i] for i in perm]),
                       lr.predict_proba(X, gene_names=genes))


def test_bare_matrix_warning_is_given_once(fitted):
    clf = CellTypeClassifier("mlp", **TINY).fit(fitted.X, fitted.y, gene_names=fitted.genes)
    with pytest.warns(UserWarning, match="bare matrix"):
        clf.predict(fitted.X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(fitted.X)                                      # once per model
        fitted.unnamed.predict(fitted.X)                           # no names known: nothing to warn about


def test_trainer_accepts_any_sparse_format():
    import torch

    X, y = _blobs()
    X[X < 0] = 0
    runs = []
    for fmt in (np.asarray, sp.csr_matrix, sp.coo_matrix, sp.csc_matrix, sp.dok_matrix):
        torch.manual_seed(0)
        t = Trainer(_mlp(), max_epochs=2, device="cpu", progress=False, seed=0).fit(fmt(X), y)
        runs.append(t.predict_proba(fmt(X)))
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], rtol=1e-5, atol=1e-6)


def test_class_weight_as_dict_by_label():
    X, y = _blobs()
    t = _trainer(class_weight={"a": 1.0, "b": 2.0, "c": 1.0}).fit(X, y)
    assert t.class_weight_.tolist() == [1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match=r"class_weight has no weight for class\(es\) c"):
        _trainer(class_weight={"a": 1.0, "b": 2.0}).fit(X, y)


def test_min_cells_per_type_drops_rare_types_by_name(capsys):
    a = _adata()
    a.obs["cell_type"] = np.r_[a.obs["cell_type"].to_numpy()[:-3], ["rare"] * 3]
    sel = datasets.bmmc(a, n_types=None, n_cells=None, min_cells_per_type=5)
    assert "rare" not in set(sel.obs["cell_type"])
    assert sel.uns["cellbook_selection"]["dropped_types"] == {"rare": 3}
    assert "left out 1 rare cell types (3 cells): rare (3)" in capsys.readouterr().out
    y = np.repeat(["a", "b", "rare"], [12, 12, 2])
    tr, te = splits.stratified_split(y, min_cells_per_type=3)
    assert "rare" not in set(y[tr]) | set(y[te]) and len(tr) + len(te) == 24
    assert splits.stratified_split.dropped == {"rare": 2}
    folds = splits.stratified_kfold(y, n_folds=5, min_cells_per_type=5)
    assert sorted(np.concatenate([f[1] for f in folds]).tolist()) == list(range(24))
    # without the option the splits are exactly what they were
    y2 = np.repeat(["a", "b"], 12)
    assert all(np.array_equal(u, v) for u, v in zip(splits.stratified_split(y2, seed=3),
                                                    splits.stratified_split(y2, seed=3, min_cells_per_type=2)))


def test_image_groups_from_filename_and_record(tmp_path):
    root = tmp_path / "f"
    for cls, frames in (("a", ("fr1", "fr2")), ("b", ("fr3", "fr4"))):
        for fr in frames:
            for t in range(2):
                _png(root / cls / f"{fr}_tile{t}.png", np.full((10, 10), 40 + 30 * t, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ims = dsi.image_folder(root, groups="from_filename")
    assert sorted(set(ims.groups)) == ["fr1", "fr2", "fr3", "fr4"] and "from_filename" in ims.info.note
    ims2 = dsi.image_folder(root, groups=lambda f: f.split("/")[1][:3])
    assert list(ims2.groups) == list(ims.groups)
    with pytest.warns(UserWarning, match="its own group"):
        own = dsi.image_folder(root)
    assert "EACH IMAGE IS ITS OWN GROUP" in own.info.note


def test_unlisted_images_are_recorded(tmp_path):
    with pytest.warns(UserWarning, match="not in metadata.csv"):
        ims = dsi.hek293a_ht1080(path=_hek(tmp_path, extra_files=["HT1080/stray.png"]))
    assert ims.unlisted == ["HT1080/stray.png"] and len(ims) == 4
    assert "1 image files not in metadata.csv ignored" in ims.info.note
    assert ims.subset([0, 1]).unlisted == ["HT1080/stray.png"]


def test_duplicate_genes_summed_are_recorded():
    with pytest.warns(UserWarning, match="summed"):
        sel = datasets.bmmc(_dup_genes_adata(), n_types=None, n_cells=None, duplicate_genes="sum")
    assert sel.var_names.is_unique
    a = _dup_genes_adata()
    assert sel[:, "G1"].X.toarray().ravel().tolist() == (a.X[:, 1] + a.X[:, 2]).tolist()
    with pytest.warns(UserWarning, match="first occurrence"):
        first = datasets.as_counts_adata(_dup_genes_adata(), duplicate_genes="first")
    assert first.uns["cellbook_duplicate_genes"] == {"how": "first", "genes": {"G1": 2, "G2": 2}}
    assert first.n_vars == 28 and first[:, "G1"].X.toarray().ravel().tolist() == a.X[:, 1].tolist()


def test_messages_name_no_option_that_does_not_exist():
    """Every fix a message suggests must exist: the options named above are real parameters."""
    import inspect

    assert "min_cells_per_type" in inspect.signature(splits.stratified_kfold).parameters
    assert "min_cells_per_type" in inspect.signature(datasets.bmmc).parameters
    assert "min_cells_per_type" in inspect.signature(datasets.select_cells).parameters
    assert "duplicate_genes" in inspect.signature(datasets.bmmc).parameters
    assert "encoding" in inspect.signature(enrichment.read_gmt).parameters
    assert "groups" in inspect.signature(dsi.image_folder).parameters
