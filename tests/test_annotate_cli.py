"""`cellbook annotate`: train on a reference or read a model file, annotate an .h5ad, one-line errors."""
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbook.cli import main

REPO = Path(__file__).resolve().parents[1]


def _cells(n, genes, seed, markers=("G0", "G10", "G20")):
    """Cells of types A/B/C, raw counts in X and layers['counts']; type t is high on 10 genes from markers[t]."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["A", "B", "C"], n // 3)
    lam = np.ones((n, len(genes)))
    for i, t in enumerate("ABC"):
        start = int(markers[i][1:])
        cols = [j for j, g in enumerate(genes) if g.startswith("G") and start <= int(g[1:]) < start + 10]
        lam[np.ix_(y == t, cols)] = 10
    X = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
    a = ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": y}, index=[f"c{seed}_{i}" for i in range(n)]),
                   var=pd.DataFrame(index=list(genes)))
    a.layers["counts"] = X.copy()
    return a


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    _cells(90, [f"G{j}" for j in range(60)] + [f"R{j}" for j in range(20)], 0).write_h5ad(d / "ref.h5ad")
    q = _cells(60, [f"Q{j}" for j in range(10)] + [f"G{j}" for j in range(60)][::-1], 1)
    del q.obs["cell_type"]
    q.write_h5ad(d / "query.h5ad")
    return d


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cellbook.cli", "annotate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_on_a_reference_saves_the_model_and_annotates(files):
    r = _run("query.h5ad", "--reference", "ref.h5ad", "--label-key", "cell_type", "--method", "logreg",
             "-p", "n_top_genes=30", "--model-out", "model.cbm", "-o", "out.h5ad", "--threshold", "0.5",
             "--majority-voting", cwd=files)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "60 cells annotated by TunedLogisticRegression (trained on 90 cells of ref.h5ad)" in lines[0]
    assert "genes: 30 of the model's 30 found; 3 labels" in lines[1] and "majority voting over" in lines[1]
    assert "model saved to model.cbm" in r.stdout and len(lines) < 12
    out = ad.read_h5ad(files / "out.h5ad")
    key = "predicted_cell_type"
    for col in (key, f"{key}_confidence", f"{key}_majority_voting", f"{key}_over_clustering"):
        assert col in out.obs
    assert out.uns[key]["training"]["n_shared_genes"] == 60 and out.uns[key]["threshold"] == 0.5
    # the query's cells follow the reference's types (first 20 cells: A, ...)
    assert (out.obs[key].astype(str).to_numpy() == np.repeat(["A", "B", "C"], 20)).mean() > 0.9
    assert not [p.name for p in files.iterdir() if p.name.startswith(".")]      # no temporary files left

    # the saved model, read back (in process: same code path as the subprocess, faster)
    assert main(["annotate", str(files / "query.h5ad"), "--model", str(files / "model.cbm"),
                 "-o", str(files / "out2.h5ad"), "--key", "ct", "--layer", "counts"]) == 0
    out2 = ad.read_h5ad(files / "out2.h5ad")
    assert np.array_equal(out2.obs["ct_confidence"], out.obs[f"{key}_confidence"])
    assert out2.uns["ct"]["model_file"].endswith("model.cbm")


def test_cli_bad_input_is_one_line_and_exit_code_1(files):
    r = _run("missing.h5ad", "--model", "model.cbm", "-o", "out.h5ad", cwd=files)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["cellbook: error: query missing.h5ad does not exist"]


@pytest.mark.parametrize("case,args,message", [
    ("not-h5ad", ["notes.h5ad", "--reference", "ref.h5ad"], "query notes.h5ad is not an HDF5 file"),
    ("not-a-model", ["query.h5ad", "--model", "ref.h5ad"], "ref.h5ad is not a cellbook model file"),
    ("no-counts", ["normalised.h5ad", "--reference", "ref.h5ad"], "normalised.h5ad: query counts (X): contains "
                                                                 "non-integer values"),
    ("no-layer", ["query.h5ad", "--reference", "ref.h5ad", "--layer", "raw"], "query.h5ad has no layers['raw']"),
    ("both", ["query.h5ad", "--reference", "ref.h5ad", "--model", "m.cbm"], "give either --model"),
    ("model-out-without-reference", ["query.h5ad", "--model", "m.cbm", "--model-out", "x.cbm"],
     "--model-out only apply when training"),
    ("label-key", ["query.h5ad", "--reference", "ref.h5ad", "--label-key", "label"],
     "ref.h5ad: obs['label'] is missing"),
    ("method", ["query.h5ad", "--reference", "ref.h5ad", "--method", "svm"], "unknown method 'svm'"),
    ("no-shared-genes", ["other.h5ad", "--reference", "ref.h5ad"], "only 0 of the query's 5 genes"),
])
def test_cli_bad_inputs(files, capsys, monkeypatch, case, args, message):
    monkeypatch.chdir(files)
    (files / "notes.h5ad").write_text("cell,type\n")
    if not (files / "normalised.h5ad").exists():
        a = ad.read_h5ad(files / "query.h5ad")
        del a.layers["counts"]
        a.X = a.X * 0.37
        a.write_h5ad(files / "normalised.h5ad")
        ad.AnnData(X=np.ones((4, 5), np.float32), var=pd.DataFrame(index=[f"X{j}" for j in range(5)])).write_h5ad(
            files / "other.h5ad")
    assert main(["annotate", *args, "-o", "bad.h5ad"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cellbook: error: ") and message in err[0], err
    assert not (files / "bad.h5ad").exists()
