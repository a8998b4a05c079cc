"""cellbook: deep learning for cell identity, three papers re-implemented and checked.

The handful of names notebooks use::

    import cellbook as cb
    ch = cb.open_chapter(globals(), data="bmmc")   # a notebook's first call: parameters, seed, recorder, data
    trainer = cb.Trainer(model, max_epochs=10).fit(X, y)
    cb.metrics.classification(y_true, y_pred)
    clf = cb.CellTypeClassifier(architecture="cnn").fit(X, y, gene_names=genes)
    cb.save_model(clf, "bmmc.cbm"); cb.annotate(query, model="bmmc.cbm")

``import cellbook`` is light: each name below is imported from its module on first use (PEP 562),
so ``cellbook --help`` and a Dask worker do not pay for torch, scanpy or scikit-learn up front.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Subpackages and modules reachable as ``cellbook.<name>``.
_SUBMODULES = frozenset({
    "annotation", "baselines", "book", "chapter", "claims", "cli", "comparison", "config", "datasets",
    "enrichment", "fsutil", "layout", "metrics", "models", "nbtools", "parallel", "plots", "preprocess",
    "report", "results", "runner", "scaling", "splits", "sweeps", "train", "validation",
})

# Functions and classes reachable as ``cellbook.<name>``: name -> defining module.
_NAMES = {
    "open_chapter": "chapter", "Chapter": "chapter",
    "profile_parameters": "config", "resolve_device": "config", "seed_everything": "config",
    "Recorder": "results",
    "Trainer": "train", "count_parameters": "train", "train_autoencoder": "train",
    "train_classifier_autoencoder": "train",
    "CellTypeClassifier": "annotation", "annotate": "annotation", "annotate_file": "annotation",
    "save_model": "annotation",
    "load_model": "annotation",
    "map_tasks": "parallel",
}

__all__ = sorted(_SUBMODULES | set(_NAMES))


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'cellbook' has no attribute {name!r}")
    globals()[name] = value   # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
