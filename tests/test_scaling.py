"""cellbook.scaling: resampled cells on disk, measured runs in their own process, the table and its figure."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from synthetic_cells import marker_adata

from cellbook import scaling
from cellbook.plots import scrna as scrna_plots


def _cells(n=90, seed=0):
    a = marker_adata(n=n, g=60, seed=seed, high=6)
    a.layers["counts"] = sp.csr_matrix(a.X)
    return a


def test_resampled_cells_keep_each_source_cells_nonzero_genes():
    X = sp.csr_matrix(_cells().X)
    B, src = scaling.resample_block(X, 500, np.random.default_rng(0))
    assert B.shape == (500, X.shape[1]) and B.dtype == np.float32
    assert (np.diff(B.indptr) == np.diff(X.indptr)[src]).all()          # the same non-zero genes per cell...
    assert all((B[i].indices == X[s].indices).all() for i, s in enumerate(src[:50]))
    assert (B.data >= 1).all() and (B.data == np.round(B.data)).all()    # ...as integer counts
    lib_new, lib_src = np.asarray(B.sum(1)).ravel(), np.asarray(X[src].sum(1)).ravel()
    assert 0.8 < lib_new.mean() / lib_src.mean() < 1.2 and not np.array_equal(lib_new, lib_src)


def test_write_resampled_writes_an_anndata_block_by_block_and_reuses_it(tmp_path):
    a = _cells()
    path = scaling.write_resampled(tmp_path / "q.h5ad", a, 250, seed=3, block=64, source="synthetic")
    q = ad.read_h5ad(path)
    assert q.shape == (250, a.n_vars) and sp.issparse(q.X) and q.X.format == "csr"
    assert list(q.var_names) == list(a.var_names)
    src = q.obs["source_cell"].astype(str).to_numpy()
    assert (q.obs["cell_type"].astype(str).to_numpy() == a.obs.loc[src, "cell_type"].to_numpy()).all()
    assert q.uns["resampled"]["n"] == 250 and q.uns["resampled"]["source"] == "synthetic"
    before = path.stat().st_mtime_ns
    scaling.write_resampled(path, a, 250, seed=3, block=64, source="synthetic")
    assert path.stat().st_mtime_ns == before                             # the same recipe: kept
    scaling.write_resampled(path, a, 250, seed=4, block=64, source="synthetic")
    assert path.stat().st_mtime_ns != before                             # another seed: written again


def test_a_run_past_the_memory_limit_is_killed_and_says_so():
    row = scaling.measure({"stage": "predict", "method": "cellbook", "cells": 1, "query": "x", "model": "y"},
                          memory_gb=0.001)
    assert row["status"] == "skipped: passed 0.001 GB of memory" and row["seconds"] is None


def test_a_failing_run_reports_its_error():
    row = scaling.measure({"stage": "predict", "method": "cellbook", "cells": 1, "query": "/no/such.h5ad",
                           "model": "/no/model.cbm"})
    assert row["status"].startswith("failed:") and "does not exist" in row["status"]


def test_sizes_after_a_failure_or_past_the_time_limit_are_skipped_with_the_reason():
    done = [{"method": "m", "stage": "predict", "cells": 1000, "status": "ok", "seconds": 60.0},
            {"method": "k", "stage": "predict", "cells": 1000, "status": "skipped: passed 8 GB of memory"}]
    assert scaling._too_slow(done, "m", "predict", 5000, timeout=600) is None
    assert "about 20 min expected" in scaling._too_slow(done, "m", "predict", 20000, timeout=600)
    assert scaling._too_slow(done, "k", "predict", 5000, 600) == "skipped: passed 8 GB of memory at 1,000 cells already"
    assert scaling._too_slow(done, "x", "predict", 5000, 600) is None


def test_the_grid_end_to_end_and_its_table(tmp_path):
    rows = scaling.annotation_scaling(_cells(n=150), tmp_path, reference_sizes=(None, 300), query_sizes=(200, 400),
                                      methods=("cellbook",), log=None)
    assert list(rows["stage"]) == ["fit", "fit", "predict", "predict"]
    assert (rows["status"] == "ok").all(), rows["status"].tolist()
    assert list(rows["cells"]) == [100, 300, 200, 400] and list(rows["resampled"]) == [False, True, True, True]
    assert (rows["accuracy"] > 0.8).all() and (rows["peak_rss_gb"] > 0.05).all()
    table = scaling.scaling_table(rows)
    assert table["time_vs_celltypist"].isna().all()                     # no CellTypist run: no ratio
    fits, predicts = scaling.format_table(table, "fit"), scaling.format_table(table, "predict")
    for shown in (fits, predicts):
        assert not shown.astype(str).apply(lambda c: c.str.contains("nan")).any().any()
    assert fits["cells"].tolist() == ["100 (real)", "300"] and predicts["cells"].tolist() == ["200", "400"]
    assert fits["accuracy / macro-F1"].str.match(r"^[01]\.\d{3} / [01]\.\d{3}$").all()
    fig = scrna_plots.annotation_scaling(table, "a machine", labels=scaling.SHORT)
    assert len(fig.axes) == 2


def test_ratios_are_to_the_celltypist_run_that_finished():
    rows = pd.DataFrame([
        {"stage": "predict", "method": "cellbook", "cells": 10, "status": "ok", "seconds": 2.0, "peak_rss_gb": 1.0},
        {"stage": "predict", "method": "celltypist", "cells": 10, "status": "skipped: x", "seconds": None,
         "peak_rss_gb": 9.0},
        {"stage": "predict", "method": "celltypist_blocks", "cells": 10, "status": "ok", "seconds": 8.0,
         "peak_rss_gb": 4.0}])
    table = scaling.scaling_table(rows)
    assert table.loc[0, "time_vs_celltypist"] == pytest.approx(0.25)
    assert table.loc[0, "memory_vs_celltypist"] == pytest.approx(0.25)
    assert np.isnan(table.loc[1, "time_vs_celltypist"])


@pytest.mark.parametrize("make", ["logreg", "svm"])
def test_large_references_are_tuned_on_a_stratified_subsample_and_fitted_on_every_cell(make):
    from cellbook.baselines import LinearSVMClassifier, TunedLogisticRegression

    a = _cells(n=300)
    y = a.obs["cell_type"].to_numpy()
    cls = TunedLogisticRegression if make == "logreg" else LinearSVMClassifier
    grid = {"C": [0.01, 0.1]}
    small = cls(n_top_genes=30, param_grid=grid, max_tune_cells=90).fit(a.X, y)
    assert small.n_tune_cells_ == 90
    tuned = np.unique(np.concatenate([np.concatenate(f) for f in small.cv_folds_]))
    assert len(tuned) == 90 and (pd.Series(y[tuned]).value_counts() == 30).all()    # each type keeps its share
    whole = cls(n_top_genes=30, param_grid=grid, max_tune_cells=None).fit(a.X, y)
    assert whole.n_tune_cells_ == 300 and len(np.concatenate(whole.cv_folds_[0])) == 300
    assert (small.predict(a.X) == y).mean() > 0.9          # the final model is fitted on every cell
    if make == "svm":                                       # calibrated on folds of every cell
        assert sum(len(c.calibrators) for c in small.model_.calibrated_classifiers_) == 3 * 3
