"""Over-representation tests and GMT reading (Part III)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from cellbook import enrichment
from cellbook.metrics import pair_vs_nearest, rank_shares, rep_ranks

DATA = os.environ.get("CELLBOOK_DATA")


def _gmt(tmp_path, lines):
    p = tmp_path / "x.gmt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_read_gmt_case_insensitive(tmp_path):
    p = _gmt(tmp_path, ["SET1\tdesc\tC1orf112\tACTB", "SET2\t\tCD19", "BIG\td\tA\tB\tC\tD"])
    sets = enrichment.read_gmt(p, max_size=3)
    assert sets["SET1"] == {"C1ORF112", "ACTB"} and "BIG" not in sets
    with pytest.raises(FileNotFoundError):
        enrichment.read_gmt(tmp_path / "missing.gmt")
    with pytest.raises(ValueError, match="tab-separated"):
        enrichment.read_gmt(_gmt(tmp_path, ["only_a_name"]))


def test_hypergeometric_against_scipy():
    background = [f"G{i}" for i in range(100)]
    sets = {"A": {f"G{i}" for i in range(20)}, "B": {f"G{i}" for i in range(50, 60)} | {"NOTMEASURED"},
            "C": {f"G{i}" for i in range(90, 100)}}
    query = {"q": [f"g{i}" for i in range(0, 10)] + ["G55", "G56"]}   # lower case on purpose
    res = enrichment.overrepresentation(query, sets, background).set_index("term")
    # universe = measured genes that are in the collection: A (20) + B (10 measured) + C (10)
    M, N = 40, 12
    pA = hypergeom.sf(10 - 1, M, 20, N)
    pB = hypergeom.sf(2 - 1, M, 10, N)
    assert res.loc["A", "k"] == 10 and res.loc["B", "set_size"] == 10
    np.testing.assert_allclose(res.loc["A", "p"], pA, rtol=1e-10)
    np.testing.assert_allclose(res.loc["B", "p"], pB, rtol=1e-10)
    np.testing.assert_allclose(res.loc["A", "p_bonferroni"], min(1, 3 * pA), rtol=1e-10)
    # BH over the three terms tested (C has p = 1)
    p = np.array([pA, pB, 1.0])
    bh = np.minimum.accumulate((p * 3 / np.arange(1, 4))[::-1])[::-1]
    np.testing.assert_allclose(res.loc[["A", "B"], "p_bh"], bh[:2], rtol=1e-10)
    assert "C" not in res.index   # no overlap, not reported


def test_no_overlap_is_a_clear_error():
    with pytest.raises(ValueError, match="no gene of the gene-set collection"):
        enrichment.overrepresentation({"q": ["X"]}, {"S": {"A", "B"}}, ["ENSG0001", "ENSG0002"])


def test_network():
    res = pd.DataFrame({"query": ["C1", "C1", "C2"], "term": ["t1", "t2", "t1"], "k": [5, 3, 4],
                        "p_bonferroni": [0.001, 0.2, 0.005], "p": [1e-4, 0.1, 1e-3], "p_bh": [1e-3, 0.1, 1e-3]})
    g = enrichment.component_term_network(res, "p_bonferroni", 0.01)
    assert set(g.nodes) == {"C1", "C2", "t1"} and g.number_of_edges() == 2
    assert g.nodes["t1"]["kind"] == "term"


def test_rep_ranks_tiny_example():
    gep = np.array([[0.0, 0, 0], [1, 1, 1], [3, 3, 3]])
    rep = np.array([[0.1, 0, 0], [2.2, 2.2, 2.2], [3, 3, 2.9]])
    # MSE: REP 1 is 1.44 from GEP 1 while GEP 2 (index 2) is 4.0 away and GEP 0 is 1.0 away -> rank 2
    assert list(rep_ranks(gep, rep, "mse")) == [1, 2, 1]
    # reverse: REP 1 (2.2) is closer to GEP 2 (3) than to its own GEP 1 (1)? 0.64 vs 1.44 -> rank 2
    assert list(rep_ranks(gep, rep, "mse", reverse=True)) == [1, 2, 1]
    assert rank_shares([1, 2, 1, 5]) == {"1": 0.5, "2": 0.25, "3": 0.0, ">3": 0.25}
    g = np.array([[1.0, 2, 3, 4], [4, 3, 2, 1], [1, 3, 2, 4]])
    r = np.array([[1.0, 2, 3, 5], [1, 2, 3, 4], [1, 3, 2, 4]])
    # REP 1 is anti-correlated (-1) with GEP 1; GEP 2 (r = -0.8) is closer, GEP 0 ties at -1 (not counted)
    assert list(rep_ranks(g, r, "spearman")) == [1, 2, 1]
    pv = pair_vs_nearest(gep, rep, "mse")
    np.testing.assert_allclose(pv["rep"], [0.01 / 3, 1.44, 0.01 / 3])
    np.testing.assert_allclose(pv["nearest"], [1.0, 1.0, 4.0])


@pytest.mark.skipif(not DATA or not (Path(DATA) / "genesets").exists(), reason="CELLBOOK_DATA has no genesets/")
def test_real_gmt():
    sets = enrichment.read_gmt(Path(DATA) / "genesets" / "msigdb_h.all.v2023.2.Hs.symbols.gmt")
    assert len(sets) == 50 and "CD19" not in set().union(*sets.values())
    en = enrichment.read_gmt(Path(DATA) / "genesets" / "enrichr_GO_Cellular_Component_2023.gmt")
    assert all(g == g.upper() for s in list(en.values())[:20] for g in s)


def test_similarity_errors_and_wilcoxon():
    from cellbook.metrics import profile_similarity, wilcoxon
    with pytest.raises(ValueError, match="same number of genes"):
        profile_similarity(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="metric=.cosine. is not valid: it must be one of .spearman., .mse."):
        profile_similarity(np.zeros((2, 3)), np.zeros((2, 3)), "cosine")
    a = np.arange(1.0, 21.0)
    res = wilcoxon(a + 1, a, alternative="greater")
    assert res["p_value"] < 1e-4 and res["median_difference"] == 1.0


def test_code_and_pca_classifiers():
    from cellbook.baselines import code_classifier, logistic_all_genes, pca_classifier
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 20)
    X = rng.normal(size=(40, 50)) + (y == "a")[:, None] * 3
    for kind in ("rf", "svm"):
        assert (pca_classifier(kind, 5, n_trees=20).fit(X, y).predict(X) == y).mean() > 0.95
    assert (logistic_all_genes().fit(X, y).predict(X) == y).all()
    with pytest.raises(ValueError, match="unknown classifier 'knn'"):
        code_classifier("knn")


def test_a_query_that_tests_nothing_is_flagged_or_an_error():
    sets = {"T1": {"A", "B", "C"}, "T2": {"C", "D"}}
    background = ["A", "B", "C", "D", "E"]
    with pytest.raises(ValueError, match=r"no gene of any query \(q1\) is among the 4 genes of the universe"):
        enrichment.overrepresentation({"q1": ["X", "Y"]}, sets, background)
    with pytest.warns(UserWarning, match=r"1 of 2 queries have no gene in the universe and test nothing: q2"):
        res = enrichment.overrepresentation({"q1": ["A", "B"], "q2": ["X"]}, sets, background)
    assert res.attrs["untested_queries"] == ["q2"] and set(res["query"]) == {"q1"}
