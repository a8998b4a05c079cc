"""Generated inputs (Hypothesis): a public function returns a valid result or raises its own clear error.

The property, for every function here: the call succeeds, or it raises ``ValueError`` / ``TypeError`` /
``KeyError`` from a ``raise`` inside the ``cellbook`` package (not from NumPy, torch, pandas or
scikit-learn internals), with a message.  ``HYPOTHESIS_PROFILE=long`` runs many more examples:

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_properties.py
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellbook import enrichment, metrics, splits
from cellbook.preprocess import imaging
from cellbook.train import Trainer

PACKAGE = str(Path(__file__).resolve().parents[1] / "cellbook")
settings.register_profile("default", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def ok_or_own_error(fn, *args, **kwargs):
    """Call ``fn``; a raised error must be one of the package's own, raised in ``cellbook/``, with a message."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, KeyError) as err:
        frames = traceback.extract_tb(err.__traceback__)
        where = frames[-1].filename
        assert where.startswith(PACKAGE), (
            f"{type(err).__name__} raised outside cellbook ({where}:{frames[-1].lineno}): {err}")
        assert str(err).strip(), "an error without a message"
        return None


# ------------------------------------------------------------------------------------- strategies
anything = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.floats(allow_nan=True),
                     st.text(max_size=6), st.lists(st.integers(0, 3), max_size=3),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
labels = st.lists(st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.none(),
                            st.just(float("nan"))), max_size=30)
TRAINER_SETTINGS = ["max_epochs", "batch_size", "lr", "optimizer", "weight_decay", "lr_step", "lr_gamma",
                    "val_fraction", "patience", "amp", "seed", "progress", "predict_batch_size", "monitor",
                    "label_smoothing", "resident", "graphs", "task"]


@given(st.dictionaries(st.sampled_from(TRAINER_SETTINGS), anything, max_size=4))
def test_trainer_settings(kwargs):
    ok_or_own_error(Trainer, nn.Linear(3, 2), device="cpu", **kwargs)


@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_,
                                        np.complex64]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)))
def test_to_uint8(img):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ok_or_own_error(imaging.to_uint8, img)
    if out is not None:
        assert out.dtype == np.uint8


@given(labels, st.one_of(st.floats(-1, 2), st.integers(-2, 40)), st.integers(0, 2 ** 31))
def test_stratified_split(y, test_size, seed):
    out = ok_or_own_error(splits.stratified_split, y, test_size=test_size, seed=seed)
    if out is not None:
        train, test = out
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)


@given(labels, st.integers(-1, 8), st.integers(0, 100))
def test_stratified_kfold(y, n_folds, seed):
    ok_or_own_error(splits.stratified_kfold, y, n_folds, seed=seed)


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=20), st.data())
def test_classification_metrics(y_true, data):
    y_pred = data.draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=len(y_true), max_size=len(y_true)))
    out = ok_or_own_error(metrics.classification, y_true, y_pred)
    if out is not None:
        assert 0 <= out["accuracy"] <= 1 and 0 <= out["f1_macro"] <= 1


genes = st.lists(st.sampled_from(["A", "B", "C", "D", "E", "X", "", " "]), max_size=6)


@given(st.dictionaries(st.sampled_from(["q1", "q2"]), genes, max_size=2),
       st.dictionaries(st.sampled_from(["T1", "T2", "T3"]), genes, max_size=3), genes)
def test_overrepresentation(queries, gene_sets, background):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ok_or_own_error(enrichment.overrepresentation, queries, gene_sets, background)
    if out is not None:
        assert ((out["p"] >= 0) & (out["p"] <= 1)).all()


def test_the_property_catches_an_error_from_outside_the_package():
    """The check itself can fail: an error raised inside NumPy is not accepted."""
    with pytest.raises(AssertionError, match="raised outside cellbook"):
        ok_or_own_error(np.zeros((2, 2)).reshape, 3)
