"""The paper's 1D-CNN: the gene vector read as a one-channel signal.

Reference architecture (the authors' notebook; REFERENCE.md):
``Conv1d(1->64, k7, s4, p3) + ReLU + MaxPool(4)``, ``Conv1d(64->128, k5, s2, p2) + ReLU + MaxPool(4)``,
``Linear(->512) + BatchNorm + ReLU + Dropout(0.5)``, ``Linear(512->256) + BatchNorm + ReLU + Dropout(0.5)``,
``Linear(256->n_classes)``.  The flattened size follows from ``n_genes`` (13822 genes in the paper).

Input ``(batch, n_genes)`` or ``(batch, 1, n_genes)``; output logits ``(batch, n_classes)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .mlp import _check_sizes, dense_block


def conv_output_length(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class CNN1D(nn.Module):
    """1D convolutional classifier; ``channels``/``kernels``/``strides`` give one conv block each."""

    def __init__(self, n_genes: int, n_classes: int, channels: tuple[int, ...] = (64, 128),
                 kernels: tuple[int, ...] = (7, 5), strides: tuple[int, ...] = (4, 2), pool: int = 4,
                 hidden: tuple[int, ...] = (512, 256), dropout: float = 0.5):
        super().__init__()
        _check_sizes(n_genes, n_classes)
        if not (len(channels) == len(kernels) == len(strides)):
            raise ValueError("channels, kernels and strides must have the same length")
        self.n_genes, self.n_classes = int(n_genes), int(n_classes)
        blocks, c_in, length = [], 1, int(n_genes)
        for c, k, s in zip(channels, kernels, strides):
            blocks += [nn.Conv1d(c_in, c, kernel_size=k, stride=s, padding=k // 2), nn.ReLU(inplace=True),
                       nn.MaxPool1d(pool)]
            length = conv_output_length(length, k, s, k // 2) // pool
            c_in = c
        if length < 1:
            raise ValueError(f"n_genes={n_genes} is too short for the CNN's strides and pooling "
                             f"(the signal shrinks to nothing); use at least "
                             f"{self.min_genes(kernels, strides, pool)} genes or fewer conv blocks")
        self.features = nn.Sequential(*blocks)
        self.flat_size = c_in * length
        sizes = [self.flat_size, *map(int, hidden)]
        self.classifier = nn.Sequential(*[dense_block(a, b, dropout) for a, b in zip(sizes[:-1], sizes[1:])],
                                        nn.Linear(sizes[-1], int(n_classes)))

    @staticmethod
    def min_genes(kernels=(7, 5), strides=(4, 2), pool=4) -> int:
        n = 1
        while True:
            length = n
            for k, s in zip(kernels, strides):
                length = conv_output_length(length, k, s, k // 2) // pool
            if length >= 1:
                return n
            n += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))
