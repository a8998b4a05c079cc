"""The Trainer's settings: declared once, checked before any work starts."""
from __future__ import annotations

import os

import numpy as np

from ..config import resolve_device
from ..validation import SEED, Interval, Options, check_params

# What each setting of :class:`~cellbook.train.Trainer` takes.
TRAINER_CONSTRAINTS = {
    "task": Options("classification", "regression", "reconstruction"),
    "loss": [None, callable],
    "max_epochs": Interval(int, 1, None),
    "batch_size": Interval(int, 1, None),
    "lr": Interval(float, 0, None, closed="neither"),
    "optimizer": Options("adam", "adamw", "sgd"),
    "weight_decay": Interval(float, 0, None),
    "lr_step": [None, Interval(int, 1, None)],
    "lr_gamma": Interval(float, 0, 1, closed="right"),
    "val_fraction": Interval(float, 0, 1, closed="left"),
    "patience": [None, Interval(int, 1, None)],
    "augment": [None, callable],
    "device": str,
    "amp": bool,
    "seed": SEED,
    "progress": [None, bool],
    "checkpoint": [None, str, os.PathLike],
    "class_weight": [None, np.ndarray, dict, list, tuple],
    "predict_batch_size": Interval(int, 1, None),
    "monitor": Options("val", "train"),
    "label_smoothing": Interval(float, 0, 1, closed="left"),
    "resident": Options("auto", True, False),
    "graphs": Options(None, True, False),
}


def check_settings(settings: dict) -> str:
    """Check the Trainer's settings against :data:`TRAINER_CONSTRAINTS`; returns the resolved device."""
    check_params("Trainer", settings, TRAINER_CONSTRAINTS)
    return resolve_device(settings["device"])
