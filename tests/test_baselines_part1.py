"""Part I baselines of issue 11: TunedLogisticRegression, HVGGradientBoosting, CellTypistClassifier.

Small synthetic counts (seconds): shapes and class order, genes matched by name, determinism, no leakage of
the inner CV, NotFittedError, missing labels, and CellTypist (+ majority voting) end to end.
"""
from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from cellbook import baselines as B
from cellbook.baselines import _celltypist_model, _expression


def _counts(n_per=(30, 30, 30), g=120, labels=("A", "B", "C"), seed=0, strength=4.0):
    """Poisson counts: class i has 15 marker genes (columns 15*i ...) at ``strength`` x the background."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([[lab] * n for lab, n in zip(labels, n_per)]).astype(object)
    lam = np.full((len(y), g), 0.5)
    for i, lab in enumerate(labels):
        lam[y == lab, 15 * i:15 * (i + 1)] *= strength
    X = rng.poisson(lam).astype(np.float32)
    X[:, -1] += 1                      # no empty cell
    perm = rng.permutation(len(y))     # classes interleaved
    return X[perm], y[perm], [f"G{j}" for j in range(g)]


FAST = {
    "tuned_lr": lambda seed=0: B.TunedLogisticRegression(n_top_genes=60, param_grid={"C": (0.03, 0.3)}, seed=seed),
    "gbm": lambda seed=0: B.HVGGradientBoosting(n_top_genes=60, max_iter=60, early_stopping_rounds=5, seed=seed),
    "celltypist": lambda seed=0: B.CellTypistClassifier(seed=seed),
}


@pytest.fixture(scope="module")
def data():
    X, y, genes = _counts(n_per=(40, 40, 40))
    return X[:90], y[:90], X[90:], y[90:], genes


# ------------------------------------------------------------------------------------ all three
@pytest.mark.parametrize("name", FAST)
def test_shapes_class_order_and_learning(name, data):
    Xtr, ytr, Xte, yte, genes = data
    m = FAST[name]().fit(Xtr, ytr, gene_names=genes)
    assert list(m.classes_) == ["A", "B", "C"]
    P = m.predict_proba(Xte, gene_names=genes)
    assert P.shape == (len(yte), 3)
    np.testing.assert_allclose(P.sum(axis=1), 1, atol=1e-6)
    pred = m.predict(Xte, gene_names=genes)
    np.testing.assert_array_equal(pred, m.classes_[P.argmax(1)])
    assert (pred == yte).mean() > 0.9
    for j, c in enumerate(m.classes_):         # column j is the probability of classes_[j]
        assert P[yte == c, j].mean() > P[yte != c, j].mean() + 0.3
    assert m.n_parameters_ > 0


@pytest.mark.parametrize("name", FAST)
def test_integer_labels_keep_their_type_and_order(name):
    # 10 sorts before 2 as text: CellTypist names classes by text, the columns must still follow classes_
    X, y, genes = _counts(n_per=(30, 30, 30), labels=(2, 10, 1))
    y = y.astype(int)
    m = FAST[name]().fit(X[:70], y[:70], gene_names=genes)
    assert list(m.classes_) == [1, 2, 10]
    P = m.predict_proba(X[70:], gene_names=genes)
    pred = m.predict(X[70:], gene_names=genes)
    assert pred.dtype.kind == "i" and (pred == y[70:]).mean() >= 0.8
    np.testing.assert_array_equal(pred, m.classes_[P.argmax(1)])


@pytest.mark.parametrize("name", FAST)
def test_genes_matched_by_name(name, data):
    Xtr, ytr, Xte, yte, genes = data
    m = FAST[name]().fit(Xtr, ytr, gene_names=genes)
    P = m.predict_proba(Xte, gene_names=genes)
    perm = np.random.default_rng(1).permutation(len(genes))
    shuffled = [genes[i] for i in perm]
    np.testing.assert_allclose(m.predict_proba(Xte[:, perm], gene_names=shuffled), P, atol=1e-6)
    frame = pd.DataFrame(Xte[:, perm], columns=shuffled)
    np.testing.assert_allclose(m.predict_proba(frame), P, atol=1e-6)
    adata = ad.AnnData(sp.csr_matrix(Xte[:, perm]), var=pd.DataFrame(index=shuffled))
    np.testing.assert_array_equal(m.predict(adata), m.predict(Xte, gene_names=genes))
    # a bare matrix is taken in training order (with a warning), a shuffled bare matrix is not matched
    with pytest.warns(UserWarning, match="training order"):
        np.testing.assert_allclose(m.predict_proba(Xte), P, atol=1e-6)
    unnamed = FAST[name]().fit(Xtr, ytr)
    with pytest.raises(ValueError, match="without gene names"):
        unnamed.predict(Xte, gene_names=genes)


@pytest.mark.parametrize("name", FAST)
def test_same_seed_same_numbers(name, data):
    Xtr, ytr, Xte, _, genes = data
    a = FAST[name](seed=3).fit(Xtr, ytr, gene_names=genes).predict_proba(Xte, gene_names=genes)
    b = FAST[name](seed=3).fit(Xtr, ytr, gene_names=genes).predict_proba(Xte, gene_names=genes)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", FAST)
def test_not_fitted(name, data):
    _, _, Xte, _, genes = data
    with pytest.raises(NotFittedError):
        FAST[name]().predict(Xte, gene_names=genes)
    with pytest.raises(NotFittedError):
        FAST[name]().predict_proba(Xte)


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("missing", [np.nan, None, ""])
def test_missing_labels_are_an_error(name, missing, data):
    Xtr, ytr, _, _, genes = data
    y = ytr.astype(object).copy()
    y[[4, 9]] = missing
    with pytest.raises(ValueError, match="missing"):
        FAST[name]().fit(Xtr, y, gene_names=genes)


@pytest.mark.parametrize("name", FAST)
def test_bad_counts_are_an_error(name, data):
    Xtr, ytr, _, _, genes = data
    with pytest.raises(ValueError, match="negative"):
        FAST[name]().fit(-Xtr, ytr, gene_names=genes)
    with pytest.raises(ValueError, match="3 labels"):
        FAST[name]().fit(Xtr, ytr[:3], gene_names=genes)
    mixed = np.where(ytr == "A", 1, ytr).astype(object)        # 1 and "B": no order between them
    with pytest.raises(ValueError, match="mixes label types.*int, str"):
        FAST[name]().fit(Xtr, mixed, gene_names=genes)


# ------------------------------------------------------------------------------------ tuned LR
def test_inner_cv_sees_only_the_training_cells(data, monkeypatch):
    """HVGs are chosen inside each inner fold from that fold's training cells, and only fitted cells are used."""
    Xtr, ytr, Xte, _, genes = data
    calls = []
    real = _expression.highly_variable
    monkeypatch.setattr(_expression, "highly_variable",
                        lambda X, n, *a, **k: calls.append(X.shape[0]) or real(X, n, *a, **k))
    sub = np.arange(60)                                 # fit on a subset of the training cells
    m = B.TunedLogisticRegression(n_top_genes=60, param_grid={"C": (0.1, 1.0), "target_sum": (1e3, 1e4)},
                                  n_folds=3).fit(Xtr[sub], ytr[sub], gene_names=genes)
    folds = m.cv_folds_
    assert len(folds) == 3
    assert sorted(np.concatenate([b for _, b in folds])) == list(range(len(sub)))   # every cell validated once
    for a, b in folds:
        assert not set(a) & set(b) and len(a) + len(b) == len(sub)
    # one HVG selection per fold and target_sum on that fold's training cells, then one on all fitted cells
    assert calls == [len(a) for a, _ in folds] * 2 + [len(sub)]
    res = m.cv_results_
    assert len(res) == 4 and {"split0_accuracy", "split2_f1_macro", "mean_accuracy", "rank"} <= set(res.columns)
    assert res["rank"].min() == 1


def test_tuned_lr_chooses_by_accuracy_then_smaller_C():
    # separable classes: every C is perfect, so the tie goes to the smaller C, whatever the grid order
    X, y, genes = _counts(n_per=(30, 30, 30), strength=12)
    m = B.TunedLogisticRegression(n_top_genes=60, param_grid={"C": (1.0, 0.1)}).fit(X, y, gene_names=genes)
    assert m.cv_results_["mean_accuracy"].min() == 1.0
    assert m.best_params_ == {"C": 0.1, "class_weight": None, "target_sum": 1e4, "n_top_genes": 60}
    # a rare class: a tiny C predicts the majority class only, so accuracy picks the larger C
    X, y, genes = _counts(n_per=(60, 12, 12), strength=3)
    m = B.TunedLogisticRegression(n_top_genes=60, param_grid={"C": (1e-5, 1.0)}).fit(X, y, gene_names=genes)
    res = m.cv_results_.set_index("C")
    assert res.loc[1.0, "mean_accuracy"] > res.loc[1e-5, "mean_accuracy"]
    assert m.best_params_["C"] == 1.0 and m.best_score_ == res.loc[1.0, "mean_accuracy"]
    assert res.loc[1.0, "rank"] == 1
    assert m.n_parameters_ == 3 * (60 + 1)


def test_tuned_lr_refit_matches_a_plain_fit(data):
    """The refitted model is logistic regression on unscaled log1p(counts per target_sum) of the HVGs."""
    from cellbook.preprocess.scrna import highly_variable, log_normalize

    Xtr, ytr, Xte, _, genes = data
    m = B.TunedLogisticRegression(n_top_genes=50, param_grid={"C": (0.3,), "target_sum": (1e3,)}).fit(Xtr, ytr)
    Xl = log_normalize(Xtr, 1e3)
    g = highly_variable(Xl, 50)
    np.testing.assert_array_equal(m.genes_, g)
    ref = LogisticRegression(C=0.3, max_iter=1000, random_state=0).fit(Xl[:, g], ytr)
    np.testing.assert_allclose(m.predict_proba(Xte), ref.predict_proba(log_normalize(Xte, 1e3)[:, g]), atol=1e-4)


@pytest.mark.parametrize("grid, match", [({"gamma": (1,)}, "unknown key.*'gamma'"), ({"C": ()}, "empty"),
                                         ({"C": (-1,)}, "invalid value -1"), ("C", "param_grid=.C. is not valid"),
                                         ({"class_weight": ("equal",)}, "invalid value 'equal'")])
def test_tuned_lr_bad_grid(grid, match, data):
    Xtr, ytr, _, _, _ = data
    with pytest.raises(ValueError, match=match):
        B.TunedLogisticRegression(param_grid=grid).fit(Xtr, ytr)


def test_tuned_lr_too_few_cells_for_the_folds():
    X, y, _ = _counts(n_per=(20, 20, 2))
    with pytest.raises(ValueError, match="fewer cells than folds"):
        B.TunedLogisticRegression(n_top_genes=50).fit(X, y)


# ------------------------------------------------------------------------------------ gradient boosting
def test_gbm_early_stopping_and_refit(data):
    Xtr, ytr, Xte, _, genes = data
    m = B.HVGGradientBoosting(n_top_genes=60, max_iter=500, early_stopping_rounds=5).fit(Xtr, ytr)
    assert 1 <= m.best_iteration_ < 500 and m.n_iter_ == m.best_iteration_
    assert m.model_.current_iteration() == m.n_iter_
    kept = B.HVGGradientBoosting(n_top_genes=60, max_iter=500, early_stopping_rounds=5, refit=False).fit(Xtr, ytr)
    assert kept.n_iter_ == kept.best_iteration_ == m.best_iteration_      # same split and seed
    assert not np.allclose(kept.predict_proba(Xte), m.predict_proba(Xte))  # refit saw the validation cells too
    two = B.HVGGradientBoosting(n_top_genes=60, max_iter=30).fit(Xtr[ytr != "C"], ytr[ytr != "C"])
    assert two.predict_proba(Xte).shape == (len(Xte), 2)


def test_gbm_threads_default_to_the_budget_and_change_nothing(data):
    import torch

    Xtr, ytr, Xte, _, _ = data
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        m = B.HVGGradientBoosting(n_top_genes=60, max_iter=80, early_stopping_rounds=5).fit(Xtr, ytr)
        assert m._params(3)["num_threads"] == 2
    finally:
        torch.set_num_threads(before)
    one = B.HVGGradientBoosting(n_top_genes=60, max_iter=80, early_stopping_rounds=5, n_jobs=1).fit(Xtr, ytr)
    assert one._params(3)["num_threads"] == 1
    np.testing.assert_array_equal(m.predict_proba(Xte), one.predict_proba(Xte))


def test_gbm_rejects_a_class_too_small_to_validate():
    X, y, _ = _counts(n_per=(20, 20, 1))
    with pytest.raises(ValueError, match="fewer cells than"):
        B.HVGGradientBoosting(n_top_genes=50).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        B.HVGGradientBoosting(validation_fraction=1.5).fit(*_counts()[:2])


# ------------------------------------------------------------------------------------ CellTypist
def test_celltypist_is_celltypist(data):
    """The model is celltypist's (scaler + one-vs-rest classifier) and predict equals celltypist.annotate."""
    import celltypist

    from cellbook.preprocess.scrna import log_normalize

    Xtr, ytr, Xte, _, genes = data
    m = B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes)
    assert isinstance(m.model_, celltypist.models.Model)
    assert m.model_.classifier.coef_.shape == (3, len(genes)) and m.model_.scaler.with_mean
    q = ad.AnnData(sp.csr_matrix(log_normalize(Xte, 1e4)), var=pd.DataFrame(index=genes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = celltypist.annotate(q, model=m.model_)
    np.testing.assert_array_equal(m.predict(Xte, gene_names=genes), own.predicted_labels["predicted_labels"])
    P = own.probability_matrix[list(m.classes_)].to_numpy()
    np.testing.assert_allclose(m.predict_proba(Xte, gene_names=genes), P / P.sum(1, keepdims=True), atol=1e-6)
    fs = B.CellTypistClassifier(feature_selection=True, top_genes=10, with_mean=False).fit(Xtr, ytr, gene_names=genes)
    assert 10 <= len(fs.features_) < len(genes) and not fs.model_.scaler.with_mean
    assert (fs.predict(Xte, gene_names=genes) == data[3]).mean() > 0.9


def test_celltypist_is_quiet_and_picklable(data, caplog):
    Xtr, ytr, Xte, _, genes = data
    caplog.set_level(logging.INFO)
    m = B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes)
    p = m.predict(Xte, gene_names=genes)
    assert not [r for r in caplog.records if r.name.startswith("celltypist")]
    back = pickle.loads(pickle.dumps(m))
    assert not hasattr(back, "_annotation_cache")
    np.testing.assert_array_equal(back.predict(Xte, gene_names=genes), p)


def test_celltypist_rejects_empty_cells(data):
    Xtr, ytr, _, _, genes = data
    X = Xtr.copy()
    X[5] = 0
    with pytest.raises(ValueError, match="1 cell.*without any counts.*rows 5"):
        B.CellTypistClassifier().fit(X, ytr, gene_names=genes)
    with pytest.raises(ValueError, match="G3 \\(x2\\)"):
        B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes[:-1] + ["G3"])


def test_celltypist_import_leaves_warnings_and_logging_alone():
    """celltypist's import silences UserWarnings process-wide and configures the root logger; ours undoes it."""
    code = ("import logging, warnings; from cellbook.baselines._celltypist_model import _celltypist; "
            "before = list(warnings.filters); _celltypist(); import celltypist.classifier; "
            "assert warnings.filters == before, warnings.filters[:3]; "
            "assert not logging.getLogger().handlers and logging.getLogger().level == logging.WARNING")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ovr_shim_is_one_binary_fit_per_class(data):
    Xtr, ytr, _, _, _ = data
    Z = np.log1p(Xtr[:, :40])
    m = _celltypist_model._OvRLogisticRegression(multi_class="ovr", C=0.5, max_iter=500, n_jobs=1).fit(Z, ytr)
    for i, c in enumerate(m.classes_):
        ref = LogisticRegression(C=0.5, max_iter=500).fit(Z, (ytr == c).astype(int))
        np.testing.assert_allclose(m.coef_[i], ref.coef_[0], atol=1e-6)
    assert m.decision_function(Z).shape == (len(ytr), 3)
    two = _celltypist_model._OvRLogisticRegression(C=0.5).fit(Z[ytr != "C"], ytr[ytr != "C"])
    assert two.coef_.shape == (1, 40) and two.decision_function(Z).ndim == 1
    # n_jobs classes at once (threads): the same coefficients as one after another
    par = _celltypist_model._OvRLogisticRegression(multi_class="ovr", C=0.5, max_iter=500, n_jobs=3).fit(Z, ytr)
    np.testing.assert_array_equal(par.coef_, m.coef_)
    np.testing.assert_array_equal(par.intercept_, m.intercept_)


def test_celltypist_n_jobs_follows_the_thread_budget(data, monkeypatch):
    import torch

    Xtr, ytr, Xte, _, genes = data
    seen = []
    real = _celltypist_model._OvRLogisticRegression.fit

    def spy(self, X, y, sample_weight=None):
        seen.append(self.ovr_jobs)
        return real(self, X, y, sample_weight)

    monkeypatch.setattr(_celltypist_model._OvRLogisticRegression, "fit", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes)
        torch.set_num_threads(1)
        b = B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes)
        c = B.CellTypistClassifier(n_jobs=3).fit(Xtr, ytr, gene_names=genes)
    finally:
        torch.set_num_threads(before)
    import inspect

    if "multi_class" not in inspect.signature(LogisticRegression).parameters:   # scikit-learn >= 1.8: the shim fits
        assert seen == [2, 1, 3]
    np.testing.assert_array_equal(a.predict_proba(Xte, gene_names=genes), b.predict_proba(Xte, gene_names=genes))
    np.testing.assert_array_equal(c.predict_proba(Xte, gene_names=genes), b.predict_proba(Xte, gene_names=genes))


def test_over_clustering_leaves_torch_threads_alone(caller_on_one_torch_thread):
    """scanpy's neighbour graph raised torch's thread count (numba's OpenMP layer): the deep models trained after
    CellTypist's majority voting in the same process then gave other numbers than in a fresh process."""
    import torch

    X, y, genes = _counts(n_per=(40, 40, 40), g=120)
    q = ad.AnnData(np.log1p(X / X.sum(1, keepdims=True) * 1e4).astype(np.float32))
    q.var_names = genes
    labels = B.celltypist_over_clustering(q, seed=0)
    assert len(labels) == len(y)
    assert torch.get_num_threads() == 1


def test_majority_voting_needs_more_than_50_cells(data):
    Xtr, ytr, Xte, _, genes = data
    m = B.CellTypistClassifier(majority_voting=True).fit(Xtr, ytr, gene_names=genes)
    with pytest.warns(UserWarning, match="too few for CellTypist's over-clustering"):
        p = m.predict(Xte, gene_names=genes)
    np.testing.assert_array_equal(p, B.CellTypistClassifier().fit(Xtr, ytr, gene_names=genes).predict(
        Xte, gene_names=genes))


def test_majority_voting_end_to_end():
    """Over-clustering + majority voting on a tiny AnnData: CellTypist's own result for seed 0, deterministic."""
    import celltypist

    from cellbook.preprocess.scrna import log_normalize

    X, y, genes = _counts(n_per=(60, 60, 60), strength=2.5, seed=2)
    obs = pd.DataFrame({"cell_type": y}, index=[f"c{i}" for i in range(len(y))])
    adata = ad.AnnData(sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=genes))
    train, test = adata[:80], adata[80:]
    m = B.CellTypistClassifier(majority_voting=True, seed=0).fit(train, train.obs["cell_type"].to_numpy())
    r = m.annotation(test)
    labels = r.predicted_labels
    pred = m.predict(test)
    np.testing.assert_array_equal(pred, labels["majority_voting"].astype(str))
    for _, grp in labels.groupby("over_clustering", observed=True):   # one label per over-cluster
        assert grp["majority_voting"].nunique() == 1
    assert labels["over_clustering"].nunique() > 3                    # over-clustered: more clusters than types
    P = m.predict_proba(test)
    np.testing.assert_allclose(P.sum(1), 1)
    np.testing.assert_array_equal(m.classes_[P.argmax(1)], pred)
    # CellTypist's own majority voting (its over-clustering, Leiden random_state 0) gives the same labels
    q = ad.AnnData(sp.csr_matrix(log_normalize(test.X, 1e4)), var=pd.DataFrame(index=genes))
    q.obs_names = [f"cell{i}" for i in range(q.n_obs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = celltypist.annotate(q, model=m.model_, majority_voting=True)
    np.testing.assert_array_equal(pred, own.predicted_labels["majority_voting"].astype(str))
    # deterministic
    again = B.CellTypistClassifier(majority_voting=True, seed=0).fit(train, train.obs["cell_type"].to_numpy())
    np.testing.assert_array_equal(again.predict_proba(test), P)
