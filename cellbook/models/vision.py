"""Image classifiers for Part II, written here (no torchvision): SCNN, small ResNet, small VGG.

All take ``(batch, in_channels, H, W)`` float tensors and return ``(batch, n_classes)`` logits;
any ``H, W >= 8`` works (global average pooling before the classifier).

- :class:`SeparableConv2d` -- the paper's separable convolution: a depthwise ``K x K`` convolution
  per channel (``groups = in_channels``: no mixing across channels, Eq. 2) followed by a
  pointwise ``1 x 1`` convolution that mixes channels (Eq. 3).
- :class:`SCNN` -- stages of [separable conv -> batch norm -> ReLU] x ``convs_per_stage`` -> 2x2 max-pool.
- :class:`SmallResNet` -- a 3x3 stem, then stages of basic residual blocks (two 3x3 convs + identity
  or 1x1 projection shortcut), stride 2 between stages (He et al. 2016, scaled down).
- :class:`SmallVGG` -- stages of plain 3x3 convs + max-pool, then a two-layer fully connected head
  on a 2x2 pooled map (Simonyan & Zisserman 2015, scaled down).

:func:`build` makes one by name; :func:`count_macs` counts multiply-accumulates of one forward pass.
:func:`size_brightness_features`: cell size beside brightness, the ``"size + brightness + LR"`` baseline's features.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import seed_everything
from ..metrics import classification, ttest
from ..preprocess.imaging import brightness_features, downsample, handcrafted_features, preprocess_set, to_gray8
from ..preprocess.spectral import stack_images
from ..splits import check_missing
from ..train import Trainer, count_parameters


def _check(in_channels, n_classes, widths):
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, not {in_channels}")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, not {n_classes}")
    if not widths or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must be positive integers, got {widths}")


class SeparableConv2d(nn.Module):
    """Depthwise ``K x K`` convolution per input channel, then pointwise ``1 x 1`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int | None = None,
                 bias: bool = False):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class _Head(nn.Module):
    def __init__(self, width: int, n_classes: int, dropout: float):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


def _conv_stages(in_channels: int, widths, convs_per_stage: int, conv) -> nn.Sequential:
    """Stages of ``convs_per_stage`` x [conv(c_in, c_out) -> BatchNorm -> ReLU], each then 2x2 max-pool."""
    layers, c = [], in_channels
    for w in widths:
        for _ in range(convs_per_stage):
            layers += [conv(c, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SCNN(nn.Module):
    """Depthwise-separable CNN (the paper's SCNN).

    ``widths`` gives the output channels of each stage; every stage is ``convs_per_stage`` x
    [SeparableConv2d(K) -> BatchNorm -> ReLU] then 2x2 max-pool; global average pool, dropout, linear.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, widths=(16, 32, 64), kernel_size: int = 3,
                 convs_per_stage: int = 1, dropout: float = 0.3):
        super().__init__()
        _check(in_channels, n_classes, widths)
        self.features = _conv_stages(in_channels, widths, convs_per_stage,
                                     lambda c, w: SeparableConv2d(c, w, kernel_size))
        self.head = _Head(widths[-1], n_classes, dropout)

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN, identity (or 1x1 strided projection) shortcut, ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.short(x))


class SmallResNet(nn.Module):
    """A small ResNet: 3x3 stem + max-pool, ``blocks_per_stage`` basic blocks per width, stride 2 between."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2, widths=(16, 32, 64), blocks_per_stage: int = 1,
                 dropout: float = 0.3):
        super().__init__()
        _check(in_channels, n_classes, widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(c, w, stride=2 if (i > 0 and b == 0) else 1))
                c = w
        self.features = nn.Sequential(*blocks)
        self.head = _Head(c, n_classes, dropout)

    def forward(self, x):
        return self.head(self.features(self.stem(x)))


class SmallVGG(nn.Module):
    """A small VGG: stages of ``convs_per_stage`` x [3x3 conv -> BN -> ReLU] + 2x2 max-pool,
    then adaptive 2x2 average pool -> flatten -> FC(``fc``) -> ReLU -> dropout -> FC(n_classes)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2, widths=(16, 32, 64), convs_per_stage: int = 2,
                 fc: int = 128, dropout: float = 0.3):
        super().__init__()
        _check(in_channels, n_classes, widths)
        self.features = _conv_stages(in_channels, widths, convs_per_stage,
                                     lambda c, w: nn.Conv2d(c, w, 3, padding=1, bias=False))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(widths[-1] * 4, fc),
                                        nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(fc, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS = {"scnn": SCNN, "resnet": SmallResNet, "vgg": SmallVGG}
LABELS = {"scnn": "SCNN (separable)", "resnet": "ResNet (small)", "vgg": "VGG (small)"}


def build(name: str, in_channels: int = 1, n_classes: int = 2, **kwargs) -> nn.Module:
    """``build("scnn" | "resnet" | "vgg", in_channels, n_classes, widths=..., ...)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](in_channels=in_channels, n_classes=n_classes, **kwargs)


def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of one forward pass for one input of ``input_shape = (C, H, W)``.

    Counts Conv2d (``out_elements * in_channels / groups * kh * kw``) and Linear
    (``in_features * out_features``) layers; batch norm, activations and pooling are ignored.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    total = [0]

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def lin_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dev = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total[0])


def flip_augment(xb: torch.Tensor) -> torch.Tensor:
    """Random horizontal / vertical flips and 180-degree turns per batch (a Trainer ``augment``)."""
    if torch.rand(1).item() < 0.5:
        xb = torch.flip(xb, dims=[-1])
    if torch.rand(1).item() < 0.5:
        xb = torch.flip(xb, dims=[-2])
    return xb


def fit_classifier(name: str, X, y, *, widths=(16, 32, 64), epochs: int = 20, batch_size: int = 16,
                   lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0, device: str = "auto",
                   augment: bool = True, progress: bool = False, **model_kwargs):
    """Build model ``name`` for ``X`` ``(n, C, H, W)`` and train it with :class:`cellbook.Trainer`.

    Fixed ``epochs`` on all of ``X`` (``val_fraction=0``): the Trainer's internal validation split is
    not grouped by source frame, so it is not used for early stopping here.  Returns the Trainer
    (``.model``, ``.predict_proba``, ``.fit_seconds``, ``.classes_``).
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be a stack of images (n, channels, height, width), got shape {X.shape}")
    if min(X.shape[2:]) < 8:
        raise ValueError(f"images of {X.shape[2]} x {X.shape[3]} px are too small for {len(widths)} pooling stages")
    y = check_missing(y, "y", unit="images")   # a missing label is an error, not a class (before np.unique)
    if len(np.unique(y)) < 2:
        raise ValueError(f"training needs images of at least 2 classes; got {np.unique(y).tolist()}")
    seed_everything(seed)
    model = build(name, X.shape[1], len(np.unique(y)), widths=tuple(widths), **model_kwargs)
    trainer = Trainer(model, max_epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      val_fraction=0.0, patience=None, augment=flip_augment if augment else None,
                      device=device, seed=seed, progress=progress)
    return trainer.fit(X, y)


# ------------------------------------------------------------------------------- the chapters' helpers
PAPER_INPUT = (220, 300)        # the paper's input (height, width)
PAPER_WIDTHS = (32, 64, 128)    # the `full` profile's stage widths
#: Liu et al., Fig. 5a, as ``{model label: {training images: (mean, SD)}}`` of accuracy: the paper's text gives
#: its values at 100 images only (the other sizes exist only as a drawing).
PAPER_FIG5A = {LABELS["scnn"]: {100: (0.8956, 0.0309)}, LABELS["resnet"]: {100: (0.8061, 0.0283)},
               LABELS["vgg"]: {100: (0.8006, 0.0301)}}


def fit_tasks(splits, inputs: dict, *, seed: int, widths=None, by: str = "repeat", **common):
    """The fits of a sweep, one per (split, model), as keyword arguments of
    :func:`cellbook.sweeps.fit_image_model` (run them with :func:`cellbook.map_tasks`).

    ``splits``: dicts with ``train`` and ``test`` (indices) and ``by`` (the repeat or fold number), or
    ``(train, test)`` pairs (the folds of :func:`cellbook.splits.grouped_folds`), numbered by their position;
    ``inputs``: ``{model: X}`` in the order to fit, a CNN of :data:`MODELS` with its image stacks or a
    feature baseline (:data:`cellbook.sweeps.FEATURE_BASELINES`) with its features. A CNN is seeded with
    ``seed + split[by]`` (a new initialisation per repeat), a feature baseline with ``seed``. ``widths``: the
    CNNs' stage widths, one sequence for every model or ``{model: widths}`` (a model not in it gets ``()``).
    ``common``: the other arguments (``labels``, ``epochs``, ``device``, ...), the same for every fit.

    Returns ``(meta, tasks)``: ``meta[i] = (split, model)`` is what ``tasks[i]`` fits; splits in the outer
    loop, models in the inner one.
    """
    splits = [s if isinstance(s, dict) else {by: k, "train": s[0], "test": s[1]} for k, s in enumerate(splits)]
    meta = [(s, m) for s in splits for m in inputs]
    tasks = []
    for s, m in meta:
        w = widths.get(m, ()) if isinstance(widths, dict) else widths
        task = dict(X=inputs[m], train=s["train"], test=s["test"], model=m,
                    seed=seed + s[by] if m in MODELS else seed, **common)
        if w is not None:
            task["widths"] = w
        tasks.append(task)
    return meta, tasks


def score_fits(meta, outputs, labels, keys=("size", "repeat")):
    """One row per fit: the ``keys`` of its split, its test images (``n_test``), the model's label (:data:`LABELS`,
    or the name of a feature baseline), accuracy and macro-F1 on the split's test images, and fit seconds.

    ``meta``: ``[(split, model)]`` in the order of ``outputs`` (of :func:`cellbook.sweeps.fit_image_model`), each
    split a dict with ``test`` (indices into ``labels``) and the ``keys``.
    """
    labels = np.asarray(labels)
    if len(meta) != len(outputs):
        raise ValueError(f"score_fits: {len(meta)} (split, model) pairs but {len(outputs)} outputs")
    rows = []
    for (split, model), out in zip(meta, outputs):
        sc = classification(labels[split["test"]], out["pred"])
        rows.append({**{k: split[k] for k in keys}, "n_test": len(split["test"]), "model": LABELS.get(model, model),
                     "accuracy": sc["accuracy"], "f1_macro": sc["f1_macro"], "fit_seconds": out["fit_seconds"]})
    return pd.DataFrame(rows)


def cost_table(input_shape, widths: dict, paper_input=PAPER_INPUT, paper_widths=PAPER_WIDTHS):
    """Size and cost of each model of :data:`MODELS`: parameters and multiply-accumulates of one forward pass
    (millions, 2 decimals), for ``input_shape = (C, H, W)`` with ``widths = {name: stage widths}`` ("as run")
    and for the paper's 220 x 300 input with the ``full`` widths. One row per (model, setting)."""
    channels = int(input_shape[0])
    paper_setting = f"{paper_input[0]}x{paper_input[1]}, widths {'-'.join(map(str, paper_widths))}"
    rows = []
    for name in MODELS:
        for setting, shape, w in (("as run", tuple(input_shape), widths[name]),
                                  (paper_setting, (channels, *paper_input), list(paper_widths))):
            m = build(name, shape[0], 2, widths=tuple(w))
            rows.append({"model": LABELS[name], "setting": setting, "widths": "-".join(map(str, w)),
                         "parameters": count_parameters(m),
                         "MACs (millions)": round(count_macs(m, shape) / 1e6, 2)})
    return pd.DataFrame(rows)


def paired_tests(records, size, others, reference: str = LABELS["scnn"], short: str = "SCNN",
                 metrics=("accuracy", "fit_seconds")):
    """Two-sided paired t-tests of ``reference`` against each of ``others`` at training-set ``size``.

    ``records``: one row per (size, repeat, model) with the ``metrics``; repeats pair the models (each repeat
    uses one split for every model). ``fit_seconds`` is tested only between the CNNs of :data:`LABELS` (a
    feature baseline's fit is not a training time). With one repeat no test is possible (t and p NaN);
    identical values give t = 0, p = 1. Returns ``comparison, metric, mean <short>, mean other, t, p``.
    """
    at = records[records["size"] == size].sort_values("repeat")
    rows = []
    for other in others:
        for metric in metrics:
            if metric == "fit_seconds" and other not in LABELS.values():
                continue
            a = at.loc[at["model"] == reference, metric].to_numpy()
            b = at.loc[at["model"] == other, metric].to_numpy()
            if len(a) < 2:          # one repeat: no test possible
                res = {"statistic": np.nan, "p_value": np.nan, "mean_a": float(a.mean()), "mean_b": float(b.mean())}
            elif np.allclose(a, b):
                res = {"statistic": 0.0, "p_value": 1.0, "mean_a": float(a.mean()), "mean_b": float(b.mean())}
            else:
                res = ttest(a, b, paired=True)
            rows.append({"comparison": f"{short} vs {other}", "metric": metric, f"mean {short}": res["mean_a"],
                         "mean other": res["mean_b"], "t": res["statistic"], "p": res["p_value"]})
    return pd.DataFrame(rows)


def held_out_scores(meta, outputs, n: int, by: str = "fold"):
    """Put together each tile's held-out score from the fits of a grouped K-fold (``keep=True`` and
    ``positive`` given to :func:`cellbook.sweeps.fit_image_model`).

    ``meta``: ``[(split, model)]`` in the order of ``outputs`` (see :func:`fit_tasks`). Returns
    ``(score, fitted)``: ``score[label]`` the score of each of the ``n`` samples from the fold that held it out
    (``label`` the model's :data:`LABELS` entry, or the baseline's name); ``fitted[split[by], label]`` the
    fitted estimator. A sample no fold scored is a ``ValueError``.
    """
    score, fitted = {}, {}
    for (split, model), out in zip(meta, outputs):
        label = LABELS.get(model, model)
        score.setdefault(label, np.full(int(n), np.nan))[split["test"]] = out["score"]
        fitted[split[by], label] = out["estimator"]
    missing = {m: int(np.isnan(s).sum()) for m, s in score.items() if np.isnan(s).any()}
    if missing:
        raise ValueError(f"held_out_scores: samples without a held-out score: {missing}")
    return score, fitted


SIZE_FEATURES = ("fg_fraction", "object_area_px", "equivalent_diameter_px", "perimeter_px")


def size_features(raw_images) -> pd.DataFrame:
    """Size of the cell in each *raw* image (one row per image), for single-cell crops: the foreground is an
    Otsu threshold of each pixel's distance to the median gray value (so a bright halo and a dark body both
    count), closed by a 5 x 5 kernel.  ``fg_fraction``: its share of the image; ``object_area_px``,
    ``equivalent_diameter_px`` (``sqrt(4 area / pi)``) and ``perimeter_px``: of its largest object, in pixels
    of the raw image (0 when there is none)."""
    rows = []
    for im in raw_images:
        g = cv2.GaussianBlur(to_gray8(im), (5, 5), 0)
        _, mask = cv2.threshold(cv2.absdiff(g, np.full_like(g, int(np.median(g)))), 0, 255,
                                cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        big = max(contours, key=cv2.contourArea) if contours else None
        area = float(cv2.contourArea(big)) if big is not None else 0.0
        rows.append({"fg_fraction": float((mask > 0).mean()), "object_area_px": area,
                     "equivalent_diameter_px": float(np.sqrt(4 * area / np.pi)),
                     "perimeter_px": float(cv2.arcLength(big, True)) if big is not None else 0.0})
    return pd.DataFrame(rows, columns=list(SIZE_FEATURES))


def size_brightness_features(raw_images) -> pd.DataFrame:
    """The ``"size + brightness + LR"`` baseline's features: :func:`~cellbook.preprocess.imaging.brightness_features`
    and :func:`size_features` of the *raw* images, side by side (7 columns)."""
    return pd.concat([brightness_features(raw_images), size_features(raw_images)], axis=1)


SCREEN_INPUTS = ("stack", "handcrafted", "brightness", "size_brightness")


def predict_from_raw(estimator, raw_images, inputs: str, img_size=None, scales=(1.0, 2.0, 4.0)):
    """Classify raw images end to end, as a screen would (returns ``predict_proba``).

    ``inputs``: ``"stack"`` (the paper's chain, downsampled to ``img_size``, spectral stack -> a CNN),
    ``"handcrafted"`` (the chain -> hand-crafted features -> a feature classifier), ``"brightness"``
    (the raw images' grey levels -> a feature classifier; no preprocessing) or ``"size_brightness"``
    (:func:`size_brightness_features` of the raw images -> a feature classifier).
    """
    if inputs not in SCREEN_INPUTS:
        raise ValueError(f"unknown inputs {inputs!r}; valid: {', '.join(SCREEN_INPUTS)}")
    if inputs == "brightness":   # brightness needs no preprocessing: the raw images' grey levels
        return estimator.predict_proba(brightness_features(raw_images).to_numpy())
    if inputs == "size_brightness":
        return estimator.predict_proba(size_brightness_features(raw_images).to_numpy())
    P, _, _ = preprocess_set(raw_images)
    if inputs == "handcrafted":
        return estimator.predict_proba(handcrafted_features(P).to_numpy())
    if img_size is None:
        raise ValueError("inputs='stack' needs img_size (the CNN's input height, width)")
    return estimator.predict_proba(stack_images(downsample(P, tuple(img_size)), tuple(scales)))


def time_screening(methods: dict, raw_images, repeats: int, img_size=None, scales=(1.0, 2.0, 4.0)) -> dict:
    """Wall seconds to classify ``raw_images`` with each method, ``repeats`` rounds (methods interleaved
    within a round, so a slow spell of a shared machine hits all of them).

    ``methods``: ``{name: (fitted estimator, inputs)}`` with ``inputs`` as in :func:`predict_from_raw`.
    Returns ``{name: [seconds, ...]}``.
    """
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    times = {name: [] for name in methods}
    for _ in range(int(repeats)):
        for name, (estimator, inputs) in methods.items():
            t0 = time.perf_counter()
            predict_from_raw(estimator, raw_images, inputs, img_size=img_size, scales=scales)
            times[name].append(time.perf_counter() - t0)
    return times
