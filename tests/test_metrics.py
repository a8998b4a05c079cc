import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from cellbook import metrics


@pytest.fixture
def preds():
    rng = np.random.default_rng(0)
    y = rng.choice(list("abcd"), size=200, p=[0.5, 0.3, 0.15, 0.05])
    p = np.where(rng.random(200) < 0.7, y, rng.choice(list("abcd"), size=200))
    return y, p


def test_classification_matches_sklearn(preds):
    y, p = preds
    m = metrics.classification(y, p)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for avg in ("macro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, p, average=avg))
        assert m[f"precision_{avg}"] == pytest.approx(skm.precision_score(y, p, average=avg, zero_division=0))
        assert m[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, p, average=avg))
    # micro-averaged P = R = F1 = accuracy for single-label multi-class problems
    assert m["f1_micro"] == pytest.approx(m["accuracy"])
    assert m["precision_micro"] == pytest.approx(m["accuracy"])
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert m["n"] == 200


def test_per_class_and_confusion(preds):
    y, p = preds
    pc = metrics.per_class(y, p)
    np.testing.assert_allclose(pc["recall"], skm.recall_score(y, p, average=None, labels=pc.index))
    cm = metrics.confusion(y, p)
    np.testing.assert_allclose(cm.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(cm), pc["recall"])
    raw = metrics.confusion(y, p, normalize=None)
    np.testing.assert_array_equal(raw.to_numpy(), skm.confusion_matrix(y, p, labels=cm.index))
    pairs = metrics.hardest_pairs(y, p, top=3)
    assert len(pairs) == 3 and (pairs["true"] != pairs["predicted"]).all()
    assert pairs["count"].iloc[0] == max(raw.to_numpy()[~np.eye(4, dtype=bool)])


def test_screening_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 96)
    s = np.clip(y * 0.4 + rng.random(96) * 0.6, 0, 1)
    m = metrics.screening(y, s)
    pred = (s >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    r = metrics.roc(y, s)
    assert np.trapezoid(r["tpr"], r["fpr"]) == pytest.approx(m["auc"])
    with pytest.raises(ValueError, match="both positive and negative"):
        metrics.screening(np.ones(5), np.ones(5))


def test_summarize_mean_sd_se():
    df = pd.DataFrame({"model": ["a", "a", "a", "b", "b"], "acc": [0.8, 0.9, 1.0, 0.5, 0.7]})
    s = metrics.summarize(df, by="model").set_index("model")
    assert s.loc["a", "acc_mean"] == pytest.approx(0.9)
    assert s.loc["a", "acc_sd"] == pytest.approx(0.1)
    assert s.loc["a", "acc_se"] == pytest.approx(0.1 / np.sqrt(3))
    assert s.loc["b", "n"] == 2
    from cellbook import report

    assert report.mean_sd([0.8, 0.9, 1.0]) == "0.900 ± 0.100"   # mean and SD share their decimals
    assert report.mean_sd([0.75]) == "0.75"


def test_stat_tests():
    from scipy import stats
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 6.0]
    assert metrics.ttest(a, b)["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert metrics.ttest(a, b, paired=True)["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    y = np.array([0, 1] * 50)
    res = metrics.chi_square(y, y, 1 - y)
    assert res["table"] == [[100, 0], [0, 100]] and res["p_value"] < 1e-10


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        metrics.classification([1, 2, 3], [1, 2])


def test_differential_expression_finds_the_planted_genes():
    import pytest

    from cellbook.metrics import differential_expression

    rng = np.random.default_rng(0)
    A, B = rng.normal(5, 0.5, size=(30, 200)), rng.normal(5, 0.5, size=(40, 200))
    A[:, :5] += 2.0                                   # genes g0..g4 up by 2 (log2) in A
    B[:, 5] += 1.5                                    # g5 down in A
    names = [f"g{i}" for i in range(200)]
    de = differential_expression(A, B, names)
    up = set(de.query("log2fc > 1 and p_bh <= 0.05")["gene"])
    assert up == {f"g{i}" for i in range(5)}
    assert de.set_index("gene").loc["g5", "log2fc"] < -1 and de.set_index("gene").loc["g5", "p_bh"] < 0.05
    assert (de["p_bh"] >= de["p"]).all() and de["p"].is_monotonic_increasing
    with pytest.raises(ValueError, match="same genes"):
        differential_expression(A, B[:, :10], names)
    with pytest.raises(ValueError, match="at least 2 samples"):
        differential_expression(A[:1], B, names)
