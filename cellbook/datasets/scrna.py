"""Single-cell RNA-seq datasets (Part I, and Part III's single-cell setting).

All loaders return an AnnData with raw counts in ``X`` (scipy CSR), the same counts in
``layers["counts"]``, labels in ``obs["cell_type"]`` and, where the data has them,
``obs["donor"]`` / ``obs["batch"]``; ``uns["cellbook_data"]`` holds the provenance.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .registry import DatasetNotFoundError, announce, info_for, locate


def check_counts(X, what: str = "counts") -> None:
    """Raise ``ValueError`` unless ``X`` holds finite, non-negative integer counts."""
    data = X.data if sp.issparse(X) else np.asarray(X)
    if data.size == 0:
        return
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{what}: expected numbers, got dtype {data.dtype}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{what}: contains NaN or infinite values; raw counts must be finite")
    if (data < 0).any():
        raise ValueError(f"{what}: contains negative values ({int((data < 0).sum())} entries); raw counts are >= 0")
    if not np.issubdtype(data.dtype, np.integer) and not np.all(np.mod(data, 1) == 0):
        raise ValueError(f"{what}: contains non-integer values; expected raw counts "
                         f"(pass normalised data with counts=False, or give layers['counts'])")


def as_counts_adata(adata, label_key: str = "cell_type", counts_layer: str | None = "counts"):
    """Put raw counts in ``X`` (CSR, float32) and ``layers['counts']``; validate; return a copy.

    Uses ``adata.layers[counts_layer]`` when present (GSE194122 keeps normalised values in X).
    """
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; the labels must be in obs[{label_key!r}] "
                         f"(columns present: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    X = adata.layers[counts_layer] if counts_layer and counts_layer in adata.layers else adata.X
    check_counts(X)
    X = sp.csr_matrix(X, dtype=np.float32)
    out = adata.copy()
    out.X = X
    out.layers["counts"] = X.copy()
    out.obs[label_key] = out.obs[label_key].astype(str).astype("category")
    out.var_names_make_unique()
    return out


def _read(name: str, path, label_key="cell_type"):
    import anndata as ad

    p = locate(name, path)
    adata = ad.read_h5ad(p)
    return adata, p


def vangalen2019(path=None):
    """van Galen et al. 2019 bone marrow (Seq-Well): 3641 cells x 27899 genes, 15 types.

    obs: ``cell_type``, ``donor``, ``sample``, ``condition`` (healthy / AML_diagnosis).
    """
    adata, p = _read("vangalen2019_bm_seqwell", path)
    adata = as_counts_adata(adata)
    adata.uns["cellbook_data"] = info_for("vangalen2019_bm_seqwell", p).to_dict()
    return adata


def gse194122(path=None, part: str = "cite", starter: bool = False):
    """GSE194122 processed h5ad (CITE or Multiome GEX part); raw counts from ``layers['counts']``.

    ``starter=True`` reads the organisers' 600-cell starter subset (same conventions).
    obs gets ``donor`` (from ``DonorNumber``) and ``site`` (from ``Site``) where present.
    """
    if part not in ("cite", "multiome"):
        raise ValueError(f"part must be 'cite' or 'multiome', not {part!r}")
    name = "neurips2021_bmmc_cite_starter" if starter else f"gse194122_{part}"
    adata, p = _read(name, path)
    if "feature_types" in adata.var:
        adata = adata[:, adata.var["feature_types"].astype(str) == "GEX"].copy()
    adata = as_counts_adata(adata)
    if "DonorNumber" in adata.obs:
        adata.obs["donor"] = adata.obs["DonorNumber"].astype(str)
    if "Site" in adata.obs:
        adata.obs["site"] = adata.obs["Site"].astype(str)
    adata.uns["cellbook_data"] = info_for(name, p).to_dict()
    return adata


def synthetic_counts(n_cells: int = 1500, n_genes: int = 2000, n_types: int = 8, n_donors: int = 3,
                     seed: int = 0):
    """A labelled SYNTHETIC stand-in: negative-binomial counts with type-specific marker genes.

    Used only when the real data cannot be had; ``uns['cellbook_data']['real']`` is False.
    """
    import anndata as ad

    from .registry import DataInfo

    rng = np.random.default_rng(seed)
    base = rng.gamma(0.6, 1.0, size=n_genes)
    types = rng.integers(0, n_types, size=n_cells)
    donors = rng.integers(0, n_donors, size=n_cells)
    markers = rng.choice(n_genes, size=(n_types, max(5, n_genes // 50)), replace=False)
    mu = np.tile(base, (n_types, 1))
    for t in range(n_types):
        mu[t, markers[t]] *= rng.uniform(4, 10, size=markers.shape[1])
    size = rng.lognormal(0, 0.4, size=n_cells)[:, None]
    lam = mu[types] * size * rng.gamma(5.0, 1 / 5.0, size=(n_cells, n_genes))
    counts = rng.poisson(lam).astype(np.float32)
    X = sp.csr_matrix(counts)
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{t}" for t in types]),
                        "donor": pd.Categorical([f"donor{d}" for d in donors])},
                       index=[f"cell{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)]))
    adata.layers["counts"] = X.copy()
    adata.uns["cellbook_data"] = DataInfo(
        name="synthetic_counts", title="SYNTHETIC negative-binomial counts (not real cells)",
        source="cellbook.datasets.synthetic_counts", path=None, sha256=None, real=False,
        note=f"seed={seed}").to_dict()
    return adata


LOADERS = {
    "vangalen2019": vangalen2019,
    "gse194122_cite": lambda path=None: gse194122(path, "cite"),
    "gse194122_multiome": lambda path=None: gse194122(path, "multiome"),
    "gse194122_starter": lambda path=None: gse194122(path, "cite", starter=True),
}


def load_scrna(source: str = "vangalen2019", path=None, fallback: str = "synthetic", seed: int = 0):
    """Load a single-cell dataset by source name; print and record which source was used.

    ``fallback="synthetic"`` returns a labelled synthetic stand-in when the real data is not
    found (with a warning); ``fallback="error"`` raises the loader's clear not-found error.
    """
    from .registry import DataInfo

    if source not in LOADERS:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(LOADERS)}")
    if fallback not in ("synthetic", "error"):
        raise ValueError("fallback must be 'synthetic' or 'error'")
    try:
        adata = LOADERS[source](path=path)
    except DatasetNotFoundError as err:
        if fallback == "error":
            raise
        warnings.warn(f"{err}\nFalling back to a SYNTHETIC stand-in.", stacklevel=2)
        adata = synthetic_counts(seed=seed)
    announce(DataInfo(**adata.uns["cellbook_data"]))
    return adata
