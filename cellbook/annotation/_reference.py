"""Training on a labelled reference: a model for a method name, fitted on the genes shared with a query."""
from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Sequence

from ..baselines import (
    PCAKNN,
    CellTypistClassifier,
    HVGGradientBoosting,
    HVGLogisticRegression,
    LinearSVMClassifier,
    TunedLogisticRegression,
)
from ..validation import SEED, Interval, validate_params
from ._classifier import ARCHITECTURES, CellTypeClassifier
from ._data import MIN_SHARED_GENES, _check_reference, _counts_matrix, _reference_data, load_reference

# Method names that annotate / fit_reference / `cellbook annotate --method` train on a reference.
METHODS = ("logreg", "logreg_scaled", "gbm", "celltypist", "knn", "linear_svm", *ARCHITECTURES)
_BASELINE_METHODS = {"logreg": TunedLogisticRegression, "logreg_scaled": HVGLogisticRegression,
                     "gbm": HVGGradientBoosting, "celltypist": CellTypistClassifier, "knn": PCAKNN,
                     "linear_svm": LinearSVMClassifier}


#: What :func:`fit_reference` (and :func:`~cellbook.annotation.annotate`, which passes them on) takes.
REFERENCE_CONSTRAINTS = {"label_key": str, "layer": [None, str], "min_shared_genes": Interval(int, 1, None),
                         "params": [None, dict], "seed": SEED, "device": str}


def _estimator_params(method: str) -> set:
    if method in _BASELINE_METHODS:
        return set(_BASELINE_METHODS[method]().get_params())
    return set(CellTypeClassifier().get_params()) - {"architecture"}


@validate_params({"seed": SEED, "device": str})
def make_model(method: str, seed: int = 0, device: str = "auto", **params):
    """An unfitted estimator for a method name.

    ``"logreg"`` (:class:`~cellbook.baselines.TunedLogisticRegression`, its regularisation chosen by inner
    cross-validation), ``"logreg_scaled"`` (:class:`~cellbook.baselines.HVGLogisticRegression`), ``"gbm"``
    (:class:`~cellbook.baselines.HVGGradientBoosting`), ``"celltypist"``
    (:class:`~cellbook.baselines.CellTypistClassifier`), ``"knn"`` (:class:`~cellbook.baselines.PCAKNN`),
    ``"linear_svm"`` (:class:`~cellbook.baselines.LinearSVMClassifier`) or a deep architecture (``"mlp"``,
    ``"cnn"``, ``"lstm"``, ``"lstm_att"``: a :class:`CellTypeClassifier`).
    ``params`` go to its constructor (for the deep ones also the training settings, e.g. ``max_epochs=5``); an
    unknown one is a ``ValueError`` listing the valid ones.
    """
    if method not in METHODS:   # exact names only: "LOGREG" or "Mlp" is refused, with the valid ones
        near = [m for m in METHODS if isinstance(method, str) and m == method.strip().lower()]
        hint = f" (method names are lower case: {near[0]!r})" if near else ""
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}{hint}")
    valid = _estimator_params(method)
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"method {method!r} takes no parameter(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(valid))}")
    params = {"seed": int(seed), **params}
    if method in _BASELINE_METHODS:
        return _BASELINE_METHODS[method](**params)
    return CellTypeClassifier(method, **{"device": device, **params})


def _estimator(model, params, seed: int, device: str):
    """The estimator ``fit_reference`` trains: built from a method name, or the one given."""
    if isinstance(model, str):
        return make_model(model, seed=seed, device=device, **(params or {}))
    if params:
        raise ValueError("params= applies to a method name (e.g. model='cnn'); set the parameters of an estimator "
                         "instance when you build it")
    return model


@validate_params(REFERENCE_CONSTRAINTS)
def fit_reference(reference, model="logreg", *, genes: Sequence[str] | None = None, label_key: str = "cell_type",
                  layer: str | None = "counts", min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None,
                  seed: int = 0, device: str = "auto"):
    """Train a classifier on a labelled reference, on the genes it shares with ``genes``.

    ``reference``: an AnnData, an .h5ad file or the name of a registered single-cell dataset (e.g.
    ``"vangalen2019_bm_seqwell"``; an existing file of that name wins), see :func:`load_reference`.
    ``model``: a method name (:data:`METHODS`, built by :func:`make_model` with ``params``, ``seed`` and
    ``device``) or an estimator to fit (a :class:`CellTypeClassifier` or anything with
    ``fit(X, y, gene_names=...)``, ``predict_proba`` and ``classes_``; it is (re)fitted).
    ``genes`` (e.g. ``query.var_names``): restrict the reference to the genes among them before gene
    selection (see :func:`shared_genes`; ``None``: all the reference's genes).  Counts come from
    ``layers[layer]`` (else ``X``), labels from ``obs[label_key]``.  Returns the fitted model; its
    ``training_`` (:class:`CellTypeClassifier`) or ``cellbook_training_`` (others) records the
    training cells, label key, date and gene counts, and the file or dataset name of a reference given
    by one (saved with the model).
    """
    est = _estimator(model, params, seed, device)
    reference, name = load_reference(reference)
    _check_reference(reference, label_key)
    if isinstance(est, CellTypeClassifier):
        fitted = est.fit_adata(reference, label_key=label_key, layer=layer, genes=genes,
                               min_shared_genes=min_shared_genes)
        return _note_reference(fitted, name)
    if not (hasattr(est, "fit") and hasattr(est, "predict_proba")):
        raise ValueError(f"model must be a method name ({', '.join(METHODS)}) or an estimator with fit and "
                         f"predict_proba (e.g. cellbook.baselines.HVGLogisticRegression()); got {type(est).__name__}")
    if "gene_names" not in inspect.signature(est.fit).parameters:
        raise ValueError(f"{type(est).__name__}.fit takes no gene_names: annotate matches genes by name, so the "
                         f"model must learn them (fit(X, y, gene_names=...), as the cellbook baselines do)")
    uses_layer = bool(layer) and layer in reference.layers
    X, y, names, shared = _reference_data(reference, label_key, layer, genes, min_shared_genes)
    X = _counts_matrix(X, "reference counts" + (f" (layers[{layer!r}])" if uses_layer else " (X)"))
    est.fit(X, y, gene_names=names)
    if hasattr(est, "cellbook_model_file_"):
        del est.cellbook_model_file_     # refitted: no longer the model of the file it was read from
    est.cellbook_training_ = {"n_cells": int(X.shape[0]), "n_genes_in": int(X.shape[1]), "label_key": label_key,
                              "layer": layer if uses_layer else "X",
                              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **shared}
    return _note_reference(est, name)


def _note_reference(model, name: str | None):
    """``model`` with the reference's file or dataset ``name`` added to its training record (when known)."""
    info = getattr(model, "training_" if isinstance(model, CellTypeClassifier) else "cellbook_training_", None)
    if name and isinstance(info, dict):
        info["reference"] = str(name)
    return model
