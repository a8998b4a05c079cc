"""CellTypeClassifier keeps scikit-learn's estimator contract, and reads model files of the flat-parameter format."""
import inspect
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks
from synthetic_cells import marker_counts

from cellbook.annotation import TRAINER_PARAMS, CellTypeClassifier, load_model
from cellbook.train import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).parent / "data"
SMALL = dict(n_genes=None, min_cells_per_gene=1, model_kwargs={"mlp": {"hidden": (16,)}}, max_epochs=2,
             batch_size=16, val_fraction=0.0, patience=None, device="cpu")


def _counts(n=60, g=30, seed=0):
    return marker_counts(n, g, seed, width=8, high=8)


# ------------------------------------------------------------------ scikit-learn's own checks
FLOATS = ("scikit-learn's generated inputs are non-integer floats; the classifier takes raw counts and refuses "
          "non-integer values as normalised data")
EXPECTED_FAILED = {name: FLOATS for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_estimators_dtypes", "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimator_sparse_tag",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_classifiers_classes", "check_classifiers_train",
    "check_supervised_y_2d", "check_class_weight_classifiers", "check_transformer_general",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_fit2d_1sample",
    "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d")}
EXPECTED_FAILED.update({
    "check_positive_only_tag_during_fit": "negative counts are refused in cellbook's words ('contains negative "
                                          "values'), not scikit-learn's ('Negative values in data')",
    "check_complex_data": "complex input fails the integer-count check with a TypeError",
    "check_dtype_object": "an object array is refused: counts are numbers",
    "check_estimators_empty_data_messages": "an empty matrix is refused in cellbook's words",
    "check_classifier_data_not_an_array": "a nested list is refused: give a matrix, DataFrame or AnnData",
    "check_transformer_data_not_an_array": "a nested list is refused: give a matrix, DataFrame or AnnData",
    "check_classifiers_one_label": "one class is refused in cellbook's words (a classifier needs 2 cell types)",
    "check_classifiers_regression_target": "the check's X is non-integer floats, refused as counts before the "
                                           "continuous target is seen",
    "check_transformers_unfitted": "`transform` is the input-transform parameter (a string), not a method",
    "check_requires_y_none": "y=None is refused in cellbook's words",
})


@parametrize_with_checks([CellTypeClassifier("mlp", **SMALL)], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ the contract, on counts
def test_init_only_stores_its_arguments():
    clf = CellTypeClassifier(["cnn", "lstm"], ensemble=None, k=0, transform="zscore", model_kwargs=None)
    assert clf.architecture == ["cnn", "lstm"] and clf.ensemble is None and clf.k == 0
    assert clf.transform == "zscore" and clf.model_kwargs is None
    params = clf.get_params()
    assert set(TRAINER_PARAMS) <= set(params)
    assert clf.lr == 5e-4 and clf.batch_size == 128 and clf.lr_step == 200 and clf.progress is False
    trainer = set(inspect.signature(Trainer.__init__).parameters) - {"self", "model", "task", "loss"}
    assert trainer <= set(params)          # every Trainer setting a caller may pass is a parameter


@pytest.mark.parametrize("params,match", [
    (dict(architecture="transformer"), "architecture='transformer' is not valid: it must be one of 'mlp'"),
    (dict(architecture=["cnn", "rnn"]), r"architecture=\['cnn', 'rnn'\] is not valid: .*unknown: 'rnn'"),
    (dict(ensemble="stack"), "ensemble='stack' is not valid: it must be one of None, 'joint', 'soft', 'hard'"),
    (dict(transform="zscore"), "transform='zscore' is not valid: it must be one of 'counts', 'log1p'"),
    (dict(ensemble="joint", k=0), "k=0 is not valid: it must be an integer >= 1"),
    (dict(n_genes=0), "n_genes=0 is not valid: it must be None or an integer >= 1"),
    (dict(model_kwargs={"chunks": 50}), r"no member constructor takes 'chunks'; valid: .*chunk"),
    (dict(model_kwargs={"mlp": {"hiden": (8,)}}), r"model_kwargs\['mlp'\]: .*'hiden'; valid: .*hidden"),
])
def test_fit_checks_the_parameters(params, match):
    X, y = _counts()
    clf = CellTypeClassifier(**{"architecture": "mlp", **SMALL, **params})     # storing never fails
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_clone_get_set_params():
    clf = CellTypeClassifier("mlp", **SMALL)
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    twin.set_params(lr=3e-3, ensemble="soft", k=2)
    assert (twin.lr, twin.ensemble, twin.k, twin.n_members) == (3e-3, "soft", 2, 2)
    assert twin.trainer_kwargs["lr"] == 3e-3 and clf.lr == 5e-4
    X, y = _counts()
    fitted = clf.fit(X, y)
    assert not hasattr(clone(fitted), "module_")


def test_fit_is_repeatable_and_pickles():
    X, y = _counts()
    a = CellTypeClassifier("mlp", **SMALL).fit(X, y).predict_proba(X)
    clf = CellTypeClassifier("mlp", **SMALL).fit(X, y)
    assert np.array_equal(a, clf.predict_proba(X))
    assert np.array_equal(a, clf.fit(X, y).predict_proba(X))             # refitting gives the same model
    back = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(a, back.predict_proba(X))
    with pytest.raises(ValueError, match="X has 29 genes; the classifier was fitted on 30"):
        clf.predict(X[:, :29])


def test_cross_val_score_and_pipeline():
    X, y = _counts()
    scores = cross_val_score(CellTypeClassifier("mlp", **{**SMALL, "max_epochs": 10, "lr": 3e-3}), X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.6).all()
    pipe = Pipeline([("counts", FunctionTransformer(np.rint)), ("clf", CellTypeClassifier("mlp", **SMALL))])
    pipe.set_params(clf__max_epochs=3).fit(X, y)
    assert pipe.named_steps["clf"].max_epochs == 3 and pipe.predict(X).shape == (60,)
    assert 0 <= pipe.score(X, y) <= 1


# ------------------------------------------------------------------ model files
def test_save_model_stores_get_params(tmp_path):
    X, y = _counts()
    genes = [f"G{j}" for j in range(30)]
    clf = CellTypeClassifier(["mlp", "mlp"], **SMALL).fit(X, y, gene_names=genes)
    path = clf.save(tmp_path / "m.cbm")
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("cellbook_model.json"))
    assert set(meta["params"]) == set(clf.get_params()) and meta["params"]["architecture"] == ["mlp", "mlp"]
    back = load_model(path)
    assert back.get_params() == {**clf.get_params(), "model_kwargs": {"mlp": {"hidden": [16]}}}
    assert back.name == clf.name == "MLP+MLP ensemble (joint)"
    assert np.array_equal(back.predict_proba(X, gene_names=genes), clf.predict_proba(X, gene_names=genes))


def test_model_file_of_the_flat_format_loads_and_predicts_as_written():
    ref = np.load(DATA / "legacy_model.npz")
    clf = load_model(DATA / "legacy_model.cbm")
    assert isinstance(clf, CellTypeClassifier) and clf.name == "MLP ensemble (joint)"
    assert (clf.ensemble, clf.k, clf.n_genes, clf.lr, clf.max_epochs) == ("joint", 2, 20, 3e-3, 3)
    assert list(clf.classes_) == list(ref["classes"])
    proba = clf.predict_proba(ref["query"], gene_names=list(ref["query_genes"]))
    assert np.array_equal(proba, ref["proba"])
