"""Autoencoders for cell identity codes (Part III), built from architecture strings as in Fig. 8.

Architecture string: comma-separated tokens for the encoder, e.g. ``"L300,G,L30"`` = a linear
layer to 300 units, LogSigmoid, a linear layer to 30 units (the code).  The paper defines only
``L<n>`` (linear) and ``G`` (LogSigmoid); the other letters are this book's:

====== ================ =========================
token  long form        layer
====== ================ =========================
L<n>   Linear<n>        fully connected, n units
G      LogSigmoid       ``nn.LogSigmoid``
S      SoftMax          ``nn.Softmax(dim=1)``
R      ReLU             ``nn.ReLU``
T      Tanh             ``nn.Tanh``
Sig    Sigmoid          ``nn.Sigmoid``
====== ================ =========================

The decoder mirrors the encoder: the widths in reverse order, each activation following the
linear layer of the width it followed in the encoder, and a plain linear output layer
(``"L300,G,L30"`` on 1000 genes: 1000 -> 300 -> G -> 30 | 30 -> 300 -> G -> 1000).

This module holds the networks only.  Training lives with the :class:`cellbook.Trainer` in
:mod:`cellbook.train`: :func:`cellbook.train.train_autoencoder` and
:func:`cellbook.train.train_classifier_autoencoder` (with their loss, targets and input noise).
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {
    "G": ("LogSigmoid", lambda: nn.LogSigmoid()),
    "S": ("SoftMax", lambda: nn.Softmax(dim=1)),
    "R": ("ReLU", lambda: nn.ReLU()),
    "T": ("Tanh", lambda: nn.Tanh()),
    "SIG": ("Sigmoid", lambda: nn.Sigmoid()),
}
_LONG = {"LOGSIGMOID": "G", "SOFTMAX": "S", "RELU": "R", "TANH": "T", "SIGMOID": "SIG"}
MAX_UNITS = 100_000
"""Widest layer an architecture string may ask for (the widest input here has about 56000 genes)."""
MAX_PARAMETERS = 500_000_000
"""Most weights an autoencoder may have (2 GB of float32 weights, before gradients and Adam state)."""


def parse_architecture(spec: str) -> list[tuple[str, object]]:
    """``"L300,G,L30"`` -> ``[("linear", 300), ("act", "G"), ("linear", 30)]``.

    Raises ``ValueError`` naming the bad token; the string must start with a linear layer and
    contain at least one (the last linear layer's width is the code size).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"architecture must be a non-empty string like 'L300,G,L30'; got {spec!r}")
    layers: list[tuple[str, object]] = []
    for raw in spec.split(","):
        tok = raw.strip()
        up = tok.upper()
        m = re.fullmatch(r"(?:L|LINEAR)(\d+)", up)
        if m:
            n = int(m.group(1))
            if n < 1:
                raise ValueError(f"bad token {tok!r} in architecture {spec!r}: a linear layer needs >= 1 unit")
            if n > MAX_UNITS:
                raise ValueError(f"bad token {tok!r} in architecture {spec!r}: {n:,} units is more than the "
                                 f"{MAX_UNITS:,} a layer may have (the paper's layers have 30-1000); use a "
                                 f"smaller width, e.g. 'L300,G,L30'")
            layers.append(("linear", n))
        elif up in ACTIVATIONS or up in _LONG:
            layers.append(("act", _LONG.get(up, up)))
        else:
            raise ValueError(f"bad token {tok!r} in architecture {spec!r}; valid tokens: L<n> (linear, n units), "
                             f"G (LogSigmoid), S (SoftMax), R (ReLU), T (Tanh), Sig (Sigmoid)")
    if layers[0][0] != "linear":
        raise ValueError(f"architecture {spec!r} must start with a linear layer (L<n>), not {spec.split(',')[0]!r}")
    for a, b in zip(layers, layers[1:]):
        if a[0] == "act" and b[0] == "act":
            raise ValueError(f"architecture {spec!r} has two activations in a row ({a[1]}, {b[1]})")
    return layers


def _build(layers, n_inputs: int):
    """Encoder and mirrored decoder as nn.Sequential, plus the code size."""
    widths, acts = [n_inputs], {}
    for kind, val in layers:
        if kind == "linear":
            widths.append(int(val))
        else:
            acts[len(widths) - 1] = val          # activation applied at this width index
    n_weights = 2 * sum(a * b + b for a, b in zip(widths, widths[1:]))   # encoder + mirrored decoder
    if n_weights > MAX_PARAMETERS:
        raise ValueError(f"the architecture {' -> '.join(map(str, widths))} (and its mirror) would have "
                         f"{n_weights:,} weights ({n_weights * 4 / 1e9:.1f} GB as float32), more than the "
                         f"{MAX_PARAMETERS:,} allowed; use narrower layers or fewer input genes")
    enc = []
    for i in range(1, len(widths)):
        enc.append(nn.Linear(widths[i - 1], widths[i]))
        if i in acts:
            enc.append(ACTIVATIONS[acts[i]][1]())
    dec = []
    rev = list(range(len(widths) - 1, -1, -1))   # width indices, code first
    for a, b in zip(rev, rev[1:]):
        dec.append(nn.Linear(widths[a], widths[b]))
        if b in acts and b != 0:
            dec.append(ACTIVATIONS[acts[b]][1]())
    return nn.Sequential(*enc), nn.Sequential(*dec), widths[-1]


def describe(spec: str, n_inputs: int) -> str:
    """Readable layer list, e.g. ``1000 -> 300 LogSigmoid -> 30 | 30 -> 300 LogSigmoid -> 1000``."""
    ae = Autoencoder(n_inputs, spec)
    def fmt(seq):
        parts = []
        for m in seq:
            if isinstance(m, nn.Linear):
                parts.append(str(m.out_features))
            else:
                parts[-1] += " " + type(m).__name__.replace("Softmax", "SoftMax")
        return " -> ".join(parts)
    return f"{n_inputs} -> {fmt(ae.encoder)} | {ae.code_size} -> {fmt(ae.decoder)}"


class Autoencoder(nn.Module):
    """Encoder from an architecture string, mirrored decoder.

    ``forward(x)`` -> reconstruction ``(batch, n_inputs)``; ``encode(x)`` -> code ``(batch, code_size)``;
    ``decode(z)`` -> ``(batch, n_inputs)``.
    """

    def __init__(self, n_inputs: int, architecture: str = "L300,G,L30"):
        super().__init__()
        if int(n_inputs) < 1:
            raise ValueError(f"n_inputs must be >= 1; got {n_inputs}")
        self.architecture, self.n_inputs = architecture, int(n_inputs)
        self.encoder, self.decoder, self.code_size = _build(parse_architecture(architecture), int(n_inputs))
        self.register_buffer("offset", torch.zeros(int(n_inputs)))

    def set_offset(self, mean) -> Autoencoder:
        """Centre inputs on ``mean`` (per gene, e.g. the training mean): encode(x - mean), decode(z) + mean."""
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        if mean.shape != (self.n_inputs,):
            raise ValueError(f"offset must have {self.n_inputs} values; got shape {tuple(mean.shape)}")
        self.offset.copy_(mean)
        return self

    def encode(self, x):
        return self.encoder(x - self.offset)

    def decode(self, z):
        return self.decoder(z) + self.offset

    def forward(self, x):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, X, batch_size: int = 1024) -> np.ndarray:
        """Reconstruct a NumPy array (samples x genes) -> NumPy array of the same shape."""
        return _apply(self, X, self.forward, batch_size)

    @torch.no_grad()
    def codes(self, X, batch_size: int = 1024) -> np.ndarray:
        """Codes of a NumPy array (samples x genes) -> ``(samples, code_size)``."""
        return _apply(self, X, self.encode, batch_size)


def _apply(model, X, fn, batch_size):
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != model.n_inputs:
        raise ValueError(f"X must be samples x {model.n_inputs} genes; got shape {X.shape}")
    model.eval()
    dev = next(model.parameters()).device
    out = [fn(torch.from_numpy(X[i:i + batch_size]).to(dev)).float().cpu().numpy()
           for i in range(0, len(X), batch_size)]
    return np.concatenate(out)


class ClassifierAutoencoder(Autoencoder):
    """Autoencoder whose code also feeds a classifier (at most one hidden layer, softmax output).

    ``forward(x)`` -> ``(reconstruction, logits)``; ``hidden=None`` gives a linear (softmax) classifier.
    """

    def __init__(self, n_inputs: int, n_classes: int, architecture: str = "L300,G,L30",
                 hidden: int | None = None):
        super().__init__(n_inputs, architecture)
        if int(n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2; got {n_classes}")
        self.n_classes = int(n_classes)
        if hidden:
            self.classifier = nn.Sequential(nn.Linear(self.code_size, int(hidden)), nn.LogSigmoid(),
                                            nn.Linear(int(hidden), self.n_classes))
        else:
            self.classifier = nn.Linear(self.code_size, self.n_classes)

    def forward(self, x):
        z = self.encode(x)
        return self.decode(z), self.classifier(z)

    @torch.no_grad()
    def reconstruct(self, X, batch_size: int = 1024) -> np.ndarray:
        return _apply(self, X, lambda x: self.forward(x)[0], batch_size)

    @torch.no_grad()
    def logits(self, X, batch_size: int = 1024) -> np.ndarray:
        return _apply(self, X, lambda x: self.forward(x)[1], batch_size)


@torch.no_grad()
def perturb_components(model: Autoencoder, codes, shift_sd: float = 2.0) -> np.ndarray:
    """Change in the decoded profile when each code component is raised by ``shift_sd`` SDs.

    Baseline REP = ``decode(mean code)``; row i = ``decode(mean code + shift_sd * sd_i * e_i)`` minus the
    baseline (paper, 'CIC Represents Aspects of Cell Biology').  ``codes``: samples x code_size.
    Returns ``(code_size, n_genes)``.
    """
    Z = np.asarray(codes, dtype=np.float32)
    if Z.ndim != 2 or Z.shape[1] != model.code_size:
        raise ValueError(f"codes must be samples x {model.code_size}; got shape {Z.shape}")
    model.eval().cpu()
    mean, sd = Z.mean(0), Z.std(0, ddof=1) if len(Z) > 1 else np.zeros(Z.shape[1], np.float32)
    shifted = np.tile(mean, (model.code_size, 1)) + np.diag(shift_sd * sd)
    base = model.decode(torch.from_numpy(mean[None, :]))
    out = model.decode(torch.from_numpy(shifted.astype(np.float32)))
    return (out - base).numpy()


def top_genes(changes: np.ndarray, names, n: int = 100) -> dict:
    """``{"C1": [n genes with the largest absolute change], ...}`` from :func:`perturb_components` output."""
    names = np.asarray(names)
    if changes.shape[1] != names.size:
        raise ValueError(f"changes has {changes.shape[1]} genes but {names.size} names were given")
    return {f"C{i + 1}": list(names[np.argsort(-np.abs(row), kind="stable")[:n]]) for i, row in enumerate(changes)}
