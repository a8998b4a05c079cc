"""The estimators declare their parameters' constraints, and fit refuses a wrong value before any work.

Every scikit-learn-style estimator of cellbook (:class:`CellTypeClassifier`, the baselines, the stacked
ensemble) has a ``_parameter_constraints`` entry for each constructor parameter; ``fit`` checks them first, so
a wrong value (set with ``set_params``) is an ``InvalidParameterError`` naming the estimator, the parameter,
the value and what is allowed, raised before ``X`` or ``y`` is even looked at.  ``HYPOTHESIS_PROFILE=long``
draws many more values.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from cellbook.annotation import CellTypeClassifier
from cellbook.baselines import (
    PCAKNN,
    CellTypistClassifier,
    HVGGradientBoosting,
    HVGLogisticRegression,
    LinearSVMClassifier,
    ScanviClassifier,
    SingleRClassifier,
    TunedLogisticRegression,
)
from cellbook.comparison import StackedEnsemble
from cellbook.train._settings import TRAINER_CONSTRAINTS
from cellbook.validation import InvalidParameterError, check_params

EXAMPLES = {"long": 3000}.get(os.environ.get("HYPOTHESIS_PROFILE", "default"), 200)


def _lr(seed):
    return HVGLogisticRegression(n_top_genes=None, seed=seed)


def _knn(seed):
    return PCAKNN(n_top_genes=None, seed=seed)


ESTIMATORS = [CellTypeClassifier("mlp", max_epochs=2, device="cpu"), HVGLogisticRegression(), PCAKNN(),
              TunedLogisticRegression(), HVGGradientBoosting(), CellTypistClassifier(),
              StackedEnsemble({"lr": _lr, "knn": _knn}), LinearSVMClassifier(), ScanviClassifier(),
              SingleRClassifier()]
NAME = {id(e): type(e).__name__ for e in ESTIMATORS}


class _NotRead:
    """Training data that fails the test when anything looks at it (the parameters are checked first)."""

    def __getattr__(self, name):
        raise AssertionError(f"fit read its data ({name}) before checking the parameters")

    def __len__(self):
        raise AssertionError("fit read its data (len) before checking the parameters")

    def __iter__(self):
        raise AssertionError("fit read its data (iter) before checking the parameters")


NOT_READ = _NotRead()


def _refused(est, param, value):
    """Fit ``est`` with ``param=value`` on data it must not read: the InvalidParameterError's message."""
    est = clone(est).set_params(**{param: value})
    with pytest.raises(InvalidParameterError) as err:
        est.fit(NOT_READ, NOT_READ)
    return str(err.value)


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: NAME[id(e)])
def test_every_parameter_is_declared_and_the_defaults_hold(est):
    params = est.get_params(deep=False)
    assert set(type(est)._parameter_constraints) == set(params)
    check_params(type(est).__name__, params, type(est)._parameter_constraints)     # no error


def test_the_classifier_reuses_the_trainer_constraints():
    declared = CellTypeClassifier._parameter_constraints
    assert all(declared[k] is TRAINER_CONSTRAINTS[k] for k in CellTypeClassifier().trainer_kwargs)


@pytest.mark.parametrize("est,param,value,allowed", [
    (ESTIMATORS[0], "k", 0, "an integer >= 1"),
    (ESTIMATORS[0], "lr", -1.0, "a number > 0"),
    (ESTIMATORS[0], "max_epochs", "3", "an integer >= 1"),
    (ESTIMATORS[0], "ensemble", "stack", "one of None, 'joint', 'soft', 'hard'"),
    (ESTIMATORS[0], "n_genes", 2.5, "None or an integer >= 1"),
    (ESTIMATORS[0], "optimizer", "rmsprop", "one of 'adam', 'adamw', 'sgd'"),
    (ESTIMATORS[1], "C", 0, "a number > 0"),
    (ESTIMATORS[1], "counts", "yes", "True or False"),
    (ESTIMATORS[2], "n_pcs", 0, "an integer >= 1"),
    (ESTIMATORS[3], "n_folds", 1, "an integer >= 2"),
    (ESTIMATORS[3], "class_weight", "even", "None or one of 'balanced' or a dict"),
    (ESTIMATORS[4], "validation_fraction", 1.0, "a number in (0, 1)"),
    (ESTIMATORS[4], "early_stopping_rounds", 0, "None or an integer >= 1"),
    (ESTIMATORS[5], "solver", "adam", "one of None, 'lbfgs'"),
    (ESTIMATORS[5], "seed", -1, "an integer in [0, 4294967296)"),
    (ESTIMATORS[6], "n_folds", 1, "an integer >= 2"),
    (ESTIMATORS[6], "factories", ["lr", "knn"], "a dict"),
    (ESTIMATORS[7], "tol", 0.0, "a number > 0"),
    (ESTIMATORS[8], "accelerator", "tpu", "one of 'auto', 'cpu', 'gpu'"),
    (ESTIMATORS[9], "quantile", 1.5, "a number in [0, 1]"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_a_wrong_value_is_refused_before_any_work(est, param, value, allowed):
    msg = _refused(est, param, value)
    assert msg.startswith(f"{type(est).__name__}: {param}={value!r} is not valid: it must be {allowed}")


@pytest.mark.parametrize("est,param,value,match", [
    (ESTIMATORS[0], "architecture", ["cnn", "rnn"], "unknown: 'rnn'"),
    (ESTIMATORS[0], "architecture", [], "none given"),
    (ESTIMATORS[0], "model_kwargs", {"chunks": 50}, "no member constructor takes 'chunks'"),
    (ESTIMATORS[3], "param_grid", {"gamma": [1]}, "param_grid has unknown key"),
    (ESTIMATORS[3], "param_grid", {"C": [-1]}, r"param_grid\['C'\] has the invalid value -1"),
    (ESTIMATORS[7], "param_grid", {"gamma": [1]}, "param_grid has unknown key"),
    (ESTIMATORS[6], "factories", {"lr": _lr}, "at least 2 member names"),
    (ESTIMATORS[6], "factories", {"lr": _lr, "knn": "knn"}, "not callable: knn"),
])
def test_what_the_declarations_cannot_say_is_refused_too(est, param, value, match):
    """The hand-written checks left (inside a list or a dict) raise the same error, before any work."""
    with pytest.raises(InvalidParameterError, match=match):
        clone(est).set_params(**{param: value}).fit(NOT_READ, NOT_READ)


# ------------------------------------------------------------------------------------ generated values
CASES = [(est, name) for est in ESTIMATORS for name in sorted(type(est)._parameter_constraints)]
odd_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-2 ** 40, 2 ** 40),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                       st.sampled_from(["adam", "joint", "counts", "balanced", "lbfgs", "val", "auto", "mlp"]),
                       st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                                 max_size=1),
                       st.just(object()), st.just(np.int64(2)), st.just(np.float32(0.5)))


def _allowed(est, name, value) -> bool:
    try:
        check_params("x", {name: value}, {name: type(est)._parameter_constraints[name]})
    except InvalidParameterError:
        return False
    return True


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), value=odd_values)
def test_generated_wrong_values_are_refused_naming_the_parameter(case, value):
    est, name = case
    if _allowed(est, name, value):
        return
    msg = _refused(est, name, value)
    assert msg.startswith(f"{type(est).__name__}: {name}=") and "is not valid: it must be" in msg
