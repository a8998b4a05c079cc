"""Declared parameter constraints (:func:`cellbook.validation.validate_params`): a wrong value is refused by name,
before the function does any work, and every public function of the data, preprocessing, split, metric,
enrichment and annotation modules declares what its parameters take.

``HYPOTHESIS_PROFILE=long`` runs many more generated values:

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_constraints.py
"""
from __future__ import annotations

import inspect
import os
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cellbook.annotation  # noqa: F401  (registers annotate, fit_reference, save_model, load_model)
from cellbook import enrichment, metrics, splits, sweeps, validation
from cellbook.annotation import _annotate, _model_files, _reference
from cellbook.datasets import bulk as bulk_data
from cellbook.datasets import images as image_data
from cellbook.datasets import scrna as scrna_data
from cellbook.preprocess import bulk as bulk_pre
from cellbook.preprocess import imaging, spectral
from cellbook.preprocess import scrna as scrna_pre
from cellbook.validation import DECLARED, InvalidParameterError, check_params

settings.register_profile("default", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Every public function of these modules declares its parameters (or is listed in EXEMPT).
MODULES = [scrna_data, image_data, bulk_data, bulk_pre, imaging, scrna_pre, spectral, enrichment, splits, metrics,
           _annotate, _reference, _model_files]
ONLY_ARRAYS = "takes only data (arrays, images, tables): the data checks refuse wrong data"
EXEMPT = {
    "cellbook.preprocess.bulk.quantile_reference": ONLY_ARRAYS,
    "cellbook.preprocess.bulk.quantile_apply": ONLY_ARRAYS,
    "cellbook.preprocess.bulk.quantile_normalize": ONLY_ARRAYS,
    "cellbook.preprocess.bulk.split_transform": "its keyword arguments go to BulkPreprocessor, an estimator",
    "cellbook.preprocess.imaging.bit_depth": ONLY_ARRAYS,
    "cellbook.preprocess.imaging.hsv_value": ONLY_ARRAYS,
    "cellbook.preprocess.imaging.overview": "takes only an ImageSet",
    "cellbook.preprocess.imaging.brightness_features": ONLY_ARRAYS,
    "cellbook.preprocess.imaging.morphology_features": ONLY_ARRAYS,
    "cellbook.preprocess.imaging.handcrafted_features": ONLY_ARRAYS,
    "cellbook.metrics.classification": ONLY_ARRAYS + " (labels= is a list of classes)",
    "cellbook.metrics.per_class": ONLY_ARRAYS + " (labels= is a list of classes)",
    "cellbook.metrics.roc": ONLY_ARRAYS + " (positive= is any label)",
    "cellbook.metrics.chi_square": ONLY_ARRAYS,
    "cellbook.metrics.mse_per_sample": ONLY_ARRAYS,
    "cellbook.metrics.differential_expression": ONLY_ARRAYS,
}

# Values that hold for the constraints, to fill a required parameter while another one is tested.
_POOL = [None, True, 3, 0.5, 1, 0, 2, "x", Path("x"), (2, 2), [2, 2], {}, len, np.random.default_rng(0),
         np.arange(3)]


def _valid_value(constraint):
    """A value that ``constraint`` takes (the first of the pool, or one of its options)."""
    options = constraint if isinstance(constraint, list) else [constraint]
    candidates = [v for c in options if isinstance(c, validation.Options) for v in c.values] + _POOL
    for value in candidates:
        if _holds(constraint, value):
            return value
    raise AssertionError(f"no value in the test's pool satisfies {constraint!r}: add one to _POOL")


def _holds(constraint, value) -> bool:
    """Whether ``value`` satisfies ``constraint``, as the validation module decides it."""
    try:
        check_params("probe", {"p": value}, {"p": constraint})
    except InvalidParameterError:
        return False
    return True


def _call_with(fn, name: str, value):
    """Call ``fn`` with ``name=value``, an unusable ``object()`` for every other required parameter without a
    constraint (so any work would fail differently) and a valid value for every other required declared one."""
    constraints = fn._parameter_constraints
    kwargs = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name == name or p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kwargs[p.name] = _valid_value(constraints[p.name]) if p.name in constraints else object()
    kwargs[name] = value
    return fn(**kwargs)


anything = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.integers(-2 ** 70, 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["SCNN", "Clahe", "nope", "P_BH", "Spearman", "", "1", "2.5", "none"]),
    st.lists(st.integers(-1, 3), max_size=3), st.tuples(st.integers(-1, 300), st.integers(-1, 300)),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([np.int64(3), np.int64(-1), np.float64("nan"), np.float32(0.5), b"x", Path("p"), object()]))

DECLARED_NAMES = sorted(DECLARED)


def _examples(n_parameters: int) -> int:
    """Generated values per function: about 15 per declared parameter, between 20 and the profile's number."""
    most = settings.default.max_examples
    return max(20, min(most, most * n_parameters // 10))


@pytest.mark.parametrize("qualname", DECLARED_NAMES)
def test_a_wrong_value_is_refused_by_name_before_any_work(qualname):
    fn = DECLARED[qualname]
    constraints = fn._parameter_constraints
    source = inspect.getsourcefile(inspect.unwrap(fn))

    @settings(max_examples=_examples(len(constraints)))
    @given(name=st.sampled_from(sorted(constraints)), value=anything)
    def refused(name, value):
        if _holds(constraints[name], value):
            return
        with pytest.raises(InvalidParameterError) as caught:
            _call_with(fn, name, value)
        message = str(caught.value)
        assert message.startswith(f"{fn.__name__}: {name}=") and "is not valid: it must be" in message, message
        frames = [f.filename for f in traceback.extract_tb(caught.value.__traceback__)]
        assert source not in frames, f"{qualname} started its work before refusing {name}={value!r}"

    if constraints:
        refused()


def _public_functions(module) -> list[str]:
    return [f"{module.__name__}.{name}" for name, fn in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__]


def test_every_public_function_declares_its_parameters():
    public = [name for module in MODULES for name in _public_functions(module)]
    missing = [name for name in public if name not in DECLARED and name not in EXEMPT]
    assert not missing, "public functions without @validate_params (declare them, or say why in EXEMPT):\n" + \
        "\n".join(missing)
    stale = [name for name in EXEMPT if name not in public or name in DECLARED]
    assert not stale, f"EXEMPT lists functions that are gone or declared: {stale}"
    for name in ("cellbook.sweeps.fit_image_model", "cellbook.annotation._annotate.annotate",
                 "cellbook.annotation._reference.fit_reference", "cellbook.annotation._model_files.save_model",
                 "cellbook.annotation._model_files.load_model"):
        assert name in DECLARED, name
    assert len(public) - len(EXEMPT) >= 80


def test_every_declaration_is_recorded_on_the_function():
    for qualname, fn in DECLARED.items():
        assert qualname == f"{fn.__module__}.{fn.__qualname__}"
        assert set(fn._parameter_constraints) <= set(inspect.signature(fn).parameters), qualname


# ------------------------------------------------------------------------------------------- specific cases
def test_an_image_model_name_must_be_one_of_the_valid_names():
    with pytest.raises(InvalidParameterError) as caught:
        sweeps.fit_image_model(object(), object(), [0], [1], "SCNN", seed=0)
    message = str(caught.value)
    assert message.startswith("fit_image_model: model='SCNN' is not valid: it must be one of")
    for name in sweeps.IMAGE_MODELS:
        assert repr(name) in message
    assert set(sweeps.IMAGE_MODELS) >= {"scnn", "resnet", "vgg", "hand-crafted + LR", "brightness only + LR"}


def test_a_feature_baseline_is_fitted_under_its_name():
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"] * 10)
    X = rng.normal(size=(20, 3)) + (labels == "b")[:, None] * 3.0
    out = sweeps.fit_image_model(X, labels, np.arange(14), np.arange(14, 20), "hand-crafted + LR", seed=0)
    assert out["pred"].shape == (6,) and out["fit_seconds"] >= 0


def test_a_loader_names_the_parameter_given_as_text():
    for call in (lambda: scrna_data.synthetic_counts(n_cells="10"),
                 lambda: scrna_data.bmmc(object(), n_cells="10"),
                 lambda: scrna_data.select_cells(object(), n_cells="10")):
        with pytest.raises(InvalidParameterError, match=r"n_cells='10' is not valid: it must be None or an "
                                                        r"integer >= 1|n_cells='10' is not valid: it must be an "
                                                        r"integer >= 1"):
            call()
    with pytest.raises(ValueError, match="n_types=1 is not valid"):        # still a ValueError (and a TypeError)
        scrna_data.select_cells(object(), n_types=1)


def test_numpy_numbers_and_lists_still_pass():
    a = scrna_data.synthetic_counts(n_cells=np.int64(30), n_genes=np.int64(40), n_types=2, seed=np.int64(1))
    assert a.shape == (30, 40)
    assert imaging.resize(np.zeros((8, 12), np.uint8), [np.int64(4), 6]).shape == (4, 6)
    assert splits.stratified_split(["a", "b"] * 6, test_size=np.float64(0.5), seed=np.int32(0))[0].size == 6


# Warnings still point at the line that called the function (the check adds a frame: stacklevels count it).
def _warned_here(call) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    files = {Path(w.filename).name for w in caught}
    assert files == {Path(__file__).name}, [(w.filename, str(w.message)[:60]) for w in caught]


def test_warnings_point_at_the_caller():
    import anndata as ad
    import scipy.sparse as sp

    _warned_here(lambda: scrna_pre.align_genes(np.ones((2, 2)), ["a", "b"], ["a", "c"], min_overlap=0.1))
    _warned_here(lambda: enrichment.overrepresentation({"q": ["A"], "r": ["Z"]}, {"T": {"A", "B"}}, ["A", "B"]))
    _warned_here(lambda: splits.grouped_folds(["a", "b"] * 4, list("abcdefgh"), n_splits=2))
    dup = ad.AnnData(X=sp.csr_matrix(np.ones((4, 3), np.float32)), obs={"cell_type": ["x", "y"] * 2})
    dup.var_names = ["g1", "g1", "g2"]
    _warned_here(lambda: scrna_data.as_counts_adata(dup, duplicate_genes="sum"))


def test_an_image_folder_without_groups_warns_at_the_caller(tmp_path):
    import cv2

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        cv2.imwrite(str(tmp_path / cls / "f1_t1.png"), np.full((4, 4), 100, np.uint8))
    _warned_here(lambda: image_data.image_folder(tmp_path))


def test_numpy_text_and_bools_count_as_their_python_values():
    """An option read from an AnnData column or a NumPy array (``np.str_``, ``np.bool_``) is accepted."""
    from cellbook.validation import Options

    assert Options("clahe", None).holds(np.str_("clahe")) and Options(True, False).holds(np.bool_(True))
    assert not Options(1, 2).holds(True) and not Options(True).holds(1)     # 1 is not True, True is not 1
