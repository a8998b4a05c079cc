"""A reference named by a registered dataset (`cellbook annotate --reference vangalen2019_bm_seqwell`), the
threshold's documentation, and method names spelt exactly."""
import anndata as ad
import numpy as np
import pytest
from synthetic_cells import marker_adata

from cellbook.annotation import METHODS, annotate, fit_reference, make_model
from cellbook.annotation._data import REFERENCE_DATASETS, load_reference
from cellbook.cli import build_parser, main
from cellbook.datasets import REGISTRY, DatasetNotFoundError, scrna

VANGALEN = "vangalen2019_bm_seqwell"
# Fast settings of the default method (logreg): one candidate, 2 inner folds, 500 genes.
FAST_LOGREG = ["-p", "param_grid={C: [0.1]}", "-p", "n_folds=2", "-p", "n_top_genes=500"]


def _cells(n=90, g=70, seed=0):
    """Types A/B/C, raw counts in X and layers['counts']; type t is high on genes 10t..10t+9."""
    return marker_adata(n, g, seed, counts_layer=True)


def _error(capsys, *args) -> str:
    assert main(["annotate", *args]) == 1
    return capsys.readouterr().err


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No dataset is found (empty CELLBOOK_DATA and cache); a query q.h5ad in the working folder."""
    for var in ("CELLBOOK_DATA", "CELLBOOK_CACHE"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.chdir(tmp_path)
    _cells(30, seed=1).write_h5ad(tmp_path / "q.h5ad")
    return tmp_path


def test_the_reference_datasets_are_the_registered_single_cell_loaders():
    assert set(REFERENCE_DATASETS) <= set(REGISTRY)
    assert sorted(REFERENCE_DATASETS.values()) == sorted(scrna.LOADERS)


# ----------------------------------------------------------------------- real data, end to end
def test_cli_trains_on_a_dataset_named_by_the_registry(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    ref = scrna.vangalen2019()
    rng = np.random.default_rng(0)
    query = ref[np.sort(rng.choice(ref.n_obs, 200, replace=False))].copy()
    truth = query.obs.pop("cell_type").astype(str).to_numpy()
    query.uns.clear()
    query.write_h5ad(tmp_path / "query.h5ad")
    monkeypatch.chdir(tmp_path)
    assert main(["annotate", "query.h5ad", "--reference", VANGALEN, *FAST_LOGREG, "--model-out", "m.cbm",
                 "-o", "out.h5ad"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"200 cells annotated by TunedLogisticRegression (trained on {ref.n_obs} cells of {VANGALEN})" in lines[0]
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    info = out.uns["predicted_cell_type"]
    assert info["training"]["reference"] == VANGALEN and info["training"]["n_cells"] == ref.n_obs
    assert (out.obs["predicted_cell_type"].astype(str).to_numpy() == truth).mean() > 0.7   # measured: 0.805
    from cellbook.annotation import load_model
    assert load_model(tmp_path / "m.cbm").cellbook_training_["reference"] == VANGALEN


# ----------------------------------------------------------------------- files, names and errors
def test_an_existing_file_wins_over_a_dataset_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _cells().write_h5ad(tmp_path / VANGALEN)        # a file that happens to have the dataset's name
    q = _cells(60, seed=1)
    del q.obs["cell_type"]
    q.write_h5ad(tmp_path / "query.h5ad")
    assert main(["annotate", "query.h5ad", "--reference", VANGALEN, *FAST_LOGREG, "-o", "out.h5ad"]) == 0
    assert f"(trained on 90 cells of {VANGALEN})" in capsys.readouterr().out.splitlines()[0]


def test_python_api_takes_a_file_and_records_it(tmp_path):
    _cells().write_h5ad(tmp_path / "ref.h5ad")
    q = annotate(_cells(60, seed=1), reference=str(tmp_path / "ref.h5ad"), model="logreg_scaled")
    assert q.uns["predicted_cell_type"]["training"]["reference"] == str(tmp_path / "ref.h5ad")
    assert (q.obs["predicted_cell_type"].astype(str) == q.obs["cell_type"]).mean() > 0.9
    model = fit_reference(tmp_path / "ref.h5ad", "logreg_scaled")
    assert model.cellbook_training_["reference"] == str(tmp_path / "ref.h5ad")
    assert "reference" not in fit_reference(_cells(), "logreg_scaled").cellbook_training_
    assert load_reference(q)[1] is None


@pytest.mark.parametrize("name", ["tcga6_rnasum_counts", "stemcell_passage_phase", "genesets"])
def test_a_registered_dataset_of_another_kind_is_refused(no_data, capsys, name):
    err = _error(capsys, "q.h5ad", "--reference", name, "-o", "out.h5ad")
    assert err.count("\n") == 1 and err.startswith("cellbook: error: ")
    assert f"reference {name!r} is a registered dataset" in err and "not labelled single cells" in err
    assert "single-cell (scRNA-seq) datasets " + ", ".join(REFERENCE_DATASETS) in err
    with pytest.raises(ValueError, match="is a registered dataset"):
        fit_reference(name)


@pytest.mark.parametrize("name", ["vangalen2019", "missing.h5ad"])
def test_neither_a_file_nor_a_dataset_name(no_data, capsys, name):
    err = _error(capsys, "q.h5ad", "--reference", name, "-o", "out.h5ad")
    assert err.count("\n") == 1
    assert f"reference {name!r} is neither a file nor a registered dataset name" in err
    assert ", ".join(REFERENCE_DATASETS) in err and "cellbook data list" in err
    (no_data / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="'folder' is a folder, not a file, and not a registered dataset"):
        annotate(_cells(), reference="folder")


def test_a_registered_dataset_not_here_names_the_fetch_command(no_data, capsys):
    err = _error(capsys, "q.h5ad", "--reference", "gse194122_multiome", "-o", "out.h5ad")
    assert "dataset 'gse194122_multiome'" in err and "was not found" in err
    assert "`cellbook data fetch gse194122_multiome`" in err
    with pytest.raises(DatasetNotFoundError, match="cellbook data fetch vangalen2019_bm_seqwell"):
        fit_reference(VANGALEN)


# ----------------------------------------------------------------------- threshold and method names
def test_threshold_help_and_docstring_say_it_is_the_fine_labels_probability():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["annotate"]
    text = " ".join(sub.format_help().split())
    assert "probability of the fine label" in text and "T 0.45, CTL 0.35, NK 0.20" in text
    assert "cellbook.annotation.to_lineage" in text and "vangalen2019_bm_seqwell" in text
    doc = " ".join(annotate.__doc__.split())
    assert "probability of the fine label" in doc and "(T 0.45, CTL 0.35, NK 0.20)" in doc and "to_lineage" in doc


@pytest.mark.parametrize("method,near", [("LOGREG", "logreg"), ("Mlp", "mlp"), ("Knn ", "knn"), ("svm", None)])
def test_method_names_are_exact(method, near, tmp_path, capsys, monkeypatch):
    valid = f"unknown method {method!r}; valid: {', '.join(METHODS)}"
    for call in (lambda: make_model(method), lambda: fit_reference(_cells(), method),
                 lambda: annotate(_cells(), method, reference=_cells())):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value).startswith(valid)
        assert (f"(method names are lower case: {near!r})" in str(err.value)) == (near is not None)
    monkeypatch.chdir(tmp_path)
    _cells().write_h5ad(tmp_path / "ref.h5ad")
    _cells(60, seed=1).write_h5ad(tmp_path / "q.h5ad")
    err = _error(capsys, "q.h5ad", "--reference", "ref.h5ad", "--method", method, "-o", "out.h5ad")
    assert err.count("\n") == 1 and valid in err


def test_a_wrong_case_method_without_a_reference_lists_the_methods(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"model='MLP' is no model file, and method names are lower case \(valid: "
                                         r"logreg, "):
        annotate(_cells(), "MLP")
