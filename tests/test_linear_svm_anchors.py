"""The field's annotators in Part I: the calibrated linear SVM, and the optional scANVI and SingleR (skipped, with a
note, when their package is not installed)."""
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from synthetic_cells import marker_adata, marker_counts

from cellbook import comparison
from cellbook.annotation import load_model, make_model, save_model
from cellbook.baselines import (
    LINEAR_SVM_GRID,
    LinearSVMClassifier,
    ScanviClassifier,
    SingleRClassifier,
    make_anchor,
    missing_package,
)
from cellbook.comparison import BASELINES, OPTIONAL, make_baseline, model_zoo, skipped_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SVM = BASELINES["linear_svm"]


@pytest.fixture(scope="module")
def cells():
    return marker_counts(90, 40), marker_counts(60, 40, seed=1)


def _svm(**kw):
    return LinearSVMClassifier(n_top_genes=20, **kw)


def test_svm_fit_predict_and_probabilities(cells):
    (X, y), (Xq, yq) = cells
    m = _svm(seed=0).fit(X, y)
    P = m.predict_proba(Xq)
    assert list(m.classes_) == ["A", "B", "C"] and P.shape == (60, 3)
    assert np.allclose(P.sum(1), 1) and np.all((P >= 0) & (P <= 1))
    assert np.array_equal(m.predict(Xq), m.classes_[P.argmax(1)])          # labels and confidences agree
    assert (m.predict(Xq) == yq).mean() > 0.95
    assert set(m.cv_results_["C"]) == set(LINEAR_SVM_GRID["C"]) and m.cv_results_["rank"].min() == 1
    assert m.best_params_["C"] in LINEAR_SVM_GRID["C"] and m.n_parameters_ > 0 and m.n_iter_ >= 1
    ints = _svm().fit(X, np.searchsorted(["A", "B", "C"], y))              # integer labels stay integers
    assert ints.predict(Xq).dtype.kind == "i"


def test_svm_chooses_and_calibrates_on_the_training_cells_only(cells):
    (X, y), _ = cells
    train = np.r_[0:20, 30:50, 60:80]                                       # 60 of the 90 cells
    m = _svm(n_folds=3).fit(X[train], y[train])
    assert len(m.cv_folds_) == 3
    val = np.concatenate([b for _, b in m.cv_folds_])
    assert sorted(val) == list(range(len(train)))                           # row indices into the fitted cells
    for a, b in m.cv_folds_:
        assert not set(a) & set(b) and sorted(np.r_[a, b]) == list(range(len(train)))
    assert m.model_.cv == m.cv_folds_                                       # the sigmoids: the same inner folds
    assert len(m.model_.calibrated_classifiers_) == 3
    # the test cells are never seen: fitting on the same training cells gives the same model
    again = _svm(n_folds=3).fit(X[train], y[train])
    assert np.array_equal(m.predict_proba(X), again.predict_proba(X))


def test_svm_with_one_candidate_still_calibrates_on_folds_and_refits_the_choice(cells):
    (X, y), (Xq, _) = cells
    m = _svm(param_grid={"C": (0.1, 1.0)}).fit(X, y)
    fixed = clone(m).set_params(**m.chosen_params_).fit(X, y)
    assert len(fixed.cv_folds_) == 3 and np.isnan(fixed.best_score_)
    assert fixed.best_params_ == m.best_params_
    assert np.allclose(fixed.predict_proba(Xq), m.predict_proba(Xq))


def test_svm_model_file_round_trips(tmp_path):
    ref, query = marker_adata(90, 40), marker_adata(60, 40, seed=1)
    model = _svm().fit(ref, ref.obs["cell_type"].to_numpy())
    path = save_model(model, tmp_path / "svm.cbm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # its types are trusted: no warning
        back = load_model(path)
    assert type(back) is LinearSVMClassifier and list(back.classes_) == list(model.classes_)
    assert np.array_equal(back.predict_proba(query), model.predict_proba(query))


def test_svm_in_the_zoo_and_as_a_method_name():
    zoo = model_zoo(k=2, baseline_genes=300)
    assert zoo[SVM] == {"baseline": "linear_svm", "n_top_genes": 300}
    assert isinstance(make_baseline("linear_svm", seed=3), LinearSVMClassifier)
    assert make_baseline("linear_svm", seed=3).get_params()["seed"] == 3
    assert isinstance(make_model("linear_svm"), LinearSVMClassifier)
    assert not comparison.is_deep_name(SVM) and comparison.model_family(SVM) == "linear"


@pytest.mark.parametrize("kind,module,note", [
    ("scanvi", "scvi", "scANVI skipped: scvi-tools is not installed (pip install 'cellbook[anchors]')"),
    ("singler", "singler", "SingleR skipped: singler is not installed (pip install 'cellbook[anchors]')")])
def test_a_missing_optional_package_leaves_its_entry_out_with_a_note(monkeypatch, kind, module, note):
    monkeypatch.setitem(sys.modules, module, None)                         # `import <module>` now fails
    name = BASELINES[kind]
    assert missing_package(kind) == note.split(": ", 1)[1]
    assert skipped_models()[name] == note
    assert skipped_models(["kNN on PCA", name]) == {name: note} and skipped_models(["kNN on PCA"]) == {}
    assert name not in model_zoo(k=2)
    assert set(model_zoo(include=["kNN on PCA", name])) == {"kNN on PCA"}  # named, and left out
    est = make_anchor(kind)                                                # building needs no package
    X, y = marker_counts(30, 40)
    with pytest.raises(ImportError, match=r"pip install 'cellbook\[anchors\]'"):
        est.fit(X, y)


def test_installed_optional_packages_join_the_zoo(monkeypatch):
    monkeypatch.setattr("cellbook.comparison._zoo.missing_package", lambda kind: None)
    zoo = model_zoo(k=2, include=list(OPTIONAL), baseline_genes=100)
    assert zoo == {"scANVI": {"baseline": "scanvi", "n_top_genes": 100},
                   "SingleR": {"baseline": "singler", "n_top_genes": 100}}
    assert skipped_models() == {}
    assert isinstance(make_baseline("scanvi", seed=1), ScanviClassifier)
    assert isinstance(make_baseline("singler", seed=1), SingleRClassifier)


def test_family_verdict_reads_the_recorded_figures():
    figures = {"acc::Logistic regression (tuned)": [0.80, 0.01], "f1_macro::Logistic regression (tuned)": [0.7, 0.0],
               "acc::Linear SVM (calibrated)": [0.79, 0.01], "f1_macro::Linear SVM (calibrated)": [0.7, 0.0],
               "acc::CNN": [0.75, 0.02], "f1_macro::CNN": [0.6, 0.0],
               "acc::Stacked ensemble": [0.90, 0.01], "f1_macro::Stacked ensemble": [0.8, 0.0],
               "acc::SingleR": [0.70, 0.0], "f1_macro::SingleR": [0.5, 0.0], "n_train": 100}
    table = comparison.family_table(figures)
    assert list(table["family"]) == ["linear", "deep classifier", "correlation to references"]
    assert table.loc[0, "model"] == "Logistic regression (tuned)"           # the family's best; no stack
    v = comparison.family_verdict(figures)
    assert v["winner"]["family"] == "linear" and v["runner_up"]["family"] == "deep classifier"
    assert v["margin"] == pytest.approx(0.05) and not v["level"]
    figures["acc::CNN"] = [0.79, 0.02]
    assert comparison.family_verdict(figures)["level"]                     # within the seed spread
    assert comparison.family_verdict({"acc::CNN": [0.7, 0.0]}) is None


# ------------------------------------------------------------ the optional packages themselves, when installed
def test_scanvi_trains_on_the_training_cells_and_predicts_probabilities(cells, capsys):
    pytest.importorskip("scvi")
    (X, y), (Xq, yq) = cells
    m = ScanviClassifier(n_top_genes=None, max_epochs=5, accelerator="cpu", seed=0).fit(X, y)
    P = m.predict_proba(Xq)
    assert capsys.readouterr().out == ""                 # nothing printed on a chapter's page
    assert P.shape == (60, 3) and np.allclose(P.sum(1), 1)
    assert list(m.classes_) == ["A", "B", "C"] and m.n_epochs_["scvi"] <= 5 and m.n_parameters_ > 0
    assert set(m.predict(Xq)) <= {"A", "B", "C"}


def test_singler_labels_new_cells_from_the_training_cells(cells):
    pytest.importorskip("singler")
    import pickle

    (X, y), (Xq, yq) = cells
    m = SingleRClassifier(n_top_genes=None, n_jobs=1).fit(X, y)
    P = m.predict_proba(Xq)
    assert P.shape == (60, 3) and np.allclose(P.sum(1), 1) and set(np.unique(P)) <= {0.0, 1.0}
    assert (m.predict(Xq) == yq).mean() > 0.95
    scores = m.decision_function(Xq)
    assert scores.shape == (60, 3) and np.all(np.abs(scores) <= 1)
    back = pickle.loads(pickle.dumps(m))                                   # its C++ reference is rebuilt
    assert np.array_equal(back.predict(Xq), m.predict(Xq))


def test_the_anchors_libraries_print_nothing_on_a_page(capsys):
    from cellbook.baselines._anchors import _quiet

    with _quiet():
        print("Monitored metric elbo_validation did not improve in the last 45 records.")
    print("after")
    assert capsys.readouterr().out == "after\n"
