"""Checks and row access for the data a :class:`~cellbook.train.Trainer` is given.

Inputs are a NumPy array, a torch tensor or a SciPy sparse matrix (CSR after :func:`check_inputs`); rows
are read one minibatch at a time as dense, C-contiguous float32 arrays.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from ..splits import check_missing

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tqdm.auto warns when ipywidgets is missing; text bars are fine
    from tqdm.auto import tqdm


def n_rows(X) -> int:
    return X.shape[0]


def rows(X, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of X as a dense, C-contiguous float32 array (sparse rows densified per batch).

    C order always: a view with other strides (e.g. channels-last images) would take other kernels and
    round differently, so the same data would give different numbers in another process (pickling makes
    arrays C-contiguous)."""
    if sp.issparse(X):
        return np.ascontiguousarray(X[idx].toarray(), dtype=np.float32)
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx)].float().contiguous().numpy()
    return np.ascontiguousarray(X[idx], dtype=np.float32)


def dense_bytes(X) -> int:
    return int(np.prod(X.shape, dtype=np.int64)) * 4


def check_inputs(X, y, what: str = "X"):
    """Validate ``X`` (and the length of ``y``); return ``X`` in a row-indexable form.

    Any SciPy sparse format becomes CSR (COO / DIA cannot be sliced by rows; CSC would be slow),
    once, here; a DataFrame becomes its values (``X[idx]`` on a DataFrame would pick columns).
    """
    if X is None or not hasattr(X, "shape") or len(X.shape) < 2:
        shape = "" if not hasattr(X, "shape") else f" of shape {X.shape}"
        raise ValueError(f"{what} must be a 2-D (or image-shaped) array, tensor or sparse matrix with samples in "
                         f"rows; got {type(X).__name__}{shape}")
    if sp.issparse(X) and X.format != "csr":
        X = X.tocsr()
    elif isinstance(X, (pd.DataFrame, pd.Series)):
        X = X.to_numpy()
    if n_rows(X) == 0:
        raise ValueError(f"{what} has no rows")
    data = X.data if sp.issparse(X) else (X.numpy() if isinstance(X, torch.Tensor) else np.asarray(X))
    if not (np.issubdtype(np.asarray(data).dtype, np.number) or np.asarray(data).dtype == bool):
        raise ValueError(f"{what} must hold numbers; got dtype {np.asarray(data).dtype}")
    if np.issubdtype(np.asarray(data).dtype, np.number) and not np.all(np.isfinite(data)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if y is not None and len(y) != n_rows(X):
        raise ValueError(f"{what} has {n_rows(X)} rows but y has {len(y)} entries")
    return X


def class_codes(y):
    """Classification targets: ``(classes, int64 codes)``; at least two classes, no missing labels."""
    y = check_missing(y, "y", unit="rows")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"classification needs at least 2 classes; y has {len(classes)}")
    return classes, codes.astype(np.int64)


def regression_targets(y) -> np.ndarray:
    """Regression targets as float32; NaN or infinite targets are an error."""
    Y = np.asarray(y, dtype=np.float32)
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"y contains {int((~np.isfinite(Y)).sum())} NaN or infinite targets; drop or fill "
                         f"those rows")
    return Y


def val_codes(y_val, classes) -> np.ndarray:
    """Validation labels -> class codes; a label never seen in training is an error (not a wrong code)."""
    yv = check_missing(y_val, "y_val", unit="rows")
    unseen = ~np.isin(yv, classes)
    if unseen.any():
        bad = pd.Series(yv[unseen]).astype(str).value_counts()
        raise ValueError(f"y_val has {int(unseen.sum())} label(s) never seen in training: "
                         + ", ".join(f"{k} ({v})" for k, v in bad.iloc[:8].items())
                         + f"; training classes: {', '.join(map(str, classes))}. Drop those validation "
                           f"rows, or train on data that has those classes")
    return np.searchsorted(classes, yv)


def class_weights(cw, classes) -> np.ndarray:
    """``class_weight`` (an array in ``classes`` order, or a dict ``{class: weight}``) checked against
    ``classes``: a float64 array in ``classes`` order."""
    n = len(classes)
    if isinstance(cw, dict):
        missing = [c for c in classes if c not in cw]
        if missing:
            raise ValueError(f"class_weight has no weight for class(es) {', '.join(map(str, missing))}; give "
                             f"one per class of y: {', '.join(map(str, classes))}")
        cw = [cw[c] for c in classes]
    w = np.asarray(cw, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"class_weight has {w.size} value(s) (shape {w.shape}) but y has {n} classes "
                         f"({', '.join(map(str, classes))}); give one weight per class in that (sorted) "
                         f"order, or a dict {{class: weight}}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"class_weight must be finite, >= 0 and not all zero; got {w.tolist()}")
    return w


def declared_width(model: nn.Module) -> int | None:
    """Input width a model declares (``n_genes`` / ``n_inputs`` / a leading ``nn.Linear``), else None."""
    for m in (model, *getattr(model, "members", [])[:1]):
        for attr in ("n_genes", "n_inputs", "n_features"):
            if isinstance(getattr(m, attr, None), int):
                return int(getattr(m, attr))
    first = next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))), None)
    return int(first.in_features) if isinstance(first, nn.Linear) else None


def check_model(model: nn.Module, X, n_classes: int | None, classes=None, custom_loss: bool = False,
                target_shape: tuple | None = None):
    """Run the model on the first row of X (eval mode, no grad) so that a shape mismatch is a clear error.

    Checks the input width against what the model declares / its first layer, (classification with
    the default loss, ``n_classes`` given) that the model outputs one score per class of ``classes``,
    and (regression or reconstruction with the default loss, ``target_shape`` given) that a row of its
    output has the shape of a row of the targets.
    """
    got = tuple(X.shape[1:])
    expected = declared_width(model)
    name = type(model).__name__
    if expected is not None and len(got) == 1 and got[0] != expected:
        raise ValueError(f"X has {got[0]} columns (features per row) but the model ({name}) expects {expected}; "
                         f"give the same features (genes, in the same order) the model was built for, or build "
                         f"it for {got[0]} inputs")
    params = next(model.parameters(), None)
    dev = params.device if params is not None else torch.device("cpu")
    xb = torch.from_numpy(rows(X, np.arange(1))).to(dev)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xb)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"the model ({name}) cannot take rows of shape {got}"
                         f"{f' (it expects {expected} features)' if expected else ''}: {type(err).__name__}: "
                         f"{msg}; give X the shape the model was built for") from None
    finally:
        model.train(was_training)
    if target_shape is not None and not custom_loss and isinstance(out, torch.Tensor):
        check_output_shape(name, tuple(out.shape[1:]), tuple(target_shape))
    if n_classes is not None and not custom_loss and isinstance(out, torch.Tensor):
        n_out = out.shape[1] if out.ndim == 2 else None
        if n_out != n_classes:
            raise ValueError(f"y has {n_classes} classes ({', '.join(map(str, classes[:8]))}"
                             f"{', ...' if n_classes > 8 else ''}) but the model ({name}) outputs "
                             f"{n_out if n_out is not None else tuple(out.shape[1:])} scores per row; build the "
                             f"model with one output per class (n_classes={n_classes}), or drop the extra classes")


def check_split_sizes(n: int, n_val: int, val_fraction: float) -> None:
    """The validation split must leave at least one training row."""
    if n - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction:g} leaves no training rows: X has {n} row(s) and {n_val} "
                         f"would go to validation; give more rows, a smaller val_fraction, or val_fraction=0 "
                         f"(no early stopping)")


def check_output_shape(name: str, out: tuple, target: tuple) -> None:
    """A model's output row must have its target row's shape (else the MSE would broadcast silently)."""
    if out == target:
        return
    hint = ("give y one column per output (e.g. y.reshape(-1, 1))" if target == () and out == (1,)
            else "build the model with as many outputs as the targets have (an autoencoder's decoder ends at "
                 "its input width)")
    raise ValueError(f"the model ({name}) outputs rows of shape {out} but the targets' rows have shape {target}; "
                     f"{hint}")


def progress_bar(iterable, enabled: bool, desc: str):
    """A tqdm bar when enabled (notebook widget or terminal), else the plain iterable."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, unit="epoch", leave=False)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
