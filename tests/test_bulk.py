"""Bulk loaders and preprocessing (Part III)."""
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellbook.datasets import bulk
from cellbook.preprocess.bulk import (
    BulkPreprocessor,
    MinMaxPerGene,
    log2_transform,
    quantile_apply,
    quantile_normalize,
    quantile_reference,
    top_variance_genes,
)

DATA = os.environ.get("CELLBOOK_DATA")


def test_quantile_normalize_hand_worked():
    # Classic example (Wikipedia "Quantile normalization"): samples A, B, C over genes I-IV,
    # here with samples in rows.  Rank means: 2, 3, 14/3, 17/3; B's tie (4, 4) gets (14/3 + 17/3) / 2.
    X = np.array([[5, 2, 3, 4], [4, 1, 4, 2], [3, 4, 6, 8]], float)
    expected = np.array([[17 / 3, 2, 3, 14 / 3],
                         [31 / 6, 2, 31 / 6, 3],
                         [2, 3, 14 / 3, 17 / 3]])
    np.testing.assert_allclose(quantile_normalize(X), expected, atol=1e-12)
    np.testing.assert_allclose(quantile_reference(X), [2, 3, 14 / 3, 17 / 3])


def test_quantile_apply_to_new_sample_uses_training_reference():
    ref = quantile_reference(np.array([[5, 2, 3, 4], [4, 1, 4, 2], [3, 4, 6, 8]], float))
    out = quantile_apply(np.array([[10.0, 0.0, 7.0, 1.0]]), ref)
    np.testing.assert_allclose(out, [[17 / 3, 2, 14 / 3, 3]])


@pytest.mark.parametrize("kind", ["counts with many ties", "log values", "one value", "no ties"])
def test_ranks_and_sorted_rows_are_scipy_and_numpy_bit_for_bit(kind):
    """The one-sort ranks (ties averaged) behind quantile normalisation equal scipy's rankdata, and the
    sorted rows numpy's sort, exactly: the faster path changes no number downstream."""
    from scipy.stats import rankdata

    from cellbook.preprocess.bulk import _sorted_and_ranks

    rng = np.random.default_rng(1)
    X = {"counts with many ties": rng.poisson(0.7, size=(40, 300)).astype(float),
         "log values": np.log2(rng.poisson(50, size=(40, 300)) + 1.0),
         "one value": np.full((3, 7), 2.5),
         "no ties": rng.permutation(300 * 4).reshape(4, 300).astype(float)}[kind]
    srt, ranks = _sorted_and_ranks(X)
    assert srt.tobytes() == np.sort(X, axis=1).tobytes()
    assert ranks.tobytes() == (rankdata(X, axis=1, method="average") - 1.0).tobytes()


def test_fit_transform_normalises_the_training_samples_once_with_the_same_numbers():
    rng = np.random.default_rng(2)
    counts = rng.poisson(3, size=(25, 80)).astype(float)
    for kw in ({"n_top_genes": 20}, {"n_top_genes": None, "scale01": True}, {"quantile": False, "n_top_genes": 5}):
        a = BulkPreprocessor(**kw).fit_transform(counts)
        b = BulkPreprocessor(**kw).fit(counts).transform(counts)
        assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()


def test_log2_cpm_and_errors():
    X = np.array([[1.0, 3.0], [0.0, 10.0]])
    np.testing.assert_allclose(log2_transform(X, cpm=False), np.log2(X + 1))
    np.testing.assert_allclose(log2_transform(X)[0], np.log2(np.array([0.25e6, 0.75e6]) + 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        log2_transform(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="negative"):
        log2_transform(np.array([[1.0, -1.0]]))


def test_top_variance_and_minmax_fit_on_train():
    X = np.array([[0, 0, 1], [0, 10, 2], [0, 20, 3]], float)
    assert list(top_variance_genes(X, 2)) == [1, 2]
    sc = MinMaxPerGene().fit(X)
    out = sc.transform(np.array([[0, 40, 2]], float))
    np.testing.assert_allclose(out, [[0, 2.0, 0.5]])   # test values are not clipped to the training range


def test_preprocessor_train_test():
    rng = np.random.default_rng(0)
    counts = rng.poisson(20, size=(30, 50)).astype(float)
    pre = BulkPreprocessor(n_top_genes=10, scale01=True).fit(counts[:20])
    tr, te = pre.transform(counts[:20]), pre.transform(counts[20:])
    assert tr.shape == (20, 10) and te.shape == (10, 10)
    assert tr.min() >= 0 and tr.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="genes"):
        pre.transform(counts[:, :20])


def test_check_expression_errors():
    a = ad.AnnData(np.ones((3, 2), np.float32), obs=pd.DataFrame({"cell_type": ["a", "a", "b"]}, index=list("xyz")))
    with pytest.raises(ValueError, match="'b' \\(1 sample\\)"):
        bulk.check_expression(a)
    a.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bulk.check_expression(a)
    with pytest.raises(ValueError, match="obs\\['tissue'\\] is missing"):
        bulk.check_expression(a, label_key="tissue")


def test_from_table_and_pseudobulk():
    df = pd.DataFrame({"g1": [1, 2, 3, 4], "g2": [0, 1, 0, 1], "tissue": ["a", "a", "b", "b"]},
                      index=["s1", "s2", "s3", "s4"])
    a = bulk.from_table(df, label_col="tissue")
    assert a.shape == (4, 2) and list(a.obs["cell_type"]) == ["a", "a", "b", "b"]
    cells = ad.AnnData(np.array([[1, 0], [2, 1], [0, 5], [1, 1], [3, 3], [1, 0]], np.float32),
                       obs=pd.DataFrame({"donor": ["d1", "d1", "d1", "d2", "d2", "d2"],
                                         "cell_type": ["T", "T", "B", "T", "B", "B"]},
                                        index=[f"c{i}" for i in range(6)]))
    pb = bulk.pseudobulk(cells, min_cells=1, layer=None)
    assert pb.n_obs == 4
    np.testing.assert_allclose(pb.X[list(pb.obs_names).index("pb_d1|T")], [3, 1])
    np.testing.assert_allclose(pb.X[list(pb.obs_names).index("pb_d2|B")], [4, 3])


def test_synthetic_is_labelled():
    a = bulk.synthetic_bulk(n_per_class=5, n_genes=50, n_classes=3)
    assert a.shape == (15, 50) and a.uns["cellbook_data"]["real"] is False


def test_missing_data_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="cellnet_hg1133plus2"):
        bulk.cellnet()
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        a = bulk.load_bulk("tcga6", fallback="synthetic")
    assert a.uns["cellbook_data"]["real"] is False


@pytest.mark.skipif(not DATA or not (Path(DATA) / "tcga6_rnasum_counts").exists(),
                    reason="CELLBOOK_DATA is unset or has no tcga6_rnasum_counts/")
def test_tcga6_real():
    a = bulk.tcga6()
    assert a.n_obs == 364
    assert 15000 < a.n_vars <= 19546
    assert a.obs["cell_type"].value_counts().to_dict()["UVM"] == 80
    assert a.uns["cellbook_data"]["real"] is True
