"""Bulk expression profiles with one label per sample (Part III).

Every loader returns an AnnData: samples x genes in ``X`` (dense float32), the label in
``obs["cell_type"]``, gene symbols in ``var["gene_symbol"]`` and the provenance in
``uns["cellbook_data"]``.

- :func:`tcga6` -- 364 TCGA primary tumours of 6 tissues, raw HTSeq counts (the real data here).
- :func:`cellnet` -- the paper's data: CellNet's HG-U133 Plus 2 compendium (1040 x 20184,
  16 tissues x 65, log2 + quantile normalised).  Not downloadable here; the documented path is
  an AnnData ``cellnet_hg1133plus2.h5ad`` under ``$CELLBOOK_DATA/cellnet_hg1133plus2/`` made once
  from CellNet's training data (samples x genes, ``obs["cell_type"]``, values log2).
- :func:`pseudobulk` -- sum single-cell counts per group (e.g. donor x cell type); labelled as such.
- :func:`from_table` -- any samples x genes table (CSV/TSV or DataFrame) with a label column.
- :func:`synthetic_bulk` -- a labelled SYNTHETIC stand-in, used only when the real data is missing.
- :func:`load_bulk` -- one entry point by source name, with the synthetic fallback.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..splits import check_missing
from ..validation import OPTIONAL_PATH, SEED, Interval, Options, validate_params
from .registry import DataInfo, info_for, load_source, locate
from .scrna import _read_table, check_unique_genes, read_h5ad, vangalen2019

# anndata is imported where it is used, so that `cellbook data` stays light.


@validate_params({"label_key": str, "min_per_label": Interval(int, 1, None)})
def check_expression(adata, label_key: str = "cell_type", min_per_label: int = 2):
    """Validate a samples x genes AnnData with labels; return a copy with dense float32 ``X``.

    Raises ``ValueError`` for a missing label column, a missing label (NaN / None), no samples or
    no genes, duplicated gene names, non-finite values, or a label with fewer than
    ``min_per_label`` samples (it could not be in both training and test data).
    """
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; put the tissue / cell-type label there "
                         f"(columns present: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"the expression data has {adata.n_obs} samples x {adata.n_vars} genes; nothing to work "
                         f"with (was it filtered to nothing, or is the file incomplete?)")
    check_missing(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names, unit="samples")
    check_unique_genes(adata.var_names, "var_names (genes)",
                       "give unique names first (e.g. Ensembl ids as var_names with the symbols in "
                       "var['gene_symbol'], or sum the duplicated genes' values)")
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"expression values must be numbers; got dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        bad = np.where(~np.isfinite(X).all(axis=1))[0]
        names = ", ".join(map(str, adata.obs_names[bad[:5]]))
        raise ValueError(f"{(~np.isfinite(X)).sum()} NaN or infinite expression values in "
                         f"{bad.size} samples (e.g. {names}); remove or impute them first")
    labels = adata.obs[label_key].astype(str)
    counts = labels.value_counts()
    small = counts[counts < min_per_label]
    if len(small):
        raise ValueError(f"label(s) {', '.join(f'{k!r} ({v} sample)' for k, v in small.items())} have fewer than "
                         f"{min_per_label} samples; a label needs samples in both training and test data: "
                         f"drop those samples or merge the label")
    out = adata.copy()
    out.X = X.astype(np.float32)
    out.obs[label_key] = pd.Categorical(labels)
    if label_key != "cell_type":
        out.obs["cell_type"] = out.obs[label_key]
    if "gene_symbol" not in out.var:
        out.var["gene_symbol"] = out.var_names.astype(str)
    return out


@validate_params({"label_col": str, "name": str, "real": bool})
def from_table(table, label_col: str = "cell_type", name: str = "table", real: bool = True):
    """A samples x genes table with one label column -> AnnData.

    ``table``: a DataFrame (index = sample IDs) or a path to a CSV/TSV file (first column = sample ID).
    """
    import anndata as ad

    if not isinstance(table, pd.DataFrame):
        path = Path(table)
        if not path.exists():
            raise FileNotFoundError(f"expression table {path} does not exist")
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt") or path.name.endswith((".tsv.gz", ".txt.gz")) else ","
        table = _read_table(path, "expression table", sep=sep, index_col=0)
        source = str(path)
    else:
        source = "DataFrame"
    if label_col not in table.columns:
        raise ValueError(f"label column {label_col!r} not in the table "
                         f"(columns: {', '.join(map(str, table.columns[:8]))}...)")
    genes = table.drop(columns=[label_col])
    nonnum = [c for c in genes.columns if not pd.api.types.is_numeric_dtype(genes[c])]
    if nonnum:
        raise ValueError(f"non-numeric gene columns {nonnum[:5]}; the table must hold only expression values "
                         f"besides {label_col!r}")
    check_missing(table[label_col].to_numpy(), f"label column {label_col!r}", names=table.index, unit="samples")
    adata = ad.AnnData(X=genes.to_numpy(np.float32), obs=pd.DataFrame({"cell_type": table[label_col].astype(str)},
                                                                      index=table.index.astype(str)),
                       var=pd.DataFrame(index=genes.columns.astype(str)))
    adata = check_expression(adata)
    adata.uns["cellbook_data"] = DataInfo(name=name, title=f"expression table ({name})", source=source,
                                          path=source if source != "DataFrame" else None, sha256=None,
                                          real=real).to_dict()
    return adata


@validate_params({"path": OPTIONAL_PATH, "protein_coding": bool, "drop_zero": bool})
def tcga6(path=None, protein_coding: bool = True, drop_zero: bool = True):
    """TCGA primary tumours of 6 tissues: 364 samples x 56537 genes, raw HTSeq counts.

    ``protein_coding=True`` keeps the 19546 protein-coding genes (close to the paper's 20184);
    ``drop_zero=True`` drops genes with zero counts in every sample.  ``X`` stays raw counts:
    log-transform with :mod:`cellbook.preprocess.bulk`.  obs: ``cell_type`` (= TCGA project code),
    ``tissue``, ``tss``, ``plate``.  var: ``gene_symbol``, ``gene_biotype``.
    """
    p = locate("tcga6_rnasum_counts", path)
    adata = read_h5ad(p, "tcga6_rnasum_counts: h5ad file")
    keep = np.ones(adata.n_vars, bool)
    if protein_coding and "gene_biotype" in adata.var:
        keep &= (adata.var["gene_biotype"].astype(str) == "protein_coding").to_numpy()
    if drop_zero:
        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        keep &= X.sum(axis=0) > 0
    if "gene_symbol" in adata.var:
        keep &= (adata.var["gene_symbol"].astype(str) != "").to_numpy()
    adata = adata[:, keep].copy()
    adata = check_expression(adata)
    adata.uns["cellbook_data"] = info_for(
        "tcga6_rnasum_counts", p,
        note=f"{adata.n_obs} samples x {adata.n_vars} genes"
             f"{' (protein-coding)' if protein_coding else ''}; raw counts").to_dict()
    return adata


@validate_params({"path": OPTIONAL_PATH})
def cellnet(path=None):
    """The paper's CellNet HG-U133 Plus 2 compendium (1040 x 20184, 16 tissues x 65), if present.

    Expected file: ``cellnet_hg1133plus2.h5ad`` (in ``path``, ``$CELLBOOK_DATA/cellnet_hg1133plus2/`` or
    the cache): samples x genes, gene symbols as ``var_names``, ``obs["cell_type"]``, values already
    log2 (and quantile normalised) as CellNet ships them, so use ``BulkPreprocessor(counts=False)``.
    Make it once from CellNet's training data (``expTrain`` matrix + ``stTrain$description1``).
    Raises :class:`DatasetNotFoundError` listing the paths tried when it is absent.
    """
    p = locate("cellnet_hg1133plus2", path)
    adata = check_expression(read_h5ad(p, "cellnet_hg1133plus2: h5ad file"))
    adata.uns["cellbook_data"] = info_for("cellnet_hg1133plus2", p, strict=False).to_dict()
    return adata


@validate_params({"by": [str, tuple, list], "min_cells": Interval(int, 1, None), "label_key": str,
                  "layer": [None, str]})
def pseudobulk(adata, by=("donor", "cell_type"), min_cells: int = 10, label_key: str = "cell_type",
               layer: str | None = "counts"):
    """Sum single-cell counts per group -> one pseudo-bulk profile per group (AnnData, counts).

    ``by``: obs columns that define a group (the label column must be one of them).
    Groups with fewer than ``min_cells`` cells are dropped.  obs gets ``n_cells`` and the ``by``
    columns; ``uns["cellbook_data"]["note"]`` says the profiles are pseudo-bulk.
    """
    import anndata as ad

    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in adata.obs]
    if missing:
        raise ValueError(f"obs column(s) {missing} missing; available: {', '.join(map(str, adata.obs.columns))}")
    if label_key not in by:
        raise ValueError(f"the label column {label_key!r} must be one of the grouping columns {by}")
    for b in by:
        check_missing(adata.obs[b].to_numpy(), f"obs[{b!r}]", names=adata.obs_names)
    X = adata.layers[layer] if layer and layer in adata.layers else adata.X
    X = sp.csr_matrix(X)
    keys = adata.obs[by].astype(str).agg("|".join, axis=1)
    codes, uniques = pd.factorize(keys)
    G = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(uniques), len(codes)))
    sums = np.asarray((G @ X).todense(), dtype=np.float32)
    n_cells = np.bincount(codes, minlength=len(uniques))
    obs = pd.DataFrame([u.split("|") for u in uniques], columns=by, index=[f"pb_{u}" for u in uniques])
    obs["n_cells"] = n_cells
    keep = n_cells >= min_cells
    if not keep.any():
        raise ValueError(f"no group has >= {min_cells} cells; lower min_cells")
    out = ad.AnnData(X=sums[keep], obs=obs[keep].copy(), var=pd.DataFrame(index=adata.var_names.copy()))
    out.var["gene_symbol"] = out.var_names.astype(str)
    # labels with a single profile cannot be split; drop them with a note
    counts = out.obs[label_key].value_counts()
    single = counts[counts < 2].index.tolist()
    if single:
        out = out[~out.obs[label_key].isin(single)].copy()
    out = check_expression(out, label_key)
    info = dict(adata.uns.get("cellbook_data", {}))
    if info:
        info["note"] = (f"PSEUDO-BULK: counts summed per {' x '.join(by)} (>= {min_cells} cells; "
                        f"{out.n_obs} profiles"
                        f"{'; dropped single-profile labels ' + ', '.join(single) if single else ''})")
        out.uns["cellbook_data"] = info
    return out


@validate_params({"n_per_class": Interval(int, 1, None), "n_genes": Interval(int, 1, None),
                  "n_classes": Interval(int, 1, None), "seed": SEED})
def synthetic_bulk(n_per_class: int = 40, n_genes: int = 2000, n_classes: int = 6, seed: int = 0):
    """A labelled SYNTHETIC stand-in: bulk-like counts with class-specific programmes (not real data)."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    base = rng.lognormal(3, 1.5, size=n_genes)
    n_prog = 12
    programmes = rng.normal(0, 1, size=(n_prog, n_genes)) * (rng.random((n_prog, n_genes)) < 0.1)
    weights = rng.gamma(1.0, 1.0, size=(n_classes, n_prog))
    y = np.repeat(np.arange(n_classes), n_per_class)
    w = weights[y] * rng.lognormal(0, 0.3, size=(y.size, n_prog))
    mu = base * np.exp(np.clip(w @ programmes, -5, 5)) * rng.lognormal(0, 0.2, size=(y.size, 1))
    X = rng.poisson(mu).astype(np.float32)
    X[:, 0] += 1  # no empty sample
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"tissue{c}" for c in y])},
                       index=[f"sample{i}" for i in range(y.size)])
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"GENE{g}" for g in range(n_genes)]))
    adata.var["gene_symbol"] = adata.var_names.astype(str)
    adata.uns["cellbook_data"] = DataInfo(
        name="synthetic_bulk", title="SYNTHETIC bulk counts (not real samples)",
        source="cellbook.datasets.bulk.synthetic_bulk", path=None, sha256=None, real=False,
        note=f"seed={seed}").to_dict()
    return adata


def _vangalen_cells(path=None, max_genes: int = 5000):
    """Per-cell profiles of van Galen 2019, restricted to the ``max_genes`` genes detected in most cells
    (the dense cells x genes matrix of all 27899 genes would need about 0.4 GB)."""
    a = vangalen2019(path)
    detected = np.asarray((a.X > 0).sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-detected, kind="stable")[:max_genes])
    a = a[:, keep].copy()
    a.X = a.X.toarray().astype(np.float32)
    a.var["gene_symbol"] = a.var_names.astype(str)
    a = check_expression(a)
    a.uns["cellbook_data"]["note"] = (f"PER-CELL profiles (single cells, not bulk); the {a.n_vars} genes "
                                      f"detected in most cells")
    return a


def _vangalen_pseudobulk(path=None):
    return pseudobulk(vangalen2019(path), by=("donor", "cell_type"), min_cells=5)


SOURCES = {
    "tcga6": tcga6,
    "cellnet": cellnet,
    "vangalen_pseudobulk": _vangalen_pseudobulk,
    "vangalen_cells": _vangalen_cells,
}


@validate_params({"source": Options(*SOURCES), "path": OPTIONAL_PATH, "fallback": Options("error", "synthetic"),
                  "seed": SEED})
def load_bulk(source: str = "tcga6", path=None, fallback: str = "error", seed: int = 0):
    """Load a labelled expression compendium by name; print and record which source was used.

    Sources: ``tcga6`` (raw counts), ``cellnet`` (the paper's, log2), ``vangalen_pseudobulk``
    (counts summed per donor x type), ``vangalen_cells`` (per-cell counts).
    ``fallback="synthetic"`` returns a labelled synthetic stand-in when the data is not found.
    """
    return load_source(SOURCES, source, path=path, fallback=fallback, synthetic=synthetic_bulk, seed=seed)
