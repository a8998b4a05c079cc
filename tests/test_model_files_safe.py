"""Model files hold data, not code: skops payloads of trusted types only; legacy pickles only when trusted."""
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from synthetic_cells import marker_adata

from cellbook import baselines as B
from cellbook.annotation import CellTypeClassifier, load_model, save_model
from cellbook.annotation._model_files import TRUSTED_TYPES
from cellbook.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA = Path(__file__).parent / "data"


def _adata(n=90, g=40, seed=0):
    """Cells of types A/B/C (integer counts); type t is high on 10 genes of its own."""
    return marker_adata(n, g, seed)


MODELS = {
    "HVGLogisticRegression": lambda: B.HVGLogisticRegression(n_top_genes=20),
    "PCAKNN": lambda: B.PCAKNN(n_top_genes=20, n_pcs=5, k=5),
    "TunedLogisticRegression": lambda: B.TunedLogisticRegression(
        n_top_genes=20, param_grid={"C": (0.1, 1.0), "class_weight": (None, "balanced")}),
    "HVGGradientBoosting": lambda: B.HVGGradientBoosting(n_top_genes=20, max_iter=15, early_stopping_rounds=5,
                                                       n_jobs=1),
    "CellTypistClassifier": lambda: B.CellTypistClassifier(n_jobs=1),
    "CellTypistClassifier-SGD": lambda: B.CellTypistClassifier(use_SGD=True, feature_selection=True, top_genes=10,
                                                             with_mean=False, n_jobs=1),
    "CellTypeClassifier": lambda: CellTypeClassifier("mlp", n_genes=None, max_epochs=2, device="cpu",
                                                     patience=None),
}


@pytest.fixture(scope="module")
def cells():
    return _adata(), _adata(n=60, seed=1)


@pytest.fixture(scope="module")
def lr(cells):
    ref, _ = cells
    return B.HVGLogisticRegression(n_top_genes=20).fit(ref, ref.obs["cell_type"].to_numpy())


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_round_trips_with_identical_probabilities(tmp_path, cells, name):
    ref, query = cells
    model = MODELS[name]()
    model = model.fit_adata(ref) if name == "CellTypeClassifier" else model.fit(ref, ref.obs["cell_type"].to_numpy())
    path = save_model(model, tmp_path / "m.cbm")
    with zipfile.ZipFile(path) as z:
        names, meta = set(z.namelist()), json.loads(z.read("cellbook_model.json"))
        payload = z.read("estimator.skops") if "estimator.skops" in names else None
    assert "estimator.pkl" not in names
    if name == "CellTypeClassifier":
        assert names == {"cellbook_model.json", "state_dict.pt"} and meta["format_version"] == 1
    else:
        assert names == {"cellbook_model.json", "estimator.skops"} and meta["format_version"] == 2
        assert set(sio.get_untrusted_types(data=payload)) <= TRUSTED_TYPES
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # no warning: nothing to trust by hand
        back = load_model(path)
    assert type(back) is type(model) and list(back.classes_) == list(model.classes_)
    assert np.array_equal(model.predict_proba(query), back.predict_proba(query))
    if name == "TunedLogisticRegression":
        pd.testing.assert_frame_equal(back.cv_results_, model.cv_results_)


def test_the_legacy_deep_model_file_needs_no_trust():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = load_model(DATA / "legacy_model.cbm")
    assert isinstance(clf, CellTypeClassifier)


# ------------------------------------------------------------------ crafted files
class _Touch:
    """Unpickled, creates a file: what a malicious pickle could do instead."""

    def __init__(self, path):
        self.path = Path(path)

    def __reduce__(self):
        return Path.touch, (self.path,)


class _Boom:
    """Constructed from its state (by skops or pickle), creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        Path(state["path"]).touch()


def _model_file(path, meta, payload_name, payload):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cellbook_model.json", json.dumps(meta))
        z.writestr(payload_name, payload)
    return path


def _meta(lr, tmp_path, version):
    with zipfile.ZipFile(save_model(lr, tmp_path / "good.cbm")) as z:
        return {**json.loads(z.read("cellbook_model.json")), "format_version": version}


def test_a_pickle_is_refused_unless_trusted(tmp_path, lr, cells, capsys):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Touch(proof)))
    assert proof.exists()                                  # the payload does act when unpickled
    marker = tmp_path / "pwned"
    bad = _model_file(tmp_path / "bad.cbm", _meta(lr, tmp_path, 1), "estimator.pkl", pickle.dumps(_Touch(marker)))
    with pytest.raises(ValueError, match=r"bad.cbm holds a pickled estimator .*can run any code.*trusted=True"):
        load_model(bad)
    assert not marker.exists()
    cells[1].write_h5ad(tmp_path / "query.h5ad")
    assert main(["annotate", str(tmp_path / "query.h5ad"), "--model", str(bad), "-o", str(tmp_path / "o.h5ad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickled estimator" in err[0] and "--trusted" in err[0]
    assert not marker.exists() and not (tmp_path / "o.h5ad").exists()

    # an old file of a trusted source: the user's explicit choice, with a warning
    old = _model_file(tmp_path / "old.cbm", _meta(lr, tmp_path, 1), "estimator.pkl", pickle.dumps(lr))
    with pytest.warns(UserWarning, match="pickled estimator was loaded because trusted=True"):
        back = load_model(old, trusted=True)
    assert np.array_equal(back.predict_proba(cells[1]), lr.predict_proba(cells[1]))
    assert main(["annotate", str(tmp_path / "query.h5ad"), "--model", str(old), "--trusted",
                 "-o", str(tmp_path / "o.h5ad")]) == 0
    assert "cellbook: warning:" in capsys.readouterr().err and (tmp_path / "o.h5ad").exists()
    assert main(["annotate", str(tmp_path / "query.h5ad"), "--reference", str(tmp_path / "query.h5ad"),
                 "--trusted", "-o", str(tmp_path / "o2.h5ad")]) == 1
    assert "--trusted only applies" in capsys.readouterr().err


@pytest.mark.parametrize("hook,named", [(os.system, f"{os.system.__module__}.system"), (eval, "builtins.eval"),
                                        ("boom", "_Boom")])
def test_a_skops_payload_with_an_untrusted_type_is_refused_unbuilt(tmp_path, lr, cells, capsys, hook, named):
    marker = tmp_path / "pwned"
    evil = B.HVGLogisticRegression(n_top_genes=20).fit(cells[0], cells[0].obs["cell_type"].to_numpy())
    evil.hook = _Boom(marker) if hook == "boom" else hook
    payload = sio.dumps(evil)
    bad = _model_file(tmp_path / "bad.cbm", _meta(lr, tmp_path, 2), "estimator.skops", payload)
    with pytest.raises(ValueError, match=rf"bad.cbm: the model file asks for types that cellbook does not trust: "
                                         rf".*{named}.*Nothing was loaded"):
        load_model(bad)
    cells[1].write_h5ad(tmp_path / "query.h5ad")
    for extra in ([], ["--trusted"]):                      # --trusted is for legacy pickles only
        assert main(["annotate", str(tmp_path / "query.h5ad"), "--model", str(bad), *extra,
                     "-o", str(tmp_path / "o.h5ad")]) == 1
        assert named in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "o.h5ad").exists()
    if hook == "boom":                                     # the payload does act once trusted blindly
        sio.loads(payload, trusted=sio.get_untrusted_types(data=payload))
        assert marker.exists()


def test_a_torn_skops_payload_is_a_clear_error(tmp_path, lr):
    payload = sio.dumps(lr)
    torn = _model_file(tmp_path / "torn.cbm", _meta(lr, tmp_path, 2), "estimator.skops", payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="torn.cbm: the stored estimator could not be read.*corrupt"):
        load_model(torn)
