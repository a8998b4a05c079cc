"""Part I's comparison machinery: tuning on the validation split, the stacked ensemble, the verdict."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbook.baselines import PCAKNN, HVGLogisticRegression
from cellbook.comparison import TUNED, StackedEnsemble, entry_names, fit_tuned, model_zoo, paired_verdict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _counts(n=150, g=60, n_types=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([f"T{i}" for i in range(n_types)], n // n_types)
    lam = np.full((n, g), 1.0)
    for i in range(n_types):
        lam[y == f"T{i}", i * 5:(i + 1) * 5] = 6.0
    X = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
    return X, y, [f"G{j}" for j in range(g)]


class _Constant:
    """A member that always predicts the same class distribution (useless: must get no weight)."""

    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, X, y, gene_names=None):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X, gene_names=None):
        return np.full((X.shape[0], len(self.classes_)), 1 / len(self.classes_))


def test_stacked_ensemble_picks_useful_members_on_out_of_fold_predictions():
    X, y, genes = _counts()
    facs = {"logreg": lambda s: HVGLogisticRegression(n_top_genes=30, seed=s),
            "knn": lambda s: PCAKNN(n_top_genes=30, n_pcs=5, k=5, seed=s),
            "constant": _Constant}
    st = StackedEnsemble(facs, n_folds=3, seed=0).fit(X, y, gene_names=genes)
    assert st.weights_["constant"] == 0 and st.weights_.sum() == pytest.approx(1)
    assert set(st.members_) == set(st.weights_[st.weights_ > 0].index)
    assert list(st.oof_.index) == ["logreg", "knn", "constant", "ensemble"]
    assert st.oof_.loc["ensemble", "log_loss"] <= st.oof_.loc[["logreg", "knn"], "log_loss"].min() + 1e-9
    P = st.predict_proba(X[:10], gene_names=genes)
    assert P.shape == (10, 3) and np.allclose(P.sum(1), 1)
    again = StackedEnsemble(facs, n_folds=3, seed=0).fit(X, y, gene_names=genes)
    pd.testing.assert_series_equal(st.weights_, again.weights_)          # deterministic
    assert (st.predict(X, gene_names=genes) == again.predict(X, gene_names=genes)).all()


def test_stacked_ensemble_reuses_prefit_members_and_never_sees_test_cells():
    X, y, genes = _counts()
    seen = []

    class Spy(HVGLogisticRegression):
        def fit(self, X, y, gene_names=None):
            seen.append(X.shape[0])
            return super().fit(X, y, gene_names=gene_names)

    tr = np.arange(0, 150, 2)   # the "training cells"
    pre = HVGLogisticRegression(n_top_genes=30).fit(X[tr], y[tr], gene_names=genes)
    facs = {"spy": lambda s: Spy(n_top_genes=30), "knn": lambda s: PCAKNN(n_top_genes=30, n_pcs=5, k=5)}
    st = StackedEnsemble(facs, n_folds=3).fit(X[tr], y[tr], gene_names=genes, prefit={"spy": pre})
    assert max(seen) < len(tr) and len(seen) == 3                          # only the 3 out-of-fold fits
    if st.weights_["spy"] > 0:
        assert st.members_["spy"] is pre


def test_fit_tuned_chooses_on_validation_accuracy():
    X, y, genes = _counts()
    spec = dict(architecture="mlp", grid=[{"lr": 1e-6}, {"lr": 3e-3}])   # the first cannot learn in 8 epochs
    paper, tuned, table = fit_tuned(spec, X, y, genes, seed=0, n_genes=None, max_epochs=8, patience=3,
                                    device="cpu", min_cells_per_gene=1, batch_size=32)
    assert list(table["setting"]) == [0, 1] and table["chosen"].tolist() == [False, True]
    assert table.loc[1, "val_accuracy"] > table.loc[0, "val_accuracy"]
    assert paper.get_params()["lr"] == 1e-6 and tuned.get_params()["lr"] == 3e-3
    assert tuned.tuning_ is table


def test_zoo_names_and_includes():
    zoo = model_zoo(k=2, grid=[{}, {"lr": 1e-3}], stack_members=["Logistic regression (tuned)", "kNN on PCA"])
    names = entry_names(zoo)
    assert "CNN" in names and "CNN" + TUNED in names and "Stacked ensemble" in names
    assert "Logistic regression (tuned)" + TUNED not in names                # baselines tune themselves
    assert set(model_zoo(include=["Logistic regression (tuned)"])) == {"Logistic regression (tuned)"}
    assert set(model_zoo(include=["CNN (tuned)"], grid=[{}, {"lr": 1e-3}])) == {"CNN"}
    sub = model_zoo(include=["CNN ensemble (hard vote)", "Stacked ensemble"], stack_members=["kNN on PCA", "MLP"])
    assert set(sub) == {"CNN ensemble (hard vote)", "CNN ensemble (soft vote)", "Stacked ensemble", "kNN on PCA", "MLP"}
    with pytest.raises(ValueError, match="unknown model"):
        model_zoo(include=["GPT"])


def test_paired_verdict():
    rec = pd.DataFrame({
        "model": ["base"] * 3 + ["better"] * 3 + ["same"] * 3,
        "split": [0, 1, 2] * 3,
        "accuracy": [0.80, 0.81, 0.79, 0.85, 0.87, 0.84, 0.801, 0.809, 0.791],
        "f1_macro": [0.70, 0.71, 0.69, 0.76, 0.77, 0.75, 0.70, 0.71, 0.69]})
    v = paired_verdict(rec, baseline="base").set_index("model")
    assert v.loc["better", "beats baseline"] and not v.loc["same", "beats baseline"]
    assert not v.loc["base", "beats baseline"]
    assert v.loc["better", "accuracy - baseline"] == pytest.approx(0.0533, abs=1e-3)
    assert v.loc["better", "accuracy p (paired t)"] < 0.01
    with pytest.raises(ValueError, match="baseline 'x' is not among"):
        paired_verdict(rec, baseline="x")


# ------------------------------------------------------------------------------------------
# Part I's page helpers: the same figures and files the chapters recorded by hand before.

from cellbook import comparison as cmp  # noqa: E402
from cellbook.results import Recorder  # noqa: E402


def _records():
    """Three splits of two deep models and two baselines (a stacked ensemble among them)."""
    rows = []
    for s, (a, b, c, d) in enumerate([(0.70, 0.75, 0.78, 0.79), (0.72, 0.74, 0.77, 0.80), (0.71, 0.76, 0.76, 0.78)]):
        for model, acc, ep in (("CNN", a, 9.0), ("Regularised MLP ensemble", b, 12.0),
                               ("Logistic regression (tuned)", c, None), ("Stacked ensemble", d, None)):
            rows.append({"model": model, "split": s, "accuracy": acc, "f1_macro": acc - 0.05, "fit_seconds": 1.0 + s,
                         "n_parameters": 1000 if ep else 0, "epochs": ep})
    return pd.DataFrame(rows)


def _summary(records):
    from cellbook.metrics import summarize

    return summarize(records, by="model", metrics=["accuracy", "f1_macro", "fit_seconds", "epochs", "n_parameters"])


def test_fit_collector_keeps_stacks_and_tunings(capsys):
    class Stack:
        weights_ = pd.Series({"a": 1.0})

    class Tuned:
        tuning_ = pd.DataFrame({"setting": [0, 1], "chosen": [False, True]})

    keep = cmp.FitCollector()
    stack, tuned = Stack(), Tuned()
    keep(0, {"Stacked ensemble": stack, "CNN" + TUNED: tuned, "CNN": object()})
    keep(1, {"kNN on PCA": object()})
    assert keep.stacks == {0: stack} and keep.tunings == {("CNN", 0): tuned.tuning_}
    assert capsys.readouterr().out == "split 0: 3 models fitted\nsplit 1: 1 models fitted\n"
    quiet = cmp.FitCollector(verbose=False)
    quiet(0, {"Stacked ensemble": stack})
    assert quiet.stacks == {0: stack} and capsys.readouterr().out == ""


def test_table1_gives_numbers_to_the_page_and_the_old_strings_to_the_json():
    records = _records()
    summary = _summary(records)
    t = cmp.table1(records, summary, paper={"CNN": 0.904})
    assert list(t.columns) == ["model", "accuracy", "macro-F1", "fit (s)", "paper"]
    assert t.loc[0, "accuracy"] == "0.710 ± 0.010" and t.loc[0, "fit (s)"] == pytest.approx(2.0)
    assert t.loc[0, "paper"] == 0.904 and t["paper"].isna().sum() == 3
    assert pd.api.types.is_float_dtype(t["fit (s)"]) and pd.api.types.is_float_dtype(t["paper"])
    old = cmp.table1_record(t)
    assert old["paper"].tolist() == ["0.9040", "", "", ""] and old.loc[0, "fit (s)"] == 2.0
    assert t.loc[0, "paper"] == 0.904                                    # the page's table is left alone


def test_summary_figures_are_recorded_as_before():
    records = _records()
    summary = _summary(records)
    rec = Recorder("part1/test")
    fig = cmp.record_summary(rec, summary, records)
    assert rec["best_model"] == "Regularised MLP ensemble" and rec["best_overall"] == "Stacked ensemble"
    assert rec["acc::CNN"] == pytest.approx([0.71, 0.01])
    assert rec["f1_macro::CNN"] == pytest.approx([0.66, 0.01])
    assert rec["fit_s::CNN"] == pytest.approx(2.0) and rec["params::CNN"] == 1000
    assert rec["params::Stacked ensemble"] == 0 and isinstance(rec["params::CNN"], int)
    assert set(fig) == set(rec.figures) and len(fig) == 2 + 4 * 4
    assert cmp.mean_sd_text(rec["acc::CNN"]) == "0.710 ± 0.010" and cmp.mean_sd_text([0.5, None]) == "0.500"
    assert cmp.deep_models(records) == ["CNN", "Regularised MLP ensemble"]
    assert cmp.is_deep(records, "CNN") and not cmp.is_deep(records, "Stacked ensemble")


def test_write_for_next_chapters(tmp_path):
    records = _records()
    names = ["CNN", "kNN on PCA"]
    preds = {("CNN", 0): np.array(["A", "B"]), ("kNN on PCA", 0): np.array(["B", "B"]),
             ("CNN", 1): np.array(["x", "x"])}
    cells = pd.Index([f"c{i}" for i in range(5)])
    paths = cmp.write_for_next_chapters(records, preds, names, (0, np.arange(3), np.array([3, 4])), cells,
                                        directory=tmp_path / "part1")
    assert [p.name for p in paths] == ["03_records.csv", "03_predictions_split0.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), records)
    saved = pd.read_csv(paths[1], index_col=0)
    assert list(saved.index) == ["c3", "c4"] and list(saved.columns) == names
    assert saved["CNN"].tolist() == ["A", "B"]


def test_tuning_choices():
    t0 = pd.DataFrame({"setting": [0, 1], "val_accuracy": [0.6, 0.7], "chosen": [False, True]})
    t1 = pd.DataFrame({"setting": [0, 1], "val_accuracy": [0.8, 0.7], "chosen": [True, False]})
    chosen, counts = cmp.tuning_choices({("CNN", 0): t0, ("CNN", 1): t1}, [{}, {"lr": 1e-3}])
    assert chosen["chosen setting"].tolist() == [1, 0]
    assert chosen["val accuracy, chosen"].tolist() == [0.7, 0.8]
    assert list(counts.columns) == ["setting 0: paper", "setting 1: {'lr': 0.001}"]
    assert counts.loc["CNN"].tolist() == [1, 1]


def test_model_sizes_count_every_architecture():
    from cellbook import count_parameters
    from cellbook.annotation import build_model

    sizes = cmp.model_sizes([(300, 5), (200, 4)], k=2, chunk=50)
    assert sizes["model"].tolist() == ["MLP", "CNN", "LSTM", "LSTM + attention", "CNN ensemble (K = 2)"]
    assert list(sizes.columns[1:]) == ["parameters (300 genes, 5 types)", "parameters (200 genes, 4 types)"]
    assert sizes.iloc[1, 2] == count_parameters(build_model("cnn", 200, 4))
    assert sizes.iloc[4, 1] > 2 * sizes.iloc[1, 1] - 10


def test_error_anatomy_and_hierarchy():
    import scipy.sparse as sps

    assert cmp.hierarchy_order(["NK", "zeta", "HSC", "B", "alpha"]) == ["HSC", "B", "NK", "alpha", "zeta"]
    truth = np.array(["T", "T", "CTL", "CTL", "HSC", "Mono"])
    pred = np.array(["T", "CTL", "CTL", "T", "Prog", "Mono"])
    conn = sps.csr_matrix(np.array([[0, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0],
                                    [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], float))
    out = cmp.error_anatomy(truth, pred, conn)
    # wrong: cell 1 (T -> CTL; neighbours T, CTL, CTL: mostly CTL), 3 (CTL -> T; neighbours T, CTL), 4 (no neighbours)
    assert out["n_wrong"] == 3 and out["n_wrong_early"] == 1
    assert out["wrong_in_predicted_neighbourhood"] == pytest.approx(0.5)
    assert out["rest_within_lineage"] == pytest.approx(1.0)
    none = cmp.error_anatomy(truth, truth, conn)
    assert none["n_wrong"] == 0 and np.isnan(none["wrong_in_predicted_neighbourhood"])


def test_chapter3_predictions_read_back_or_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLBOOK_RESULTS", str(tmp_path / "results"))
    X, y, genes = _counts(n=90, g=60)
    cells = np.array([f"c{i}" for i in range(90)])
    tr, te = np.arange(0, 90, 3), np.setdiff1d(np.arange(90), np.arange(0, 90, 3))
    art = tmp_path / "art"
    art.mkdir()
    pd.DataFrame({"kNN on PCA": ["T0"] * len(te)}, index=cells[te]).to_csv(art / "03_predictions_split0.csv")
    name, pred, origin = cmp.chapter3_predictions(X, y, (0, tr, te), cells, model="kNN on PCA", gene_names=genes,
                                                  directory=art)
    assert name == "kNN on PCA" and origin == "chapter I.3's saved predictions" and set(pred) == {"T0"}
    name, pred, origin = cmp.chapter3_predictions(X, y, (0, tr, te[:-1]), cells, model="kNN on PCA",
                                                  gene_names=genes, directory=art)   # other cells: retrained
    assert origin.startswith("retrained here") and len(pred) == len(te) - 1


def test_random_vs_heldout_figures_and_table(tmp_path):
    rand = _records()
    held = _records().query("split < 2").assign(accuracy=lambda d: d["accuracy"] - 0.1)
    models = ["CNN", "Logistic regression (tuned)"]
    assert cmp.random_split_records(models, directory=tmp_path) is None          # nothing saved
    rand.to_csv(tmp_path / "03_records.csv", index=False)
    got = cmp.random_split_records(models, directory=tmp_path)
    assert set(got.model) == set(models)
    assert cmp.random_split_records(models + ["GPT"], directory=tmp_path) is None
    both = pd.concat([got.assign(split_kind="random 2:1"), held.assign(split_kind="held-out donors")])
    comp, fig = cmp.random_vs_heldout(both, models)
    assert list(comp.columns) == ["accuracy, random", "accuracy, held-out", "accuracy change",
                                  "macro-F1, random", "macro-F1, held-out", "macro-F1 change"]
    assert fig["accuracy_random::CNN"] == pytest.approx([0.71, 0.01])
    assert fig["accuracy_heldout::CNN"] == pytest.approx([0.61, np.std([0.60, 0.62], ddof=1)])
    assert comp.loc["CNN", "accuracy change"] == pytest.approx(-0.1)
    assert cmp.heldout_change(fig, "CNN") == pytest.approx(-0.1)
    assert cmp.heldout_change(fig, "CNN", "f1_macro") == pytest.approx(0.0, abs=1e-12)   # only accuracy fell
    assert len(fig) == 2 * 2 * len(models)


def test_per_type_recall_lodo_and_mean_sd_columns():
    y_test = np.array(["A", "A", "B", "B"])
    held = {("m", 0): np.array(["A", "B", "B", "B"])}
    truth = pd.Series(["A", "B", "A"], index=["x", "y", "z"])
    rand = pd.DataFrame({"m": ["A", "B", "B"]}, index=["x", "y", "z"])
    t = cmp.per_type_recall(y_test, held, ["m"], 0, truth=truth, random_pred=rand)
    assert list(t.columns) == ["m: held-out donors", "m: random split", "cells (held-out)"]
    assert t.loc["A"].tolist() == [0.5, 0.5, 2]
    assert list(cmp.per_type_recall(y_test, held, ["m"], 0).columns) == ["m: held-out donors", "cells (held-out)"]
    ls = pd.DataFrame({"model": ["kNN on PCA"], "accuracy_mean": [0.7], "accuracy_sd": [0.05],
                       "f1_macro_mean": [0.6], "f1_macro_sd": [0.04]})
    assert cmp.lodo_figures(ls) == {"lodo::kNN on PCA": [0.7, 0.05, 0.6, 0.04]}
    shown = cmp.mean_sd_columns(ls)
    assert shown.columns.tolist() == ["model", "accuracy", "macro-F1"]
    assert shown.iloc[0].tolist() == ["kNN on PCA", "0.700 ± 0.050", "0.600 ± 0.040"]


def test_lineage_scores_count_unassigned_as_misses_without_warnings():
    import warnings

    a = ad.AnnData(np.zeros((5, 1), dtype=np.float32))
    a.obs["cell_type"] = ["CD4+ T naive", "CD14+ Mono", "Naive CD20+ B IGKC+", "CD8+ T", "no such type"]
    a.obs["predicted_cell_type"] = ["T", "Mono", "Unassigned", "NK", "T"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # sklearn's "y_pred contains classes not in y_true" included
        s = cmp.lineage_scores(a)
    assert s["n"] == 4 and s["agreement"] == pytest.approx(0.75)
    cm, right = cmp.lineage_confusion(a)
    assert "Unassigned" in cm.columns and "Unassigned" not in cm.index
    assert right.sum() == 3 and len(right) == 4
    assert np.allclose(cm.loc[["T/NK", "myeloid", "B"]].sum(axis=1), 1)


def test_conclusion_and_deep_verdict():
    t1 = {"acc::CNN": [0.70, 0.01], "f1_macro::CNN": [0.6, 0.02], "acc::Stacked ensemble": [0.79, 0.01],
          "f1_macro::Stacked ensemble": [0.74, 0.004], "beats_baseline": ["Stacked ensemble"],
          "best_model": "Regularised MLP ensemble",
          "stack_weights_mean": {"Logistic regression (tuned)": 0.6667, "Regularised MLP ensemble": 0.0,
                                 "Gradient boosting (HVGs)": 0.3333}}
    ho = {"accuracy_heldout::CNN": [0.6, 0.02], "f1_macro_heldout::CNN": [0.5, 0.03]}
    t = cmp.conclusion_table(t1, ho, paper={"CNN": 0.904})
    assert t["model"].tolist() == ["Stacked ensemble", "CNN"]
    cnn = t.set_index("model").loc["CNN"]
    assert cnn[["random split: accuracy", "random split: macro-F1", "held-out donors: accuracy",
                "held-out donors: macro-F1", "paper (accuracy)"]].tolist() == [
        "0.700 ± 0.010", "0.600 ± 0.020", "0.600 ± 0.020", "0.500 ± 0.030", 0.904]
    assert t.loc[0, "paper (accuracy)"] == "" and "held-out donors: accuracy" in t.columns
    assert cmp.conclusion_table(None, None).empty
    v = cmp.deep_verdict(t1)
    assert v["deep_winners"] == [] and v["other_winners"] == ["Stacked ensemble"]
    assert v["deep_weight"] == 0.0 and v["deep_members"] == ["Regularised MLP ensemble"]
    assert list(v["stack_weights"]) == ["Logistic regression (tuned)", "Gradient boosting (HVGs)",
                                        "Regularised MLP ensemble"]
    assert cmp.is_deep_name("CNN ensemble (joint) (tuned)") and not cmp.is_deep_name("kNN on PCA")
    assert cmp.deep_verdict({"beats_baseline": ["CNN"]})["deep_winners"] == ["CNN"]


def test_chapter_figures_and_load_query(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("CELLBOOK_RESULTS", str(tmp_path))
    assert cmp.chapter_figures("part1/03_table1") is None
    (tmp_path / "part1").mkdir()
    (tmp_path / "part1" / "03_table1.json").write_text(json.dumps({"figures": {"best_model": "CNN"}}))
    assert cmp.chapter_figures("part1/03_table1") == {"best_model": "CNN"}
    monkeypatch.setenv("CELLBOOK_DATA", str(tmp_path / "nothing"))
    from cellbook.datasets import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        cmp.load_query(tmp_path / "nothing", fallback="error")
    assert cmp.load_query(tmp_path / "nothing", fallback="synthetic") is None
    assert "not available" in capsys.readouterr().out


def test_annotate_cli_prints_file_names_not_paths(tmp_path, capsys):
    d = cmp.scratch_dir()
    assert d.is_dir() and not any(d.iterdir()) and d.name.startswith("cellbook-annotate-")
    d.rmdir()
    a = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    assert cmp.annotate_cli(a, tmp_path / "missing.cbm", tmp_path) is None
    out = capsys.readouterr().out
    assert out.startswith("$ cellbook annotate query.h5ad --model missing.cbm -o annotated.h5ad")
    assert str(tmp_path) not in out


def test_healthy_donors_and_random_split_results(tmp_path):
    obs = pd.DataFrame({"donor": ["AML1", "BM2", "BM1", "AML2"], "condition": ["AML", "healthy", "healthy", "AML"]})
    assert cmp.healthy_donors(obs) == ["BM1", "BM2"]
    assert cmp.healthy_donors(obs.drop(columns="condition")) == ["AML1"]
    X, y, genes = _counts(n=90, g=60)
    zoo = model_zoo(include=["kNN on PCA"])
    rand, origin = cmp.random_split_results(X, y, zoo, [0], 1 / 3, gene_names=genes, directory=tmp_path)
    assert origin.startswith("computed here") and rand["model"].tolist() == ["kNN on PCA"]
    rand.to_csv(tmp_path / "03_records.csv", index=False)
    again, origin = cmp.random_split_results(X, y, zoo, [0], 1 / 3, gene_names=genes, directory=tmp_path)
    assert origin == "chapter I.3" and again["accuracy"].tolist() == pytest.approx(rand["accuracy"].tolist())
