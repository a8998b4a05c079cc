"""Multilayer perceptron for cell-type classification (Part I's MLP baseline).

The paper's MLP has 4 layers: three hidden ``Linear -> BatchNorm -> ReLU -> Dropout`` blocks and
a linear output layer (``input_dropout`` > 0 adds dropout on the genes, for the book's regularised
MLP; the paper's MLP has none).  Input: ``(batch, n_genes)`` (counts or log-normalised); output: logits
``(batch, n_classes)``.
"""
from __future__ import annotations

from torch import nn


def _check_sizes(n_genes: int, n_classes: int) -> None:
    if int(n_genes) < 1:
        raise ValueError(f"n_genes must be >= 1, got {n_genes}")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")


def dense_block(n_in: int, n_out: int, dropout: float, batch_norm: bool = True) -> nn.Sequential:
    """``Linear -> BatchNorm1d -> ReLU -> Dropout`` (the authors' fully connected block)."""
    layers = [nn.Linear(n_in, n_out)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """``n_genes -> hidden[0] -> ... -> n_classes``; 4 layers with the default three hidden sizes."""

    def __init__(self, n_genes: int, n_classes: int, hidden: tuple[int, ...] = (512, 256, 128),
                 dropout: float = 0.5, batch_norm: bool = True, input_dropout: float = 0.0):
        super().__init__()
        _check_sizes(n_genes, n_classes)
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0 <= p < 1:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        sizes = [int(n_genes), *map(int, hidden)]
        self.n_genes, self.n_classes = int(n_genes), int(n_classes)
        # input dropout zeroes whole genes of a cell at random: a cheap stand-in for shallower sequencing
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout > 0 else nn.Identity()
        self.body = nn.Sequential(*[dense_block(a, b, dropout, batch_norm) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nn.Linear(sizes[-1], int(n_classes))

    def forward(self, x):
        if x.dim() == 3:  # (batch, 1, genes) -> (batch, genes)
            x = x.flatten(1)
        return self.head(self.body(self.input_dropout(x)))
