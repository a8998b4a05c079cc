"""Ensembles of classifiers, the two ways the book compares.

(a) :class:`JointEnsemble` -- what the authors' code calls "CNN ensemble": K member networks whose
    logits are averaged inside one module and trained *jointly* as one model (one loss on the
    averaged logits, one optimiser).
(b) :class:`VotingEnsemble` -- K members trained *independently* (different seeds), combined at
    prediction time by soft voting (mean of the members' class probabilities) or hard voting
    (majority of the members' predicted classes; ties broken by the mean probability).

Members may differ (a CNN + LSTM ensemble is ``JointEnsemble([CNN1D(...), LSTMClassifier(...)])``).
When they are K copies of one CNN or MLP architecture, a joint ensemble on the GPU runs as *one*
batched computation (:func:`fused_forward`): the first convolution's filters are concatenated,
later convolutions become grouped convolutions (``groups=K``), linear layers one batched matrix
product and batch norms one batch norm over the K members' features side by side.  Same maths,
same parameters and state dict (they stay in the members); fewer, larger GPU kernels.
Every forward returns ``(batch, n_classes)`` scores whose softmax is the ensemble's class
probability (log-probabilities for voting), so ``Trainer.predict_proba`` works unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .cnn1d import CNN1D
from .mlp import MLP

VOTING_MODES = ("soft", "hard")


def _check_members(members: Sequence[nn.Module]) -> list[nn.Module]:
    members = list(members)
    if len(members) < 1:
        raise ValueError("an ensemble needs at least one member")
    if not all(isinstance(m, nn.Module) for m in members):
        raise ValueError("ensemble members must be torch.nn.Module instances")
    return members


class JointEnsemble(nn.Module):
    """Logit-averaging ensemble trained as one model: ``mean_k member_k(x)``.

    ``fused``: ``"auto"`` runs the members as one batched computation on CUDA inputs when they share
    one CNN1D / MLP architecture (see :func:`fused_forward`); ``True`` also on the CPU (used by the
    tests that check it computes the same as the member-by-member loop); ``False`` never.
    """

    def __init__(self, members: Sequence[nn.Module], fused: bool | str = "auto"):
        super().__init__()
        if fused not in ("auto", True, False):
            raise ValueError(f"fused must be 'auto', True or False, got {fused!r}")
        self.members = nn.ModuleList(_check_members(members))
        self.fused = fused

    def forward(self, x):
        fused = getattr(self, "fused", "auto")   # models saved before the fused path existed
        if fused is True or (fused == "auto" and x.is_cuda):
            if can_fuse(self.members):
                return fused_forward(self.members, x).mean(1)
        return torch.stack([m(x) for m in self.members]).mean(0)


# ------------------------------------------------------------------------ the fused computation
_FLATTEN = "flatten"
_ELEMENTWISE = (nn.ReLU, nn.Dropout, nn.Identity)


def _leaves(module: nn.Module) -> list:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _program(member: nn.Module) -> list | None:
    """The member's forward pass as a flat list of layers, or None when it is not a CNN1D / MLP."""
    if type(member) is CNN1D:
        return [*_leaves(member.features), _FLATTEN, *_leaves(member.classifier)]
    if type(member) is MLP:
        return [_FLATTEN, *_leaves(member.input_dropout), *_leaves(member.body), member.head]
    return None


def _layer_signature(layer) -> tuple:
    if layer is _FLATTEN:
        return (_FLATTEN,)
    if isinstance(layer, nn.Conv1d):
        return ("conv", layer.weight.shape, layer.bias is not None, layer.stride, layer.padding, layer.dilation,
                layer.groups, layer.padding_mode)
    if isinstance(layer, nn.Linear):
        return ("linear", layer.weight.shape, layer.bias is not None)
    if isinstance(layer, nn.BatchNorm1d):
        return ("bn", layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if isinstance(layer, nn.MaxPool1d):
        return ("maxpool", layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.ceil_mode)
    if isinstance(layer, nn.Dropout):
        return ("dropout", layer.p)
    if isinstance(layer, _ELEMENTWISE):
        return (type(layer).__name__,)
    return ("unsupported", type(layer).__name__)


def can_fuse(members) -> bool:
    """True when every member is the same CNN1D / MLP architecture with layers the fused path knows."""
    progs = [_program(m) for m in members]
    if len(progs) < 2 or any(p is None for p in progs):
        return False
    sigs = [[_layer_signature(layer) for layer in p] for p in progs]
    if any(s != sigs[0] for s in sigs[1:]):
        return False
    if any(s[0] == "unsupported" or (s[0] == "bn" and (s[3] is None or not s[4] or not s[5])) for s in sigs[0]):
        return False
    if any(s[0] == "conv" and s[6] != 1 for s in sigs[0]) or any(s[0] == "conv" and s[7] != "zeros" for s in sigs[0]):
        return False
    return True


def fused_forward(members, x: torch.Tensor) -> torch.Tensor:
    """Every member's logits in one batched pass: ``(batch, K, n_classes)``.

    The same maths as ``torch.stack([m(x) for m in members], 1)`` (up to floating-point summation
    order), including each member's batch-norm running statistics, which are updated in place.
    Dropout draws its masks for all members at once (different random numbers, same distribution).
    """
    K = len(members)
    progs = [_program(m) for m in members]
    h, state = x, "shared"          # shared (B, ...) -> conv (B, K*C, L) -> dense (B, K, F)
    for layers in zip(*progs):
        first = layers[0]
        if first is _FLATTEN:
            if state == "conv":
                B, KC, L = h.shape
                h = h.reshape(B, K, (KC // K) * L)
            elif h.dim() > 2:
                h = h.flatten(1)
        elif isinstance(first, nn.Conv1d):
            if state == "shared" and h.dim() == 2:
                h = h.unsqueeze(1)
            weight = torch.cat([layer.weight for layer in layers])
            bias = torch.cat([layer.bias for layer in layers]) if first.bias is not None else None
            h = F.conv1d(h, weight, bias, first.stride, first.padding, first.dilation,
                         first.groups * (1 if state == "shared" else K))
            state = "conv"
        elif isinstance(first, nn.Linear):
            weight = torch.stack([layer.weight for layer in layers])            # (K, out, in)
            if state == "shared":
                h = torch.einsum("bf,kof->bko", h, weight)
            else:
                h = torch.einsum("bkf,kof->bko", h, weight)
            if first.bias is not None:
                h = h + torch.stack([layer.bias for layer in layers])
            state = "dense"
        elif isinstance(first, nn.BatchNorm1d):
            B, _, n = h.shape
            mean = torch.cat([layer.running_mean for layer in layers])
            var = torch.cat([layer.running_var for layer in layers])
            h = F.batch_norm(h.reshape(B, K * n), mean, var, torch.cat([layer.weight for layer in layers]),
                             torch.cat([layer.bias for layer in layers]), first.training, first.momentum,
                             first.eps).reshape(B, K, n)
            if first.training:
                with torch.no_grad():
                    for i, layer in enumerate(layers):
                        layer.running_mean.copy_(mean[i * n:(i + 1) * n])
                        layer.running_var.copy_(var[i * n:(i + 1) * n])
                        layer.num_batches_tracked.add_(1)
        else:   # ReLU, Dropout, Identity, MaxPool1d: the same op on the members side by side
            if state == "shared" and isinstance(first, nn.Dropout) and first.training and first.p > 0:
                h = h.unsqueeze(1).expand(h.shape[0], K, *h.shape[1:])   # each member its own mask
                state = "dense"
            h = first(h)
    if state == "conv":
        raise RuntimeError("fused_forward: the members end in a convolution, not a linear layer")
    return h


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


def joint(make_member: Callable[[int], nn.Module], k: int, seed: int = 0, fused: bool | str = "auto") -> JointEnsemble:
    """A :class:`JointEnsemble` of ``k`` members ``make_member(i)``, each initialised from ``seed + i``."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    members = []
    for i in range(int(k)):
        torch.manual_seed(int(seed) * 1000 + i)
        members.append(make_member(i))
    return JointEnsemble(members, fused=fused)
