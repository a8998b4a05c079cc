"""Ensembles of classifiers, the two ways the book compares.

(a) :class:`JointEnsemble` -- what the authors' code calls "CNN ensemble": K member networks whose
    logits are averaged inside one module and trained *jointly* as one model (one loss on the
    averaged logits, one optimiser).
(b) :class:`VotingEnsemble` -- K members trained *independently* (different seeds), combined at
    prediction time by soft voting (mean of the members' class probabilities) or hard voting
    (majority of the members' predicted classes; ties broken by the mean probability).

Members may differ (a CNN + LSTM ensemble is ``JointEnsemble([CNN1D(...), LSTMClassifier(...)])``).
Every forward returns ``(batch, n_classes)`` scores whose softmax is the ensemble's class
probability (log-probabilities for voting), so ``Trainer.predict_proba`` works unchanged.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

VOTING_MODES = ("soft", "hard")


def _check_members(members: Sequence[nn.Module]) -> list[nn.Module]:
    members = list(members)
    if len(members) < 1:
        raise ValueError("an ensemble needs at least one member")
    if not all(isinstance(m, nn.Module) for m in members):
        raise ValueError("ensemble members must be torch.nn.Module instances")
    return members


class JointEnsemble(nn.Module):
    """Logit-averaging ensemble trained as one model: ``mean_k member_k(x)``."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(_check_members(members))

    def forward(self, x):
        return torch.stack([m(x) for m in self.members]).mean(0)


class VotingEnsemble(nn.Module):
    """Independently trained members combined by ``mode`` = ``"soft"`` or ``"hard"`` voting.

    Returns log class probabilities: soft = ``log(mean_k softmax(member_k))``; hard = ``log`` of the
    vote shares (a small share of the soft probability is added to break ties).
    """

    def __init__(self, members: Sequence[nn.Module], mode: str = "soft"):
        super().__init__()
        if mode not in VOTING_MODES:
            raise ValueError(f"unknown voting mode {mode!r}; valid: {', '.join(VOTING_MODES)}")
        self.members = nn.ModuleList(_check_members(members))
        self.mode = mode

    def forward(self, x):
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members])  # (K, B, C)
        soft = probs.mean(0)
        if self.mode == "soft":
            return torch.log(soft.clamp_min(1e-12))
        votes = nn.functional.one_hot(probs.argmax(2), probs.shape[2]).float().mean(0)  # (B, C) shares
        share = votes + 1e-3 * soft   # tie-break by mean probability; stays a valid ranking
        return torch.log((share / share.sum(1, keepdim=True)).clamp_min(1e-12))


def joint(make_member: Callable[[int], nn.Module], k: int, seed: int = 0) -> JointEnsemble:
    """A :class:`JointEnsemble` of ``k`` members ``make_member(i)``, each initialised from ``seed + i``."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    members = []
    for i in range(int(k)):
        torch.manual_seed(int(seed) * 1000 + i)
        members.append(make_member(i))
    return JointEnsemble(members)
