"""cellbook.annotate: gene alignment by name, confidence, and its errors."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellbook.annotate import CellTypeClassifier, annotate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _adata(n=120, g=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["A", "B", "C"], n // 3)
    lam = np.ones((n, g))
    for i, t in enumerate("ABC"):
        lam[y == t, i * 10:(i + 1) * 10] = 10
    X = rng.poisson(lam).astype(np.float32)
    return ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": y}, index=[f"c{i}" for i in range(n)]),
                      var=pd.DataFrame(index=[f"G{j}" for j in range(g)]))


@pytest.fixture(scope="module")
def fitted():
    return CellTypeClassifier("mlp", n_genes=None, max_epochs=15, lr=3e-3, device="cpu", patience=None).fit_adata(_adata())


def test_annotate_writes_labels_and_confidence(fitted):
    new = _adata(seed=1)
    annotate(new, fitted)
    assert (new.obs["predicted_cell_type"].astype(str) == new.obs["cell_type"]).mean() > 0.9
    conf = new.obs["predicted_cell_type_confidence"]
    assert ((conf > 1 / 3) & (conf <= 1)).all()
    assert new.uns["predicted_cell_type"]["n_genes_missing"] == 0


def test_genes_aligned_by_name_not_position(fitted):
    new = _adata(seed=1)
    shuffled = new[:, new.var_names[::-1]].copy()     # same genes, reversed order
    a = annotate(new.copy(), fitted).obs["predicted_cell_type_confidence"].values
    b = annotate(shuffled, fitted).obs["predicted_cell_type_confidence"].values
    assert np.allclose(a, b, atol=1e-5)


def test_missing_genes_filled_with_zeros_and_counted(fitted):
    new = _adata(seed=1)
    part = new[:, [g for g in new.var_names if g not in ("G50", "G51", "G52")]].copy()
    with pytest.warns(UserWarning, match="3 of the model's 60 genes are missing"):
        annotate(part, fitted)
    assert part.uns["predicted_cell_type"]["n_genes_missing"] == 3
    # identical to predicting with explicit zero columns (counts of the whole cell kept for log1p)
    zeroed = new.copy()
    zeroed.X[:, [50, 51, 52]] = 0
    annotate(zeroed, fitted)
    assert np.allclose(zeroed.obs["predicted_cell_type_confidence"], part.obs["predicted_cell_type_confidence"],
                       atol=1e-5)


def test_too_few_shared_genes_is_an_error(fitted):
    new = _adata(seed=1)
    new.var_names = [f"ENSG{j}" for j in range(new.n_vars)]
    with pytest.raises(ValueError, match="only 0 of the model's 60 genes"):
        annotate(new, fitted)


def test_annotate_bad_input(fitted):
    new = _adata(seed=1)
    new.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        annotate(new, fitted)
    with pytest.raises(ValueError, match="not fitted"):
        annotate(_adata(), CellTypeClassifier("mlp"))
    with pytest.raises(ValueError, match="CellTypeClassifier"):
        annotate(_adata(), object())


def test_fit_adata_needs_the_label_column():
    a = _adata()
    with pytest.raises(ValueError, match=r"obs\['label'\] is missing"):
        CellTypeClassifier("mlp", max_epochs=1).fit_adata(a, label_key="label")


def test_lineage_mapping_matches_whole_words():
    from cellbook.annotate import to_lineage

    got = to_lineage(["CD4+ T activated integrinB7+", "Naive CD20+ B IGKC+", "Lymph prog", "HSC", "earlyEry"])
    assert list(got) == ["T/NK", "B", None, "stem/progenitor", "erythroid"]
