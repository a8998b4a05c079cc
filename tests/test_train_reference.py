"""The Trainer gives byte-identical numbers to the stored reference (``tests/data/train_reference.npz``).

Every case of ``tests/data/make_train_reference.py`` (classification with and without a validation split, early
stopping, class weights, label smoothing, ``monitor="train"``, learning-rate steps, each optimiser, augmentation,
regression, reconstruction, the autoencoder helpers, ``CurveTrainer``, and the resident and fixed-buffer paths on
the CPU) is trained again here; its history (all but the wall-clock columns), predictions, weights and fitted
attributes must equal the reference exactly.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).with_name("data")


def _generator():
    spec = importlib.util.spec_from_file_location("make_train_reference", DATA / "make_train_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope="module")
def reference():
    with np.load(GEN.OUT) as z:
        return {key: z[key] for key in z.files}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", list(GEN.CASES))
def test_same_numbers_as_reference(case, reference, tmp_path, one_torch_thread):
    got = GEN.run_case(case, tmp_path)
    want = {key.split(".", 1)[1]: value for key, value in reference.items() if key.split(".", 1)[0] == case}
    assert want, f"no reference for case {case}; regenerate tests/data/train_reference.npz"
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), f"{case}: {key} differs from the reference"
