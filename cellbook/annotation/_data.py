"""Count matrices and labelled references: the checks every entry point of :mod:`cellbook.annotation` shares."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..datasets.registry import REGISTRY
from ..datasets.scrna import LOADERS, check_counts, read_h5ad
from ..splits import as_labels

MIN_SHARED_GENES = 50              # fewest genes a reference and a query must share to train on them
# The registered single-cell datasets a reference can be named by: registry name -> its loader in
# cellbook.datasets.scrna.LOADERS (raw counts, labels in obs["cell_type"]).
REFERENCE_DATASETS = {"vangalen2019_bm_seqwell": "vangalen2019", "gse194122_cite": "gse194122_cite",
                      "gse194122_multiome": "gse194122_multiome", "neurips2021_bmmc_cite_starter": "gse194122_starter",
                      "pbmc10k_multiome": "pbmc10k_multiome"}


def _counts_matrix(X, what="counts"):
    """``X`` checked (2-D, not empty, non-negative counts) as a float32 CSR matrix."""
    if hasattr(X, "X") and hasattr(X, "obs"):
        raise ValueError("pass a matrix here; use fit_adata / predict(adata) / annotate for an AnnData")
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(f"{what}: expected a 2-D cells x genes matrix")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what}: empty matrix of shape {X.shape}")
    check_counts(X, what)
    return sp.csr_matrix(X, dtype=np.float32)


def load_reference(reference, what: str = "reference"):
    """``(AnnData, name)`` of a reference given as an AnnData (name ``None``), an .h5ad file or a dataset name.

    An existing file wins over a dataset name.  A name is one of :data:`REFERENCE_DATASETS` (the registered
    single-cell datasets, see ``cellbook data list``), read by its loader; a registered dataset that is not
    labelled single cells (images, bulk samples, gene sets) is a ``ValueError``, one that is not here yet
    the registry's :class:`~cellbook.datasets.DatasetNotFoundError` (it names ``cellbook data fetch NAME``),
    and a name that is neither a file nor a dataset a ``FileNotFoundError`` listing the datasets.
    """
    if not isinstance(reference, (str, os.PathLike)):
        return reference, None
    name = os.fspath(reference)
    if Path(name).is_file():
        return read_h5ad(name, what), name
    usable = ", ".join(REFERENCE_DATASETS)
    if name in REFERENCE_DATASETS:
        return LOADERS[REFERENCE_DATASETS[name]](path=None), name
    if name in REGISTRY:
        raise ValueError(f"{what} {name!r} is a registered dataset ({REGISTRY[name].title}) but not labelled single "
                         f"cells; a reference is an AnnData of labelled cells (raw counts): an .h5ad file, or one "
                         f"of the single-cell (scRNA-seq) datasets {usable}")
    what_it_is = ("is a folder, not a file, and not a registered dataset name" if Path(name).is_dir()
                  else "is neither a file nor a registered dataset name")
    raise FileNotFoundError(f"{what} {name!r} {what_it_is}; give an .h5ad file of "
                            f"labelled cells (raw counts) or one of the single-cell datasets {usable} (their "
                            f"status: `cellbook data list`)")


def _check_reference(adata, label_key: str, what: str = "reference"):
    if not (hasattr(adata, "obs") and hasattr(adata, "var_names")):
        raise ValueError(f"{what} must be an AnnData (cells x genes, raw counts, labels in obs[{label_key!r}]); "
                         f"got {type(adata).__name__}")
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; columns present: {', '.join(map(str, adata.obs.columns))}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{what} has {adata.n_obs} cells x {adata.n_vars} genes: nothing to train on")


def _name_key(g: str) -> str:
    """Gene name without case and Ensembl version suffix (only for the hint of :func:`shared_genes`)."""
    g = g.upper()
    return g.split(".")[0] if g.startswith("ENS") else g


def shared_genes(reference_genes: Sequence[str], genes: Sequence[str], min_shared: int = MIN_SHARED_GENES,
                 what: str = "query") -> tuple[np.ndarray, dict]:
    """Positions (in ``reference_genes`` order) of the reference genes that are among ``genes``.

    Returns ``(positions, {"n_shared_genes", "n_query_genes", "n_reference_genes"})``.  Fewer than
    ``min_shared`` shared genes is a ``ValueError`` naming the counts and the likely fix (gene names of
    another kind or species).
    """
    if isinstance(genes, str):
        raise ValueError(f"genes is the string {genes[:30]!r}; pass the {what}'s gene names, e.g. query.var_names")
    ref = pd.Index(list(map(str, reference_genes)))
    query = pd.Index(list(map(str, genes))).unique()
    pos = np.flatnonzero(ref.isin(query))
    info = {"n_shared_genes": int(len(pos)), "n_query_genes": int(len(query)), "n_reference_genes": int(len(ref))}
    if len(pos) < int(min_shared):
        loose = len(set(map(_name_key, ref)) & set(map(_name_key, query)))
        hint = (f" ({loose} match when case and Ensembl version suffixes are ignored: make the names agree first)"
                if loose > len(pos) else "")
        raise ValueError(f"only {len(pos)} of the {what}'s {len(query)} genes are among the reference's {len(ref)} "
                         f"genes (need >= {min_shared} to train on the shared genes){hint}; are both gene symbols "
                         f"(or both Ensembl ids) and of the same species? Map one set of names onto the other "
                         f"first (e.g. Ensembl ids -> symbols)")
    return pos, info


def _reference_data(adata, label_key: str, layer, genes, min_shared_genes: int):
    """A labelled reference's counts, labels and gene names, cut to the genes it shares with ``genes``.

    Returns ``(X, y, names, shared)``; ``shared`` summarises the overlap (``{}`` when ``genes`` is None).
    """
    _check_reference(adata, label_key)
    X = adata.layers[layer] if layer and layer in adata.layers else adata.X
    names = list(map(str, adata.var_names))
    shared = {}
    if genes is not None:
        keep, shared = shared_genes(names, genes, min_shared_genes)
        X = X[:, keep]
        names = [names[i] for i in keep]
    y = as_labels(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names)
    return X, y, names, shared
