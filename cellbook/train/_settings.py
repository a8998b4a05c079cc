"""The checks of a :class:`~cellbook.train.Trainer`'s settings."""
from __future__ import annotations

from ..config import resolve_device


def check_settings(task, optimizer, monitor, val_fraction, max_epochs, batch_size, device, label_smoothing,
                   resident, graphs) -> str:
    """Check the Trainer's settings (an unknown value is a ``ValueError``); returns the resolved device."""
    if task not in ("classification", "regression", "reconstruction"):
        raise ValueError(f"unknown task {task!r}; valid: classification, regression, reconstruction")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid: adam, adamw, sgd")
    if monitor not in ("val", "train"):
        raise ValueError(f"unknown monitor {monitor!r}; valid: val, train")
    if not 0 <= val_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1)")
    if max_epochs < 1 or batch_size < 1:
        raise ValueError("max_epochs and batch_size must be positive")
    device = resolve_device(device)
    if not 0 <= float(label_smoothing) < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if resident not in ("auto", True, False):
        raise ValueError(f"resident must be 'auto', True or False, got {resident!r}")
    if graphs not in (None, True, False):
        raise ValueError(f"graphs must be None, True or False, got {graphs!r}")
    return device
