"""Train/test splits for cell-level data (Parts I-III).

- :func:`check_labels` -- the label checks every split and fit needs (>= 2 classes, enough cells
  per class for the folds asked for).
- :func:`stratified_split` -- the paper's random split (2:1 by default), stratified and seeded.
- :func:`repeated_splits` -- the same over several seeds (report mean +- SD, not one draw).
- :func:`stratified_kfold` -- stratified K-fold (an error when a class has fewer cells than folds).
- :func:`group_split` -- train on some groups (donors, sites, batches), test on the others.
- :func:`leave_groups_out` -- K folds that each hold out whole groups (GroupKFold).

Every function returns integer index arrays ``(train_idx, test_idx)`` (sorted) into the input.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd


def check_labels(y, n_folds: int | None = None, min_per_class: int = 1, what: str = "labels") -> pd.Series:
    """Validate labels; return the class counts (largest first).

    Raises ``ValueError`` when ``y`` is empty or has missing values, has fewer than 2 classes,
    or (with ``n_folds``) a class has fewer cells than folds.
    """
    y = pd.Series(np.asarray(y, dtype=object))
    if y.empty:
        raise ValueError(f"{what}: no cells")
    if y.isna().any():
        raise ValueError(f"{what}: {int(y.isna().sum())} cells have a missing label; drop or label them first")
    counts = y.astype(str).value_counts()
    if len(counts) < 2:
        raise ValueError(f"{what}: fewer than 2 classes ({', '.join(counts.index) or 'none'}); "
                         f"a classifier needs at least 2 cell types")
    need = max(int(n_folds or 0), int(min_per_class))
    small = counts[counts < need]
    if len(small):
        detail = ", ".join(f"{k} ({v})" for k, v in small.items())
        raise ValueError(f"{what}: class with fewer cells than folds/required ({need}): {detail}; "
                         f"drop these classes (e.g. min_cells_per_type) or use fewer folds")
    return counts


def stratified_split(y, test_size: float = 1 / 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random stratified split; ``test_size=1/3`` is the paper's 6688 / 3344 (2:1) split."""
    from sklearn.model_selection import train_test_split

    if not 0 < float(test_size) < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    y = np.asarray(y).astype(str)
    check_labels(y, min_per_class=2)
    tr, te = train_test_split(np.arange(len(y)), test_size=float(test_size), random_state=int(seed), stratify=y)
    return np.sort(tr), np.sort(te)


def repeated_splits(y, seeds: Iterable[int] = (0, 1, 2), test_size: float = 1 / 3) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``[(seed, train_idx, test_idx), ...]``, one stratified split per seed."""
    return [(int(s), *stratified_split(y, test_size, s)) for s in seeds]


def stratified_kfold(y, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold; ``ValueError`` naming the classes that have fewer cells than folds."""
    from sklearn.model_selection import StratifiedKFold

    if int(n_folds) < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    y = np.asarray(y).astype(str)
    check_labels(y, n_folds=n_folds)
    skf = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    return [(np.sort(a), np.sort(b)) for a, b in skf.split(np.zeros(len(y)), y)]


def group_split(groups, test_groups: Sequence, y=None) -> tuple[np.ndarray, np.ndarray]:
    """Train on every group not in ``test_groups``; test on ``test_groups`` (e.g. healthy donors).

    With ``y``, the test set keeps only classes present in training (a model cannot predict a
    type it never saw); the classes dropped are counted in ``group_split.dropped`` (a dict).
    """
    groups = np.asarray(groups).astype(str)
    test_groups = [str(g) for g in test_groups]
    unknown = sorted(set(test_groups) - set(groups))
    if unknown:
        raise ValueError(f"test groups not found: {', '.join(unknown)}; groups present: "
                         f"{', '.join(sorted(set(groups)))}")
    test = np.isin(groups, test_groups)
    if test.all() or not test.any():
        raise ValueError("the group split leaves no training or no test cells")
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    group_split.dropped = {}
    if y is not None:
        y = np.asarray(y).astype(str)
        check_labels(y[tr], what="training labels")
        seen = set(y[tr])
        missing = pd.Series(y[te][~np.isin(y[te], list(seen))]).value_counts()
        group_split.dropped = missing.to_dict()
        te = te[np.isin(y[te], list(seen))]
    return tr, te


def leave_groups_out(groups, n_folds: int = 3, y=None) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """GroupKFold over ``groups``: ``[(train_idx, test_idx, held_out_groups), ...]``.

    Deterministic (groups are balanced by size, as scikit-learn's GroupKFold does).  With ``y``
    the test cells of classes absent from that fold's training cells are dropped.
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups).astype(str)
    n_groups = len(set(groups))
    if int(n_folds) < 2 or int(n_folds) > n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of groups ({n_groups}), got {n_folds}")
    out = []
    for tr, te in GroupKFold(n_splits=int(n_folds)).split(np.zeros(len(groups)), groups=groups):
        if y is not None:
            yy = np.asarray(y).astype(str)
            te = te[np.isin(yy[te], list(set(yy[tr])))]
        out.append((np.sort(tr), np.sort(te), sorted(set(groups[te]))))
    return out
