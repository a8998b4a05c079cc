"""save_model / load_model: a fitted classifier (deep or baseline) in one shareable file.

A baseline is stored with skops (``skops.io``), not pickled: loading it constructs only the types skops
trusts itself (scikit-learn's, NumPy's and SciPy's plain types) and those of :data:`TRUSTED_TYPES`.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import sklearn

from ..validation import validate_params
from ._classifier import CellTypeClassifier
from ._file_format import _PICKLE, _SAVE_FIX, _SKOPS, _jsonable, read_model_payload, write_model_file

#: The types a model file's estimator may hold besides those skops trusts itself: cellbook's baselines
#: and the third-party types inside them (CellTypist's model; scikit-learn's neighbour-search tree and its
#: distance metric, of PCAKNN).  :func:`load_model` refuses a file that asks for any other type.
TRUSTED_TYPES = frozenset({
    "cellbook.baselines._expression.HVGLogisticRegression",
    "cellbook.baselines._expression.PCAKNN",
    "cellbook.baselines._tuned.TunedLogisticRegression",
    "cellbook.baselines._tuned.HVGGradientBoosting",
    "cellbook.baselines._linear_svm.LinearSVMClassifier",
    "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",   # the SVM's calibration
    "cellbook.baselines._celltypist_model.CellTypistClassifier",
    "cellbook.baselines._celltypist_model._OvRLogisticRegression",
    "celltypist.models.Model",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
})


def _model_genes(model) -> tuple[list[str] | None, list[str] | None]:
    """``(input genes, genes the model uses)`` of a fitted classifier, by name (``None`` when unnamed)."""
    if isinstance(model, CellTypeClassifier):
        fn = model.feature_names_in_
        return (None if fn is None else list(map(str, fn)),
                None if model.genes_ is None else list(map(str, model.genes_)))
    fn = getattr(model, "feature_names_in_", None)
    if fn is None:
        return None, None
    fn = list(map(str, fn))
    sel = getattr(model, "genes_", None)
    if sel is None:
        return fn, fn
    sel = np.asarray(sel)
    if sel.dtype.kind in "iu":
        return fn, [fn[i] for i in sel]
    if sel.dtype == bool and len(sel) == len(fn):
        return fn, [g for g, keep in zip(fn, sel) if keep]
    return fn, list(map(str, sel))


def _model_name(model) -> str:
    return model.name if isinstance(model, CellTypeClassifier) else type(model).__name__


def _training_info(model) -> dict:
    info = getattr(model, "training_", None) if isinstance(model, CellTypeClassifier) else None
    info = info if info is not None else getattr(model, "cellbook_training_", None)
    return dict(info or {})


def _skops():
    """``skops.io``, imported on first use (its import loads every scikit-learn estimator: about a second)."""
    import skops.io

    return skops.io


def _untrusted(payload: bytes) -> list[str]:
    """The types of a skops payload that neither skops nor :data:`TRUSTED_TYPES` trusts (nothing is built)."""
    return sorted(set(_skops().get_untrusted_types(data=payload)) - TRUSTED_TYPES)


def _skops_payload(model) -> bytes:
    """``model`` as skops bytes; a ``ValueError`` when it cannot be stored or would not load again."""
    name = type(model).__name__
    try:
        payload = _skops().dumps(model)
    except Exception as err:  # noqa: BLE001 - skops raises TypeError / ValueError / AttributeError...
        raise ValueError(f"{name} cannot be stored in a model file ({type(err).__name__}: {err}); remove "
                         f"attributes that are not plain data (e.g. lambdas) before saving") from None
    bad = _untrusted(payload)
    if bad:
        raise ValueError(f"{name} cannot be stored in a model file: it holds {', '.join(bad)}, which load_model "
                         f"does not construct (a model file holds data, not code); remove those attributes (e.g. "
                         f"lambdas) before saving")
    return payload


@validate_params({"path": [str, os.PathLike], "training": [None, dict]})
def save_model(model, path, training: dict | None = None) -> Path:
    """Write a fitted classifier to one file (conventionally ``*.cbm``); returns the path.

    Works for :class:`CellTypeClassifier` (every architecture and ensemble) and for the scikit-learn-style
    classifiers of :mod:`cellbook.baselines` (with gene names).  The file is a zip archive:
    ``cellbook_model.json`` (format version, the class, its parameters (``get_params()``), input and model
    genes, classes, transform, training metadata -- cells, label key, date -- and the cellbook, torch,
    scikit-learn, NumPy and Python versions) plus the weights: a torch state dict (``state_dict.pt``)
    for a CellTypeClassifier, the estimator stored with skops (``estimator.skops``) otherwise -- data only,
    no pickle.  A model holding other types than :func:`load_model` trusts (e.g. a lambda) is a
    ``ValueError``.  ``training`` adds to / overrides the training metadata.  Written atomically: a crash
    leaves any previous file.
    """
    if isinstance(model, CellTypeClassifier):
        return model.save(path, training=training)
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"save_model needs a fitted classifier with predict_proba and classes_ (a "
                         f"CellTypeClassifier or a cellbook baseline); got {type(model).__name__}, "
                         f"{'not fitted' if hasattr(model, 'predict_proba') else 'no predict_proba'}")
    payload = _skops_payload(model)
    raw = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    params = {k: j for k, (j, good) in ((k, _jsonable(v)) for k, v in raw.items()) if good}
    genes, model_genes = _model_genes(model)
    meta = {"kind": "sklearn", "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "name": _model_name(model), "params": params, "genes": genes, "model_genes": model_genes,
            "classes": [str(c) for c in model.classes_],
            "transform": {"name": "inside the stored estimator", "counts": bool(getattr(model, "counts", True))},
            "training": _jsonable({**_training_info(model), **(training or {})})[0]}
    return write_model_file(path, meta, {}, _SKOPS, payload)


def _refuse_unsafe(path: Path, payload_name: str, payload: bytes, trusted: bool) -> None:
    """A ``ValueError`` (nothing loaded) unless the weights are a skops payload of trusted types only, or a
    legacy pickle that the caller trusts."""
    if payload_name == _PICKLE:
        if not trusted:
            raise ValueError(f"{path} holds a pickled estimator ({_PICKLE}, written by an older cellbook): loading "
                             f"a pickle can run any code, so it was not loaded. Pass trusted=True (cellbook "
                             f"annotate --trusted) only for a file from a source you trust, then save the model "
                             f"again to get a file without pickle")
        return
    try:
        bad = _untrusted(payload)
    except Exception as err:  # noqa: BLE001 - a torn or foreign payload
        raise ValueError(f"{path}: the stored estimator could not be read ({type(err).__name__}: {err}); "
                         f"the file is corrupt: {_SAVE_FIX}") from None
    if bad:
        raise ValueError(f"{path}: the model file asks for types that cellbook does not trust: {', '.join(bad)}; "
                         f"it was not written by cellbook's save_model, or it was altered. Nothing was loaded")


def _load_estimator(path: Path, meta: dict, payload_name: str, payload: bytes, trusted: bool):
    """The stored estimator of a model file, with ``cellbook_model_file_`` (the file's metadata)."""
    _refuse_unsafe(path, payload_name, payload, trusted)
    saved_versions = meta.get("versions") or {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # scikit-learn's version warning: ours below names the file
            model = (pickle.loads(payload) if payload_name == _PICKLE
                     else _skops().loads(payload, trusted=sorted(TRUSTED_TYPES)))
    except Exception as err:  # noqa: BLE001 - loading raises anything (missing module, renamed class...)
        raise ValueError(f"{path}: the saved {meta.get('class')} could not be loaded ({type(err).__name__}: "
                         f"{err}); it was saved with cellbook {saved_versions.get('cellbook', '?')}, "
                         f"scikit-learn {saved_versions.get('sklearn', '?')}: install those, or train and save "
                         f"the model again") from None
    if payload_name == _PICKLE:
        warnings.warn(f"{path}: the pickled estimator was loaded because trusted=True; a pickle can run any "
                      f"code. Save the model again to get a file without pickle", UserWarning, stacklevel=4)
    if saved_versions.get("sklearn") not in (None, sklearn.__version__):
        warnings.warn(f"{path} was saved with scikit-learn {saved_versions['sklearn']}; this is "
                      f"{sklearn.__version__}: predictions may differ", UserWarning, stacklevel=4)
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"{path}: the stored {type(model).__name__} is not a fitted classifier")
    model.cellbook_model_file_ = {**meta, "path": str(path)}
    return model


@validate_params({"path": [str, os.PathLike], "device": str, "trusted": bool})
def load_model(path, device: str = "cpu", trusted: bool = False):
    """Read a model written by :func:`save_model` (or :meth:`CellTypeClassifier.save`).

    A :class:`CellTypeClassifier` is rebuilt from its saved parameters, genes and classes, and its state
    dict is loaded onto ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``); its predictions equal the saved
    model's.  Other classifiers are read back with skops; their predictions equal the saved model's too.
    ``model_file_`` (on a CellTypeClassifier; ``cellbook_model_file_`` on others) holds the file's metadata.
    A missing file is a ``FileNotFoundError``; a file that is not a cellbook model, truncated, corrupt or of a
    newer format version is a ``ValueError`` naming it.

    **Security**: loading a model file runs no code from it.  A CellTypeClassifier's weights are read with
    ``torch.load(weights_only=True)``; another estimator is read with ``skops.io``, which constructs only
    scikit-learn's, NumPy's and SciPy's plain types and those of :data:`TRUSTED_TYPES` (cellbook's baselines and
    what they hold): a file that asks for any other type is a ``ValueError`` naming the types, and nothing is
    built.  Files written by older versions of cellbook may hold a pickled estimator (``estimator.pkl``),
    which can run any code when loaded: they are refused unless ``trusted=True``, which you should pass only
    for a file from a source you trust (a ``UserWarning`` says it was unpickled; save the model again to get a
    file without pickle).
    """
    path = Path(path)
    meta, payload_name, payload = read_model_payload(path)
    if meta["kind"] == "sklearn":
        return _load_estimator(path, meta, payload_name, payload, trusted)
    return CellTypeClassifier._from_model_file(path, meta, payload, device)
