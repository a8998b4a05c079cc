"""Part I loaders: cellbook.datasets.bmmc (paper-like selection), pbmc10k + MOFA+ labels, counts errors."""
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbook import datasets
from cellbook.datasets.scrna import _mofa_labels

DATA = os.environ.get("CELLBOOK_DATA")
needs_vangalen = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "vangalen2019_bm_seqwell").is_dir(),
    reason="CELLBOOK_DATA is unset or has no vangalen2019_bm_seqwell/ (real bone-marrow data)")
needs_starter = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "neurips2021_bmmc_cite_starter").is_dir(),
    reason="CELLBOOK_DATA is unset or has no neurips2021_bmmc_cite_starter/ (GSE194122 subset)")


def _toy(n=60, g=20, types=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2, size=(n, g)).astype(np.float32)
    obs = pd.DataFrame({"cell_type": np.resize(np.array(types), n),
                        "batch": np.where(np.arange(n) < n // 2, "s1d1", "s2d1")}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(g)]))


@pytest.fixture(scope="module")
def vangalen():
    return datasets.vangalen2019()


@needs_vangalen
def test_bmmc_selection_on_real_bone_marrow(vangalen):
    sel = datasets.bmmc(vangalen, n_types=14, n_cells=2000, min_cells_per_gene=3, seed=0)
    assert sel.obs["cell_type"].nunique() == 14 and sel.n_obs == 2000
    # the 14 most frequent of the 15 types: the rarest (pDC, 60 cells) is dropped
    assert "pDC" not in set(sel.obs["cell_type"])
    # stratified: each type keeps its share of the 14 types (largest remainder, so within 1 cell)
    full = vangalen.obs["cell_type"].astype(str)
    full = full[full != "pDC"].value_counts()
    got = sel.obs["cell_type"].astype(str).value_counts()
    assert (abs(got[full.index] - full / full.sum() * 2000) < 1).all()
    assert (np.asarray((sel.X > 0).sum(0)).ravel() >= 3).all()
    assert sel.uns["cellbook_selection"]["genes"] == sel.n_vars
    assert sel.uns["cellbook_data"]["real"] is True
    again = datasets.bmmc(vangalen, n_types=14, n_cells=2000, min_cells_per_gene=3, seed=0)
    assert list(again.obs_names) == list(sel.obs_names)
    other = datasets.bmmc(vangalen, n_types=14, n_cells=2000, min_cells_per_gene=3, seed=1)
    assert list(other.obs_names) != list(sel.obs_names)


@needs_starter
def test_bmmc_gse194122_path_with_batch_filter():
    sel = datasets.bmmc("gse194122_starter", n_types=14, n_cells=None, batches=["s1d1"])
    assert set(sel.obs["batch"]) == {"s1d1"} and sel.obs["cell_type"].nunique() == 14
    assert set(sel.obs["donor"]) == {"donor1"}
    assert float(sel.X.max()) > 1 and np.all(np.mod(sel.X.data, 1) == 0)  # raw counts, not normalised


def test_bmmc_in_memory_and_filters():
    a = _toy(types=("a", "b", "b", "c", "c", "c"))
    sel = datasets.bmmc(a, n_types=2, n_cells=None)
    assert sorted(set(sel.obs["cell_type"])) == ["b", "c"]
    sel = datasets.bmmc(a, n_types=None, n_cells=None, batches="s1d1")
    assert sel.n_obs == 30
    with pytest.raises(ValueError, match="batch value.*not found: s9"):
        datasets.bmmc(a, batches=["s9"])
    with pytest.raises(ValueError, match="no site"):
        datasets.bmmc(a, sites=["site1"])
    with pytest.raises(ValueError, match="unknown source"):
        datasets.bmmc("nowhere")


@pytest.mark.parametrize("corrupt,match", [
    (lambda X: np.where(X > 3, np.nan, X), "NaN"),
    (lambda X: X - 1, "negative"),
    (lambda X: X * 0.5, "non-integer"),
])
def test_bad_counts_are_named(corrupt, match):
    a = _toy()
    a.X = corrupt(a.X)
    with pytest.raises(ValueError, match=match):
        datasets.bmmc(a)


def test_counts_layer_is_preferred_over_normalised_x():
    a = _toy()
    a.layers["counts"] = sp.csr_matrix(a.X)
    a.X = np.log1p(a.X)          # normalised X, as in GSE194122
    sel = datasets.bmmc(a, n_types=None, n_cells=None)
    assert np.all(np.mod(sel.X.data, 1) == 0)


def test_label_column_missing_and_single_class():
    a = _toy()
    with pytest.raises(ValueError, match=r"obs\['celltype'\] is missing"):
        datasets.bmmc(a, label_key="celltype")
    b = _toy(types=("only",))
    with pytest.raises(ValueError, match="fewer than 2 cell types"):
        datasets.bmmc(b)


def test_mofa_labels_attach_and_keep_labelled_cells():
    a = _toy(n=10)
    meta = pd.DataFrame({"barcode": ["c1", "c3", "c5", "zz"], "celltype": ["naive B", "MAIT T", "naive B", "x"]})
    out = _mofa_labels(a, meta)
    assert list(out.obs_names) == ["c1", "c3", "c5"]
    assert list(out.obs["cell_type"]) == ["naive B", "MAIT T", "naive B"]
    with pytest.raises(ValueError, match="no cell-type column"):
        _mofa_labels(a, meta.rename(columns={"celltype": "foo"}))
    with pytest.raises(ValueError, match="no barcode"):
        _mofa_labels(a, meta.assign(barcode=["q1", "q2", "q3", "q4"]))


def test_pbmc10k_not_found_names_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path))
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(datasets.DatasetNotFoundError, match="10xgenomics"):
        datasets.bmmc("pbmc10k_multiome")
