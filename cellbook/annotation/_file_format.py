"""The model file format: a zip archive of ``cellbook_model.json`` (metadata) and the weights.

The weights are a torch state dict (``state_dict.pt``, format version 1) or a skops file of the fitted
estimator (``estimator.skops``, format version 2).  Files of older versions of cellbook may hold a pickled
estimator (``estimator.pkl``) instead, which is read only when the caller trusts the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import zipfile
import zlib
from pathlib import Path

import numpy as np
import sklearn
import torch

from .. import __version__
from ..fsutil import atomic_path

MODEL_FORMAT = "cellbook-model"
MODEL_FORMAT_VERSION = 2
_META, _STATE, _PICKLE, _SKOPS = "cellbook_model.json", "state_dict.pt", "estimator.pkl", "estimator.skops"
_SAVE_FIX = "save the model again (model.save(path), cellbook.save_model, or cellbook annotate --model-out)"


def _jsonable(value):
    """``(JSON-safe copy, True)`` of plain data (numbers, text, lists, dicts, NumPy scalars / arrays),
    else ``(None, False)``."""
    if value is None or isinstance(value, (bool, str)):
        return value, True
    if isinstance(value, (int, np.integer)):
        return int(value), True
    if isinstance(value, (float, np.floating)):
        return float(value), True
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        out = [_jsonable(v) for v in value]
        return [v for v, _ in out], all(ok for _, ok in out)
    if isinstance(value, dict):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, (v, _) in out.items()}, all(ok for _, ok in out.values())
    return None, False


_LABEL_KINDS = "iubf"      # the label types a model file records besides text: integers, booleans, numbers


def class_labels_meta(classes) -> dict:
    """``{"class_labels": {"dtype": ..., "values": [...]}}`` for classes that are not text (integers, booleans,
    numbers), so that a loaded model predicts labels of the same type; ``{}`` for text, whose files stay as they
    were (``"classes"`` holds every label as text, which older cellbooks read)."""
    classes = np.asarray(classes)
    if classes.dtype.kind not in _LABEL_KINDS:
        return {}
    return {"class_labels": {"dtype": classes.dtype.str, "values": classes.tolist()}}


def classes_from_meta(meta: dict) -> np.ndarray:
    """The classes of a model file's metadata in their type: ``class_labels`` when the file records it (a
    ``ValueError`` when it does not match ``classes``), else the text of ``classes`` (every older file)."""
    text = np.asarray(meta["classes"]).astype(str)
    typed = meta.get("class_labels")
    if typed is None:
        return text
    try:
        dtype = np.dtype(typed["dtype"])
        if dtype.kind not in _LABEL_KINDS:
            raise ValueError(f"label type {typed['dtype']!r}")
        classes = np.asarray(typed["values"], dtype=dtype)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the class labels are unreadable ({type(err).__name__}: {err})") from None
    if classes.shape != text.shape or list(map(str, classes)) != list(text):
        raise ValueError("the class labels do not match the classes")
    return classes


def _versions() -> dict:
    """The versions of cellbook (the loaded package), torch, scikit-learn, NumPy and Python."""
    return {"cellbook": __version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_model_file(path, meta: dict, fitted: dict, payload_name: str, payload: bytes) -> Path:
    """Write ``meta`` (completed with the format, versions, date and ``fitted``) and the weights; atomic.

    A torch state dict is written as format version 1 (which older cellbooks read too); a skops estimator as
    version 2, so that an older cellbook says that the file needs a newer one."""
    version = 2 if payload_name == _SKOPS else 1
    meta = {"format": MODEL_FORMAT, "format_version": version, **meta, "versions": _versions(),
            "saved_utc": _utc_now(), "fitted": fitted}
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_META, json.dumps(meta, indent=1))
            z.writestr(payload_name, payload)
    return path


def _check_meta(path: Path, meta, not_model: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{not_model}: its {_META} does not describe a cellbook model")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: unknown cellbook model format version {version!r}; {_SAVE_FIX}")
    if version > MODEL_FORMAT_VERSION:
        saved = (meta.get("versions") or {}).get("cellbook", "?")
        raise ValueError(f"{path} was written by a newer cellbook ({saved}, model format version {version}); "
                         f"this cellbook reads format version {MODEL_FORMAT_VERSION}: upgrade cellbook, or "
                         f"save the model again with this version")


def _read_zip(path: Path, not_model: str) -> tuple[dict, str, bytes]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if _META not in names:
            raise ValueError(f"{not_model}: it is a zip archive without {_META}; give a file written by "
                             f"model.save(path) or cellbook annotate --model-out")
        meta = json.loads(z.read(_META).decode("utf-8"))
        _check_meta(path, meta, not_model)
        payload_name = {"torch": _STATE, "sklearn": _PICKLE if _SKOPS not in names else _SKOPS}.get(meta.get("kind"))
        if payload_name is None or payload_name not in names:
            wanted = f"{_SKOPS} or {_PICKLE}" if meta.get("kind") == "sklearn" else payload_name
            raise ValueError(f"{path}: the model file has no weights ({meta.get('kind')!r} model without "
                             f"{wanted or 'a known payload'}); it is incomplete: {_SAVE_FIX}")
        return meta, payload_name, z.read(payload_name)


def read_model_file(path: Path) -> tuple[dict, bytes]:
    """``(metadata, weights)`` of a model file; clear errors for a missing, foreign, corrupt or newer file."""
    meta, _, payload = read_model_payload(path)
    return meta, payload


def read_model_payload(path: Path) -> tuple[dict, str, bytes]:
    """``(metadata, name of the weights in the archive, weights)`` of a model file (see :func:`read_model_file`)."""
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"model file {path} is a folder; give the .cbm file written by model.save(path)")
    not_model = (f"{path} is not a cellbook model file ({path.stat().st_size} bytes)")
    try:
        return _read_zip(path, not_model)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{not_model}: not a readable zip archive ({err}); it is truncated, corrupt or another kind "
                         f"of file: {_SAVE_FIX}") from None
    except (zlib.error, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the model file is corrupt ({type(err).__name__}: {err}); {_SAVE_FIX}") from None
