"""LSTM classifiers: the gene vector read as a sequence of chunks.

A cell's ``n_genes`` values are cut into ``ceil(n_genes / chunk)`` consecutive chunks of ``chunk``
genes (the last one zero-padded); each chunk is one time step.  Without attention the last hidden
state is classified; with ``attention=True`` the LSTM states are pooled by learned attention
weights (``softmax(w . tanh(W h_t))``), the "LSTM + attention" model of the paper.

Input ``(batch, n_genes)``; output logits ``(batch, n_classes)``.  ``last_attention`` keeps the
most recent attention weights ``(batch, n_steps)`` for inspection.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .mlp import _check_sizes


class AttentionPool(nn.Module):
    """Additive attention pooling over time: ``(batch, T, H) -> (batch, H)``."""

    def __init__(self, hidden: int, attn_size: int = 64):
        super().__init__()
        self.proj = nn.Linear(hidden, attn_size)
        self.score = nn.Linear(attn_size, 1, bias=False)

    def forward(self, states):
        weights = torch.softmax(self.score(torch.tanh(self.proj(states))).squeeze(-1), dim=1)
        return (weights.unsqueeze(-1) * states).sum(1), weights


class LSTMClassifier(nn.Module):
    """LSTM over gene chunks, optionally with attention pooling."""

    def __init__(self, n_genes: int, n_classes: int, chunk: int = 100, hidden: int = 128, layers: int = 1,
                 bidirectional: bool = False, attention: bool = False, dropout: float = 0.3):
        super().__init__()
        _check_sizes(n_genes, n_classes)
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.n_genes, self.n_classes, self.chunk = int(n_genes), int(n_classes), int(chunk)
        self.n_steps = math.ceil(self.n_genes / self.chunk)
        self.lstm = nn.LSTM(self.chunk, hidden, num_layers=layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        out = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPool(out) if attention else None
        self.head = nn.Sequential(nn.LayerNorm(out), nn.Dropout(dropout), nn.Linear(out, int(n_classes)))
        self.last_attention = None

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, n_genes)`` -> ``(batch, n_steps, chunk)``, zero-padding the last chunk."""
        x = x.flatten(1)
        if x.shape[1] != self.n_genes:
            raise ValueError(f"expected {self.n_genes} genes per cell, got {x.shape[1]}")
        pad = self.n_steps * self.chunk - self.n_genes
        if pad:
            x = nn.functional.pad(x, (0, pad))
        return x.view(x.shape[0], self.n_steps, self.chunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, (h, _) = self.lstm(self.to_sequence(x))
        if self.attention is not None:
            pooled, weights = self.attention(states)
            self.last_attention = weights.detach()
        else:
            pooled = states[:, -1]
        return self.head(pooled)
