"""scikit-learn's estimator contract for the baselines and the stacked ensemble.

``parametrize_with_checks`` runs scikit-learn's own checks.  Its data are floats (made non-negative for
estimators tagged ``positive_only``), while the baselines take raw integer counts and refuse anything else
with a ``ValueError`` that names ``X``: the checks run in full on the two baselines that take normalised input
(``counts=False``) and on a stacked ensemble of them; on the counts baselines the checks that need fitting on
the check's data are expected to fail for that reason, and the tests below the checks do the same on counts.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from cellbook.baselines import (
    PCAKNN,
    CellTypistClassifier,
    HVGGradientBoosting,
    HVGLogisticRegression,
    LinearSVMClassifier,
    TunedLogisticRegression,
)
from cellbook.comparison import StackedEnsemble

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def scaled_lr(seed):
    return HVGLogisticRegression(n_top_genes=None, counts=False, seed=seed)


def scaled_knn(seed):
    return PCAKNN(n_top_genes=None, n_pcs=2, k=3, counts=False, seed=seed)


def counts_lr(seed):
    return HVGLogisticRegression(n_top_genes=20, seed=seed)


def counts_knn(seed):
    return PCAKNN(n_top_genes=20, n_pcs=3, k=5, seed=seed)


def _counts_baselines():
    return [HVGLogisticRegression(n_top_genes=None), PCAKNN(n_top_genes=None, n_pcs=2, k=3),
            TunedLogisticRegression(n_top_genes=None, param_grid={"C": (0.1, 1.0)}, n_folds=2),
            HVGGradientBoosting(n_top_genes=None, max_iter=10, early_stopping_rounds=3, n_jobs=1),
            CellTypistClassifier(n_jobs=1),
            LinearSVMClassifier(n_top_genes=None, param_grid={"C": (0.1, 1.0)}, n_folds=2)]


#: The checks that fit on the check's own data, which are not integer counts (or, for the positive-only
#: check, not non-negative): the counts baselines refuse such data, as they refuse any normalised matrix.
_FIT_ON_FLOATS = [
    "check_classifiers_classes", "check_classifiers_one_label", "check_classifiers_regression_target",
    "check_classifiers_train", "check_dict_unchanged", "check_dont_overwrite_parameters", "check_dtype_object",
    "check_estimator_sparse_array", "check_estimator_sparse_matrix", "check_estimator_sparse_tag",
    "check_estimators_dtypes", "check_estimators_fit_returns_self", "check_estimators_nan_inf",
    "check_estimators_overwrite_params", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_fit2d_1feature", "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_fit_score_takes_y", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_n_features_in", "check_n_features_in_after_fitting",
    "check_pipeline_consistency", "check_readonly_memmap_input", "check_requires_y_none", "check_supervised_y_2d",
    "check_non_transformer_estimators_n_iter", "check_class_weight_classifiers",
]
_NEGATIVE = ("check_counts says 'contains negative values (n entries); raw counts are >= 0', not scikit-learn's "
             "'Negative values in data'")


def _expected_failures(est) -> dict:
    if isinstance(est, StackedEnsemble) or not est.counts:
        return {}
    params = est.get_params()
    names = [n for n in _FIT_ON_FLOATS if (n != "check_non_transformer_estimators_n_iter" or "max_iter" in params)
             and (n != "check_class_weight_classifiers" or "class_weight" in params)]
    out = {name: "the check fits on non-integer floats; raw counts are integers and other values are refused"
           for name in names}
    out["check_positive_only_tag_during_fit"] = _NEGATIVE
    return out


@parametrize_with_checks([scaled_lr(0), scaled_knn(0),
                          StackedEnsemble({"lr": scaled_lr, "knn": scaled_knn}, n_folds=2)],
                         expected_failed_checks=_expected_failures)
def test_scikit_learn_checks_on_normalised_input(estimator, check):
    check(estimator)


@parametrize_with_checks(_counts_baselines(), expected_failed_checks=_expected_failures)
def test_scikit_learn_checks_on_the_counts_baselines(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ the same contract, on integer counts
def _counts(n=90, g=40, n_types=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([f"T{i}" for i in range(n_types)], n // n_types)
    lam = np.full((n, g), 1.0)
    for i in range(n_types):
        lam[y == f"T{i}", i * 5:(i + 1) * 5] = 8.0
    return sp.csr_matrix(rng.poisson(lam).astype(np.float32)), y


def _all():
    return [HVGLogisticRegression(n_top_genes=20), PCAKNN(n_top_genes=20, n_pcs=3, k=5),
            TunedLogisticRegression(n_top_genes=20, param_grid={"C": (0.1, 1.0)}, n_folds=2),
            HVGGradientBoosting(n_top_genes=20, max_iter=20, early_stopping_rounds=3, n_jobs=1),
            CellTypistClassifier(n_jobs=1, with_mean=False),
            LinearSVMClassifier(n_top_genes=20, param_grid={"C": (0.1, 1.0)}, n_folds=2),
            StackedEnsemble({"lr": counts_lr, "knn": counts_knn}, n_folds=2)]


@pytest.mark.parametrize("est", _all(), ids=lambda e: type(e).__name__)
def test_clone_params_and_cross_val_score_on_counts(est):
    X, y = _counts()
    params = est.get_params()
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert not [k for k in vars(twin) if k.endswith("_")]                 # __init__ stores its arguments only
    name, value = next((k, v) for k, v in params.items() if k in ("seed", "n_folds"))
    assert twin.set_params(**{name: value + 1}).get_params()[name] == value + 1
    assert est.get_params()[name] == value                                 # the original is untouched
    scores = cross_val_score(clone(est), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.8)
    fitted = clone(est).fit(X, y)
    assert fitted.n_features_in_ == X.shape[1] and list(fitted.classes_) == ["T0", "T1", "T2"]
    P = fitted.predict_proba(X[:7])
    assert P.shape == (7, 3) and np.allclose(P.sum(1), 1)
    assert fitted.score(X, y) > 0.8


def test_stacked_ensemble_init_stores_and_fit_validates():
    bad = StackedEnsemble({"lr": counts_lr}, n_folds=1)                  # no error yet: __init__ only stores
    X, y = _counts()
    with pytest.raises(ValueError, match="n_folds=1 is not valid"):
        bad.fit(X, y)
    with pytest.raises(ValueError, match="factories"):
        bad.set_params(n_folds=2).fit(X, y)
    with pytest.raises(ValueError, match="max_rounds"):
        StackedEnsemble({"lr": counts_lr, "knn": counts_knn}, max_rounds=0).fit(X, y)
    with pytest.raises(ValueError, match="factories"):
        StackedEnsemble(["lr", "knn"]).fit(X, y)


def test_stacked_ensemble_keeps_the_label_type():
    X, y = _counts()
    yi = np.searchsorted(np.unique(y), y) * 10                            # 0, 10, 20
    st = StackedEnsemble({"lr": counts_lr, "knn": counts_knn}, n_folds=2).fit(X, yi)
    assert st.classes_.dtype.kind == "i" and list(st.classes_) == [0, 10, 20]
    assert set(st.predict(X)) <= {0, 10, 20} and st.score(X, yi) > 0.8
    as_text = StackedEnsemble({"lr": counts_lr, "knn": counts_knn}, n_folds=2).fit(X, yi.astype(str))
    assert np.array_equal(st.predict_proba(X), as_text.predict_proba(X)[:, [0, 1, 2]])


def test_baselines_name_the_argument_in_fit_errors():
    X, y = _counts()
    with pytest.raises(ValueError, match="n_folds"):
        TunedLogisticRegression(n_folds=1).fit(X, y)
    with pytest.raises(ValueError, match="param_grid"):
        TunedLogisticRegression(param_grid={"gamma": [1]}).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        HVGGradientBoosting(validation_fraction=2).fit(X, y)
    with pytest.raises(ValueError, match="^y"):
        HVGLogisticRegression().fit(X, np.full(len(y), "T0"))
    with pytest.raises(ValueError, match="^X"):
        PCAKNN().fit(X.toarray()[:, :0], y)
