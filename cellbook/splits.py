"""Train/test splits for cell-level data (Parts I-III).

- :func:`check_labels` -- the label checks every split and fit needs (>= 2 classes, enough cells
  per class for the folds asked for).
- :func:`stratified_split` -- the paper's random split (2:1 by default), stratified and seeded.
- :func:`repeated_splits` -- the same over several seeds (report mean +- SD, not one draw).
- :func:`stratified_kfold` -- stratified K-fold (an error when a class has fewer cells than folds).
- :func:`group_split` -- train on some groups (donors, sites, batches), test on the others.
- :func:`leave_groups_out` -- K folds that each hold out whole groups (GroupKFold).
- :func:`grouped_folds` -- stratified K folds of whole groups (e.g. image tiles of one frame).
- :func:`grouped_size_splits` -- learning-curve training sets of growing size, by whole groups.

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


# ------------------------------------------------ grouped splits for images (Part II)
def _stratified_groups(groups: np.ndarray, labels: np.ndarray):
    """Unique groups and the (majority) label of each."""
    df = pd.DataFrame({"g": groups, "y": labels})
    lab = df.groupby("g")["y"].agg(lambda s: s.value_counts().index[0])
    return lab.index.to_numpy(), lab.to_numpy()


def grouped_folds(labels, groups, n_splits: int = 4, seed: int = 0) -> list:
    """``StratifiedGroupKFold`` folds ``[(train_idx, test_idx), ...]``: a group is never on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} groups cannot make {n_splits} grouped folds; use n_splits <= {n_groups}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(labels)), labels, groups)]


def grouped_size_splits(labels, groups, sizes, n_repeats: int = 5, test_fraction: float = 0.25,
                        seed: int = 0) -> list[dict]:
    """Learning-curve splits by whole groups (source frames).

    For each repeat: a stratified random ``test_fraction`` of the groups is held out; from the
    rest, nested training sets are drawn by adding whole groups (classes in the pool's proportion)
    until each size in ``sizes`` (images) is reached (the last group is cut to hit the size
    exactly).  Returns ``[{"repeat", "size", "train", "test"}, ...]`` (index arrays).
    A size larger than the training pool is a ``ValueError``.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    ug, gl = _stratified_groups(groups, labels)
    classes = np.unique(gl)
    if len(classes) < 2:
        raise ValueError("grouped splits need groups of at least two classes")
    rng = np.random.default_rng(seed)
    out = []
    for r in range(n_repeats):
        test_g = []
        for c in classes:
            gc = ug[gl == c]
            test_g += list(rng.choice(gc, size=max(1, int(round(test_fraction * len(gc)))), replace=False))
        test = np.flatnonzero(np.isin(groups, test_g))
        pool_g = ug[~np.isin(ug, test_g)]
        pool_lab = gl[~np.isin(ug, test_g)]
        n_pool = int(np.isin(groups, pool_g).sum())
        if max(sizes) > n_pool:
            raise ValueError(f"training size {max(sizes)} exceeds the {n_pool} images left after holding out "
                             f"{len(test)} test images; use smaller sizes or a smaller test_fraction")
        # interleave the classes so every prefix of the order is roughly stratified
        per = {c: list(rng.permutation(pool_g[pool_lab == c])) for c in classes}
        share = {c: len(per[c]) / len(pool_g) for c in classes}
        order, taken = [], {c: 0 for c in classes}
        while any(per[c] for c in classes):
            c = min((c for c in classes if per[c]), key=lambda c: (taken[c] + 1) / share[c])
            order.append(per[c].pop(0))
            taken[c] += 1
        idx_order = np.concatenate([rng.permutation(np.flatnonzero(groups == g)) for g in order])
        for s in sizes:
            out.append({"repeat": r, "size": int(s), "train": np.sort(idx_order[:int(s)]), "test": test})
    return out
