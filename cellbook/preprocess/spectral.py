"""Spatial-spectral construction (paper section 2.4.1), with a concrete definition.

The paper's "hyperspectral microscopic" (HSM) images come from a phase-contrast microscope
that records one gray channel; its Eq. 1 does not define the spectrum or the distance.  This
module states the definition the book uses.

**Spectral stack.**  Each pixel of an 8-bit gray image ``I`` gets a vector of ``B`` filter
responses (the "spectrum"), :func:`spectral_stack`::

    x(p) = [ I(p),
             G_s * I (p)          for s in scales   (Gaussian smoothing: local mean),
             LoG_s * I (p)        for s in scales   (Laplacian of Gaussian: blobs / halos),
             |grad(G_s * I)| (p)  for s in scales ] (gradient magnitude: edges)

so ``B = 1 + 3 * len(scales)`` (10 for the default scales 1, 2, 4 px), with ``I`` scaled to
[0, 1].  Bands keep their values (``standardize=True`` would z-score each band per image, which
also erases texture-strength differences between images); :func:`ssn_grid` divides each band by
its SD over the whole image set (no labels involved) so that no band dominates the SSCD.

**Spatial-spectral combined distance (SSCD)** between pixels ``i`` and ``j`` with coordinates
``c_i``, ``c_j`` (:func:`sscd`)::

    D(i, j) = sqrt( 1/|P| * sum_{o in P} || x(c_i + o) - x(c_j + o) ||^2 )  +  lam * ||c_i - c_j|| / r

where ``P`` is the square of offsets ``o`` with ``|o|_inf <= patch_radius`` (the neighbourhoods
``S(x_i)``, ``S(x_j)`` of the paper's Eq. 1, compared position by position), ``lam`` is
``spatial_weight`` and ``r = max(1, (WS - 1) / 2)`` the window radius.  The first term is the
root-mean-square spectral difference of the two neighbourhoods; the second prefers nearer pixels.
Image borders are handled by reflection.

**Spatial-spectral neighbours (SSN).**  For a training pixel ``i``, its ``k`` SSNs are the ``k``
pixels ``j != i`` inside the ``WS x WS`` window centred on ``i`` with the smallest ``D(i, j)``
(ties broken in row-major window order); at most ``WS^2 - 1`` exist, so ``WS = 1`` adds none.
Each SSN is added to the training set with ``i``'s label (:func:`enlarge`).

**Grid experiment** (:func:`ssn_grid`): pixels are classified from their spectra by quadratic
discriminant analysis (one Gaussian per class); an image's score is the mean probability of its
sampled pixels; accuracy is per image, over folds grouped by source frame.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..parallel import map_tasks
from ..splits import grouped_folds
from ..validation import SEED, Interval, Options, validate_params

DEFAULT_SCALES = (1.0, 2.0, 4.0)
WS = Interval(int, 1, None)                  # and odd (checked by the functions)
SSCD = {"patch_radius": Interval(int, 0, None), "spatial_weight": Interval(float, 0, None)}


@validate_params({"scales": [tuple, list]})
def band_names(scales=DEFAULT_SCALES) -> list[str]:
    return (["intensity"] + [f"gauss_s{s:g}" for s in scales] + [f"log_s{s:g}" for s in scales]
            + [f"gradmag_s{s:g}" for s in scales])


@validate_params({"scales": [tuple, list], "standardize": bool})
def spectral_stack(gray, scales=DEFAULT_SCALES, standardize: bool = False) -> np.ndarray:
    """The per-pixel "spectrum": ``(H, W, B)`` float32 filter responses (see the module docstring)."""
    g = np.asarray(gray)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"spectral_stack needs one 2-D gray image, got shape {g.shape}")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive numbers, got {scales}")
    f = g.astype(np.float32) / 255.0 if g.dtype == np.uint8 else g.astype(np.float32)
    bands = [f]
    smooth = [cv2.GaussianBlur(f, (0, 0), sigmaX=float(s), borderType=cv2.BORDER_REFLECT) for s in scales]
    bands += smooth
    bands += [cv2.Laplacian(sm, cv2.CV_32F, ksize=3, borderType=cv2.BORDER_REFLECT) * float(s) ** 2
              for sm, s in zip(smooth, scales)]
    for sm in smooth[: len(scales)]:
        gx = cv2.Sobel(sm, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(sm, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
        bands.append(np.sqrt(gx ** 2 + gy ** 2))
    st = np.stack(bands, axis=-1).astype(np.float32)
    if standardize:
        mu = st.mean(axis=(0, 1), keepdims=True)
        sd = st.std(axis=(0, 1), keepdims=True)
        st = (st - mu) / np.where(sd > 1e-8, sd, 1.0)
    return st


@validate_params({"scales": [tuple, list]})
def stack_images(X, scales=DEFAULT_SCALES) -> np.ndarray:
    """Spectral stacks of a batch ``(n, H, W)`` -> ``(n, B, H, W)`` float32 (channels first, for CNNs)."""
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"expected a stack of gray images (n, H, W), got shape {X.shape}")
    return np.stack([np.moveaxis(spectral_stack(x, scales), -1, 0) for x in X]).astype(np.float32)


def _check_ws(ws: int):
    if int(ws) != ws or ws < 1 or ws % 2 == 0:
        raise ValueError(f"window size WS must be an odd positive integer, not {ws}")


def _patches(padded: np.ndarray, coords: np.ndarray, pad: int, patch_radius: int) -> np.ndarray:
    """Neighbourhood vectors ``(n, |P|, B)`` of pixels ``coords`` (row, col) of the unpadded image."""
    r = patch_radius
    offs = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
    yy = coords[:, None, 0] + offs[None, :, 0] + pad
    xx = coords[:, None, 1] + offs[None, :, 1] + pad
    return padded[yy, xx]


def _pad(stack: np.ndarray, pad: int) -> np.ndarray:
    if pad == 0:
        return stack
    mode = "reflect" if min(stack.shape[:2]) > pad else "symmetric"
    return np.pad(stack, ((pad, pad), (pad, pad), (0, 0)), mode=mode)


@validate_params({"ws": WS, **SSCD})
def sscd(stack, ci, cj, ws: int = 9, patch_radius: int = 1, spatial_weight: float = 0.5) -> float:
    """Spatial-spectral combined distance ``D(i, j)`` between pixels at ``ci`` and ``cj`` (row, col).

    ``D = sqrt(mean_o ||x(c_i+o) - x(c_j+o)||^2) + spatial_weight * ||c_i - c_j|| / max(1, (ws-1)/2)``,
    ``o`` over the ``(2 patch_radius + 1)^2`` neighbourhood offsets; borders reflect.
    """
    _check_ws(ws)
    stack = np.asarray(stack, dtype=np.float64)
    if stack.ndim == 2:
        stack = stack[:, :, None]
    pad = patch_radius
    padded = _pad(stack, pad)
    c = np.array([ci, cj], dtype=int)
    if (c < 0).any() or (c[:, 0] >= stack.shape[0]).any() or (c[:, 1] >= stack.shape[1]).any():
        raise ValueError(f"pixel coordinates {ci}, {cj} outside the image of shape {stack.shape[:2]}")
    p = _patches(padded, c, pad, patch_radius)
    spec = np.sqrt(np.mean(np.sum((p[0] - p[1]) ** 2, axis=-1)))
    r = max(1.0, (ws - 1) / 2)
    return float(spec + spatial_weight * np.linalg.norm(c[0] - c[1]) / r)


@validate_params({"ws": WS, "k": Interval(int, 0, None), **SSCD})
def select_ssn(stack, centers, ws: int, k: int, patch_radius: int = 1, spatial_weight: float = 0.5):
    """The ``k`` spatial-spectral neighbours of each centre pixel within its ``ws x ws`` window.

    Returns ``(coords, dist)``: ``coords`` int ``(n, k', 2)`` (row, col; clipped into the image by
    reflection of out-of-image window positions), ``dist`` ``(n, k')``, with ``k' = min(k, ws^2 - 1)``,
    nearest first.
    """
    _check_ws(ws)
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[:, :, None]
    h, w = stack.shape[:2]
    centers = np.asarray(centers, dtype=int).reshape(-1, 2)
    if len(centers) and ((centers < 0).any() or (centers[:, 0] >= h).any() or (centers[:, 1] >= w).any()):
        raise ValueError(f"centre coordinates outside the image of shape {(h, w)}")
    half = ws // 2
    offs = np.array([(dy, dx) for dy in range(-half, half + 1) for dx in range(-half, half + 1)
                     if (dy, dx) != (0, 0)], dtype=int).reshape(-1, 2)
    kk = min(int(k), len(offs))
    n = len(centers)
    if kk == 0 or n == 0:
        return np.zeros((n, 0, 2), int), np.zeros((n, 0))
    pad = half + patch_radius
    padded = _pad(stack, pad)
    pc = _patches(padded, centers, pad, patch_radius)                          # (n, P, B)
    cand = centers[:, None, :] + offs[None, :, :]                              # (n, O, 2), may leave image
    pj = _patches(padded, cand.reshape(-1, 2), pad, patch_radius).reshape(n, len(offs), *pc.shape[1:])
    spec = np.sqrt(np.mean(np.sum((pj - pc[:, None]) ** 2, axis=-1), axis=-1))  # (n, O)
    r = max(1.0, (ws - 1) / 2)
    d = spec + spatial_weight * np.linalg.norm(offs, axis=1)[None, :] / r
    order = np.argsort(d, axis=1, kind="stable")[:, :kk]
    sel = np.take_along_axis(cand, order[:, :, None], axis=1)
    # out-of-image positions map to the pixel they were reflected from
    sel[..., 0] = _reflect(sel[..., 0], h)
    sel[..., 1] = _reflect(sel[..., 1], w)
    return sel, np.take_along_axis(d, order, axis=1)


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """NumPy ``reflect`` padding index map (edge not repeated)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m >= n, period - m, m)


@validate_params({"ws": WS, "k": Interval(int, 0, None), **SSCD})
def enlarge(stack, centers, labels, ws: int, k: int, patch_radius: int = 1, spatial_weight: float = 0.5):
    """Training set of the centre pixels plus their SSNs: ``(features (m, B), labels (m,), origin (m,))``.

    ``origin`` is the index of the centre pixel each row came from (a centre's own row included).
    """
    stack = np.asarray(stack, dtype=np.float32)
    centers = np.asarray(centers, dtype=int).reshape(-1, 2)
    labels = np.asarray(labels)
    if len(labels) != len(centers):
        raise ValueError(f"{len(centers)} centres but {len(labels)} labels")
    feats = [stack[centers[:, 0], centers[:, 1]]]
    lab, origin = [labels], [np.arange(len(centers))]
    sel, _ = select_ssn(stack, centers, ws, k, patch_radius, spatial_weight)
    if sel.shape[1]:
        feats.append(stack[sel[..., 0], sel[..., 1]].reshape(-1, stack.shape[-1]))
        lab.append(np.repeat(labels, sel.shape[1]))
        origin.append(np.repeat(np.arange(len(centers)), sel.shape[1]))
    return np.concatenate(feats), np.concatenate(lab), np.concatenate(origin)


@validate_params({"n": Interval(int, 0, None), "rng": np.random.Generator, "margin": Interval(int, 0, None)})
def sample_pixels(shape, n: int, rng: np.random.Generator, margin: int = 0) -> np.ndarray:
    """``n`` distinct random pixel coordinates (row, col) at least ``margin`` px from the border."""
    h, w = shape[:2]
    ys, xs = np.arange(margin, h - margin), np.arange(margin, w - margin)
    if len(ys) == 0 or len(xs) == 0:
        raise ValueError(f"margin {margin} leaves no pixels in an image of shape {shape[:2]}")
    flat = rng.choice(len(ys) * len(xs), size=min(n, len(ys) * len(xs)), replace=False)
    return np.stack([ys[flat // len(xs)], xs[flat % len(xs)]], axis=1)


@validate_params({"ws_values": [tuple, list], "ssn_values": [tuple, list], "n_pixels": Interval(int, 1, None),
                  "n_splits": Interval(int, 2, None), **SSCD, "classifier": Options("qda", "logreg"), "seed": SEED})
def ssn_grid(stacks, labels, groups, ws_values=(1, 3, 5, 7, 9, 11, 13), ssn_values=(2, 4, 6, 8, 10, 12, 14, 16),
             n_pixels: int = 64, n_splits: int = 4, patch_radius: int = 1, spatial_weight: float = 0.5,
             classifier: str = "qda", seed: int = 0) -> pd.DataFrame:
    """Accuracy of the pixel classifier for every (WS, SSN) pair, grouped cross-validation.

    stacks : ``(n, H, W, B)`` spectral stacks; labels, groups : ``(n,)``.
    For each fold (``StratifiedGroupKFold`` on ``groups``) and grid point: ``n_pixels`` random
    training pixels per training image, enlarged by their SSNs; logistic regression on the
    standardised spectra; each test image scored by the mean probability over ``n_pixels`` of its
    pixels.  Returns one row per (ws, ssn, fold) with per-image ``accuracy`` and ``n_train_pixels``.
    """
    stacks = np.asarray(stacks, dtype=np.float32)
    labels, groups = np.asarray(labels), np.asarray(groups)
    if stacks.ndim != 4 or len(stacks) != len(labels) or len(labels) != len(groups):
        raise ValueError(f"stacks must be (n, H, W, B) with n = len(labels) = len(groups); got {stacks.shape}, "
                         f"{len(labels)}, {len(groups)}")
    classes = np.unique(labels)
    if len(classes) != 2:
        raise ValueError(f"ssn_grid is a binary experiment; labels have {len(classes)} classes")
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"{len(np.unique(groups))} groups cannot make {n_splits} grouped folds")
    for ws in ws_values:
        _check_ws(ws)
    y = (labels == classes[1]).astype(int)
    sd = stacks.reshape(-1, stacks.shape[-1]).std(axis=0)
    stacks = stacks / np.where(sd > 1e-8, sd, 1.0)          # unit SD per band over the set (label-free)
    rng = np.random.default_rng(seed)
    centers = [sample_pixels(s.shape, n_pixels, rng) for s in stacks]
    test_px = [sample_pixels(s.shape, n_pixels, rng) for s in stacks]
    own = [stacks[i][c[:, 0], c[:, 1]] for i, c in enumerate(centers)]
    kmax = max(ssn_values)
    # SSNs depend only on the image, its centres and WS: select once per WS with the largest k
    neigh = {}
    for ws in ws_values:
        feats = []
        for i, c in enumerate(centers):
            sel, _ = select_ssn(stacks[i], c, ws, min(kmax, ws * ws - 1), patch_radius, spatial_weight)
            feats.append(stacks[i][sel[..., 0], sel[..., 1]])        # (n_pixels, k', B)
        neigh[ws] = feats
    folds = grouped_folds(y, groups, n_splits=n_splits, seed=seed)
    test = [stacks[i][test_px[i][:, 0], test_px[i][:, 1]] for i in range(len(stacks))]
    out = map_tasks(_ssn_fold, [dict(own=own, neigh=neigh, test=test, y=y, train_idx=tr, test_idx=te, fold=fold,
                                     ws_values=tuple(ws_values), ssn_values=tuple(ssn_values), classifier=classifier)
                                for fold, (tr, te) in enumerate(folds)], desc="WS x SSN folds")
    return pd.DataFrame([row for rows in out for row in rows])


def _ssn_fold(own, neigh, test, y, train_idx, test_idx, fold, ws_values, ssn_values, classifier) -> list[dict]:
    """One fold of :func:`ssn_grid` (a task of :func:`cellbook.parallel.map_tasks`): every grid cell."""
    tr, te = np.asarray(train_idx), np.asarray(test_idx)
    n_bands = own[0].shape[-1]
    Xte = [test[i] for i in te]
    cache, rows = {}, []
    for ws in ws_values:
        for k in ssn_values:
            kk = min(int(k), ws * ws - 1)
            if (ws, kk) not in cache:
                Xtr = np.concatenate([own[i] for i in tr] + [neigh[ws][i][:, :kk].reshape(-1, n_bands) for i in tr])
                ytr = np.concatenate([np.full(len(own[i]), y[i]) for i in tr]
                                     + [np.full(len(own[i]) * kk, y[i]) for i in tr])
                scaler = StandardScaler().fit(Xtr)
                clf = (QuadraticDiscriminantAnalysis(reg_param=0.01) if classifier == "qda"
                       else LogisticRegression(max_iter=300)).fit(scaler.transform(Xtr), ytr)
                score = np.array([clf.predict_proba(scaler.transform(x))[:, 1].mean() for x in Xte])
                acc = float(np.mean((score >= 0.5).astype(int) == y[te]))
                cache[(ws, kk)] = (acc, len(Xtr))
            acc, ntr = cache[(ws, kk)]
            rows.append({"ws": ws, "ssn": k, "ssn_used": kk, "fold": fold, "accuracy": acc, "n_train_pixels": ntr})
    return rows
