"""Labels come back in their own type: integers in, integers out; text in, text out; a Categorical's values.

For :class:`CellTypeClassifier`, every baseline and the stacked ensemble: ``classes_`` holds the labels as given
(sorted), ``predict`` returns them (``predict(X) == y`` on an easy data set, and the classification metrics take
both), ``predict_proba``'s columns follow ``classes_``, and a model file keeps the type.  Text labels train the
very same model as before (the same probabilities as integer labels in the same order).
"""
from __future__ import annotations

import json
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbook.annotation import UNASSIGNED, CellTypeClassifier, annotate, load_model, save_model
from cellbook.baselines import (
    PCAKNN,
    CellTypistClassifier,
    HVGGradientBoosting,
    HVGLogisticRegression,
    TunedLogisticRegression,
)
from cellbook.comparison import StackedEnsemble
from cellbook.metrics import classification

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

TINY = dict(n_genes=None, min_cells_per_gene=1, model_kwargs={"mlp": {"hidden": (16,)}}, max_epochs=15, lr=3e-3,
            batch_size=16, val_fraction=0.0, patience=None, device="cpu")
N_TYPES, PER_TYPE, N_GENES = 3, 30, 40
GENES = [f"G{j}" for j in range(N_GENES)]


def _lr(seed):
    return HVGLogisticRegression(n_top_genes=20, seed=seed)


def _knn(seed):
    return PCAKNN(n_top_genes=20, n_pcs=3, k=5, seed=seed)


def _estimators():
    return {"classifier": CellTypeClassifier("mlp", **TINY), "logreg": HVGLogisticRegression(n_top_genes=20),
            "knn": _knn(0), "tuned": TunedLogisticRegression(n_top_genes=20, param_grid={"C": (0.1, 1.0)}, n_folds=2),
            "gbm": HVGGradientBoosting(n_top_genes=20, max_iter=20, early_stopping_rounds=3, n_jobs=1),
            "celltypist": CellTypistClassifier(n_jobs=1, with_mean=False),
            "stacked": StackedEnsemble({"lr": _lr, "knn": _knn}, n_folds=2)}


def _counts(seed=0):
    """Counts of 3 well-separated types (each type: 5 genes of its own at 8x), and each cell's type code."""
    rng = np.random.default_rng(seed)
    code = np.repeat(np.arange(N_TYPES), PER_TYPE)
    lam = np.ones((len(code), N_GENES))
    for i in range(N_TYPES):
        lam[code == i, i * 5:(i + 1) * 5] = 8.0
    return sp.csr_matrix(rng.poisson(lam).astype(np.float32)), code


X, CODE = _counts()
LABELS = {  # name: (labels as given, the dtype kind of classes_ and predictions, classes_)
    "int": (CODE * 10 + 3, "i", [3, 13, 23]),
    "str": (np.array(["T0", "T1", "T2"])[CODE], "U", ["T0", "T1", "T2"]),
    "categorical": (pd.Categorical(np.array(["c", "a", "b"])[CODE], categories=["c", "b", "a"]), "O",
                    ["a", "b", "c"]),
    "object int": (pd.Series(CODE, dtype=object), "i", [0, 1, 2]),     # e.g. a nullable integer column's values
    "bool": (CODE == 1, "b", [False, True]),
}
# the labels to score against (scikit-learn's metrics take no object array of integers)
TRUTH = {kind: (CODE if kind == "object int" else np.asarray(y)) for kind, (y, _, _) in LABELS.items()}
KIND_OF = {"classifier": {"categorical": "U"}}     # the deep classifier takes any text as NumPy text
FITTED = {}


def _fitted(name, kind):
    if (name, kind) not in FITTED:
        FITTED[name, kind] = _estimators()[name].fit(X, LABELS[kind][0], gene_names=GENES)
    return FITTED[name, kind]


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("name", list(_estimators()))
def test_labels_come_back_in_their_own_type(name, kind):
    _, dtype_kind, classes = LABELS[kind]
    dtype_kind = KIND_OF.get(name, {}).get(kind, dtype_kind)
    est = _fitted(name, kind)
    pred = est.predict(X, gene_names=GENES)
    truth = TRUTH[kind]
    assert list(est.classes_) == classes and est.classes_.dtype.kind == dtype_kind
    assert pred.dtype.kind == dtype_kind and set(pred) <= set(classes)
    assert (pred == truth).mean() > 0.9
    assert classification(truth, pred)["accuracy"] > 0.9            # no "mix of label input types"
    proba = est.predict_proba(X, gene_names=GENES)
    assert proba.shape == (len(truth), len(classes))
    assert np.array_equal(est.classes_[proba.argmax(1)], pred) or name == "celltypist"


@pytest.mark.parametrize("kind", ["int", "str", "bool"])
@pytest.mark.parametrize("name", ["classifier", "logreg", "knn", "tuned", "gbm", "celltypist"])
def test_a_model_file_keeps_the_label_type(name, kind, tmp_path):
    est = _fitted(name, kind)
    back = load_model(save_model(est, tmp_path / "m.cbm"))
    before, after = est.predict(X, gene_names=GENES), back.predict(X, gene_names=GENES)
    assert after.dtype == before.dtype and np.array_equal(after, before)
    assert back.classes_.dtype == est.classes_.dtype and np.array_equal(back.classes_, est.classes_)
    assert np.array_equal(back.predict_proba(X, gene_names=GENES), est.predict_proba(X, gene_names=GENES))


def test_text_labels_train_the_same_model_as_before():
    """Text labels: the same file format as before (no ``class_labels``) and the same model as integer labels
    in the same order; the integer model's file records its labels' type."""
    text, ints = _fitted("classifier", "str"), _fitted("classifier", "int")
    assert np.array_equal(text.predict_proba(X), ints.predict_proba(X))
    assert text.classes_.dtype == np.dtype("<U2")


def test_the_file_records_the_type_of_labels_other_than_text(tmp_path):
    for kind, recorded in (("str", None), ("int", {"dtype": "<i8", "values": [3, 13, 23]})):
        with zipfile.ZipFile(_fitted("classifier", kind).save(tmp_path / f"{kind}.cbm")) as z:
            meta = json.loads(z.read("cellbook_model.json"))
        assert meta.get("class_labels") == recorded
        assert meta["classes"] == list(map(str, LABELS[kind][2]))        # what older cellbooks read


def test_a_file_whose_label_type_was_altered_is_refused(tmp_path):
    path = _fitted("classifier", "int").save(tmp_path / "m.cbm")
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(files["cellbook_model.json"])
    for bad in ({"dtype": "<i8", "values": [1, 2, 3]}, {"dtype": "|O", "values": [3, 13, 23]}):
        altered = tmp_path / "altered.cbm"
        with zipfile.ZipFile(altered, "w") as z:
            for n, data in files.items():
                z.writestr(n, json.dumps({**meta, "class_labels": bad}) if n == "cellbook_model.json" else data)
        with pytest.raises(ValueError, match="could not be rebuilt.*class labels"):
            load_model(altered)


def test_annotate_writes_text_and_unassigned_for_integer_labels():
    """``predict`` applies no threshold (every cell gets a class of ``classes_``); annotate writes text to .obs,
    with ``"Unassigned"`` for the cells below its threshold."""
    clf = _fitted("classifier", "int")
    query = ad.AnnData(X.copy(), var=pd.DataFrame(index=GENES))
    conf = annotate(query, clf, copy=True).obs["predicted_cell_type_confidence"].to_numpy()
    threshold = float(np.median(conf))                                  # about half the cells unassigned
    labels = annotate(query, clf, threshold=threshold).obs["predicted_cell_type"]
    assert list(labels.cat.categories) == ["3", "13", "23", UNASSIGNED]
    assert ((labels == UNASSIGNED).to_numpy() == (conf < threshold)).all()
    kept = (labels != UNASSIGNED).to_numpy()
    assert 0 < kept.sum() < len(kept)
    assert np.array_equal(labels[kept].astype(str), clf.predict(X[kept], gene_names=GENES).astype(str))
    assert clf.predict(X, gene_names=GENES).dtype.kind == "i"


def test_a_continuous_target_is_refused():
    y = np.linspace(0, 1, X.shape[0])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        CellTypeClassifier("mlp", **TINY).fit(X, y)


def test_tuned_logreg_with_one_candidate_needs_no_inner_folds():
    """A fixed setting (as a stacked ensemble refits its members) runs no inner CV, so a class of 2 cells is fine;
    with a grid to choose from, the inner folds need as many cells per class as folds (a clear error)."""
    from cellbook.baselines import TunedLogisticRegression

    rng = np.random.default_rng(0)
    X = rng.poisson(3, (42, 30)).astype(np.float32)
    y = np.array(["a"] * 20 + ["b"] * 20 + ["c"] * 2)
    fixed = TunedLogisticRegression(param_grid={"C": [1.0]}, n_folds=3).fit(X, y)
    assert set(fixed.predict(X)) <= {"a", "b", "c"} and fixed.cv_folds_ == []
    with pytest.raises(ValueError, match="c"):
        TunedLogisticRegression(param_grid={"C": [0.1, 1.0]}, n_folds=3).fit(X, y)
