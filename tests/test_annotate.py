"""cellbook.annotation: gene alignment by name, confidence, training on shared genes, model files, voting."""
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from synthetic_cells import marker_adata

from cellbook.annotation import CellTypeClassifier, annotate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _adata(n=120, g=60, seed=0):
    return marker_adata(n, g, seed, index="c{i}")


@pytest.fixture(scope="module")
def fitted():
    clf = CellTypeClassifier("mlp", n_genes=None, max_epochs=15, lr=3e-3, device="cpu", patience=None)
    return clf.fit_adata(_adata())


def test_annotate_writes_labels_and_confidence(fitted):
    new = _adata(seed=1)
    annotate(new, fitted)
    assert (new.obs["predicted_cell_type"].astype(str) == new.obs["cell_type"]).mean() > 0.9
    conf = new.obs["predicted_cell_type_confidence"]
    assert ((conf > 1 / 3) & (conf <= 1)).all()
    assert new.uns["predicted_cell_type"]["n_genes_missing"] == 0


def test_genes_aligned_by_name_not_position(fitted):
    new = _adata(seed=1)
    shuffled = new[:, new.var_names[::-1]].copy()     # same genes, reversed order
    a = annotate(new.copy(), fitted).obs["predicted_cell_type_confidence"].values
    b = annotate(shuffled, fitted).obs["predicted_cell_type_confidence"].values
    assert np.allclose(a, b, atol=1e-5)


def test_missing_genes_filled_with_zeros_and_counted(fitted):
    new = _adata(seed=1)
    part = new[:, [g for g in new.var_names if g not in ("G50", "G51", "G52")]].copy()
    with pytest.warns(UserWarning, match="3 of the model's 60 genes are missing"):
        annotate(part, fitted)
    assert part.uns["predicted_cell_type"]["n_genes_missing"] == 3
    # identical to predicting with explicit zero columns (counts of the whole cell kept for log1p)
    zeroed = new.copy()
    zeroed.X[:, [50, 51, 52]] = 0
    annotate(zeroed, fitted)
    assert np.allclose(zeroed.obs["predicted_cell_type_confidence"], part.obs["predicted_cell_type_confidence"],
                       atol=1e-5)


def test_too_few_shared_genes_is_an_error(fitted):
    new = _adata(seed=1)
    new.var_names = [f"ENSG{j}" for j in range(new.n_vars)]
    with pytest.raises(ValueError, match="only 0 of the model's 60 genes"):
        annotate(new, fitted)


def test_annotate_bad_input(fitted):
    new = _adata(seed=1)
    new.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        annotate(new, fitted)
    with pytest.raises(ValueError, match="not fitted"):
        annotate(_adata(), CellTypeClassifier("mlp"))
    with pytest.raises(ValueError, match="CellTypeClassifier"):
        annotate(_adata(), object())


def test_fit_adata_needs_the_label_column():
    a = _adata()
    with pytest.raises(ValueError, match=r"obs\['label'\] is missing"):
        CellTypeClassifier("mlp", max_epochs=1).fit_adata(a, label_key="label")


def test_lineage_mapping_matches_whole_words():
    from cellbook.annotation import to_lineage

    got = to_lineage(["CD4+ T activated integrinB7+", "Naive CD20+ B IGKC+", "Lymph prog", "HSC", "earlyEry"])
    assert list(got) == ["T/NK", "B", None, "stem/progenitor", "erythroid"]


# ------------------------------------------------------------------ save / load
import zipfile  # noqa: E402

import torch  # noqa: E402

from cellbook.annotation import UNASSIGNED, fit_reference, load_model, majority_vote, save_model, shared_genes  # noqa: E402
from cellbook.baselines import PCAKNN, HVGLogisticRegression  # noqa: E402

TINY = dict(max_epochs=1, device="cpu", patience=None, n_genes=None, model_kwargs={"chunk": 50})


@pytest.mark.parametrize("arch,ensemble,k", [
    ("cnn", "joint", 2), ("mlp", None, 1), ("lstm_att", None, 1), (["cnn", "lstm"], "joint", 1),
    ("mlp", "soft", 2), ("mlp", "hard", 2),
])
def test_save_load_gives_identical_predictions_deep(tmp_path, arch, ensemble, k):
    a = _adata(n=90, g=150)
    clf = CellTypeClassifier(arch, ensemble=ensemble, k=k, **TINY).fit_adata(a)
    path = clf.save(tmp_path / "model.cbm")
    rng_before = torch.get_rng_state()
    back = load_model(path)
    assert torch.equal(rng_before, torch.get_rng_state())          # loading does not move the caller's RNG
    assert isinstance(back, CellTypeClassifier) and back.name == clf.name
    new = _adata(n=30, g=150, seed=3)
    assert np.array_equal(clf.predict_proba(new), back.predict_proba(new))
    assert list(back.classes_) == list(clf.classes_) and list(back.genes_) == list(clf.genes_)
    assert back.training_["n_cells"] == 90 and back.training_["label_key"] == "cell_type"
    info = back.model_file_
    assert info["format_version"] == 1 and {"cellbook", "torch", "sklearn", "python"} <= set(info["versions"])
    assert info["params"]["ensemble"] == ensemble and info["transform"]["name"] == "log1p"
    assert CellTypeClassifier.load(path).name == clf.name


@pytest.mark.parametrize("make", [lambda: HVGLogisticRegression(n_top_genes=30),
                                  lambda: PCAKNN(n_top_genes=30, n_pcs=5)])
def test_save_load_gives_identical_predictions_baseline(tmp_path, make):
    a = _adata()
    model = make().fit(a, a.obs["cell_type"].to_numpy())
    save_model(model, tmp_path / "b.cbm", training={"note": "test"})
    back = load_model(tmp_path / "b.cbm")
    new = _adata(seed=2)
    assert np.array_equal(model.predict_proba(new), back.predict_proba(new))
    assert back.cellbook_model_file_["training"] == {"note": "test"}
    assert len(back.cellbook_model_file_["model_genes"]) == 30
    with pytest.raises(ValueError, match="not a CellTypeClassifier"):
        CellTypeClassifier.load(tmp_path / "b.cbm")


def test_bad_model_files_are_clear_errors(tmp_path, fitted):
    good = fitted.save(tmp_path / "good.cbm")
    data = good.read_bytes()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.cbm")
    (tmp_path / "text.cbm").write_text("hello")
    with pytest.raises(ValueError, match=r"text.cbm is not a cellbook model file"):
        load_model(tmp_path / "text.cbm")
    (tmp_path / "cut.cbm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.cbm is not a cellbook model file .*truncated"):
        load_model(tmp_path / "cut.cbm")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "not a model")
    with pytest.raises(ValueError, match="other.zip is not a cellbook model file.*without cellbook_model.json"):
        load_model(tmp_path / "other.zip")
    with zipfile.ZipFile(good) as z:
        meta = json.loads(z.read("cellbook_model.json"))
        weights = z.read("state_dict.pt")
    with zipfile.ZipFile(tmp_path / "future.cbm", "w") as z:
        z.writestr("cellbook_model.json", json.dumps({**meta, "format_version": 99}))
        z.writestr("state_dict.pt", weights)
    with pytest.raises(ValueError, match="future.cbm was written by a newer cellbook.*format version 99"):
        load_model(tmp_path / "future.cbm")
    with zipfile.ZipFile(tmp_path / "torn.cbm", "w") as z:
        z.writestr("cellbook_model.json", json.dumps(meta))
        z.writestr("state_dict.pt", weights[:100])
    with pytest.raises(ValueError, match="torn.cbm: the model weights could not be read"):
        load_model(tmp_path / "torn.cbm")


def test_save_is_atomic_and_needs_a_fitted_model(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.cbm")
    before = path.read_bytes()
    bad = HVGLogisticRegression(n_top_genes=30).fit(_adata(), _adata().obs["cell_type"].to_numpy())
    bad.hook = lambda x: x                                      # code, not data
    with pytest.raises(ValueError, match="cannot be stored in a model file: it holds .*lambda"):
        save_model(bad, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.cbm"]
    with pytest.raises(ValueError, match="not fitted"):
        save_model(CellTypeClassifier("mlp"), tmp_path / "x.cbm")


# ----------------------------------------------------- training on the shared genes
def _pair(seed=0, n=120):
    """A reference and a query that share 60 genes (G*), each with genes of its own (R* / Q*)."""
    ref = _adata(n=n, g=60, seed=seed)
    rng = np.random.default_rng(seed + 10)
    own = ad.AnnData(X=rng.poisson(1.0, (n, 20)).astype(np.float32), obs=ref.obs,
                     var=pd.DataFrame(index=[f"R{j}" for j in range(20)]))
    ref = ad.concat([ref, own], axis=1, merge="first")
    q = _adata(n=n, g=60, seed=seed + 1)
    extra = ad.AnnData(X=rng.poisson(50.0, (n, 30)).astype(np.float32), obs=q.obs,
                       var=pd.DataFrame(index=[f"Q{j}" for j in range(30)]))
    q = ad.concat([extra, q], axis=1, merge="first")              # other gene order, 30 query-only genes
    return ref, q


def test_fit_adata_on_the_genes_shared_with_a_query():
    ref, q = _pair()
    clf = CellTypeClassifier("mlp", max_epochs=15, lr=3e-3, device="cpu", patience=None,
                             n_genes=None).fit_adata(ref, genes=q.var_names)
    assert list(clf.feature_names_in_) == [f"G{j}" for j in range(60)]
    assert {k: clf.training_[k] for k in ("n_shared_genes", "n_query_genes", "n_reference_genes")} == \
        {"n_shared_genes": 60, "n_query_genes": 90, "n_reference_genes": 80}
    annotate(q, clf)
    assert q.uns["predicted_cell_type"]["n_genes_missing"] == 0
    assert (q.obs["predicted_cell_type"].astype(str) == q.obs["cell_type"]).mean() > 0.9


def test_library_sizes_are_over_the_model_genes_at_training_and_prediction():
    ref, q = _pair()
    clf = CellTypeClassifier("mlp", max_epochs=2, device="cpu", patience=None, n_genes=None).fit_adata(
        ref, genes=q.var_names)
    shared = ref[:, clf.feature_names_in_].copy()
    # training input: log1p CP10k with totals over the shared genes
    X = shared.X
    expected = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    assert np.allclose(clf.features(X).toarray(), expected, atol=1e-5)
    # predicting the training cells given with all the reference's genes (R* too) = the training input
    a = annotate(ref.copy(), clf).obs["predicted_cell_type_confidence"].to_numpy()
    b = clf.predict_proba(shared).max(1)
    assert np.allclose(a, b, atol=1e-6)
    # genes the model never saw (Q*, 50 counts each) do not change a query cell's input
    with_q = annotate(q.copy(), clf).obs["predicted_cell_type_confidence"].to_numpy()
    without_q = annotate(q[:, clf.feature_names_in_].copy(), clf).obs["predicted_cell_type_confidence"].to_numpy()
    assert np.allclose(with_q, without_q, atol=1e-6)


def test_too_few_shared_genes_to_train_is_an_error():
    ref, q = _pair()
    q.var_names = [f"ENSG{j}" for j in range(q.n_vars)]
    with pytest.raises(ValueError, match=r"only 0 of the query's 90 genes are among the reference's 80 genes "
                                         r"\(need >= 50"):
        CellTypeClassifier("mlp").fit_adata(ref, genes=q.var_names)
    lower = ad.AnnData(X=q.X, var=pd.DataFrame(index=[g.lower() for g in _pair()[1].var_names]))
    with pytest.raises(ValueError, match="60 match when case"):
        annotate(lower, reference=ref, model="logreg")
    pos, info = shared_genes(ref.var_names, _pair()[1].var_names, min_shared=60)
    assert len(pos) == 60 and info["n_shared_genes"] == 60


def test_annotate_trains_on_the_reference_in_one_call():
    ref, q = _pair()
    annotate(q, reference=ref, model="logreg", params={"n_top_genes": 30})
    info = q.uns["predicted_cell_type"]
    assert info["source"] == "trained on reference" and info["method"] == "logreg"
    assert info["training"]["n_shared_genes"] == 60 and info["n_genes_model"] == 30 and info["n_genes_missing"] == 0
    assert (q.obs["predicted_cell_type"].astype(str) == q.obs["cell_type"]).mean() > 0.9
    with pytest.raises(ValueError, match="method 'logreg' takes no parameter"):
        annotate(q, reference=ref, model="logreg", params={"epochs": 3})
    with pytest.raises(ValueError, match="unknown method 'svm'"):
        annotate(q, reference=ref, model="svm")
    with pytest.raises(ValueError, match="is a method name: give the labelled cells"):
        annotate(q, model="cnn")
    with pytest.raises(ValueError, match=r"obs\['label'\] is missing"):
        annotate(q, reference=ref, label_key="label")


def test_annotate_with_a_baseline_and_with_a_model_file(tmp_path):
    ref, q = _pair()
    model = fit_reference(ref, HVGLogisticRegression(n_top_genes=30), genes=q.var_names)
    a = annotate(q.copy(), model)
    assert (a.obs["predicted_cell_type"].astype(str) == a.obs["cell_type"]).mean() > 0.9
    save_model(model, tmp_path / "lr.cbm")
    b = annotate(q.copy(), str(tmp_path / "lr.cbm"))
    assert np.array_equal(a.obs["predicted_cell_type_confidence"], b.obs["predicted_cell_type_confidence"])
    assert b.uns["predicted_cell_type"]["model_file"].endswith("lr.cbm")
    assert b.uns["predicted_cell_type"]["training"]["n_cells"] == 120
    part = q[:, [g for g in q.var_names if g != model.feature_names_in_[model.genes_[0]]]].copy()
    with pytest.warns(UserWarning, match="1 of the model's 30 genes are missing"):
        annotate(part, model)


# ------------------------------------------------------- threshold, majority voting
class _Fixed:
    """A fitted 'classifier' whose probabilities are given (one row per query cell)."""

    def __init__(self, proba, classes, genes):
        self.proba, self.classes_ = np.asarray(proba, float), np.asarray(classes)
        self.feature_names_in_ = np.asarray(genes, dtype=object)

    def predict_proba(self, X, gene_names=None):
        assert X.shape == (len(self.proba), len(self.feature_names_in_))
        return self.proba


def test_threshold_marks_unassigned_cells():
    q = _adata(n=6)
    proba = [[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8], [0.5, 0.5, 0]]
    annotate(q, _Fixed(proba, ["A", "B", "C"], q.var_names), threshold=0.5)
    assert list(q.obs["predicted_cell_type"].astype(str)) == ["A", UNASSIGNED, "B", UNASSIGNED, "C", "A"]
    assert q.uns["predicted_cell_type"]["n_unassigned"] == 2 and q.uns["predicted_cell_type"]["threshold"] == 0.5
    assert np.allclose(q.obs["predicted_cell_type_confidence"], [0.9, 0.4, 0.7, 0.34, 0.8, 0.5])
    annotate(q, _Fixed(proba, ["A", "B", "C"], q.var_names))
    assert UNASSIGNED not in set(q.obs["predicted_cell_type"].astype(str))
    with pytest.raises(ValueError, match="threshold=50 is not valid: it must be None or a number in"):
        annotate(q, _Fixed(proba, ["A", "B", "C"], q.var_names), threshold=50)


def test_majority_vote_takes_each_clusters_majority():
    labels = ["A", "A", "B", "B", "B", "C", "A", "C"]
    clusters = ["0", "0", "0", "1", "1", "1", "2", "2"]
    conf = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.6, 0.8]        # cluster 2 ties: C has the larger confidence
    assert list(majority_vote(labels, clusters, conf)) == ["A", "A", "A", "B", "B", "B", "C", "C"]
    assert list(majority_vote(labels, clusters, conf, min_prop=0.7)) == ["Heterogeneous"] * 8
    q = _adata(n=9)[:8].copy()
    q.obs["my_clusters"] = clusters
    proba = np.eye(3)[[{"A": 0, "B": 1, "C": 2}[x] for x in labels]] * 0.6 + 0.1
    annotate(q, _Fixed(proba, ["A", "B", "C"], q.var_names), over_clustering="my_clusters")
    assert list(q.obs["predicted_cell_type"].astype(str)) == labels          # per-cell labels kept
    assert list(q.obs["predicted_cell_type_majority_voting"].astype(str))[:6] == ["A"] * 3 + ["B"] * 3
    assert q.uns["predicted_cell_type"]["over_clustering"]["method"] == "given"


def test_majority_voting_over_clusters_is_deterministic_and_fixes_stray_labels():
    q = _adata(n=150, g=60, seed=5)
    truth = q.obs["cell_type"].to_numpy()
    wrong = {"A": "B", "B": "C", "C": "A"}
    labels = truth.copy()
    stray = np.arange(0, 150, 10)                              # 15 cells, 5 per type, labelled wrongly
    labels[stray] = [wrong[t] for t in truth[stray]]
    proba = np.eye(3)[[{"A": 0, "B": 1, "C": 2}[x] for x in labels]] * 0.7 + 0.1
    model = _Fixed(proba, ["A", "B", "C"], q.var_names)
    a = annotate(q.copy(), model, majority_voting=True, resolution=1.0, seed=0)
    b = annotate(q.copy(), model, majority_voting=True, resolution=1.0, seed=0)
    key = "predicted_cell_type"
    assert np.array_equal(a.obs[f"{key}_over_clustering"], b.obs[f"{key}_over_clustering"])
    assert (a.obs[key].astype(str).to_numpy() == labels).all()
    assert (a.obs[f"{key}_majority_voting"].astype(str).to_numpy() == truth).all()
    assert a.uns[key]["over_clustering"]["n_changed"] == 15
    assert a.uns[key]["over_clustering"]["method"] == "louvain (networkx)"


# ----------------------------------------------------------------------- real data
def test_vangalen_reference_annotates_the_gse194122_starter(data_root, monkeypatch):
    import cellbook as cb
    from cellbook.annotation import to_lineage

    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    ref = cb.datasets.load_scrna("vangalen2019")
    q = cb.datasets.gse194122(starter=True)
    annotate(q, reference=ref, model="logreg_scaled", seed=0)   # the fast one: this tests the pipeline
    info = q.uns["predicted_cell_type"]
    assert info["training"]["n_shared_genes"] == len(set(ref.var_names) & set(q.var_names)) > 900
    assert info["n_genes_missing"] == 0
    truth, pred = to_lineage(q.obs["cell_type"]), to_lineage(q.obs["predicted_cell_type"])
    ok = np.array([t is not None for t in truth])
    agreement = (truth[ok] == pred[ok]).mean()
    assert agreement > 0.9, agreement          # measured: 0.980 (logreg_scaled, seed 0)
