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
"""
from __future__ import annotations

import torch
from torch import nn


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
    import numpy as np

    from ..config import seed_everything
    from ..train import Trainer

    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be a stack of images (n, channels, height, width), got shape {X.shape}")
    if min(X.shape[2:]) < 8:
        raise ValueError(f"images of {X.shape[2]} x {X.shape[3]} px are too small for {len(widths)} pooling stages")
    from ..splits import check_missing

    y = check_missing(y, "y", unit="images")   # a missing label is an error, not a class (before np.unique)
    if len(np.unique(y)) < 2:
        raise ValueError(f"training needs images of at least 2 classes; got {np.unique(y).tolist()}")
    seed_everything(seed)
    model = build(name, X.shape[1], len(np.unique(y)), widths=tuple(widths), **model_kwargs)
    trainer = Trainer(model, max_epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      val_fraction=0.0, patience=None, augment=flip_augment if augment else None,
                      device=device, seed=seed, progress=progress)
    return trainer.fit(X, y)
