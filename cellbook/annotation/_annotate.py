"""annotate: predicted cell types (and confidence) of new cells, genes aligned by name; summary; lineages."""
from __future__ import annotations

import inspect
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..preprocess.scrna import align_genes
from ..train import NotFittedError
from ..validation import Interval, Options, validate_params
from ._classifier import CellTypeClassifier
from ._data import MIN_SHARED_GENES, _counts_matrix
from ._file_format import _jsonable
from ._model_files import _model_genes, _model_name, _training_info, load_model
from ._reference import METHODS, REFERENCE_CONSTRAINTS, fit_reference
from ._voting import HETEROGENEOUS, _over_cluster_matrix, majority_vote

UNASSIGNED = "Unassigned"          # label of cells whose confidence is below annotate's threshold


def _predict_by_name(model, X, names: list[str], min_overlap: float):
    """``(proba, n model genes found, n model genes)`` for counts ``X`` whose genes are ``names``."""
    if isinstance(model, CellTypeClassifier):
        model._check_fitted()
        if model.genes_ is None:
            raise ValueError("the model was fitted without gene names (use fit_adata or fit(..., gene_names=...)); "
                             "annotate aligns genes by name")
        Z, n_found = model._aligned_features(X, names, "adata", min_overlap, stacklevel=6, checked=True)
        return model.predict_proba(None, _features=Z), n_found, len(model.genes_)
    if not hasattr(model, "classes_"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; fit it (or pass reference= to annotate "
                             f"to train it there)")
    if getattr(model, "counts", True) is False:
        raise ValueError(f"{type(model).__name__} was built with counts=False, but annotate gives models raw counts; "
                         f"use counts=True")
    known, used = _model_genes(model)
    if known is None:
        raise ValueError(f"the {type(model).__name__} was fitted without gene names (fit(X, y, gene_names=...), a "
                         f"DataFrame or an AnnData); annotate aligns genes by name")
    present = pd.Index(names)
    n_model = len(used)
    n_found = int(pd.Index(used).isin(present).sum())
    if n_found < max(1, int(np.ceil(min_overlap * n_model))):
        raise ValueError(f"only {n_found} of the model's {n_model} genes are in adata's gene names (need >= "
                         f"{min_overlap:.0%}); are the gene names the same kind (symbols vs Ensembl ids) and the same "
                         f"species? Or train on the shared genes: annotate(adata, reference=ref, model=...)")
    if n_found < n_model:
        missing = [g for g in used if g not in set(present)]
        warnings.warn(f"{n_model - n_found} of the model's {n_model} genes are missing from adata "
                      f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); they are filled with zeros",
                      UserWarning, stacklevel=5)
    if names != known:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # counted above, among the genes the model uses
            X, _ = align_genes(X, names, known, "adata", min_overlap=0.0)
    if "gene_names" in inspect.signature(model.predict_proba).parameters:
        proba = model.predict_proba(X, gene_names=known)
    else:
        proba = model.predict_proba(pd.DataFrame(X.toarray() if sp.issparse(X) else X, columns=known))
    return np.asarray(proba), n_found, n_model


def _resolve_model(model, reference, genes, *, label_key, layer, min_shared_genes, params, seed, device):
    """``(fitted model, {"source": ...})`` from what annotate was given."""
    if reference is not None:
        model = "logreg" if model is None else model
        if isinstance(model, os.PathLike) or (isinstance(model, str) and model not in METHODS
                                              and Path(model).is_file()):
            raise ValueError(f"with reference=, model is a method name ({', '.join(METHODS)}) or an estimator to fit, "
                             f"not the file {str(model)!r}; to annotate with a saved model file, leave reference out")
        t0 = time.perf_counter()
        fitted = fit_reference(reference, model, genes=genes, label_key=label_key, layer=layer,
                               min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
        return fitted, {"source": "trained on reference", "fit_seconds": round(time.perf_counter() - t0, 2),
                        "method": model if isinstance(model, str) else type(model).__name__}
    if params:
        raise ValueError("params= applies when a model is trained here (with reference=)")
    if model is None:
        raise ValueError("pass model= (a fitted classifier or a model file) or reference= (labelled cells to train "
                         "on, with model='logreg' or another method)")
    if isinstance(model, (str, os.PathLike)):
        if isinstance(model, str) and model in METHODS:
            raise ValueError(f"model={model!r} is a method name: give the labelled cells to train it on with "
                             f"reference=..., or pass a fitted model or a model file")
        if isinstance(model, str) and model.strip().lower() in METHODS and not Path(model).exists():
            raise ValueError(f"model={model!r} is no model file, and method names are lower case (valid: "
                             f"{', '.join(METHODS)}); a method is trained with reference=...")
        return load_model(model, device=device), {"source": "model file", "model_file": str(model)}
    if not isinstance(model, CellTypeClassifier) and not hasattr(model, "predict_proba"):
        raise ValueError(f"model must be a fitted cellbook CellTypeClassifier, a fitted classifier with "
                         f"predict_proba, classes_ and gene names (e.g. cellbook.baselines.HVGLogisticRegression), "
                         f"a model file, or a method name with reference=; got {type(model).__name__}")
    meta = getattr(model, "model_file_" if isinstance(model, CellTypeClassifier) else "cellbook_model_file_", None)
    if meta:
        return model, {"source": "model file", "model_file": str(meta.get("path"))}
    return model, {"source": "fitted model"}


def _h5_safe(d: dict) -> dict:
    """``d`` without ``None`` values (nested), so that it can be written to .h5ad."""
    return {k: (_h5_safe(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


@validate_params({**REFERENCE_CONSTRAINTS, "key_added": str, "min_overlap": Interval(float, 0, 1, closed="right"),
                  "copy": bool, "threshold": [None, Interval(float, 0, 1)], "majority_voting": bool,
                  "resolution": [None, Interval(float, 0, None, closed="neither")], "min_prop": Interval(float, 0, 1),
                  "cluster_method": Options("louvain", "leiden")})
def annotate(adata, model=None, key_added: str = "predicted_cell_type", layer: str | None = "counts",
             min_overlap: float = 0.5, copy: bool = False, *, reference=None, label_key: str = "cell_type",
             threshold: float | None = None, majority_voting: bool = False, over_clustering=None,
             resolution: float | None = None, min_prop: float = 0.0, cluster_method: str = "louvain",
             min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None, seed: int = 0,
             device: str = "auto"):
    """Predict cell types for the cells of ``adata`` (raw counts; ``layers[layer]`` else ``X``).

    ``model``:

    * a fitted :class:`CellTypeClassifier`, or any fitted classifier with ``predict_proba``, ``classes_``
      and gene names (``feature_names_in_``; e.g. the baselines in :mod:`cellbook.baselines`);
    * a model file written by :func:`save_model` (read with :func:`load_model` on ``device``: no code
      runs; for an older file holding a pickle, pass ``load_model(path, trusted=True)`` if you trust it);
    * with ``reference=`` (labelled cells, labels in ``obs[label_key]``: an AnnData, an .h5ad file or a
      registered single-cell dataset's name, e.g. ``"vangalen2019_bm_seqwell"``; a file wins over a name):
      a method name (:data:`METHODS`, spelt exactly, default ``"logreg"``; ``params`` go to its constructor,
      see :func:`make_model`) or an unfitted estimator, trained here by :func:`fit_reference` on the genes
      ``adata`` shares with the reference (at least ``min_shared_genes``), with ``seed``.

    Genes are matched by name.  Model genes missing from ``adata`` are filled with zeros and counted in
    a warning; if fewer than ``min_overlap`` (a share of the model's genes) are present, a ``ValueError``
    is raised.  Library sizes (log1p transform) are sums over ``adata``'s genes among the model's input
    genes, as at training (see :class:`CellTypeClassifier`).

    Writes ``obs[key_added]`` (label), ``obs[key_added + "_confidence"]`` (the top class probability) and
    ``uns[key_added]`` (model, genes found / missing, cells unassigned, how the model was had).
    ``threshold``: cells whose confidence is below it are ``"Unassigned"`` (``None``: none).  It is the
    probability of the fine label, not of its lineage: a cell split between close types (T 0.45, CTL 0.35,
    NK 0.20) is ``"Unassigned"`` at 0.5 although its lineage (T/NK) is clear; no lineage-level confidence
    is computed (for a coarse view, map the labels to lineages with :func:`to_lineage`).
    ``majority_voting``: the cells are over-clustered (:func:`over_cluster` with ``resolution``,
    ``cluster_method`` and ``seed``; or ``over_clustering``, an ``obs`` column name or one cluster id per
    cell, which turns majority voting on) and every cell of a cluster gets the cluster's majority label
    (:func:`majority_vote`; ``"Unassigned"`` takes part, a majority below ``min_prop`` gives
    ``"Heterogeneous"``): ``obs[key_added + "_majority_voting"]`` and ``obs[key_added + "_over_clustering"]``.
    Returns ``adata`` (or the copy).
    """
    _check_annotate_args(adata, key_added)
    names = list(map(str, adata.var_names))
    clusters = _given_clusters(adata, over_clustering)
    majority_voting = majority_voting or clusters is not None
    uses_layer = bool(layer) and layer in adata.layers
    X = _counts_matrix(adata.layers[layer] if uses_layer else adata.X,
                       "adata counts" + (f" (layers[{layer!r}])" if uses_layer else " (X)"))
    model, source = _resolve_model(model, reference, names, label_key=label_key, layer=layer,
                                   min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
    proba, n_found, n_model = _predict_by_name(model, X, names, float(min_overlap))
    if copy:
        adata = adata.copy()
    labels, conf, categories = _write_labels(adata, key_added, model, proba, threshold)
    info = _annotation_info(model, labels, n_found, n_model, len(names), layer=layer if uses_layer else "X",
                            threshold=threshold, majority_voting=majority_voting, source=source)
    if majority_voting:
        info["over_clustering"] = _write_majority_vote(adata, key_added, X, labels, conf, clusters, categories,
                                                       min_prop, resolution=resolution, method=cluster_method,
                                                       seed=seed)
    adata.uns[key_added] = _h5_safe(info)
    return adata


def _annotation_info(model, labels, n_found: int, n_model: int, n_query: int, *, layer: str, threshold,
                     majority_voting: bool, source: dict) -> dict:
    """What annotate records in ``uns[key_added]`` (the over-clustering is added after)."""
    return {"model": _model_name(model), "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "n_cells": len(labels), "n_genes_model": int(n_model), "n_genes_found": int(n_found),
            "n_genes_missing": int(n_model - n_found), "n_genes_query": int(n_query),
            "layer": layer, "threshold": None if threshold is None else float(threshold),
            "n_unassigned": int((labels == UNASSIGNED).sum()) if threshold is not None else 0,
            "majority_voting": bool(majority_voting), **source,
            "training": _jsonable(_training_info(model))[0]}


def _check_annotate_args(adata, key_added: str) -> None:
    if not (hasattr(adata, "obs") and hasattr(adata, "var_names")):
        raise ValueError(f"adata must be an AnnData of the cells to annotate; got {type(adata).__name__}")
    if not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}")
    if adata.n_obs == 0:
        raise ValueError("adata has no cells")


def _given_clusters(adata, over_clustering):
    """One cluster id (str) per cell from ``over_clustering`` (an ``obs`` column or ids); ``None`` if not given."""
    if over_clustering is None:
        return None
    if isinstance(over_clustering, str):
        if over_clustering not in adata.obs:
            raise ValueError(f"over_clustering={over_clustering!r} is not a column of adata.obs; give a column "
                             f"name, one cluster id per cell, or None (cluster here)")
        return adata.obs[over_clustering].astype(str).to_numpy()
    clusters = np.asarray(over_clustering).astype(str)
    if clusters.shape != (adata.n_obs,):
        raise ValueError(f"over_clustering has {clusters.size} entries but adata has {adata.n_obs} cells")
    return clusters


def _write_labels(adata, key_added: str, model, proba, threshold):
    """``obs[key_added]`` (top class, or Unassigned below ``threshold``) and its confidence."""
    classes = np.asarray(model.classes_).astype(str)
    conf = proba.max(1)
    labels = classes[proba.argmax(1)]
    if threshold is not None:
        labels = np.where(conf < float(threshold), UNASSIGNED, labels)
    categories = list(dict.fromkeys([*classes, *([UNASSIGNED] if threshold is not None else [])]))
    adata.obs[key_added] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key_added}_confidence"] = conf
    return labels, conf, categories


def _write_majority_vote(adata, key_added: str, X, labels, conf, clusters, categories, min_prop, *, resolution,
                         method, seed) -> dict:
    """``obs[key_added + "_over_clustering"]`` and ``..._majority_voting`` (clusters of ``X`` unless given);
    the clustering's summary and the number of labels changed."""
    if clusters is None:
        clusters, oc = _over_cluster_matrix(X, resolution, method=method, seed=seed)
    else:
        oc = {"method": "given", "n_clusters": int(len(np.unique(clusters)))}
    voted = majority_vote(labels, clusters, conf, min_prop)
    order = sorted(np.unique(clusters), key=lambda c: (len(c), c))   # "2" before "10"
    adata.obs[f"{key_added}_over_clustering"] = pd.Categorical(clusters, categories=order)
    vcats = [c for c in [*categories, HETEROGENEOUS] if c in set(voted) or c in categories]
    adata.obs[f"{key_added}_majority_voting"] = pd.Categorical(voted, categories=vcats)
    return {**oc, "min_prop": float(min_prop), "n_changed": int((voted != labels).sum())}


@validate_params({"key_added": str})
def summary(adata, key_added: str = "predicted_cell_type") -> pd.DataFrame:
    """Cells per predicted label (and per majority-voted label, when there is one), largest first."""
    if key_added not in adata.obs:
        raise ValueError(f"obs[{key_added!r}] is missing: run annotate(adata, ..., key_added={key_added!r}) first")
    table = pd.DataFrame({"cells": adata.obs[key_added].astype(str).value_counts()})
    mv = f"{key_added}_majority_voting"
    if mv in adata.obs:
        table = table.join(pd.DataFrame({"majority_voting": adata.obs[mv].astype(str).value_counts()}), how="outer")
        table = table.fillna(0).astype(int)
    table.index.name = "label"
    return table.sort_values(list(table.columns), ascending=False, kind="mergesort")
