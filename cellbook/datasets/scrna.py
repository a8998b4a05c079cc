"""Single-cell RNA-seq datasets (Part I, and Part III's single-cell setting).

All loaders return an AnnData with raw counts in ``X`` (scipy CSR), the same counts in
``layers["counts"]``, labels in ``obs["cell_type"]`` and, where the data has them,
``obs["donor"]`` / ``obs["batch"]``; ``uns["cellbook_data"]`` holds the provenance.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..splits import _missing_mask, check_missing, drop_rare
from ..validation import OPTIONAL_PATH, PATH, SEED, Interval, Options, validate_params
from .registry import DataInfo, DatasetNotFoundError, get, info_for, load_source, locate

# anndata, h5py and scanpy are imported where they are used, so that `cellbook data` stays light.

MAX_COUNT = 1e9
"""Largest plausible count of one gene in one cell / sample (bulk RNA-seq tops out near 1e7)."""

DUPLICATE_GENES = Options("error", "sum", "first")

RAW_COUNTS_FIX = ("give the raw (integer) counts instead: keep them in adata.layers['counts'], which the loaders, "
                  "bmmc, CellTypeClassifier.fit_adata and annotate read first, or pass the raw count matrix")


@validate_params({"what": str})
def check_counts(X, what: str = "counts") -> None:
    """Raise ``ValueError`` unless ``X`` holds finite, non-negative integer counts <= ``MAX_COUNT``."""
    data = X.data if sp.issparse(X) else np.asarray(X)
    if data.size == 0:
        return
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{what}: expected numbers, got dtype {data.dtype}; {RAW_COUNTS_FIX}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{what}: contains {int((~np.isfinite(data)).sum())} NaN or infinite values; raw counts "
                         f"must be finite: {RAW_COUNTS_FIX}")
    if (data < 0).any():
        raise ValueError(f"{what}: contains negative values ({int((data < 0).sum())} entries); raw counts are >= 0: "
                         f"{RAW_COUNTS_FIX}")
    top = float(data.max())
    if top > MAX_COUNT:
        raise ValueError(f"{what}: contains values up to {top:.3g} ({int((data > MAX_COUNT).sum())} entries above "
                         f"{MAX_COUNT:.0e}); no gene has that many counts in one cell, and such values pin the "
                         f"models' probabilities at 0/1. The matrix is scaled or corrupt: {RAW_COUNTS_FIX}")
    if not np.issubdtype(data.dtype, np.integer) and not np.all(np.mod(data, 1) == 0):
        raise ValueError(f"{what}: contains non-integer values (e.g. {data[np.mod(data, 1) != 0][0]:g}); these look "
                         f"normalised, not raw counts: {RAW_COUNTS_FIX}")


@validate_params({"what": str, "fix": [None, str]})
def check_unique_genes(names, what: str = "var_names", fix: str | None = None) -> None:
    """Raise ``ValueError`` naming the duplicated gene names (genes are matched by name later).

    ``fix`` replaces the default advice (the loaders' ``duplicate_genes='sum'`` / ``'first'`` option).
    """
    names = pd.Index(np.asarray(names).astype(str))
    if names.is_unique:
        return
    dup = names[names.duplicated(keep=False)]
    counts = pd.Series(dup).value_counts().sort_index()
    shown = ", ".join(f"{g} (x{n})" for g, n in counts.iloc[:8].items()) + (", ..." if len(counts) > 8 else "")
    fix = fix or ("pass duplicate_genes='sum' (add up their counts) or 'first' (keep the first) to the loader "
                  "(vangalen2019, gse194122, bmmc, as_counts_adata), or give unique names (e.g. Ensembl ids) first")
    raise ValueError(f"{what}: {len(counts)} gene name(s) occur more than once: {shown}. Genes are matched by name "
                     f"(annotate, predict), so renaming them silently would mislabel them: {fix}")


def _dedupe_genes(adata, how: str, what: str):
    """Sum or keep-first duplicated gene names, loudly; returns ``(adata, {gene: copies})``."""
    names = pd.Index(adata.var_names.astype(str))
    if names.is_unique:
        return adata, {}
    dup = pd.Series(names[names.duplicated(keep=False)]).value_counts().sort_index()
    info = {str(g): int(n) for g, n in dup.items()}
    if how == "first":
        out = adata[:, ~names.duplicated(keep="first")].copy()
    else:
        import anndata as ad

        codes, uniques = pd.factorize(names)
        G = sp.csr_matrix((np.ones(len(codes), np.float32), (np.arange(len(codes)), codes)),
                          shape=(len(codes), len(uniques)))
        first = ~names.duplicated(keep="first")
        out = ad.AnnData(X=sp.csr_matrix(adata.X) @ G, obs=adata.obs.copy(), var=adata.var[first].copy(),
                         uns=dict(adata.uns))
        out.var_names = uniques.astype(str)
        for k, L in adata.layers.items():
            out.layers[k] = sp.csr_matrix(L) @ G
    warnings.warn(f"{what}: {len(info)} duplicated gene name(s) "
                  f"{'summed' if how == 'sum' else 'reduced to their first occurrence'}: "
                  + ", ".join(f"{g} (x{n})" for g, n in list(info.items())[:8]) + (", ..." if len(info) > 8 else ""),
                  UserWarning, stacklevel=4)
    return out, info


@validate_params({"label_key": str, "counts_layer": [None, str], "duplicate_genes": DUPLICATE_GENES})
def as_counts_adata(adata, label_key: str = "cell_type", counts_layer: str | None = "counts",
                    duplicate_genes: str = "error"):
    """Put raw counts in ``X`` (CSR, float32) and ``layers['counts']``; validate; return a copy.

    Uses ``adata.layers[counts_layer]`` when present (GSE194122 keeps normalised values in X).
    Errors (``ValueError``, naming the fix): no label column, a missing label (NaN / None), counts
    that are not raw counts, no cells or no genes, duplicated gene names.  ``duplicate_genes="sum"``
    adds up the counts of genes with the same name and ``"first"`` keeps the first; either is
    warned about and recorded in ``uns["cellbook_duplicate_genes"]``.
    """
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; the labels must be in obs[{label_key!r}] "
                         f"(columns present: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"the AnnData has {adata.n_obs} cells x {adata.n_vars} genes; nothing to work with "
                         f"(was it filtered to nothing, or is the file incomplete?)")
    check_missing(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names)
    dups = {}
    if not adata.var_names.is_unique:
        if duplicate_genes == "error":
            check_unique_genes(adata.var_names, "var_names")
        adata, dups = _dedupe_genes(adata, duplicate_genes, "var_names")
    X = adata.layers[counts_layer] if counts_layer and counts_layer in adata.layers else adata.X
    check_counts(X, f"counts (layers[{counts_layer!r}])" if counts_layer and counts_layer in adata.layers
                 else "counts (X)")
    X = sp.csr_matrix(X, dtype=np.float32)
    out = adata.copy()
    out.X = X
    out.layers["counts"] = X.copy()
    out.obs[label_key] = out.obs[label_key].astype(str).astype("category")
    if dups:
        out.uns["cellbook_duplicate_genes"] = {"how": duplicate_genes, "genes": dups}
    return out


_REREAD_FIX = "download it again (or re-create it) and check its sha256"


def _check_hdf5(p: Path, what: str) -> int:
    """Size of ``p`` in bytes; ``FileNotFoundError`` / ``ValueError`` (naming it) unless it is a non-empty HDF5 file."""
    import h5py

    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{what} {p} is empty (0 bytes): an interrupted download or copy? {_REREAD_FIX}")
    if not h5py.is_hdf5(p):
        with open(p, "rb") as fh:
            head = fh.read(16)
        raise ValueError(f"{what} {p} is not an HDF5 file ({size} bytes, starts with {head!r}); {_REREAD_FIX}")
    return size


@validate_params({"path": PATH, "what": str})
def read_h5ad(path, what: str = "h5ad file"):
    """Read an ``.h5ad`` file; every failure is a ``ValueError`` / ``FileNotFoundError`` naming the file.

    Catches: no such file, a zero-byte file, a file that is not HDF5 (e.g. an HTML error page or a
    CSV saved as .h5ad), a truncated or otherwise unreadable HDF5 file, and an AnnData with no cells
    or no genes.  The fix in each message: download or write the file again.
    """
    import anndata as ad

    p = Path(path)
    size = _check_hdf5(p, what)
    try:
        adata = ad.read_h5ad(p)
    except Exception as err:  # h5py / anndata raise many kinds (OSError, KeyError, TypeError...) for torn files
        raise ValueError(f"{what} {p} could not be read ({type(err).__name__}: {err}); it is truncated or corrupt "
                         f"({size} bytes): {_REREAD_FIX}") from None
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{what} {p} holds {adata.n_obs} cells/samples x {adata.n_vars} genes: there is nothing "
                         f"to load; {_REREAD_FIX}")
    return adata


def _read(name: str, path, label_key="cell_type"):
    p = locate(name, path)
    return read_h5ad(p, f"{name}: h5ad file"), p


@validate_params({"path": OPTIONAL_PATH, "duplicate_genes": DUPLICATE_GENES})
def vangalen2019(path=None, duplicate_genes: str = "error"):
    """van Galen et al. 2019 bone marrow (Seq-Well): 3641 cells x 27899 genes, 15 types.

    obs: ``cell_type``, ``donor``, ``sample``, ``condition`` (healthy / AML_diagnosis).
    ``duplicate_genes``: see :func:`as_counts_adata` (the released file has unique gene names).
    """
    adata, p = _read("vangalen2019_bm_seqwell", path)
    adata = as_counts_adata(adata, duplicate_genes=duplicate_genes)
    adata.uns["cellbook_data"] = info_for("vangalen2019_bm_seqwell", p).to_dict()
    return adata


@validate_params({"path": OPTIONAL_PATH, "part": Options("cite", "multiome"), "starter": bool,
                  "duplicate_genes": DUPLICATE_GENES})
def gse194122(path=None, part: str = "cite", starter: bool = False, duplicate_genes: str = "error"):
    """GSE194122 processed h5ad (CITE or Multiome GEX part); raw counts from ``layers['counts']``.

    ``starter=True`` reads the organisers' 600-cell starter subset (same conventions).
    obs gets ``donor`` (from ``DonorNumber``) and ``site`` (from ``Site``) where present.
    ``duplicate_genes``: see :func:`as_counts_adata`.
    """
    name = "neurips2021_bmmc_cite_starter" if starter else f"gse194122_{part}"
    adata, p = _read(name, path)
    if "feature_types" in adata.var:
        adata = adata[:, adata.var["feature_types"].astype(str) == "GEX"].copy()
    adata = as_counts_adata(adata, duplicate_genes=duplicate_genes)
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
    labels = meta.loc[shared, col].to_numpy()
    unlabelled = _missing_mask(labels)
    if unlabelled.any():   # documented: only the labelled cells are kept (said, never a class "nan")
        warnings.warn(f"MOFA+ metadata: {int(unlabelled.sum())} of {len(shared)} matched cells have no "
                      f"{col!r} label (e.g. {', '.join(map(str, shared[unlabelled][:3]))}); they are left out",
                      UserWarning, stacklevel=4)
        shared, labels = shared[~unlabelled], labels[~unlabelled]
    adata = adata[shared].copy()
    adata.obs["cell_type"] = labels.astype(str)
    adata.obs["donor"] = "pbmc10k"
    return adata


@validate_params({"path": OPTIONAL_PATH, "label_column": [None, str]})
def pbmc10k_multiome(path=None, label_column: str | None = None):
    """10x PBMC granulocyte-sorted 10k Multiome, gene expression, with the MOFA+ vignette labels.

    Reads ``pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5`` (10x cell-arc 2.0.0; only
    ``Gene Expression`` features) and ``filtered_cell_metadata.tsv.gz`` (the MOFA+ vignette's cell metadata,
    tab separated, with ``barcode`` and ``celltype``); keeps the labelled cells (10032, 14 types:
    the data the paper's numbers fit).
    """
    import scanpy as sc

    h5 = locate("pbmc10k_multiome", path)
    meta_path = h5.parent / get("pbmc10k_multiome").files[1]
    if not meta_path.exists():
        raise DatasetNotFoundError(f"pbmc10k_multiome: found {h5.name} but not the MOFA+ cell metadata "
                                   f"{meta_path}; download it from {get('pbmc10k_multiome').raw[1].url} "
                                   f"or run `cellbook data fetch pbmc10k_multiome`")
    size = _check_hdf5(h5, "pbmc10k_multiome: 10x h5 file")
    try:
        adata = sc.read_10x_h5(h5, gex_only=True)
    except Exception as err:  # torn or foreign HDF5 files fail in h5py / scanpy with many error types
        raise ValueError(f"pbmc10k_multiome: 10x h5 file {h5} could not be read ({type(err).__name__}: {err}); it is "
                         f"truncated or corrupt ({size} bytes): {_REREAD_FIX}") from None
    # 10x symbols repeat for a few genes (distinct Ensembl ids).  They keep 10x/scanpy's "-1" suffixes (the
    # paper's gene count), said aloud and recorded in uns["cellbook_duplicate_genes"].
    names = pd.Index(adata.var_names.astype(str))
    dup = pd.Series(names[names.duplicated(keep=False)]).value_counts().sort_index()
    adata.var_names_make_unique()
    if len(dup):
        warnings.warn(f"pbmc10k_multiome: {len(dup)} gene symbol(s) occur more than once in the 10x matrix (distinct "
                      f"Ensembl ids); the later copies are renamed with -1, -2 suffixes (as scanpy does): "
                      + ", ".join(f"{g} (x{n})" for g, n in list(dup.items())[:8]) + (", ..." if len(dup) > 8 else ""),
                      UserWarning, stacklevel=3)
    meta = _read_table(meta_path, "pbmc10k_multiome: MOFA+ cell metadata", sep="\t")
    adata = as_counts_adata(_mofa_labels(adata, meta, label_column))
    if len(dup):
        adata.uns["cellbook_duplicate_genes"] = {"how": "renamed (-1, -2 suffixes)",
                                                 "genes": {str(g): int(n) for g, n in dup.items()}}
    adata.uns["cellbook_data"] = info_for("pbmc10k_multiome", h5).to_dict()
    return adata


def _read_table(path, what: str, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose failures (empty, malformed, not text) are ``ValueError`` naming the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} {path} is empty (no header, no rows); write it again with its header") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{what} {path} is not a well-formed table ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); fix or re-create it "
                         f"(comma-separated UTF-8 text with one header line)") from None


BMMC_SOURCES = ("gse194122_cite", "gse194122_multiome", "gse194122_starter", "pbmc10k_multiome", "vangalen2019")


def _filter_cells(adata, batches, sites) -> np.ndarray:
    """Step 1 of :func:`select_cells`: the cells whose ``obs["batch"]`` is in ``batches`` and whose
    ``obs["site"]`` / ``obs["Site"]`` is in ``sites`` (when given), as a boolean mask."""
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
    return keep


def _top_types(labels: pd.Series, n_types: int | None) -> pd.Series:
    """Step 2 of :func:`select_cells`: cells per type, most frequent first (ties broken by name), the
    first ``n_types`` of them."""
    counts = labels.value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    if len(counts) < 2:
        raise ValueError(f"fewer than 2 cell types after filtering ({len(counts)}); nothing to classify")
    if n_types is not None:
        counts = counts.iloc[:int(n_types)]
    return counts


def _stratified_draw(rows: np.ndarray, lab: np.ndarray, counts: pd.Series, n_cells: int, seed: int) -> np.ndarray:
    """Step 3 of :func:`select_cells`: ``n_cells`` of ``rows`` without replacement, each type (label ``lab``)
    keeping its share of ``counts`` (largest-remainder rounding); sorted."""
    rng = np.random.default_rng(seed)
    share = counts / counts.sum() * n_cells
    take = np.floor(share).astype(int)
    rest = n_cells - int(take.sum())
    order = (share - take).sort_values(ascending=False, kind="stable").index[:rest]
    take[order] += 1
    picked = [np.sort(rng.choice(rows[lab[rows] == t], size=int(n), replace=False))
              for t, n in take.items() if n > 0]
    return np.sort(np.concatenate(picked))


SELECTION = {"n_types": [None, Interval(int, 2, None)], "n_cells": [None, Interval(int, 1, None)],
             "min_cells_per_gene": Interval(int, 0, None), "label_key": str, "seed": SEED,
             "min_cells_per_type": [None, Interval(int, 1, None)]}
"""What the cell selection's parameters take (:func:`select_cells`, :func:`bmmc`)."""


@validate_params(SELECTION)
def select_cells(adata, n_types: int | None = 14, n_cells: int | None = 10032, min_cells_per_gene: int = 1,
                 batches=None, sites=None, label_key: str = "cell_type", seed: int = 0,
                 min_cells_per_type: int | None = None):
    """The paper-like selection, deterministic given ``seed``; returns a new AnnData.

    Rule, in order:

    1. keep cells whose ``obs["batch"]`` is in ``batches`` and ``obs["site"]`` / ``obs["Site"]`` is in
       ``sites`` (when given);
    2. keep the ``n_types`` most frequent cell types (ties broken by name);
    3. if more than ``n_cells`` cells remain, draw ``n_cells`` of them without replacement,
       stratified by type (each type keeps its share, rounded by the largest-remainder rule;
       ``numpy.random.default_rng(seed)`` picks the cells within a type);
    4. with ``min_cells_per_type``, leave out the cell types that have fewer cells than that in the
       selection (named in a printed line and in ``uns["cellbook_selection"]["dropped_types"]``), so
       that every type left can be split and stratified;
    5. keep genes with a non-zero count in at least ``min_cells_per_gene`` of the kept cells.

    ``uns["cellbook_selection"]`` records the rule's parameters and the resulting sizes.
    A missing label (NaN / None) is a ``ValueError`` naming the cells.
    """
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; the labels must be in obs[{label_key!r}]")
    check_missing(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names)
    ad_ = adata[_filter_cells(adata, batches, sites)]
    labels = ad_.obs[label_key].astype(str)
    counts = _top_types(labels, n_types)
    rows = np.flatnonzero(labels.isin(counts.index).values)
    if n_cells is not None and len(rows) > int(n_cells):
        rows = _stratified_draw(rows, labels.values, counts, int(n_cells), seed)
    dropped = {}
    if min_cells_per_type is not None:
        keep_rows, dropped = drop_rare(labels.values[rows], min_cells_per_type)
        rows = rows[keep_rows]
        if len(set(labels.values[rows])) < 2:
            raise ValueError(f"min_cells_per_type={min_cells_per_type} leaves fewer than 2 cell types "
                             f"(dropped: {', '.join(dropped) or 'none'}); lower min_cells_per_type")
    out = ad_[rows].copy()
    detected = np.asarray((out.X > 0).sum(axis=0)).ravel() >= int(min_cells_per_gene)
    out = out[:, detected].copy()
    out.obs[label_key] = out.obs[label_key].astype(str).astype("category")
    out.uns["cellbook_selection"] = {
        "n_types": n_types, "n_cells": n_cells, "min_cells_per_gene": int(min_cells_per_gene),
        "batches": None if batches is None else list(np.atleast_1d(batches)),
        "sites": None if sites is None else list(np.atleast_1d(sites)), "seed": int(seed),
        "cells": int(out.n_obs), "genes": int(out.n_vars), "types": int(out.obs[label_key].nunique())}
    if min_cells_per_type is not None:
        out.uns["cellbook_selection"].update(min_cells_per_type=int(min_cells_per_type), dropped_types=dropped)
    return out


@validate_params({**SELECTION, "path": OPTIONAL_PATH, "duplicate_genes": DUPLICATE_GENES})
def bmmc(source="gse194122_cite", path=None, n_types: int | None = 14, n_cells: int | None = 10032,
         min_cells_per_gene: int = 1, batches=None, sites=None, seed: int = 0, label_key: str = "cell_type",
         min_cells_per_type: int | None = None, duplicate_genes: str = "error"):
    """The paper's cells: 14 types, about 10032 cells, about 13822 genes, raw counts (AnnData).

    ``source`` is one of ``BMMC_SOURCES`` (read through the registry: ``path``, ``CELLBOOK_DATA``, the
    cache, or the official download) or an AnnData already in memory with counts (``layers["counts"]``
    or ``X``) and ``obs[label_key]``.  The cells are then chosen by :func:`select_cells` (documented,
    deterministic).  For the paper's real data use ``source="pbmc10k_multiome"`` (10032 labelled cells,
    14 types: the selection then keeps everything); GSE194122 needs the filter and subsample.
    ``min_cells_per_type`` leaves out types too rare to split (see :func:`select_cells`);
    ``duplicate_genes`` is passed to :func:`as_counts_adata` (pbmc10k keeps 10x's renamed duplicates).
    """
    import anndata as ad

    if isinstance(source, ad.AnnData):
        adata = as_counts_adata(source, label_key=label_key, duplicate_genes=duplicate_genes)
        adata.uns["cellbook_data"] = source.uns.get("cellbook_data", {
            "name": "in_memory", "title": "AnnData passed in", "source": "in memory", "path": None,
            "sha256": None, "real": True, "note": ""})
    elif source == "pbmc10k_multiome":
        adata = pbmc10k_multiome(path)
    elif source in LOADERS:
        adata = LOADERS[source](path=path, duplicate_genes=duplicate_genes)
    else:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(BMMC_SOURCES)} or an AnnData")
    info = adata.uns.get("cellbook_data")
    out = select_cells(adata, n_types=n_types, n_cells=n_cells, min_cells_per_gene=min_cells_per_gene,
                       batches=batches, sites=sites, label_key=label_key, seed=seed,
                       min_cells_per_type=min_cells_per_type)
    out.uns["cellbook_data"] = info
    return out


@validate_params({"n_cells": Interval(int, 1, None), "n_genes": Interval(int, 1, None),
                  "n_types": Interval(int, 1, None), "n_donors": Interval(int, 1, None), "seed": SEED})
def synthetic_counts(n_cells: int = 1500, n_genes: int = 2000, n_types: int = 8, n_donors: int = 3,
                     seed: int = 0):
    """A labelled SYNTHETIC stand-in: negative-binomial counts with type-specific marker genes.

    Used only when the real data cannot be had; ``uns['cellbook_data']['real']`` is False.
    """
    import anndata as ad

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
    "gse194122_cite": lambda path=None, **kw: gse194122(path, "cite", **kw),
    "gse194122_multiome": lambda path=None, **kw: gse194122(path, "multiome", **kw),
    "gse194122_starter": lambda path=None, **kw: gse194122(path, "cite", starter=True, **kw),
    "pbmc10k_multiome": lambda path=None, duplicate_genes=None: pbmc10k_multiome(path),
}


@validate_params({"source": Options(*LOADERS), "path": OPTIONAL_PATH, "fallback": Options("error", "synthetic"),
                  "seed": SEED})
def load_scrna(source: str = "vangalen2019", path=None, fallback: str = "error", seed: int = 0):
    """Load a single-cell dataset by source name; print and record which source was used.

    ``fallback="synthetic"`` returns a labelled synthetic stand-in when the real data is not
    found (with a warning); ``fallback="error"`` raises the loader's clear not-found error.
    """
    return load_source(LOADERS, source, path=path, fallback=fallback, synthetic=synthetic_counts, seed=seed)
