"""Small synthetic count data shared by the tests: types A/B/C, each high on a block of genes of its own."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd


def marker_counts(n: int = 60, g: int = 30, seed: int = 0, width: int = 10, high: float = 10):
    """``(X, y)``: Poisson counts (float32) of ``n`` cells of types A/B/C (``n // 3`` each) on ``g`` genes;
    type ``t`` has mean ``high`` on genes ``width*t .. width*t + width - 1`` and 1 elsewhere."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["A", "B", "C"], n // 3)
    lam = np.ones((n, g))
    for i, t in enumerate("ABC"):
        lam[y == t, i * width:(i + 1) * width] = high
    return rng.poisson(lam).astype(np.float32), y


def marker_adata(n: int = 60, g: int = 30, seed: int = 0, width: int = 10, high: float = 10,
                 index: str = "c{seed}_{i}", counts_layer: bool = False) -> ad.AnnData:
    """:func:`marker_counts` as an AnnData: ``obs["cell_type"]``, cells named by ``index``, genes ``G0...``;
    ``counts_layer`` also puts the counts in ``layers["counts"]``."""
    X, y = marker_counts(n, g, seed, width, high)
    a = ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": y}, index=[index.format(seed=seed, i=i) for i in range(n)]),
                   var=pd.DataFrame(index=[f"G{j}" for j in range(g)]))
    if counts_layer:
        a.layers["counts"] = X.copy()
    return a
