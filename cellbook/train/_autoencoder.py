"""Training the autoencoders of Part III (the networks are in :mod:`cellbook.models.autoencoder`).

Plain autoencoders train with ``task="reconstruction"``; the classifier autoencoder with ``task="regression"``,
the target :func:`pack_targets` (clean input and class code in one float array) and
``loss=classifier_ae_loss(mse_weight)``; denoising with ``augment=gaussian_noise(sd)`` (noise on the input only;
the target stays clean).  :class:`CurveTrainer` records a held-out loss per epoch without selecting on it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models.autoencoder import Autoencoder, ClassifierAutoencoder
from ..splits import check_missing
from ._trainer import Trainer

__all__ = ["CurveTrainer", "train_autoencoder", "train_classifier_autoencoder", "classifier_ae_loss",
           "gaussian_noise", "pack_targets"]


def pack_targets(X, y_codes) -> np.ndarray:
    """Clean input and integer class code in one float32 array ``(samples, genes + 1)``."""
    X = np.asarray(X, dtype=np.float32)
    y_codes = np.asarray(y_codes)
    if len(y_codes) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y_codes)} entries")
    return np.hstack([X, y_codes.reshape(-1, 1).astype(np.float32)])


def classifier_ae_loss(mse_weight: float = 0.5):
    """``loss(model, xb, yb)`` = ``mse_weight * MSE(recon, clean x) + (1 - mse_weight) * CE(logits, y)``.

    ``yb`` is a batch of :func:`pack_targets` output (so the reconstruction target stays clean
    when ``xb`` carries training noise).
    """
    if not 0 <= mse_weight <= 1:
        raise ValueError(f"mse_weight must be in [0, 1]; got {mse_weight}")

    def loss(model, xb, yb):
        recon, logits = model(xb)
        target, labels = yb[:, :-1].float(), yb[:, -1].long()
        mse = nn.functional.mse_loss(recon.float(), target)
        ce = nn.functional.cross_entropy(logits.float(), labels)
        return mse_weight * mse + (1 - mse_weight) * ce, logits

    loss.graph_safe = True   # the same kernels every step: may be captured in a CUDA graph
    return loss


def gaussian_noise(sd: float = 0.1):
    """Trainer ``augment``: add N(0, sd^2) noise to the input batch only (denoising training)."""
    if sd < 0:
        raise ValueError(f"noise sd must be >= 0; got {sd}")

    def augment(xb):
        return xb + sd * torch.randn_like(xb)

    augment.graph_safe = True   # draws on the device's generator: may be captured in a CUDA graph
    return augment


class CurveTrainer(Trainer):
    """A :class:`Trainer` that records a held-out set's loss per epoch without selecting on it.

    ``fit(X_train, X_val=X_test)`` logs ``test_loss`` per epoch in ``history``; early stopping
    and the restored checkpoint use the training loss only, so the test set never steers training.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, monitor="train", **kwargs)

    def fit(self, *args, **kwargs):
        super().fit(*args, **kwargs)
        self.history = self.history.rename(columns=lambda c: "test" + c[3:] if c.startswith("val_") else c)
        return self


def train_autoencoder(X_train, architecture: str = "L300,G,L30", *, X_test=None, epochs: int = 50,
                      batch_size: int = 32, lr: float = 1e-3, optimizer: str = "adam", noise_sd: float = 0.0,
                      center: bool = True, device: str = "cpu", seed: int = 0, progress: bool = False):
    """Build and train an :class:`cellbook.models.autoencoder.Autoencoder` on ``X_train`` (samples x genes, float).

    ``center=True`` centres the inputs on the training mean inside the model (see
    :meth:`cellbook.models.autoencoder.Autoencoder.set_offset`); reconstructions stay on the data's scale.
    With ``X_test`` the history has a ``test_loss`` (MSE) column per epoch (recorded, never used
    for selection).  Returns ``(model, trainer)``.
    """
    X_train = np.asarray(X_train, dtype=np.float32)
    torch.manual_seed(seed)
    model = Autoencoder(X_train.shape[1], architecture)
    if center:
        model.set_offset(X_train.mean(0))
    trainer = CurveTrainer(model, task="reconstruction", max_epochs=epochs, batch_size=batch_size, lr=lr,
                           optimizer=optimizer, val_fraction=0, patience=None, device=device, seed=seed,
                           progress=progress, augment=gaussian_noise(noise_sd) if noise_sd else None)
    if X_test is not None:
        trainer.fit(X_train, X_val=np.asarray(X_test, dtype=np.float32))
    else:
        trainer.fit(X_train)
    model.cpu()
    return model, trainer


def train_classifier_autoencoder(X_train, y_train, architecture: str = "L300,G,L30", *, hidden: int | None = None,
                                 mse_weight: float = 0.5, epochs: int = 50, batch_size: int = 32, lr: float = 1e-3,
                                 optimizer: str = "adam", noise_sd: float = 0.0, center: bool = True,
                                 device: str = "cpu", seed: int = 0, progress: bool = False):
    """Build and train a :class:`cellbook.models.autoencoder.ClassifierAutoencoder`.

    Returns ``(model, trainer, classes)``; predict with ``classes[model.logits(X).argmax(1)]``.
    """
    X_train = np.asarray(X_train, dtype=np.float32)
    if len(y_train) != len(X_train):
        raise ValueError(f"X_train has {len(X_train)} rows but y_train has {len(y_train)} labels")
    classes, codes = np.unique(check_missing(y_train, "y_train", unit="samples"), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a classifier autoencoder needs >= 2 classes; y has {len(classes)}")
    torch.manual_seed(seed)
    model = ClassifierAutoencoder(X_train.shape[1], len(classes), architecture, hidden=hidden)
    if center:
        model.set_offset(X_train.mean(0))
    trainer = Trainer(model, task="regression", loss=classifier_ae_loss(mse_weight), max_epochs=epochs,
                      batch_size=batch_size, lr=lr, optimizer=optimizer, val_fraction=0, patience=None,
                      device=device, seed=seed, progress=progress,
                      augment=gaussian_noise(noise_sd) if noise_sd else None)
    trainer.fit(X_train, pack_targets(X_train, codes))
    model.cpu()
    return model, trainer, classes
