"""Single-cell RNA-seq datasets (Part I, and Part III's single-cell setting).

All loaders return an AnnData with raw counts in ``X`` (scipy CSR), the same counts in
``layers["counts"]``, labels in ``obs["cell_type"]`` and, where the data has them,
``obs["donor"]`` / ``obs["batch"]``; ``uns["cellbook_data"]`` holds the provenance.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import scipy.sparse as sp

from .registry import DatasetNotFoundError, info_for, load_source, locate


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


def _mofa_labels(adata, meta, label_column: str | None = None):
    """Attach MOFA+ cell metadata (barcode-indexed table with a cell-type column) to a 10x AnnData.

    Keeps the cells that have a label (the MOFA+ vignette's 10032 cells after RNA + ATAC QC).
    """
    meta = meta.copy()
    if "barcode" in meta.columns:
        meta = meta.set_index("barcode")
    col = label_column or next((c for c in ("celltype", "cell_type", "celltype.rna", "broad_celltype")
                                if c in meta.columns), None)
    if col is None:
        raise ValueError(f"the MOFA+ metadata has no cell-type column (looked for celltype, cell_type, "
                         f"celltype.rna); columns: {', '.join(map(str, meta.columns))}")
    shared = adata.obs_names.intersection(meta.index)
    if len(shared) == 0:
        raise ValueError("no barcode of the 10x matrix appears in the MOFA+ metadata; are they the same run?")
    adata = adata[shared].copy()
    adata.obs["cell_type"] = meta.loc[shared, col].astype(str).values
    adata.obs["donor"] = "pbmc10k"
    return adata


def pbmc10k_multiome(path=None, label_column: str | None = None):
    """10x PBMC granulocyte-sorted 10k Multiome, gene expression, with the MOFA+ vignette labels.

    Reads ``pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5`` (10x cell-arc 2.0.0; only
    ``Gene Expression`` features) and ``cell_metadata.txt`` (the MOFA+ vignette's cell metadata,
    tab separated, with ``barcode`` and ``celltype``); keeps the labelled cells (10032, 14 types:
    the data the paper's numbers fit).
    """
    import scanpy as sc

    from .registry import get

    h5 = locate("pbmc10k_multiome", path)
    meta_path = h5.parent / get("pbmc10k_multiome").files[1]
    if not meta_path.exists():
        raise DatasetNotFoundError(f"pbmc10k_multiome: found {h5.name} but not the MOFA+ cell metadata "
                                   f"{meta_path}; download it from {get('pbmc10k_multiome').urls['cell_metadata.txt']}")
    adata = sc.read_10x_h5(h5, gex_only=True)
    adata.var_names_make_unique()
    meta = pd.read_csv(meta_path, sep="\t")
    adata = as_counts_adata(_mofa_labels(adata, meta, label_column))
    adata.uns["cellbook_data"] = info_for("pbmc10k_multiome", h5).to_dict()
    return adata


BMMC_SOURCES = ("gse194122_cite", "gse194122_multiome", "gse194122_starter", "pbmc10k_multiome", "vangalen2019")


def select_cells(adata, n_types: int | None = 14, n_cells: int | None = 10032, min_cells_per_gene: int = 1,
                 batches=None, sites=None, label_key: str = "cell_type", seed: int = 0):
    """The paper-like selection, deterministic given ``seed``; returns a new AnnData.

    Rule, in order:

    1. keep cells whose ``obs["batch"]`` is in ``batches`` and ``obs["site"]`` / ``obs["Site"]`` is in
       ``sites`` (when given);
    2. keep the ``n_types`` most frequent cell types (ties broken by name);
    3. if more than ``n_cells`` cells remain, draw ``n_cells`` of them without replacement,
       stratified by type (each type keeps its share, rounded by the largest-remainder rule;
       ``numpy.random.default_rng(seed)`` picks the cells within a type);
    4. keep genes with a non-zero count in at least ``min_cells_per_gene`` of the kept cells.

    ``uns["cellbook_selection"]`` records the rule's parameters and the resulting sizes.
    """
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; the labels must be in obs[{label_key!r}]")
    keep = np.ones(adata.n_obs, dtype=bool)
    for values, cols in ((batches, ("batch",)), (sites, ("site", "Site"))):
        if values is None:
            continue
        values = [values] if isinstance(values, str) else list(values)
        col = next((c for c in cols if c in adata.obs), None)
        if col is None:
            raise ValueError(f"a {cols[0]} filter was given but obs has no {' / '.join(cols)} column")
        unknown = sorted(set(values) - set(adata.obs[col].astype(str)))
        if unknown:
            raise ValueError(f"{col} value(s) not found: {', '.join(unknown)}; present: "
                             f"{', '.join(sorted(adata.obs[col].astype(str).unique()))}")
        keep &= adata.obs[col].astype(str).isin(values).values
    ad_ = adata[keep]
    labels = ad_.obs[label_key].astype(str)
    counts = labels.value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    if len(counts) < 2:
        raise ValueError(f"fewer than 2 cell types after filtering ({len(counts)}); nothing to classify")
    if n_types is not None:
        if int(n_types) < 2:
            raise ValueError(f"n_types must be >= 2, got {n_types}")
        counts = counts.iloc[:int(n_types)]
    rows = np.flatnonzero(labels.isin(counts.index).values)
    if n_cells is not None and len(rows) > int(n_cells):
        rng = np.random.default_rng(seed)
        share = counts / counts.sum() * int(n_cells)
        take = np.floor(share).astype(int)
        rest = int(n_cells) - int(take.sum())
        order = (share - take).sort_values(ascending=False, kind="stable").index[:rest]
        take[order] += 1
        lab = labels.values
        picked = [np.sort(rng.choice(rows[lab[rows] == t], size=int(n), replace=False))
                  for t, n in take.items() if n > 0]
        rows = np.sort(np.concatenate(picked))
    out = ad_[rows].copy()
    detected = np.asarray((out.X > 0).sum(axis=0)).ravel() >= int(min_cells_per_gene)
    out = out[:, detected].copy()
    out.obs[label_key] = out.obs[label_key].astype(str).astype("category")
    out.uns["cellbook_selection"] = {
        "n_types": n_types, "n_cells": n_cells, "min_cells_per_gene": int(min_cells_per_gene),
        "batches": None if batches is None else list(np.atleast_1d(batches)),
        "sites": None if sites is None else list(np.atleast_1d(sites)), "seed": int(seed),
        "cells": int(out.n_obs), "genes": int(out.n_vars), "types": int(out.obs[label_key].nunique())}
    return out


def bmmc(source="gse194122_cite", path=None, n_types: int | None = 14, n_cells: int | None = 10032,
         min_cells_per_gene: int = 1, batches=None, sites=None, seed: int = 0, label_key: str = "cell_type"):
    """The paper's cells: 14 types, about 10032 cells, about 13822 genes, raw counts (AnnData).

    ``source`` is one of ``BMMC_SOURCES`` (read through the registry: ``path``, ``CELLBOOK_DATA``, the
    cache, or the official download) or an AnnData already in memory with counts (``layers["counts"]``
    or ``X``) and ``obs[label_key]``.  The cells are then chosen by :func:`select_cells` (documented,
    deterministic).  For the paper's real data use ``source="pbmc10k_multiome"`` (10032 labelled cells,
    14 types: the selection then keeps everything); GSE194122 needs the filter and subsample.
    """
    import anndata as ad

    if isinstance(source, ad.AnnData):
        adata = as_counts_adata(source, label_key=label_key)
        adata.uns["cellbook_data"] = source.uns.get("cellbook_data", {
            "name": "in_memory", "title": "AnnData passed in", "source": "in memory", "path": None,
            "sha256": None, "real": True, "note": ""})
    elif source == "pbmc10k_multiome":
        adata = pbmc10k_multiome(path)
    elif source in LOADERS:
        adata = LOADERS[source](path=path)
    else:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(BMMC_SOURCES)} or an AnnData")
    info = adata.uns.get("cellbook_data")
    out = select_cells(adata, n_types=n_types, n_cells=n_cells, min_cells_per_gene=min_cells_per_gene,
                       batches=batches, sites=sites, label_key=label_key, seed=seed)
    out.uns["cellbook_data"] = info
    return out


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
    "pbmc10k_multiome": lambda path=None: pbmc10k_multiome(path),
}


def load_scrna(source: str = "vangalen2019", path=None, fallback: str = "error", seed: int = 0):
    """Load a single-cell dataset by source name; print and record which source was used.

    ``fallback="synthetic"`` returns a labelled synthetic stand-in when the real data is not
    found (with a warning); ``fallback="error"`` raises the loader's clear not-found error.
    """
    return load_source(LOADERS, source, path=path, fallback=fallback, synthetic=synthetic_counts, seed=seed)
