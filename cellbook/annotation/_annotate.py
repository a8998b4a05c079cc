"""annotate: predicted cell types (and confidence) of new cells, genes aligned by name; summary; lineages."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..validation import Interval, Options, validate_params
from ._classifier import CellTypeClassifier
from ._data import MIN_SHARED_GENES, _counts_matrix
from ._file_format import _jsonable
from ._model_files import _model_name, _training_info, load_model
from ._reference import METHODS, REFERENCE_CONSTRAINTS, fit_reference
from ._streaming import DEFAULT_CHUNK_SIZE, predict_in_chunks
from ._voting import HETEROGENEOUS, _over_cluster_matrix, majority_vote

UNASSIGNED = "Unassigned"          # label of cells whose confidence is below annotate's threshold


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
                  "cluster_method": Options("louvain", "leiden"), "chunk_size": [None, Interval(int, 1, None)],
                  "progress": [None, bool]})
def annotate(adata, model=None, key_added: str = "predicted_cell_type", layer: str | None = "counts",
             min_overlap: float = 0.5, copy: bool = False, *, reference=None, label_key: str = "cell_type",
             threshold: float | None = None, majority_voting: bool = False, over_clustering=None,
             resolution: float | None = None, min_prop: float = 0.0, cluster_method: str = "louvain",
             min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None, seed: int = 0,
             device: str = "auto", chunk_size: int | None = DEFAULT_CHUNK_SIZE, progress: bool | None = None):
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

    Genes are matched by name.  Model genes missing from ``adata`` are zeros (counted in a warning); fewer
    than ``min_overlap`` (a share of the model's genes) present is a ``ValueError``.  Library sizes (log1p
    transform) are sums over ``adata``'s genes among the model's input genes, as at training.

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
    ``chunk_size``: cells aligned and predicted at a time (``None``: all), so memory follows the block; the
    labels are the same.  A backed AnnData's ``X`` is read block by block (``layer=None``); for a file of any
    size, :func:`annotate_file`.  ``progress``: a bar over the blocks (``None``: when there are several).
    Returns ``adata`` (or the copy).
    """
    _check_annotate_args(adata, key_added)
    names = list(map(str, adata.var_names))
    clusters = _given_clusters(adata, over_clustering)
    majority_voting = majority_voting or clusters is not None
    uses_layer, M, what = _counts_source(adata, layer)
    model, source = _resolve_model(model, reference, names, label_key=label_key, layer=layer,
                                   min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
    top, conf, n_found, n_model = predict_in_chunks(model, lambda a, b: M[a:b], adata.n_obs, names, min_overlap,
                                                    chunk_size=chunk_size, progress=progress, what=what)
    adata = adata.copy() if copy else adata
    labels, categories = _write_labels(adata, key_added, model, top, conf, threshold)
    info = _annotation_info(model, labels, n_found, n_model, len(names), layer=layer if uses_layer else "X",
                            threshold=threshold, majority_voting=majority_voting, source=source)
    if majority_voting:
        X = _counts_matrix(M[:] if getattr(adata, "isbacked", False) and not uses_layer else M, what)
        info["over_clustering"] = _write_majority_vote(adata, key_added, X, labels, conf, clusters, categories,
                                                       min_prop, resolution=resolution, method=cluster_method,
                                                       seed=seed)
    adata.uns[key_added] = _h5_safe(info)
    return adata


def _counts_source(adata, layer):
    """``(whether layers[layer] is used, the counts matrix (maybe backed), its description)``."""
    uses_layer = bool(layer) and layer in adata.layers
    M = adata.layers[layer] if uses_layer else adata.X
    what = "adata counts" + (f" (layers[{layer!r}])" if uses_layer else " (X)")
    if M is None or len(getattr(M, "shape", ())) != 2 or 0 in M.shape:
        _counts_matrix(M, what)                             # the usual message for a missing / empty matrix
    return uses_layer, M, what


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


def _label_columns(model, top, conf, threshold):
    """``(labels, categories)``: the text label of class index ``top`` per cell, ``"Unassigned"`` where
    ``conf`` is below ``threshold``; the categories are the model's classes (+ Unassigned)."""
    classes = np.asarray(model.classes_).astype(str)
    labels = classes[top]
    if threshold is not None:
        labels = np.where(conf < float(threshold), UNASSIGNED, labels)
    return labels, list(dict.fromkeys([*classes, *([UNASSIGNED] if threshold is not None else [])]))


def _write_labels(adata, key_added: str, model, top, conf, threshold):
    """``obs[key_added]`` (top class, or Unassigned below ``threshold``) and its confidence."""
    labels, categories = _label_columns(model, top, conf, threshold)
    adata.obs[key_added] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key_added}_confidence"] = conf
    return labels, categories


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
    return _label_counts(adata.obs, key_added)


def _label_counts(obs: pd.DataFrame, key_added: str) -> pd.DataFrame:
    """:func:`summary` of an ``obs`` table (or :func:`annotate_file`'s labels)."""
    table = pd.DataFrame({"cells": obs[key_added].astype(str).value_counts()})
    mv = f"{key_added}_majority_voting"
    if mv in obs:
        table = table.join(pd.DataFrame({"majority_voting": obs[mv].astype(str).value_counts()}), how="outer")
        table = table.fillna(0).astype(int)
    table.index.name = "label"
    return table.sort_values(list(table.columns), ascending=False, kind="mergesort")
