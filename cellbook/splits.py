"""Train/test splits for cell-level data (Parts I-III).

- :func:`as_labels` / :func:`check_missing` -- the one check for missing labels (NaN, None, empty),
  run on the labels *as given*, before anything turns them into strings (where NaN would
  become a class called ``"nan"``).  Every fit path and split calls it.
- :func:`check_labels` -- the label checks every split and fit needs (>= 2 classes, enough cells
  per class for the folds asked for).
- :func:`drop_rare` -- leave out the classes with fewer than ``min_cells_per_type`` cells (by name).
- :func:`stratified_split` -- the paper's random split (2:1 by default), stratified and seeded.
- :func:`repeated_splits` -- the same over several seeds (report mean +- SD, not one draw).
- :func:`stratified_kfold` -- stratified K-fold (an error when a class has fewer cells than folds).
- :func:`group_split` -- train on some groups (donors, sites, batches), test on the others.
- :func:`leave_groups_out` -- K folds that each hold out whole groups (GroupKFold).
- :func:`grouped_folds` -- stratified K folds of whole groups (e.g. image tiles of one frame).
- :func:`grouped_size_splits` -- learning-curve training sets of growing size, by whole groups.

Every function returns integer index arrays ``(train_idx, test_idx)`` (sorted) into the input.
``stratified_split`` / ``repeated_splits`` / ``stratified_kfold`` take ``min_cells_per_type``: the
cells of rarer classes are then in neither side (printed, and listed in ``<function>.dropped``).
The grouped splits warn when every sample is its own group (then they hold out nothing more than
an ungrouped split does: images of one frame or cells of one donor can sit on both sides).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .validation import SEED, Interval, validate_params

# scikit-learn's model_selection is imported where it is used: cellbook.datasets imports this module
# (check_missing), and `cellbook data` stays light.

"""A seed: what NumPy's generators and scikit-learn's ``random_state`` both take."""
MIN_CELLS = [None, Interval(int, 1, None)]
TEST_SIZE = Interval(float, 0, 1, closed="neither")
GROUP_LIST = [list, tuple, set, frozenset, np.ndarray, pd.Index, pd.Series]

MIN_CELLS_HINT = ("min_cells_per_type=... (cellbook.splits.stratified_split / repeated_splits / stratified_kfold, "
                  "or cellbook.datasets.bmmc / select_cells)")


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a label is missing: None, NaN, pd.NA / NaT, or an empty / blank string."""
    miss = np.asarray(pd.isna(values), dtype=bool).reshape(-1)
    if values.dtype.kind in "OUS":
        blank = np.fromiter(((isinstance(v, (str, bytes)) and not v.strip()) for v in values.reshape(-1)),
                            dtype=bool, count=values.size)
        miss |= blank
    return miss


@validate_params({"what": str, "unit": str, "fix": [None, str], "kind": str})
def check_missing(y, what: str = "labels", names=None, unit: str = "cells", fix: str | None = None,
                  kind: str = "label") -> np.ndarray:
    """Raise ``ValueError`` when any label in ``y`` is missing (NaN, None, pd.NA, empty string).

    Run it on the labels as given (before ``astype(str)``, which turns NaN into the class ``"nan"``).
    ``names`` (one per label: cell / sample / file names) are quoted in the message; ``fix`` replaces
    the default advice (drop those cells or fill in their label).  Returns ``np.asarray(y)`` unchanged.
    """
    if isinstance(y, str):
        raise ValueError(f"{what}: got the single string {y!r}; pass one label per {unit[:-1]} (a list or array)")
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected one label per {unit[:-1]} (a 1-D array); got shape {arr.shape}")
    # a list mixing text and NaN becomes text ("nan") in np.asarray: look for missing labels as given
    as_given = arr.dtype.kind in "US" and not isinstance(y, np.ndarray)
    miss = _missing_mask(np.asarray(y, dtype=object) if as_given else arr)
    if miss.any():
        idx = np.flatnonzero(miss)
        if names is not None and len(names) == len(arr):
            shown = ", ".join(map(str, np.asarray(names, dtype=object)[idx[:5]]))
        else:
            shown = "rows " + ", ".join(map(str, idx[:5]))
        more = ", ..." if len(idx) > 5 else ""
        fix = fix or (f"drop those {unit} (e.g. adata[adata.obs[key].notna()]) or fill in their {kind} "
                      f"(a missing {kind} must not become a {'class' if kind == 'label' else kind} called 'nan')")
        raise ValueError(f"{what}: {len(idx)} of {len(arr)} {unit} have a missing {kind} (NaN, None or empty), "
                         f"e.g. {shown}{more}; {fix}")
    return arr


@validate_params({"what": str, "unit": str})
def as_labels(y, what: str = "labels", names=None, unit: str = "cells") -> np.ndarray:
    """:func:`check_missing`, then the labels as strings (``np.asarray(y).astype(str)``)."""
    return check_missing(y, what, names, unit).astype(str)


@validate_params({"n_folds": [None, Interval(int, 0, None)], "min_per_class": Interval(int, 0, None), "what": str})
def check_labels(y, n_folds: int | None = None, min_per_class: int = 1, what: str = "labels") -> pd.Series:
    """Validate labels; return the class counts (largest first).

    Raises ``ValueError`` when ``y`` is empty or has missing values, has fewer than 2 classes,
    or (with ``n_folds``) a class has fewer cells than folds.  Pass the labels as given (not
    stringified), so that a missing label is seen as missing.
    """
    y = pd.Series(check_missing(np.asarray(y, dtype=object), what), dtype=object)
    if y.empty:
        raise ValueError(f"{what}: no cells")
    counts = y.astype(str).value_counts()
    if len(counts) < 2:
        raise ValueError(f"{what}: fewer than 2 classes ({', '.join(counts.index) or 'none'}); "
                         f"a classifier needs at least 2 cell types")
    need = max(int(n_folds or 0), int(min_per_class))
    small = counts[counts < need]
    if len(small):
        detail = ", ".join(f"{k} ({v})" for k, v in small.items())
        raise ValueError(f"{what}: class with fewer cells than folds/required ({need}): {detail}; "
                         f"drop these classes with {MIN_CELLS_HINT}, or use fewer folds")
    return counts


@validate_params({"min_cells_per_type": MIN_CELLS, "what": str})
def drop_rare(y, min_cells_per_type: int | None, what: str = "cell types") -> tuple[np.ndarray, dict]:
    """Indices of the cells whose class has >= ``min_cells_per_type`` cells, and ``{dropped class: n}``.

    Prints one line naming the classes left out.  ``None`` keeps everything.
    """
    y = as_labels(y)
    if min_cells_per_type is None:
        return np.arange(len(y)), {}
    counts = pd.Series(y).value_counts()
    rare = counts[counts < int(min_cells_per_type)].sort_index()
    dropped = {str(k): int(v) for k, v in rare.items()}
    if dropped:
        print(f"min_cells_per_type={int(min_cells_per_type)}: left out {len(dropped)} rare {what} "
              f"({sum(dropped.values())} cells): " + ", ".join(f"{k} ({v})" for k, v in dropped.items()))
    return np.flatnonzero(~np.isin(y, list(dropped))), dropped


@validate_params({"test_size": TEST_SIZE, "seed": SEED, "min_cells_per_type": MIN_CELLS})
def stratified_split(y, test_size: float = 1 / 3, seed: int = 0,
                     min_cells_per_type: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random stratified split; ``test_size=1/3`` is the paper's 6688 / 3344 (2:1) split.

    ``min_cells_per_type``: cells of classes with fewer cells are in neither side (printed;
    ``stratified_split.dropped`` is ``{class: n cells}``).
    """
    from sklearn.model_selection import train_test_split

    y = as_labels(y)
    keep, stratified_split.dropped = drop_rare(y, min_cells_per_type)
    yk = y[keep]
    counts = check_labels(yk, min_per_class=2)
    n_test = math.ceil(float(test_size) * len(yk))     # scikit-learn's rounding
    if min(n_test, len(yk) - n_test) < len(counts):
        raise ValueError(f"test_size={test_size:g} of {len(yk)} cells puts {n_test} in the test set and "
                         f"{len(yk) - n_test} in the training set, but there are {len(counts)} classes: a "
                         f"stratified split needs a cell of every class on each side; use more cells or another "
                         f"test_size")
    tr, te = train_test_split(np.arange(len(yk)), test_size=float(test_size), random_state=int(seed), stratify=yk)
    return np.sort(keep[tr]), np.sort(keep[te])


@validate_params({"seeds": [list, tuple, range, np.ndarray], "test_size": TEST_SIZE, "min_cells_per_type": MIN_CELLS})
def repeated_splits(y, seeds: Iterable[int] = (0, 1, 2), test_size: float = 1 / 3,
                    min_cells_per_type: int | None = None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``[(seed, train_idx, test_idx), ...]``, one stratified split per seed (``min_cells_per_type``
    as in :func:`stratified_split`; ``repeated_splits.dropped`` lists the classes left out)."""
    y = as_labels(y)
    keep, repeated_splits.dropped = drop_rare(y, min_cells_per_type)
    return [(int(s), *(keep[i] for i in stratified_split(y[keep], test_size, s))) for s in seeds]


@validate_params({"n_folds": Interval(int, 2, None), "seed": SEED, "min_cells_per_type": MIN_CELLS})
def stratified_kfold(y, n_folds: int = 5, seed: int = 0,
                     min_cells_per_type: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold; ``ValueError`` naming the classes that have fewer cells than folds.

    ``min_cells_per_type`` (e.g. ``= n_folds``) leaves the cells of rarer classes out of every fold
    instead (printed; ``stratified_kfold.dropped`` is ``{class: n cells}``).
    """
    from sklearn.model_selection import StratifiedKFold

    y = as_labels(y)
    keep, stratified_kfold.dropped = drop_rare(y, min_cells_per_type)
    yk = y[keep]
    check_labels(yk, n_folds=n_folds)
    skf = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    return [(np.sort(keep[a]), np.sort(keep[b])) for a, b in skf.split(np.zeros(len(yk)), yk)]


def _check_groups(groups, what: str = "groups", n: int | None = None) -> np.ndarray:
    """Groups as given (no missing ones); warn when every sample is its own group."""
    groups = check_missing(groups, what, unit="samples", kind="group")
    if n is not None and len(groups) != n:
        raise ValueError(f"{n} labels but {len(groups)} groups; give one group per sample")
    if len(groups) > 1 and len(pd.unique(groups)) == len(groups):
        warnings.warn(f"every one of the {len(groups)} samples is its own group, so this grouped split is no "
                      f"better than an ungrouped one: samples of one source (frame, donor) may land on both sides. "
                      f"Give the real groups (e.g. image_folder(..., groups='from_filename' / a function / a "
                      f"mapping), obs['donor'])", UserWarning, stacklevel=4)
    return groups


@validate_params({"test_groups": GROUP_LIST})
def group_split(groups, test_groups: Sequence, y=None) -> tuple[np.ndarray, np.ndarray]:
    """Train on every group not in ``test_groups``; test on ``test_groups`` (e.g. healthy donors).

    With ``y``, the test set keeps only classes present in training (a model cannot predict a
    type it never saw); the classes dropped are counted in ``group_split.dropped`` (a dict).
    """
    groups = _check_groups(groups).astype(str)
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
        y = as_labels(y)
        check_labels(y[tr], what="training labels")
        seen = set(y[tr])
        missing = pd.Series(y[te][~np.isin(y[te], list(seen))]).value_counts()
        group_split.dropped = missing.to_dict()
        te = te[np.isin(y[te], list(seen))]
    return tr, te


@validate_params({"n_folds": Interval(int, 2, None)})
def leave_groups_out(groups, n_folds: int = 3, y=None) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """GroupKFold over ``groups``: ``[(train_idx, test_idx, held_out_groups), ...]``.

    Deterministic (groups are balanced by size, as scikit-learn's GroupKFold does).  With ``y``
    the test cells of classes absent from that fold's training cells are dropped.
    """
    from sklearn.model_selection import GroupKFold

    groups = _check_groups(groups).astype(str)
    n_groups = len(set(groups))
    if n_folds > n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of groups ({n_groups}), got {n_folds}")
    yy = None if y is None else as_labels(y)
    out = []
    for tr, te in GroupKFold(n_splits=int(n_folds)).split(np.zeros(len(groups)), groups=groups):
        if yy is not None:
            te = te[np.isin(yy[te], list(set(yy[tr])))]
        out.append((np.sort(tr), np.sort(te), sorted(set(groups[te]))))
    return out


# ------------------------------------------------ grouped splits for images (Part II)
def _stratified_groups(groups: np.ndarray, labels: np.ndarray):
    """Unique groups and the (majority) label of each."""
    df = pd.DataFrame({"g": groups, "y": labels})
    lab = df.groupby("g")["y"].agg(lambda s: s.value_counts().index[0])
    return lab.index.to_numpy(), lab.to_numpy()


@validate_params({"n_splits": Interval(int, 2, None), "seed": SEED})
def grouped_folds(labels, groups, n_splits: int = 4, seed: int = 0) -> list:
    """``StratifiedGroupKFold`` folds ``[(train_idx, test_idx), ...]``: a group is never on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = check_missing(labels, "labels", unit="samples")
    groups = _check_groups(groups, n=len(labels))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} groups cannot make {n_splits} grouped folds; use n_splits <= {n_groups}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(labels)), labels, groups)]


@validate_params({"sizes": [list, tuple, range, np.ndarray], "n_repeats": Interval(int, 1, None),
                  "test_fraction": TEST_SIZE, "seed": SEED})
def grouped_size_splits(labels, groups, sizes, n_repeats: int = 5, test_fraction: float = 0.25,
                        seed: int = 0) -> list[dict]:
    """Learning-curve splits by whole groups (source frames).

    For each repeat: a stratified random ``test_fraction`` of the groups is held out; from the
    rest, nested training sets are drawn by adding whole groups (classes in the pool's proportion)
    until each size in ``sizes`` (images) is reached (the last group is cut to hit the size
    exactly).  Returns ``[{"repeat", "size", "train", "test"}, ...]`` (index arrays).
    A size larger than the training pool is a ``ValueError``.
    """
    labels = check_missing(labels, "labels", unit="samples")
    groups = _check_groups(groups, n=len(labels))
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
