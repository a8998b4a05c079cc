"""Part I's comparison machinery: tuning on the validation split, the stacked ensemble, the verdict."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cellbook.baselines import PCAKNN, HVGLogisticRegression
from cellbook.comparison import (TUNED, StackedEnsemble, entry_names, fit_tuned, model_zoo, paired_verdict)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _counts(n=150, g=60, n_types=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([f"T{i}" for i in range(n_types)], n // n_types)
    lam = np.full((n, g), 1.0)
    for i in range(n_types):
        lam[y == f"T{i}", i * 5:(i + 1) * 5] = 6.0
    X = sp.csr_matrix(rng.poisson(lam).astype(np.float32))
    return X, y, [f"G{j}" for j in range(g)]


class _Constant:
    """A member that always predicts the same class distribution (useless: must get no weight)."""

    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, X, y, gene_names=None):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X, gene_names=None):
        return np.full((X.shape[0], len(self.classes_)), 1 / len(self.classes_))


def test_stacked_ensemble_picks_useful_members_on_out_of_fold_predictions():
    X, y, genes = _counts()
    facs = {"logreg": lambda s: HVGLogisticRegression(n_top_genes=30, seed=s),
            "knn": lambda s: PCAKNN(n_top_genes=30, n_pcs=5, k=5, seed=s),
            "constant": _Constant}
    st = StackedEnsemble(facs, n_folds=3, seed=0).fit(X, y, gene_names=genes)
    assert st.weights_["constant"] == 0 and st.weights_.sum() == pytest.approx(1)
    assert set(st.members_) == set(st.weights_[st.weights_ > 0].index)
    assert list(st.oof_.index) == ["logreg", "knn", "constant", "ensemble"]
    assert st.oof_.loc["ensemble", "log_loss"] <= st.oof_.loc[["logreg", "knn"], "log_loss"].min() + 1e-9
    P = st.predict_proba(X[:10], gene_names=genes)
    assert P.shape == (10, 3) and np.allclose(P.sum(1), 1)
    again = StackedEnsemble(facs, n_folds=3, seed=0).fit(X, y, gene_names=genes)
    pd.testing.assert_series_equal(st.weights_, again.weights_)          # deterministic
    assert (st.predict(X, gene_names=genes) == again.predict(X, gene_names=genes)).all()


def test_stacked_ensemble_reuses_prefit_members_and_never_sees_test_cells():
    X, y, genes = _counts()
    seen = []

    class Spy(HVGLogisticRegression):
        def fit(self, X, y, gene_names=None):
            seen.append(X.shape[0])
            return super().fit(X, y, gene_names=gene_names)

    tr = np.arange(0, 150, 2)   # the "training cells"
    pre = HVGLogisticRegression(n_top_genes=30).fit(X[tr], y[tr], gene_names=genes)
    facs = {"spy": lambda s: Spy(n_top_genes=30), "knn": lambda s: PCAKNN(n_top_genes=30, n_pcs=5, k=5)}
    st = StackedEnsemble(facs, n_folds=3).fit(X[tr], y[tr], gene_names=genes, prefit={"spy": pre})
    assert max(seen) < len(tr) and len(seen) == 3                          # only the 3 out-of-fold fits
    if st.weights_["spy"] > 0:
        assert st.members_["spy"] is pre


def test_fit_tuned_chooses_on_validation_accuracy():
    X, y, genes = _counts()
    spec = dict(architecture="mlp", grid=[{"lr": 1e-6}, {"lr": 3e-3}])   # the first cannot learn in 8 epochs
    paper, tuned, table = fit_tuned(spec, X, y, genes, seed=0, n_genes=None, max_epochs=8, patience=3,
                                    device="cpu", min_cells_per_gene=1, batch_size=32)
    assert list(table["setting"]) == [0, 1] and table["chosen"].tolist() == [False, True]
    assert table.loc[1, "val_accuracy"] > table.loc[0, "val_accuracy"]
    assert paper.trainer_kwargs["lr"] == 1e-6 and tuned.trainer_kwargs["lr"] == 3e-3
    assert tuned.tuning_ is table


def test_zoo_names_and_includes():
    zoo = model_zoo(k=2, grid=[{}, {"lr": 1e-3}], stack_members=["Logistic regression (tuned)", "kNN on PCA"])
    names = entry_names(zoo)
    assert "CNN" in names and "CNN" + TUNED in names and "Stacked ensemble" in names
    assert "Logistic regression (tuned)" + TUNED not in names                # baselines tune themselves
    assert set(model_zoo(include=["Logistic regression (tuned)"])) == {"Logistic regression (tuned)"}
    assert set(model_zoo(include=["CNN (tuned)"], grid=[{}, {"lr": 1e-3}])) == {"CNN"}
    sub = model_zoo(include=["CNN ensemble (hard vote)", "Stacked ensemble"], stack_members=["kNN on PCA", "MLP"])
    assert set(sub) == {"CNN ensemble (hard vote)", "CNN ensemble (soft vote)", "Stacked ensemble", "kNN on PCA", "MLP"}
    with pytest.raises(ValueError, match="unknown model"):
        model_zoo(include=["GPT"])


def test_paired_verdict():
    rec = pd.DataFrame({
        "model": ["base"] * 3 + ["better"] * 3 + ["same"] * 3,
        "split": [0, 1, 2] * 3,
        "accuracy": [0.80, 0.81, 0.79, 0.85, 0.87, 0.84, 0.801, 0.809, 0.791],
        "f1_macro": [0.70, 0.71, 0.69, 0.76, 0.77, 0.75, 0.70, 0.71, 0.69]})
    v = paired_verdict(rec, baseline="base").set_index("model")
    assert v.loc["better", "beats baseline"] and not v.loc["same", "beats baseline"]
    assert not v.loc["base", "beats baseline"]
    assert v.loc["better", "accuracy - baseline"] == pytest.approx(0.0533, abs=1e-3)
    assert v.loc["better", "accuracy p (paired t)"] < 0.01
    with pytest.raises(ValueError, match="baseline 'x' is not among"):
        paired_verdict(rec, baseline="x")
