"""save_model / load_model: a fitted classifier (deep or baseline) in one shareable file."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import sklearn

from ._classifier import CellTypeClassifier
from ._file_format import _PICKLE, _jsonable, read_model_file, write_model_file


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


def save_model(model, path, training: dict | None = None) -> Path:
    """Write a fitted classifier to one file (conventionally ``*.cbm``); returns the path.

    Works for :class:`CellTypeClassifier` (every architecture and ensemble) and for scikit-learn-style
    classifiers with gene names (the baselines in :mod:`cellbook.baselines`).  The file is a zip archive:
    ``cellbook_model.json`` (format version, the class, its parameters (``get_params()``), input and model
    genes, classes, transform, training metadata -- cells, label key, date -- and the cellbook, torch,
    scikit-learn, NumPy and Python versions) plus the weights: a torch state dict (``state_dict.pt``)
    for a CellTypeClassifier, the pickled estimator (``estimator.pkl``) otherwise.  ``training``
    adds to / overrides the training metadata.  Written atomically: a crash leaves any previous file.
    """
    if isinstance(model, CellTypeClassifier):
        return model.save(path, training=training)
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"save_model needs a fitted classifier with predict_proba and classes_ (a "
                         f"CellTypeClassifier or a cellbook baseline); got {type(model).__name__}, "
                         f"{'not fitted' if hasattr(model, 'predict_proba') else 'no predict_proba'}")
    try:
        payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise ValueError(f"{type(model).__name__} cannot be pickled ({err}); remove unpicklable attributes "
                         f"(e.g. lambdas) before saving") from None
    raw = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    params = {k: j for k, (j, good) in ((k, _jsonable(v)) for k, v in raw.items()) if good}
    genes, model_genes = _model_genes(model)
    meta = {"kind": "sklearn", "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "name": _model_name(model), "params": params, "genes": genes, "model_genes": model_genes,
            "classes": [str(c) for c in model.classes_],
            "transform": {"name": "inside the pickled estimator", "counts": bool(getattr(model, "counts", True))},
            "training": _jsonable({**_training_info(model), **(training or {})})[0]}
    return write_model_file(path, meta, {}, _PICKLE, payload)


def _load_pickled(path: Path, meta: dict, payload: bytes):
    """The unpickled estimator of a model file, with ``cellbook_model_file_`` (the file's metadata)."""
    saved_versions = meta.get("versions") or {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # scikit-learn's version warning: ours below names the file
            model = pickle.loads(payload)
    except Exception as err:  # noqa: BLE001 - unpickling raises anything (missing module, renamed class...)
        raise ValueError(f"{path}: the saved {meta.get('class')} could not be unpickled ({type(err).__name__}: "
                         f"{err}); it was saved with cellbook {saved_versions.get('cellbook', '?')}, "
                         f"scikit-learn {saved_versions.get('sklearn', '?')}: install those, or train and save "
                         f"the model again") from None
    if saved_versions.get("sklearn") not in (None, sklearn.__version__):
        warnings.warn(f"{path} was saved with scikit-learn {saved_versions['sklearn']}; this is "
                      f"{sklearn.__version__}: predictions may differ", UserWarning, stacklevel=3)
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise ValueError(f"{path}: the unpickled {type(model).__name__} is not a fitted classifier")
    model.cellbook_model_file_ = {**meta, "path": str(path)}
    return model


def load_model(path, device: str = "cpu"):
    """Read a model written by :func:`save_model` (or :meth:`CellTypeClassifier.save`).

    A :class:`CellTypeClassifier` is rebuilt from its saved parameters, genes and classes, and its state
    dict is loaded onto ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``); its predictions equal the saved
    model's.  Other classifiers are unpickled.  ``model_file_`` (on a CellTypeClassifier;
    ``cellbook_model_file_`` on others) holds the file's metadata.  A missing file is a
    ``FileNotFoundError``; a file that is not a cellbook model, truncated, corrupt or of a newer format
    version is a ``ValueError`` naming it.

    **Security**: like CellTypist's models (pickles), a model file must come from a source you trust:
    loading a baseline unpickles it, which can run arbitrary code (a CellTypeClassifier's weights are read
    with ``torch.load(weights_only=True)``).
    """
    path = Path(path)
    meta, payload = read_model_file(path)
    if meta["kind"] == "sklearn":
        return _load_pickled(path, meta, payload)
    return CellTypeClassifier._from_model_file(path, meta, payload, device)
