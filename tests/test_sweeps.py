"""The book's sweeps give the same numbers on any backend: a small real sweep from each part, run in
process and on a 2-worker Dask LocalCluster on 127.0.0.1 (and Part III also on a scheduler and a
worker started as separate processes, joined by address)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

import cellbook as cb  # noqa: E402
from cellbook import parallel  # noqa: E402

DASK = dict(backend="dask", n_workers=2, threads_per_worker=1)


pytestmark = pytest.mark.usefixtures("parallel_clean", "parallel_shutdown")   # tests/conftest.py


def _both(run):
    """``run()`` in process, then with every map_tasks call on the 2-worker LocalCluster."""
    serial = run()
    parallel.configure(**DASK)
    try:
        return serial, run()
    finally:
        parallel._CONFIG.clear()


# Part I ---------------------------------------------------------------------------------------------
def test_part1_models_on_splits_match_serial(data_root, monkeypatch, one_torch_thread):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    raw = cb.datasets.load_scrna("vangalen2019")
    ad = cb.datasets.bmmc(raw, n_types=5, n_cells=400, min_cells_per_gene=3, seed=0)
    y, X, genes = ad.obs["cell_type"].astype(str).values, ad.layers["counts"], list(ad.var_names)
    # CellTypist's majority voting runs scanpy's neighbours, which changed torch's threads for the next split of a
    # serial run but not on a worker (test_parallel and test_baselines_part1 check that this no longer happens)
    zoo = cb.comparison.model_zoo(include=["MLP", "kNN on PCA", "CellTypist + majority voting"],
                                  celltypist={"with_mean": False})
    splits = cb.splits.repeated_splits(y, seeds=[0, 1], test_size=0.3)
    deep = dict(transform="log1p", n_genes=100, max_epochs=30, lr=2e-3, batch_size=64, patience=3, device="cpu")

    def run():
        rec, preds, _ = cb.comparison.evaluate_models(X, y, splits, zoo, gene_names=genes, progress=False, **deep)
        return rec.drop(columns="fit_seconds"), preds

    (r1, p1), (r2, p2) = _both(run)
    assert len(r1) == 8 and set(r1["model"]) == {"MLP", "kNN on PCA", "CellTypist", "CellTypist + majority voting"}
    pd.testing.assert_frame_equal(r1, r2)
    assert p1.keys() == p2.keys() and all(np.array_equal(p1[k], p2[k]) for k in p1)


# Part II --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stem_small(data_root):
    from cellbook.preprocess import imaging as im
    from cellbook.preprocess import spectral as sp

    stem = cb.datasets.load_images("stemcell_passage_phase", path=data_root / "stemcell_passage_phase")
    X220, keep, _ = im.preprocess_set(stem.images)
    labels, groups = stem.labels[keep], stem.groups[keep]
    return sp, im.downsample(X220, (40, 56)), labels, groups


def test_part2_ssn_grid_matches_serial(stem_small):
    sp, Xs, labels, groups = stem_small
    stacks = np.stack([sp.spectral_stack(x, (1.0, 2.0)) for x in Xs])
    yb = np.where(labels == sorted(set(labels))[0], "a", "b")

    def run():
        return sp.ssn_grid(stacks, yb, groups, ws_values=(1, 3), ssn_values=(2, 4), n_pixels=8, n_splits=3, seed=0)

    g1, g2 = _both(run)
    assert len(g1) == 2 * 2 * 3
    pd.testing.assert_frame_equal(g1, g2)


def test_part2_image_models_match_serial(stem_small, one_torch_thread):
    sp, Xs, labels, groups = stem_small
    X = sp.stack_images(Xs, (1.0,))
    folds = cb.splits.grouped_folds(labels, groups, n_splits=2, seed=0)
    tasks = [dict(X=X, labels=labels, train=tr, test=te, model="scnn", seed=k, widths=(4, 8), epochs=2,
                  batch_size=16, lr=2e-3, device="cpu", positive=sorted(set(labels))[0])
             for k, (tr, te) in enumerate(folds)]

    def run():
        return cb.map_tasks(cb.sweeps.fit_image_model, tasks, progress=False)

    a, b = _both(run)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x["pred"], z["pred"])
        np.testing.assert_array_equal(x["score"], z["score"])


# Part III -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tcga(data_root):
    from cellbook.datasets import bulk

    ad = bulk.load_bulk("tcga6", path=data_root / "tcga6_rnasum_counts")
    return ad.X, ad.obs["cell_type"].astype(str).to_numpy()


def _architecture_tasks(X, y):
    data = cb.sweeps.prepare_folds(X, cb.splits.stratified_kfold(y, 2, seed=0), n_genes=200)
    return [dict(X_train=Xtr, X_test=Xte, architecture=a, seed=f, epochs=3, batch_size=32, lr=1e-3,
                 optimizer="adam", device="cpu", pca_components=30 if a == "L30" else None)
            for f, (Xtr, Xte) in enumerate(data) for a in ("L30", "L50,G,L30")]


def _strip(results):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results]


def test_part3_architecture_sweep_matches_serial(tcga, one_torch_thread):
    tasks = _architecture_tasks(*tcga)
    a, b = _both(lambda: cb.map_tasks(cb.sweeps.fit_autoencoder_fold, tasks, progress=False))
    assert len(a) == 4 and "pca_mse" in a[0] and "pca_mse" not in a[1]
    assert _strip(a) == _strip(b)


def test_part3_classifiers_noise_and_unseen_classes_match_serial(tcga, one_torch_thread):
    X, y = tcga
    common = dict(n_genes=200, counts=True, architecture="L50,G,L30", mse_weight=0.5, epochs=2, batch_size=32,
                  lr=1e-3, optimizer="adam", device="cpu")
    cls = [dict(X=X, y=y, split_seed=s, test_size=0.25, classifier_hidden=None, n_trees=20, **common) for s in (0, 1)]
    cv = cb.splits.stratified_kfold(y, 2, seed=0)
    noise = [dict(X=X, y=y, train=tr, test=te, fold=f, seed=0, noise_sd=0.1, test_noise_sds=[0.0, 0.5],
                  names=("den", "ctrl", "lr"), tag="t", **common) for f, (tr, te) in enumerate(cv)]

    held = [dict(X=X, y=y, held_out=t, seed=0, n_genes=200, counts=True, architecture="L50,G,L30", epochs=2,
                 batch_size=32, lr=1e-3, optimizer="adam", device="cpu") for t in sorted(set(y))[:2]]

    def run():
        return (cb.map_tasks(cb.sweeps.classify_split, cls, progress=False),
                cb.map_tasks(cb.sweeps.noise_fold, noise, progress=False),
                cb.map_tasks(cb.sweeps.held_out_class, held, progress=False))

    (c1, n1, h1), (c2, n2, h2) = _both(run)
    assert h1 == h2 and h1[0]["tissue"] == sorted(set(y))[0]
    for (d1, p1, y1), (d2, p2, y2) in zip(c1, c2):
        pd.testing.assert_frame_equal(d1, d2)
        assert all(np.array_equal(p1[k], p2[k]) for k in p1) and np.array_equal(y1, y2)
    assert n1 == n2


def test_part3_sweep_on_a_scheduler_joined_by_address(tcga, tmp_path, one_torch_thread):
    """`dask scheduler` and `dask worker` as separate processes (as on a cluster), joined by address."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(cb.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(200):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        import json

        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                       "--nthreads", "1", "--no-dashboard"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        tasks = _architecture_tasks(*tcga)[:2]
        serial = cb.map_tasks(cb.sweeps.fit_autoencoder_fold, tasks, progress=False)
        remote = cb.map_tasks(cb.sweeps.fit_autoencoder_fold, tasks, scheduler=address, progress=False)
        assert _strip(serial) == _strip(remote)
    finally:
        parallel.shutdown()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


# Part III: the chapters' helpers (moved out of the notebooks) ----------------------------------------------
def test_part3_tables_from_task_results_are_the_chapters_tables():
    meta = [(f, a) for f in range(2) for a in ("L300,G,L30", "L30")]
    res = [{"test_mse": 0.1 * (i + 1), "seconds": 1.0 + i, "curve": [(1, 0.5 + i), (2, 0.3 + i)],
            "pca_mse": 0.7 + i} for i in range(4)]
    for r in res[1::2]:
        del r["pca_mse"]
    summary = cb.sweeps.architecture_summary(meta, res, n_genes=100)
    assert list(summary["architecture"]) == ["L300,G,L30", "L30", "PCA-30 (baseline)"]   # best first
    assert summary.set_index("architecture").loc["L30", "test_mse_mean"] == pytest.approx(0.3)
    assert summary["n"].tolist() == [2, 2, 2] and summary["layers"].iloc[-1].startswith("linear projection")
    by_fold = cb.sweeps.curve_summary(res[:2])
    assert by_fold["epoch"].tolist() == [1, 2] and by_fold["test_mse_mean"].tolist() == pytest.approx([1.0, 0.8])
    codes = [(f, c) for f in range(2) for c in (10, 30)]
    curves = cb.sweeps.curve_summary(res, codes, key="code")
    assert list(curves.columns[:2]) == ["code", "epoch"] and len(curves) == 4
    finals = cb.sweeps.final_summary(codes, [{**r, "pca_mse": 1.0} for r in res])
    assert finals["code"].tolist() == [10, 30] and finals["pca_mse_mean"].tolist() == [1.0, 1.0]


def test_part3_rank_experiment_ranks_every_test_sample(tcga, one_torch_thread):
    X, y = tcga
    out = cb.sweeps.rank_experiment(X, y, n_genes=200, seed=0, test_size=0.25, counts=True,
                                    architecture="L50,G,L30", epochs=1, batch_size=32, lr=1e-3,
                                    optimizer="adam", device="cpu")
    assert out["n_test"] == len(out["y_test"]) == out["Xte"].shape[0] == out["rep"].shape[0] == 91
    for name in ("Spearman", "MSE"):
        assert sum(out[name].values()) == pytest.approx(1.0)
        assert sum(out[name + "_reverse"].values()) == pytest.approx(1.0)
        assert len(out[name + "_pairs"]) == 91


def test_part3_noise_experiment_is_noise_fold_on_every_fold_and_its_facts(tcga, one_torch_thread):
    X, y = tcga
    names = ("den", "ctrl", "lr")
    common = dict(n_genes=100, counts=True, architecture="L40,G,L10", mse_weight=0.5, epochs=1, batch_size=64,
                  lr=1e-3, optimizer="adam", noise_sd=0.1, test_noise_sds=[0.0, 0.1, 2.0], names=names,
                  device="cpu")
    runs, disagree = cb.sweeps.noise_experiment(X, y, 2, "t", seed=0, **common)
    direct = [cb.sweeps.noise_fold(X, y, tr, te, f, tag="t", seed=0, **common)
              for f, (tr, te) in enumerate(cb.splits.stratified_kfold(y, 2, 0))]
    pd.testing.assert_frame_equal(runs, pd.DataFrame([r for rows, _ in direct for r in rows]))
    assert len(disagree) == 2 * 3
    summary = cb.metrics.summarize(runs, by=["model", "test noise SD"], metrics=["accuracy", "f1_macro"])
    table = cb.sweeps.noise_table(summary, names)
    assert list(table.columns) == list(names) and list(table.index) == [0.0, 0.1, 2.0]
    assert all(" ± " in v for v in table.to_numpy().ravel())
    facts = cb.sweeps.sweep_facts(summary, disagree, "t", names, [0.0, 0.1, 2.0])
    assert set(facts) == {"tag", *names, "tie_at", "disagree"} and set(facts["disagree"]) == {0.0, 0.1, 2.0}
    assert facts["den"]["clean"] == pytest.approx(summary.set_index(["model", "test noise SD"])
                                                  .loc[("den", 0.0), "accuracy_mean"])
    as_saved = {**facts, "disagree": {str(k): v for k, v in facts["disagree"].items()}}   # JSON keys
    text = cb.sweeps.sweep_sentence(as_saved, names, [0.0, 0.1, 2.0])
    assert text.startswith("- **t**: clean accuracy") and text.endswith("at SD 2.\n")
    assert cb.sweeps.sweep_sentence(None, names, [0.0]) == ""
    diff = cb.sweeps.paired_differences(runs, "ctrl")
    assert set(diff["model"]) == {"den", "lr"} and (diff["n"] == 2).all()
    s = runs.set_index(["model", "fold", "test noise SD"])["accuracy"]
    want = np.mean([s[("lr", f, 2.0)] - s[("ctrl", f, 2.0)] for f in range(2)])
    got = diff.set_index(["model", "test noise SD"]).loc[("lr", 2.0), "difference_mean"]
    assert got == pytest.approx(want)


def test_part3_autoencoder_tasks_fold_by_fold():
    data = [("tr0", "te0"), ("tr1", "te1")]
    meta, tasks = cb.sweeps.autoencoder_tasks(data, ["A", "B"], seed=5, pca={"A": 30}, epochs=3)
    assert meta == [(0, "A"), (0, "B"), (1, "A"), (1, "B")]
    assert tasks[0] == dict(X_train="tr0", X_test="te0", architecture="A", seed=5, pca_components=30, epochs=3)
    assert tasks[3] == dict(X_train="tr1", X_test="te1", architecture="B", seed=6, pca_components=None, epochs=3)



def test_part3_autoencoder_tasks_one_pca_setting_for_every_task():
    _, tasks = cb.sweeps.autoencoder_tasks([("a", "b")], ["A", "B"], seed=0, pca="code")
    assert [t["pca_components"] for t in tasks] == ["code", "code"]
    _, tasks = cb.sweeps.autoencoder_tasks([("a", "b")], ["A"], seed=0)
    assert tasks[0]["pca_components"] is None


def test_part3_stratified_subsample_keeps_order_and_classes():
    import anndata as ad

    y = np.repeat(["a", "b", "c"], [60, 30, 10])
    obs = pd.DataFrame({"cell_type": y}, index=[str(i) for i in range(100)])
    data = ad.AnnData(np.arange(100, dtype=float).reshape(100, 1), obs=obs)
    sub = cb.sweeps.stratified_subsample(data, 50, seed=0)
    assert sub.n_obs == 50 and list(sub.obs_names) == sorted(sub.obs_names, key=int)   # original order
    assert sub.obs["cell_type"].value_counts().to_dict() == {"a": 30, "b": 15, "c": 5}
    same = cb.sweeps.stratified_subsample(data, 50, seed=0)
    assert list(same.obs_names) == list(sub.obs_names)
    assert cb.sweeps.stratified_subsample(data, None, seed=0) is data
    assert cb.sweeps.stratified_subsample(data, 100, seed=0) is data


def test_part3_nearest_class_is_the_closest_mean_profile():
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    X = np.vstack([base + rng.normal(0, 0.1, 50) for _ in range(4)] + [rng.normal(size=50) for _ in range(4)])
    y = np.array(["near"] * 4 + ["far"] * 4)
    nearest, rho = cb.sweeps.nearest_class(base[None, :] + rng.normal(0, 0.1, (3, 50)), X, y)
    assert nearest == "near" and list(rho) == ["far", "near"] and rho["near"] > 0.9 > rho["far"]
