"""Annotation a block of cells at a time: the same labels as the whole matrix, from memory, a backed AnnData and
an .h5ad file read block by block (annotate_file and `cellbook annotate`)."""
from __future__ import annotations

import subprocess
import sys
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from synthetic_cells import marker_adata

import cellbook
from cellbook.annotation import CellTypeClassifier, H5adCounts, annotate, annotate_file, save_model
from cellbook.baselines import TunedLogisticRegression

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEY = "predicted_cell_type"


def _query(n=150, seed=1):
    """Counts of ``n`` cells (CSR, also in layers['counts']) with a few genes the models never saw, and with
    the genes shuffled, so that every block needs aligning."""
    a = marker_adata(n=n, g=40, seed=seed, high=4, counts_layer=True)
    a = a[:, np.random.default_rng(seed).permutation(a.n_vars)].copy()
    a.X = sp.csr_matrix(a.X)
    a.layers["counts"] = sp.csr_matrix(a.layers["counts"])
    a.obs["cluster"] = pd.Categorical(np.arange(n) % 7)
    return a


@pytest.fixture(scope="module")
def models():
    ref = marker_adata(n=120, g=30, seed=0, high=4)
    lr = TunedLogisticRegression(n_top_genes=20, param_grid={"C": [0.1, 1.0]}, n_folds=2)
    lr.fit(ref.X, ref.obs["cell_type"].to_numpy(), gene_names=list(ref.var_names))
    mlp = CellTypeClassifier("mlp", n_genes=None, max_epochs=3, device="cpu").fit_adata(ref)
    return {"logreg": lr, "mlp": mlp}


@pytest.mark.parametrize("name", ["logreg", "mlp"])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_blocks_give_the_labels_of_the_whole_matrix(models, name, chunk):
    q = _query()
    whole = annotate(q.copy(), models[name], chunk_size=None)
    parts = annotate(q.copy(), models[name], chunk_size=chunk)
    assert (whole.obs[KEY] == parts.obs[KEY]).all()
    np.testing.assert_allclose(parts.obs[f"{KEY}_confidence"], whole.obs[f"{KEY}_confidence"], rtol=1e-5)
    assert whole.obs[KEY].nunique() == 3              # a real prediction, not one label everywhere
    assert parts.uns[KEY]["n_cells"] == q.n_obs


def test_the_missing_gene_warning_is_given_once_not_per_block(models):
    q = _query()
    q = q[:, [g for g in q.var_names if g not in ("G1", "G2")]].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        annotate(q, models["logreg"], chunk_size=10)
    missing = [w for w in caught if "missing from adata" in str(w.message)]
    assert len(missing) == 1 and missing[0].filename == __file__


def test_bad_counts_in_a_later_block_name_the_cells(models):
    q = _query(n=42)
    q.layers["counts"] = q.layers["counts"].toarray()
    q.layers["counts"][33, 0] = -1
    with pytest.raises(ValueError, match=r"adata counts \(layers\['counts'\]\), cells 30-39: contains negative"):
        annotate(q, models["logreg"], chunk_size=10)


def test_annotate_file_reads_blocks_and_writes_a_copy_with_the_labels(models, tmp_path, monkeypatch):
    q = _query()
    q.layers["counts"] = q.layers["counts"] * 1     # the layer, not X, holds the counts annotate reads
    q.X = sp.csr_matrix(q.X.shape, dtype=np.float32)
    q.write_h5ad(tmp_path / "q.h5ad")
    asked = []
    rows = H5adCounts.rows
    monkeypatch.setattr(H5adCounts, "rows", lambda self, a, b: asked.append(b - a) or rows(self, a, b))
    table = annotate_file(tmp_path / "q.h5ad", tmp_path / "out.h5ad", models["logreg"], chunk_size=32,
                          threshold=0.6, progress=False)
    assert max(asked) == 32 and sum(asked) == q.n_obs     # never the whole matrix
    whole = annotate(q.copy(), models["logreg"], threshold=0.6, chunk_size=None)
    assert (table[KEY].to_numpy() == whole.obs[KEY].to_numpy()).all()
    assert list(table.index) == list(q.obs_names)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert (out.obs[KEY].to_numpy() == whole.obs[KEY].to_numpy()).all()
    np.testing.assert_allclose(out.obs[f"{KEY}_confidence"], whole.obs[f"{KEY}_confidence"], rtol=1e-6)
    assert out.uns[KEY]["chunk_size"] == 32 and out.uns[KEY]["layer"] == "counts"
    assert out.uns[KEY]["n_unassigned"] == whole.uns[KEY]["n_unassigned"]
    # nothing of the query is lost: its obs columns, layers and matrix are there as they were
    assert list(out.obs.columns[:2]) == ["cell_type", "cluster"]
    assert (out.layers["counts"] != q.layers["counts"]).nnz == 0 and out.X.nnz == 0


def test_annotate_file_votes_over_a_cluster_column_as_annotate_does(models, tmp_path):
    q = _query()
    q.write_h5ad(tmp_path / "q.h5ad")
    table = annotate_file(tmp_path / "q.h5ad", model=models["logreg"], over_clustering="cluster", chunk_size=20)
    whole = annotate(q.copy(), models["logreg"], over_clustering="cluster")
    voted = f"{KEY}_majority_voting"
    assert (table[voted].to_numpy() == whole.obs[voted].to_numpy()).all()
    assert table.attrs["uns"]["over_clustering"]["n_clusters"] == 7


def test_a_backed_anndata_is_read_block_by_block(models, tmp_path):
    q = _query()
    q.write_h5ad(tmp_path / "q.h5ad")
    backed = ad.read_h5ad(tmp_path / "q.h5ad", backed="r")
    got = annotate(backed, models["mlp"], layer=None, chunk_size=16)
    whole = annotate(q.copy(), models["mlp"], layer=None, chunk_size=None)
    assert (got.obs[KEY].to_numpy() == whole.obs[KEY].to_numpy()).all()
    backed.file.close()


def test_annotate_file_refuses_what_it_cannot_read_by_rows(models, tmp_path):
    q = _query()
    q.layers["counts"] = sp.csc_matrix(q.layers["counts"])
    q.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match=r"CSC matrix.*convert it to CSR"):
        annotate_file(tmp_path / "csc.h5ad", model=models["logreg"])
    with pytest.raises(ValueError, match=r"has no layers\['raw'\]"):
        annotate_file(tmp_path / "csc.h5ad", model=models["logreg"], layer="raw")
    with pytest.raises(ValueError, match="output.*must be an .h5ad"):
        annotate_file(tmp_path / "csc.h5ad", tmp_path / "out.csv", models["logreg"])
    with pytest.raises(ValueError, match="is not a column"):
        _query().write_h5ad(tmp_path / "q.h5ad")
        annotate_file(tmp_path / "q.h5ad", model=models["logreg"], over_clustering="leiden")
    assert not (tmp_path / "out.csv").exists()


def test_a_dense_matrix_on_disk_is_read_by_rows(models, tmp_path):
    q = _query()
    del q.layers["counts"]
    q.X = q.X.toarray()
    q.write_h5ad(tmp_path / "dense.h5ad")
    with h5py.File(tmp_path / "dense.h5ad") as f:
        assert f["X"].attrs["encoding-type"] == "array"
    table = annotate_file(tmp_path / "dense.h5ad", model=models["logreg"], chunk_size=25)
    whole = annotate(q.copy(), models["logreg"])
    assert (table[KEY].to_numpy() == whole.obs[KEY].to_numpy()).all()


def test_cellbook_annotate_streams_the_query(models, tmp_path):
    q = _query()
    q.write_h5ad(tmp_path / "q.h5ad")
    save_model(models["logreg"], tmp_path / "m.cbm")
    run = subprocess.run([sys.executable, "-m", "cellbook.cli", "annotate", str(tmp_path / "q.h5ad"), "--model",
                          str(tmp_path / "m.cbm"), "-o", str(tmp_path / "out.h5ad"), "--chunk-size", "40",
                          "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"{q.n_obs} cells annotated" in run.stdout and run.stderr == ""
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    whole = cellbook.annotate(q.copy(), models["logreg"])
    assert (out.obs[KEY].to_numpy() == whole.obs[KEY].to_numpy()).all()
    assert out.uns[KEY]["chunk_size"] == 40
