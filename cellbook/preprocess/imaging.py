"""The paper's image preprocessing (section 2.2) with OpenCV, and hand-crafted image features.

Steps, in the order :func:`preprocess_set` applies them to every image:

1. :func:`to_gray8`        -- 8-bit grayscale (colour -> luminance; 16-bit by its bit depth / float rescaled).
2. :func:`hsv_value`       -- mean HSV value V of the *original* image (V = max(R, G, B) per pixel;
                              for a grayscale image V is the gray value); images with mean V > 240
                              are dropped (:func:`brightness_check`).
3. :func:`normalize_brightness` -- scale the gray values so the mean is ~130.
4. :func:`resize`          -- 220 x 300 (height x width), ``cv2.INTER_AREA``.
5. :func:`median_denoise`  -- median filter, kernel a parameter (odd, default 3).
6. :func:`enhance_contrast` -- linear stretch of the 1st-99th percentile to 0-255.
7. :func:`equalize`        -- histogram equalisation, ``"global"`` or ``"clahe"`` (or ``None``).

Steps 3-7 are switched off by name (``skip=("brightness", "contrast")``, :data:`STEPS`); ``fit="pad"`` keeps
the aspect ratio.  A blank image (no contrast left, SD < ``min_std``) after the chain is dropped too and counted.

Features for the non-deep baselines:

- :func:`brightness_features` -- mean gray, SD of gray and mean V of the *raw* image: what a
  classifier can learn from acquisition brightness alone.
- :func:`handcrafted_features` -- morphology and texture of the *preprocessed* image (after
  brightness normalisation and equalisation): Otsu foreground fraction, object count, size and
  shape (area, circularity, elongation, solidity), edge density, Laplacian variance, gray-level
  co-occurrence contrast / homogeneity / energy / correlation, local-binary-pattern histogram.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..validation import SEED, Interval, Options, validate_params

PAPER_SIZE = (220, 300)   # (height, width); the paper says "220 x 300"
PAPER_MAX_V = 240.0
PAPER_TARGET_V = 130.0


class HeightWidth:
    """The constraint of an image size: ``(height, width)``, two integers >= 1 (a tuple or a list)."""

    def holds(self, value) -> bool:
        positive = Interval(int, 1, None)
        return isinstance(value, (tuple, list)) and len(value) == 2 and all(positive.holds(v) for v in value)

    def describe(self) -> str:
        return "a (height, width) pair of integers >= 1"


SIZE = HeightWidth()
BITS = [None, Interval(int, 1, 16)]
TARGET_V = Interval(float, 0, 255, closed="neither")
KSIZE = Interval(int, 1, None)
EQUALIZATION = Options("clahe", "global", "none", None)
#: The steps of the chain that ``skip=`` switches off, in the order they run (8-bit grayscale always runs).
STEPS = ("brightness", "resize", "median", "contrast", "equalization")
FIT, FIT_LABEL = Options("stretch", "pad"), {"stretch": "resized", "pad": "padded"}     # how to resize (see resize)
MAX_ASPECT_CHANGE = 0.10             # a stretch that changes the aspect ratio by more is warned about


class StepNames(Options):
    """The constraint of ``skip``: a step name of :data:`STEPS`, or a tuple / list / set of them."""

    def holds(self, value) -> bool:
        names = [value] if isinstance(value, str) else value
        return isinstance(names, (tuple, list, set, frozenset)) and all(Options.holds(self, n) for n in names)


CHAIN = {"size": SIZE, "target_v": TARGET_V, "median_ksize": KSIZE, "equalization": EQUALIZATION,
         "contrast": [tuple, list], "skip": StepNames(*STEPS), "fit": FIT}
"""What the preprocessing chain's settings take (:func:`pipeline_steps`, :func:`preprocess`, :func:`preprocess_set`)."""


def _check_image(img, what: str = "image") -> np.ndarray:
    if img is None:
        raise ValueError(f"{what} is None (not decoded?)")
    img = np.asarray(img)
    if img.size == 0:
        raise ValueError(f"{what} is empty (shape {img.shape})")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(f"{what} has shape {img.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if not (np.issubdtype(img.dtype, np.number) or img.dtype == bool) or np.iscomplexobj(img):
        raise ValueError(f"{what} has dtype {img.dtype}; expected real numbers (uint8, uint16, float, ...)")
    if np.issubdtype(img.dtype, np.floating) and not np.all(np.isfinite(img)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return img


SENSOR_BIT_DEPTHS = (8, 10, 12, 14, 16)


def bit_depth(img) -> int:
    """Bits a uint16 image actually uses: the smallest of 8, 10, 12, 14, 16 that holds its maximum.

    Cameras write 10-, 12- or 14-bit data into 16-bit files; dividing those by 257 (the 16-bit
    rule) would leave a nearly black image (12-bit white = 4095 -> gray 16).
    """
    top = int(np.asarray(img).max()) if np.asarray(img).size else 0
    return next(b for b in SENSOR_BIT_DEPTHS if top < 2 ** b)


@validate_params({"bits": BITS})
def to_uint8(img, bits: int | None = None) -> np.ndarray:
    """Any bit depth -> uint8, keeping channels.

    uint8 is unchanged; uint16 is scaled by its bit depth, ``(2**bits - 1) -> 255`` with ``bits``
    given or else inferred per image by :func:`bit_depth` (16-bit data: divided by 257;
    12-bit data: 4095 -> 255); bool -> 0/255; floats in [0, 1] are scaled by 255.  Other integer
    and float images within 0..255 are kept (rounded); one with values outside 0..255 is scaled by its
    own range (minimum -> 0, maximum -> 255) with a warning, never clipped.
    """
    img = _check_image(img)
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if img.dtype == np.uint16:
        b = bit_depth(img) if bits is None else int(bits)
        return np.clip(np.round(img * (255.0 / (2 ** b - 1))), 0, 255).astype(np.uint8)
    f = img.astype(np.float64)
    if np.issubdtype(img.dtype, np.floating) and f.min() >= 0 and f.max() <= 1:
        f = f * 255
    elif f.min() < 0 or f.max() > 255:
        f = _scaled_by_range(f)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def _scaled_by_range(f: np.ndarray) -> np.ndarray:
    """Values outside 0..255: the image's own range mapped to 0..255 (clipping would saturate them)."""
    lo, hi = float(f.min()), float(f.max())
    warnings.warn(f"an image with values from {lo:g} to {hi:g} (outside 0..255) was scaled by its range to "
                  f"0..255; give uint8 or uint16 images, or scale them yourself", UserWarning, stacklevel=6)
    return (f - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(f)


@validate_params({"bits": BITS})
def to_gray8(img, bits: int | None = None) -> np.ndarray:
    """8-bit grayscale ``(H, W)``: colour (BGR/BGRA, OpenCV order) -> luminance via ``cv2.cvtColor``.

    ``bits``: the bit depth of uint16 data (default: inferred per image, see :func:`to_uint8`).
    """
    img = to_uint8(img, bits)
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img)


def hsv_value(img) -> float:
    """Mean HSV value V (0-255) of an image: V = max(B, G, R) per pixel, the gray value for grayscale."""
    img = to_uint8(img)
    if img.ndim == 2:
        return float(img.mean())
    return float(cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2HSV)[:, :, 2].mean())


@validate_params({"max_v": Interval(float)})
def brightness_check(images, max_v: float = PAPER_MAX_V):
    """Mean V of each image and a keep-mask (``mean V <= max_v``); the paper drops mean V > 240."""
    v = np.array([hsv_value(im) for im in images], dtype=float)
    return v <= max_v, v


@validate_params({"target": TARGET_V, "iterations": Interval(int, 1, None)})
def normalize_brightness(gray, target: float = PAPER_TARGET_V, iterations: int = 4) -> np.ndarray:
    """Scale an 8-bit gray image so its mean is ~``target`` (gain, repeated to undo clipping at 255).

    A constant image (SD 0, e.g. all black) cannot be scaled: it is returned filled with ``target``.
    """
    g = to_gray8(gray).astype(np.float64)
    if g.std() == 0:
        return np.full(g.shape, int(round(target)), np.uint8)
    out = g
    for _ in range(iterations):
        m = out.mean()
        if abs(m - target) < 0.5:
            break
        out = np.clip(out * (target / m), 0, 255) if m > 0 else out + target
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@validate_params({"size": SIZE, "fit": FIT})
def resize(img, size=PAPER_SIZE, fit: str = "stretch") -> np.ndarray:
    """Resize to ``size = (height, width)`` (area interpolation to shrink, cubic to enlarge): ``fit="stretch"``
    (warned about when the aspect ratio changes by > 10 %) or ``"pad"`` (kept: centred, padded with border median)."""
    img = _check_image(img)
    _warn_stretch([img.shape], size, fit)
    return _resize(img, size, fit)


def _warn_stretch(shapes, size, fit: str, skip=(), stacklevel: int = 4) -> None:
    """One warning for the images whose aspect ratio a stretch to ``size`` changes by more than 10 %."""
    shapes = [sh for sh in shapes if len(sh) >= 2 and min(sh[:2]) > 0]
    change = [max(q, 1 / q) - 1 for q in ((size[0] / size[1]) / (sh[0] / sh[1]) for sh in shapes)]
    bad = [i for i, c in enumerate(change) if c > MAX_ASPECT_CHANGE]
    if bad and fit == "stretch" and "resize" not in _skipped(skip):
        worst = max(bad, key=change.__getitem__)
        warnings.warn(f"{len(bad)} of {len(shapes)} image(s) are stretched to {size[0]}x{size[1]}, changing their "
                      f"aspect ratio by up to {change[worst]:.0%} (e.g. {shapes[worst][0]}x{shapes[worst][1]}); pass "
                      f"fit='pad' to keep it (padded with the border's median), or a size of their aspect ratio",
                      UserWarning, stacklevel=stacklevel)


def _resize(img, size, fit: str = "stretch") -> np.ndarray:
    img, (h, w) = to_uint8(img), (int(size[0]), int(size[1]))
    scale = min(h / img.shape[0], w / img.shape[1])
    nh, nw = (h, w) if fit == "stretch" else (min(h, max(1, round(img.shape[0] * scale))),
                                              min(w, max(1, round(img.shape[1] * scale))))
    shrink = nh * nw <= img.shape[0] * img.shape[1]
    out = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if (nh, nw) == (h, w):
        return out
    canvas = np.full((h, w, *out.shape[2:]), np.round(np.median(np.r_[out[0], out[-1], out[:, 0], out[:, -1]], 0)),
                     np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = out
    return canvas


@validate_params({"ksize": KSIZE})
def median_denoise(gray, ksize: int = 3) -> np.ndarray:
    """Median filter with an odd kernel ``ksize`` (1 = no filtering)."""
    if ksize % 2 == 0:
        raise ValueError(f"median kernel size must be an odd positive integer, not {ksize}")
    g = to_gray8(gray)
    return g.copy() if ksize == 1 else cv2.medianBlur(g, int(ksize))


@validate_params({"low": Interval(float, 0, 100, closed="left"), "high": Interval(float, 0, 100, closed="right")})
def enhance_contrast(gray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Linear contrast stretch: the ``low``-th..``high``-th percentiles map to 0..255 (clipped)."""
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100 percentiles, got {low}, {high}")
    g = to_gray8(gray).astype(np.float64)
    lo, hi = np.percentile(g, [low, high])
    if hi <= lo:
        return g.astype(np.uint8)
    return np.clip(np.round((g - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


@validate_params({"method": EQUALIZATION, "clip_limit": Interval(float, 0, None, closed="neither"),
                  "tile_grid": Interval(int, 1, None)})
def equalize(gray, method: str | None = "clahe", clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Histogram equalisation: ``"global"`` (``cv2.equalizeHist``), ``"clahe"`` or ``None`` (unchanged)."""
    g = to_gray8(gray)
    if method is None or method == "none":
        return g.copy()
    if method == "global":
        return cv2.equalizeHist(g)
    if method == "clahe":
        return cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid),) * 2).apply(g)
    raise ValueError(f"unknown equalisation {method!r}; valid: global, clahe, none")


def _skipped(skip) -> frozenset:
    return frozenset([skip] if isinstance(skip, str) else skip)


def _chain(img, size, target_v, median_ksize, equalization, contrast, skip=(), fit="stretch") -> dict:
    """The chain on one image, ``{step label: image}`` in order, without the steps named in ``skip``."""
    out = {"original": to_uint8(img)}
    g = out["8-bit grayscale"] = to_gray8(img)
    steps = (("brightness", f"brightness -> mean {target_v:.0f}", lambda x: normalize_brightness(x, target_v)),
             ("resize", f"{FIT_LABEL[fit]} {size[0]}x{size[1]}", lambda x: _resize(x, size, fit)),
             ("median", f"median {median_ksize}x{median_ksize}", lambda x: median_denoise(x, median_ksize)),
             ("contrast", "contrast stretch", lambda x: enhance_contrast(x, *contrast)),
             ("equalization", f"equalised ({equalization})", lambda x: equalize(x, equalization)))
    for name, label, step in steps:
        if name not in _skipped(skip):
            g = out[label] = step(g)
    return out


@validate_params(CHAIN)
def pipeline_steps(img, size=PAPER_SIZE, target_v: float = PAPER_TARGET_V, median_ksize: int = 3,
                   equalization: str | None = "clahe", contrast=(1.0, 99.0), skip=(), fit: str = "stretch") -> dict:
    """One image through every step; ``{step name: image}`` in order (for the figure).  ``skip``: the steps
    of :data:`STEPS` to switch off, by name (``skip=("brightness", "contrast")``); ``fit``: see :func:`resize`."""
    _warn_stretch([np.shape(img)], size, fit, skip)
    return _chain(img, size, target_v, median_ksize, equalization, contrast, skip, fit)


@validate_params(CHAIN)
def preprocess(img, size=PAPER_SIZE, target_v: float = PAPER_TARGET_V, median_ksize: int = 3,
               equalization: str | None = "clahe", contrast=(1.0, 99.0), skip=(), fit: str = "stretch") -> np.ndarray:
    """The whole chain for one image -> uint8 ``(height, width)`` (no brightness filter); as :func:`pipeline_steps`."""
    _warn_stretch([np.shape(img)], size, fit, skip)
    return list(_chain(img, size, target_v, median_ksize, equalization, contrast, skip, fit).values())[-1]


@validate_params({**CHAIN, "max_v": Interval(float), "min_std": Interval(float, 0, None)})
def preprocess_set(images, size=PAPER_SIZE, max_v: float = PAPER_MAX_V, target_v: float = PAPER_TARGET_V,
                   median_ksize: int = 3, equalization: str | None = "clahe", contrast=(1.0, 99.0),
                   min_std: float = 1.0, skip=(), fit: str = "stretch"):
    """Preprocess a list of images (any sizes / bit depths); drop too-bright and blank ones.

    ``skip``, ``fit``: as in :func:`pipeline_steps` (the brightness check is no step: ``max_v=255`` keeps all).
    Returns ``(X, keep, report)``: ``X`` uint8 ``(n_kept, height, width)``; ``keep`` a boolean mask
    over the input; ``report`` a DataFrame with one row per step: images in, removed, out.
    """
    images, skip = list(images), _skipped(skip)
    if not images:
        raise ValueError("no images to preprocess")
    ok_v, v = brightness_check(images, max_v)
    _warn_stretch([np.shape(im) for im, ok in zip(images, ok_v) if ok], size, fit, skip)
    out, keep_blank = [], np.zeros(len(images), bool)
    for i, im in enumerate(images):
        if not ok_v[i]:
            continue
        p = list(_chain(im, size, target_v, median_ksize, equalization, contrast, skip, fit).values())[-1]
        if p.std() >= min_std:
            keep_blank[i] = True
            out.append(p)
    keep = ok_v & keep_blank
    n = len(images)
    done = (f"brightness -> {target_v:g}", "resize" + " (padded)" * (fit == "pad"), f"median {median_ksize}",
            "contrast", f"{equalization or 'no'} equalisation")
    chain = ", ".join(["grayscale", *(t for k, t in zip(STEPS, done) if k not in skip)]) + (
        f" ({', '.join(k for k in STEPS if k in skip)} switched off)" if skip else "")
    report = pd.DataFrame([
        {"step": "read (decoded images)", "in": n, "removed": 0, "out": n},
        {"step": f"HSV brightness check (mean V > {max_v:g} dropped)", "in": n,
         "removed": int((~ok_v).sum()), "out": int(ok_v.sum())},
        {"step": chain, "in": int(ok_v.sum()), "removed": 0, "out": int(ok_v.sum())},
        {"step": f"blank after processing (SD < {min_std:g}) dropped", "in": int(ok_v.sum()),
         "removed": int(ok_v.sum() - keep.sum()), "out": int(keep.sum())},
    ])
    if not out:
        raise ValueError(f"every one of the {n} images was removed: {int((~ok_v).sum())} by the brightness check "
                         f"(mean V > {max_v:g}) and {int(ok_v.sum() - keep.sum())} as blank (SD < {min_std:g}); "
                         f"check the images, or raise max_v / lower min_std")
    if len({x.shape for x in out}) > 1:
        raise ValueError(f"with resize switched off (skip) the images keep their sizes, which differ "
                         f"({', '.join(sorted({f'{x.shape[0]}x{x.shape[1]}' for x in out}))}); keep the resize step")
    return np.stack(out), keep, report


def overview(images) -> pd.DataFrame:
    """What an image set holds, one row per class: dataset, images, independent source frames (groups),
    the image sizes found (``"384x512x3"``: height x width x channels) and the files that could not be read.

    ``images``: a :class:`cellbook.datasets.images.ImageSet` (``counts()``, ``images``, ``skipped``, ``info``).
    """
    c = images.counts().reset_index()
    c.insert(0, "dataset", images.info.name)
    sizes = pd.Series([f"{x.shape[0]}x{x.shape[1]}" + ("x3" if x.ndim == 3 else "") for x in images.images])
    c["image size (px)"] = ", ".join(sizes.value_counts().index)
    c["unreadable skipped"] = len(images.skipped)
    return c


@validate_params({"plate_size": Interval(int, 1, None), "rng": np.random.Generator})
def draw_plate(y, plate_size: int, rng: np.random.Generator) -> np.ndarray:
    """A screening "plate": ``plate_size`` indices drawn without replacement from ``y`` (0 / 1), stratified
    so that its share of positives is that of ``y`` (rounded), sorted. Draws the positives, then the
    negatives, from ``rng`` (so a sequence of plates from one generator is reproducible)."""
    y = np.asarray(y)
    n_pos = int(round(plate_size * y.mean()))
    if not 0 <= n_pos <= (y == 1).sum() or plate_size - n_pos > (y == 0).sum():
        raise ValueError(f"a plate of {plate_size} needs {n_pos} positives and {plate_size - n_pos} negatives; "
                         f"y has {(y == 1).sum()} and {(y == 0).sum()}")
    pos = rng.choice(np.flatnonzero(y == 1), n_pos, replace=False)
    neg = rng.choice(np.flatnonzero(y == 0), plate_size - n_pos, replace=False)
    return np.sort(np.r_[pos, neg])


# ------------------------------------------------------------------------- features
BRIGHTNESS_FEATURES = ("mean_gray", "sd_gray", "mean_v")


def brightness_features(images) -> pd.DataFrame:
    """Brightness of each *raw* image: mean and SD of 8-bit gray, mean HSV V (one row per image)."""
    rows = []
    for im in images:
        g = to_gray8(im)
        rows.append({"mean_gray": float(g.mean()), "sd_gray": float(g.std()), "mean_v": hsv_value(im)})
    return pd.DataFrame(rows, columns=list(BRIGHTNESS_FEATURES))


@validate_params({"levels": Interval(int, 1, 256), "offsets": [tuple, list]})
def glcm_features(gray, levels: int = 16, offsets=((0, 1), (1, 0), (1, 1), (1, -1))) -> dict:
    """Gray-level co-occurrence texture (symmetric, normalised, averaged over ``offsets``).

    ``contrast = sum p(i,j)(i-j)^2``, ``homogeneity = sum p/(1+|i-j|)``, ``energy = sqrt(sum p^2)``,
    ``correlation = sum (i-mu)(j-mu)p / var`` (as in scikit-image's ``graycoprops``).
    """
    g = to_gray8(gray)
    q = (g.astype(np.int64) * levels) // 256
    h, w = q.shape
    P = np.zeros((levels, levels))
    for dy, dx in offsets:
        y0, y1, x0, x1 = max(0, -dy), h - max(0, dy), max(0, -dx), w - max(0, dx)
        a, b = q[y0:y1, x0:x1], q[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
        m = np.bincount((a * levels + b).ravel(), minlength=levels * levels).reshape(levels, levels)
        P += m + m.T
    P /= P.sum()
    i, j = np.indices(P.shape)
    mu = (i * P).sum()
    var = ((i - mu) ** 2 * P).sum()
    return {"glcm_contrast": float((P * (i - j) ** 2).sum()),
            "glcm_homogeneity": float((P / (1 + np.abs(i - j))).sum()),
            "glcm_energy": float(np.sqrt((P ** 2).sum())),
            "glcm_correlation": float(((i - mu) * (j - mu) * P).sum() / var) if var > 0 else 1.0}


@validate_params({"bins": Interval(int, 1, None)})
def lbp_histogram(gray, bins: int = 8) -> dict:
    """Share of pixels per 8-neighbour local-binary-pattern 'number of brighter neighbours' (0..8), binned."""
    g = to_gray8(gray).astype(np.int16)
    c = g[1:-1, 1:-1]
    count = np.zeros_like(c)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            count += (g[1 + dy:g.shape[0] - 1 + dy, 1 + dx:g.shape[1] - 1 + dx] >= c)
    hist = np.bincount(count.ravel(), minlength=9)[:9] / count.size
    edges = np.linspace(0, 9, bins + 1).astype(int)
    return {f"lbp_{k}": float(hist[edges[k]:edges[k + 1]].sum()) for k in range(bins)}


def morphology_features(gray) -> dict:
    """Objects from an Otsu threshold of the (preprocessed) image: count, size and shape summaries."""
    g = to_gray8(gray)
    blur = cv2.GaussianBlur(g, (5, 5), 0)
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area_img = float(g.size)
    stats = []
    for c in contours:
        a = cv2.contourArea(c)
        if a < 9:  # specks
            continue
        per = cv2.arcLength(c, True)
        hull = cv2.contourArea(cv2.convexHull(c))
        if len(c) >= 5:
            (_, _), (ma, mi), _ = cv2.fitEllipse(c)
            elong = max(ma, mi) / max(min(ma, mi), 1e-6)
        else:
            elong = 1.0
        stats.append((a, 4 * np.pi * a / max(per, 1e-6) ** 2, elong, a / max(hull, 1e-6)))
    s = np.array(stats) if stats else np.zeros((0, 4))
    edges = cv2.Canny(g, 50, 150)
    return {
        "fg_fraction": float((mask > 0).mean()),
        "objects_per_10k_px": float(len(s) / area_img * 1e4),
        "object_area_median": float(np.median(s[:, 0]) / area_img * 1e4) if len(s) else 0.0,
        "object_area_mean": float(s[:, 0].mean() / area_img * 1e4) if len(s) else 0.0,
        "circularity_mean": float(np.clip(s[:, 1], 0, 1).mean()) if len(s) else 0.0,
        "elongation_mean": float(np.clip(s[:, 2], 1, 20).mean()) if len(s) else 1.0,
        "solidity_mean": float(s[:, 3].mean()) if len(s) else 0.0,
        "edge_density": float((edges > 0).mean()),
        "laplacian_var": float(cv2.Laplacian(g, cv2.CV_64F).var() / 1e3),
    }


def handcrafted_features(gray_images) -> pd.DataFrame:
    """Morphology + texture features (one row per preprocessed 8-bit gray image; 21 columns: 9 of
    :func:`morphology_features`, 4 of :func:`glcm_features`, 8 of :func:`lbp_histogram`).

    Brightness is not among them: feed images that went through :func:`preprocess_set`.
    """
    rows = []
    for g in gray_images:
        row = morphology_features(g)
        row.update(glcm_features(g))
        row.update(lbp_histogram(g))
        rows.append(row)
    if not rows:
        raise ValueError("no images to compute features of")
    return pd.DataFrame(rows)


@validate_params({"size": SIZE, "fit": FIT})
def downsample(X, size, fit: str = "stretch") -> np.ndarray:
    """Resize a stack ``(n, H, W)`` of uint8 images to ``size = (height, width)`` (``fit``: see :func:`resize`)."""
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"expected a stack (n, H, W), got shape {X.shape}")
    _warn_stretch([X.shape[1:]] * len(X), size, fit)
    return np.stack([_resize(_check_image(x), size, fit) for x in X]) if len(X) else np.zeros((0, *size), np.uint8)


@validate_params({"C": Interval(float, 0, None, closed="neither"), "seed": SEED})
def feature_classifier(C: float = 1.0, seed: int = 0):
    """The non-deep baseline: standardise features, then L2 logistic regression (class-balanced)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, class_weight="balanced",
                                                              random_state=seed))
