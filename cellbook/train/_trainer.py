"""The :class:`Trainer`: minibatch training of any PyTorch model, with early stopping and checkpoint restore.

``fit`` runs named steps: :meth:`Trainer._prepare_data` (checks, targets, validation split),
:meth:`Trainer._prepare_model` (device, optimiser, schedule, where the rows live), then per epoch
:meth:`Trainer._train_epoch` (batches of :meth:`Trainer._train_batch`), :meth:`Trainer._evaluate_source`
(validation) and :meth:`Trainer._track_best` (best checkpoint, early stopping), and :meth:`Trainer._finish`
(restore the best weights, the history).
"""
from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from torch import nn

from ..config import seed_everything
from ._inputs import (
    check_inputs,
    check_model,
    check_split_sizes,
    class_codes,
    class_weights,
    dense_bytes,
    n_rows,
    progress_bar,
    regression_targets,
    rows,
    val_codes,
)
from ._resident import HostRows, Resident, StaticSteps, resident_budget_bytes
from ._settings import check_settings

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["Trainer", "NotFittedError", "LossFn"]


@dataclass
class _FitData:
    """The checked data of one fit: training rows and targets, validation rows and targets, the row split."""
    X: object
    Y: object
    X_val: object
    Y_val: object
    train_idx: np.ndarray
    val_idx: np.ndarray | None   # None: all rows of X_val (given separately); empty: no validation


@dataclass
class _FitState:
    """What one fit trains with: optimiser, schedule, row sources and the best checkpoint so far."""
    opt: torch.optim.Optimizer
    sched: object
    src: object
    val_src: object
    static: StaticSteps | None
    has_bn: bool
    need_clean: bool
    best: float = np.inf
    best_state: dict | None = None
    stale: int = 0
    rows: list = field(default_factory=list)


class Trainer:
    """Minibatch training with early stopping, LR schedule, progress bar and best-checkpoint restore.

    Settings are keyword arguments, in four groups.

    **Model and loss**

    model : nn.Module
        Maps a batch ``(batch, ...)`` to outputs (logits for classification).
    task : {"classification", "regression", "reconstruction"}
        Chooses the default loss (cross-entropy, MSE, MSE against the input).
    loss : callable, optional
        ``loss(model, xb, yb) -> scalar tensor``; overrides ``task``'s loss.
    class_weight : array or dict, optional
        Cross-entropy weight per class, in ``classes_`` (sorted) order or as ``{class: weight}``.
    label_smoothing : float
        Cross-entropy label smoothing during training (classification; validation losses are
        plain cross-entropy).
    augment : callable, optional
        Applied to each training batch tensor (e.g. input noise for a denoising autoencoder).

    **Optimisation**

    max_epochs, batch_size, lr, weight_decay
        The usual.  ``optimizer`` is ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
    lr_step, lr_gamma
        Multiply the learning rate by ``lr_gamma`` every ``lr_step`` optimiser steps
        (iterations, not epochs); ``lr_step=None`` keeps it constant.

    **Stopping**

    val_fraction, patience
        Hold out this share of the training rows (stratified for classification) and stop
        after ``patience`` epochs without a better validation loss; the best weights are
        restored.  ``val_fraction=0`` trains for ``max_epochs`` on everything.
    monitor : {"val", "train"}
        Which loss selects the best checkpoint and drives early stopping.  ``"train"`` only
        *logs* the validation loss (e.g. a test-set learning curve that must not steer training).
    checkpoint : path, optional
        Also save the best state dict there.

    **Runtime and device**

    device : "auto" | "cpu" | "cuda"
        Mixed precision (bfloat16 autocast) is used on CUDA only, when ``amp`` is true.
    seed : int
        Seeds the global generators, the validation split and the batch order.
    progress : bool, optional
        A tqdm bar per epoch; default on, off when ``CELLBOOK_PROGRESS=0`` (set by ``cellbook run``).
    predict_batch_size : int
        Rows per batch for validation and prediction.
    resident : "auto" | bool
        Put the training (and validation) rows on the device once and draw batches there.  ``"auto"``:
        on CUDA when the dense data fit :func:`resident_budget_bytes`; never on the CPU.  ``True`` forces
        it (also on the CPU, where it gives the same numbers as the default path).  After ``fit``,
        ``resident_`` says which path ran.
    graphs : bool, optional
        Replay each full-size training batch as one captured CUDA graph (resident fits on CUDA only; a
        shorter last batch runs eagerly).  ``None`` (default): on when ``CELLBOOK_CUDA_GRAPHS=1``.
        ``True`` on the CPU runs the same fixed-buffer steps without capture (the same numbers as the
        default path; the tests check this).  If capture fails, or the step is not known to be
        graph-safe, training goes on eagerly.  After ``fit``, ``graphs_`` says what ran: ``"captured"``,
        ``"static"`` (CPU), ``False``, or why not (``"not graph-safe: ..."``, ``"capture failed: ..."``).

    After ``fit``: ``history`` (one row per epoch), ``best_epoch``, ``fit_seconds``, ``classes_`` and
    ``class_weight_`` (classification), ``resident_`` and ``graphs_``.
    """

    def __init__(self, model: nn.Module, *, task: str = "classification", loss: LossFn | None = None,
                 max_epochs: int = 20, batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
                 weight_decay: float = 0.0, lr_step: int | None = None, lr_gamma: float = 0.9,
                 val_fraction: float = 0.1, patience: int | None = 5, augment: Callable | None = None,
                 device: str = "auto", amp: bool = True, seed: int = 0, progress: bool | None = None,
                 checkpoint: str | None = None, class_weight: np.ndarray | None = None,
                 predict_batch_size: int = 1024, monitor: str = "val", label_smoothing: float = 0.0,
                 resident: bool | str = "auto", graphs: bool | None = None):
        device = check_settings(dict(
            task=task, loss=loss, max_epochs=max_epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
            weight_decay=weight_decay, lr_step=lr_step, lr_gamma=lr_gamma, val_fraction=val_fraction,
            patience=patience, augment=augment, device=device, amp=amp, seed=seed, progress=progress,
            checkpoint=checkpoint, class_weight=class_weight, predict_batch_size=predict_batch_size, monitor=monitor,
            label_smoothing=label_smoothing, resident=resident, graphs=graphs))
        # model and loss
        self.model, self.task, self.loss = model, task, loss
        self.class_weight, self.label_smoothing, self.augment = class_weight, float(label_smoothing), augment
        # optimisation
        self.max_epochs, self.batch_size, self.lr = int(max_epochs), int(batch_size), float(lr)
        self.optimizer, self.weight_decay = optimizer, float(weight_decay)
        self.lr_step, self.lr_gamma = lr_step, float(lr_gamma)
        # stopping
        self.val_fraction, self.patience = float(val_fraction), patience
        self.monitor, self.checkpoint = monitor, checkpoint
        # runtime and device
        self.device, self.amp = device, bool(amp) and device.startswith("cuda")
        if progress is None:  # on by default; `cellbook run` turns it off for the published pages
            progress = os.environ.get("CELLBOOK_PROGRESS", "1") != "0"
        self.seed, self.progress, self.predict_batch_size = int(seed), progress, int(predict_batch_size)
        self.resident, self.graphs = resident, graphs
        # what a fit leaves
        self.resident_, self.graphs_, self._weight_t = False, False, None
        self.history, self.fit_seconds, self.best_epoch = pd.DataFrame(), 0.0, None
        self.classes_, self._fitted = None, False

    # ---------------------------------------------------------------------- API
    def fit(self, X, y=None, X_val=None, y_val=None, groups=None) -> Trainer:
        """Train; ``X_val``/``y_val`` replace the internal validation split when given.

        ``groups`` (one id per row, e.g. donor or source frame) makes the internal validation
        split hold out whole groups, so early stopping is not fooled by near-duplicates.
        """
        data = self._prepare_data(X, y, X_val, y_val, groups)
        state = self._prepare_model(data)
        rng = np.random.default_rng(self.seed)
        t0 = time.perf_counter()
        bar = progress_bar(range(1, self.max_epochs + 1), self.progress, type(self.model).__name__)
        for epoch in bar:
            row = self._train_epoch(state, data.train_idx, epoch, rng, t0)
            if data.val_idx is None or len(data.val_idx):
                row.update(self._evaluate_source(state.val_src, data.val_idx))
            state.rows.append(row)
            stop = self._track_best(state, row, epoch)
            if self.progress:
                bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()
                                 if k in ("train_loss", "val_loss", "val_accuracy")})
            if stop:
                break
        self._finish(state, t0)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, n_classes)``, columns in ``classes_`` order."""
        self._check_fitted()
        return torch.softmax(torch.from_numpy(self.forward(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted labels (in the original label vocabulary for classification)."""
        self._check_fitted()
        out = self.forward(X)
        if self.task == "classification":
            return self.classes_[out.argmax(1)]
        return out

    @torch.no_grad()
    def forward(self, X, fn: Callable | None = None) -> np.ndarray:
        """Model outputs for every row of X, batch by batch, as a NumPy array.

        ``fn(model, xb)`` replaces ``model(xb)`` (e.g. ``lambda m, x: m.encode(x)``).
        """
        X = check_inputs(X, None)
        self._dry_run(X, None)
        self.model.to(self.device).eval()
        outs = []
        for start in range(0, n_rows(X), self.predict_batch_size):
            idx = np.arange(start, min(start + self.predict_batch_size, n_rows(X)))
            xb = torch.from_numpy(rows(X, idx)).to(self.device)
            with self._autocast():
                out = fn(self.model, xb) if fn else self.model(xb)
            if isinstance(out, tuple):
                out = out[0]
            outs.append(out.float())
        return torch.cat(outs).cpu().numpy()

    # ---------------------------------------------------------------- fit steps
    def _prepare_data(self, X, y, X_val, y_val, groups) -> _FitData:
        """Check the inputs, code the targets, seed, and split off the validation rows."""
        X = check_inputs(X, y)
        if y is None and self.task != "reconstruction":
            raise ValueError(f"task {self.task!r} needs targets y")
        Y = self._targets(y) if y is not None else None
        self.class_weight_ = self._class_weight()
        self._weight_t = (None if self.class_weight_ is None
                          else torch.as_tensor(self.class_weight_, dtype=torch.float32, device=self.device))
        target_shape = {"regression": None if Y is None else tuple(Y.shape[1:]),
                        "reconstruction": tuple(X.shape[1:])}.get(self.task)
        self._dry_run(X, len(self.classes_) if self.task == "classification" else None, target_shape)
        if X_val is not None:
            X_val = check_inputs(X_val, y_val, "X_val")
            if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
                raise ValueError(f"X_val rows have shape {tuple(X_val.shape[1:])} but X rows {tuple(X.shape[1:])}; "
                                 f"give validation data with the same features")
            if y_val is None and self.task != "reconstruction":
                raise ValueError(f"X_val was given without y_val; task {self.task!r} needs validation targets")
        seed_everything(self.seed)
        if X_val is None:
            return _FitData(X, Y, X, Y, *self._split(n_rows(X), Y, groups))
        Yv = (self._val_codes(y_val) if self.task == "classification"
              else (None if y_val is None else np.asarray(y_val, dtype=np.float32)))
        return _FitData(X, Y, X_val, Yv, np.arange(n_rows(X)), None)

    def _prepare_model(self, data: _FitData) -> _FitState:
        """Model on the device; where the rows live (host or resident); the optimiser and its schedule."""
        self.model.to(self.device)
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        # the data: on the device once (resident), or densified per batch (default on the CPU)
        same_val = data.X_val is data.X
        self.resident_ = (self._want_resident(data.X, None if same_val else data.X_val)
                          or (self.graphs is True and not cuda))
        graph_mode = self._graph_mode(cuda)
        capture = graph_mode == "captured"
        opt = self._optimizer(cuda, capture)
        # the learning-rate schedule: StepLR, or (fixed-buffer steps) the same products by hand, so a captured
        # step reads the rate from a tensor that is updated in place
        sched = (torch.optim.lr_scheduler.StepLR(opt, step_size=int(self.lr_step), gamma=self.lr_gamma)
                 if self.lr_step and graph_mode is None else None)
        source = Resident if self.resident_ else HostRows
        src = source(data.X, data.Y, self.device)
        val_src = src if same_val else source(data.X_val, data.Y_val, self.device)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        need_clean = self.augment is not None and data.Y is None and self.loss is None
        static = (StaticSteps(self, opt, src, need_clean, capture) if graph_mode in ("captured", "static")
                  else None)
        return _FitState(opt, sched, src, val_src, static, has_bn, need_clean)

    def _train_epoch(self, state: _FitState, train_idx, epoch: int, rng, t0: float) -> dict:
        """One pass over the training rows in a fresh shuffled order; the epoch's history row (so far)."""
        self.model.train()
        order = rng.permutation(train_idx)
        batches = [np.sort(order[start:start + self.batch_size]) for start in range(0, len(order), self.batch_size)]
        if state.has_bn:  # a batch of one breaks batch-norm statistics
            batches = [b for b in batches if len(b) >= 2]
        if state.static is not None:
            total, seen = state.static.epoch(batches)
        else:
            total, seen = 0.0, 0
            for xb, yb, clean in state.src.batches(batches, need_clean=state.need_clean):
                loss, n = self._train_batch(state, xb, yb, clean)
                total += loss * n
                seen += n
        return {"epoch": epoch, "train_loss": float(total) / max(seen, 1),
                "lr": float(state.opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - t0}

    def _train_batch(self, state: _FitState, xb, yb, clean) -> tuple[torch.Tensor, int]:
        """One optimiser step on a batch; its (detached) loss and its number of rows."""
        if self.augment is not None:
            xb = self.augment(xb)
            if clean is not None:
                yb = clean
        state.opt.zero_grad(set_to_none=True)
        with self._autocast():
            res = self._loss(xb, yb)
        loss = res[0] if isinstance(res, tuple) else res
        loss.backward()
        state.opt.step()
        if state.sched is not None:
            state.sched.step()
        return loss.detach(), xb.shape[0]

    @torch.no_grad()
    def _evaluate_source(self, src, idx) -> dict:
        """Validation loss (and accuracy) on rows ``idx`` of ``src`` (all rows when None), in large batches."""
        self.model.eval()
        idx = np.arange(src.n) if idx is None else idx
        batches = [idx[start:start + self.predict_batch_size] for start in range(0, len(idx), self.predict_batch_size)]
        losses, correct = [], None
        for xb, yb, _ in src.batches(batches):
            with self._autocast():
                res = self._loss(xb, yb)
            loss, out = (res if isinstance(res, tuple) else (res, None))
            losses.append(loss.detach().float())
            if self.task == "classification" and out is not None and self.loss is None:
                hit = (out.argmax(1) == yb).sum()
                correct = hit if correct is None else correct + hit
        # one copy to the host per evaluation; summed in the same order (and precision) as batch by batch
        total = sum(v * len(b) for v, b in zip(torch.stack(losses).cpu().tolist(), batches))
        row = {"val_loss": total / len(idx)}
        if self.task == "classification" and self.loss is None:
            row["val_accuracy"] = (0 if correct is None else int(correct)) / len(idx)
        return row

    def _track_best(self, state: _FitState, row: dict, epoch: int) -> bool:
        """Keep the best weights so far (and save the checkpoint); whether early stopping ends the fit after this
        epoch."""
        monitor = row.get("val_loss", row["train_loss"]) if self.monitor == "val" else row["train_loss"]
        if monitor < state.best:
            state.best, state.stale, self.best_epoch = monitor, 0, epoch
            state.best_state = copy.deepcopy(self.model.state_dict())
            if self.checkpoint:
                torch.save(state.best_state, self.checkpoint)
        else:
            state.stale += 1
        return (self.patience is not None and (self.monitor == "train" or "val_loss" in row)
                and state.stale >= self.patience)

    def _finish(self, state: _FitState, t0: float):
        """Record what ran, free the data on the device, restore the best weights, keep the history."""
        if state.static is not None:
            self.graphs_ = state.static.outcome()
        best_state, rows_ = state.best_state, state.rows
        state.src = state.val_src = state.static = None
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.fit_seconds = time.perf_counter() - t0
        self.history = pd.DataFrame(rows_)
        self.model.eval()
        self._fitted = True

    # ------------------------------------------------------------------ helpers
    def _targets(self, y):
        if self.task == "classification":
            self.classes_, codes = class_codes(y)
            return codes
        if self.task == "regression":
            return regression_targets(y)
        return None

    def _class_weight(self):
        """``class_weight`` checked against ``classes_``: an array in ``classes_`` order (or None)."""
        if self.class_weight is None or self.task != "classification":
            return None
        return class_weights(self.class_weight, self.classes_)

    def _val_codes(self, y_val) -> np.ndarray:
        """Validation labels -> class codes; a label never seen in training is an error (not a wrong code)."""
        return val_codes(y_val, self.classes_)

    def _dry_run(self, X, n_classes: int | None, target_shape: tuple | None = None):
        """Run the model on the first row of X so that a shape mismatch is a clear error (see :func:`check_model`)."""
        check_model(self.model, X, n_classes, self.classes_, custom_loss=self.loss is not None,
                    target_shape=target_shape)

    def _loss(self, xb, yb):
        if self.loss is not None:
            return self.loss(self.model, xb, yb)
        out = self.model(xb)
        if self.task == "classification":
            weight = self._weight_t
            # label smoothing regularises training only: validation losses stay plain cross-entropy,
            # so they compare across settings
            smooth = self.label_smoothing if self.model.training else 0.0
            return nn.functional.cross_entropy(out.float(), yb, weight=weight, label_smoothing=smooth), out
        return nn.functional.mse_loss(out.float(), yb.float()), out

    def _split(self, n, y_codes, groups=None):
        rng = np.random.default_rng(self.seed)
        if self.val_fraction == 0:
            return rng.permutation(n), np.array([], dtype=int)
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != n:
                raise ValueError(f"groups has {len(groups)} entries but X has {n} rows")
            if len(np.unique(groups)) < 2:
                raise ValueError("a grouped validation split needs at least 2 groups")
            tr, va = next(GroupShuffleSplit(n_splits=1, test_size=self.val_fraction,
                                            random_state=self.seed).split(np.arange(n), groups=groups))
            return tr, va
        if self.task == "classification":
            n_val = math.ceil(n * self.val_fraction)   # scikit-learn's rounding
            check_split_sizes(n, n_val, self.val_fraction)
            counts = np.bincount(y_codes)
            n_classes = int((counts > 0).sum())
            # stratified when every class can have a row on both sides
            strat = y_codes if counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= n_classes else None
            tr, va = train_test_split(np.arange(n), test_size=self.val_fraction,
                                      random_state=self.seed, stratify=strat)
            return tr, va
        perm = rng.permutation(n)
        n_val = max(1, int(round(n * self.val_fraction)))
        check_split_sizes(n, n_val, self.val_fraction)
        return perm[n_val:], perm[:n_val]

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return torch.autocast(device_type="cpu", enabled=False)

    def _check_fitted(self):
        if not getattr(self, "_fitted", False) and self.classes_ is None:
            raise NotFittedError(f"this Trainer ({type(self.model).__name__}) is not fitted yet; call "
                                 f"fit(X, y) before predict / predict_proba")

    def _graph_safe(self) -> str | None:
        """Why one training step may differ from the next in ways a captured graph would freeze (None: safe)."""
        for what, fn in (("loss", self.loss), ("augment", self.augment)):
            if fn is not None and not getattr(fn, "graph_safe", False):
                return f"a custom {what} without graph_safe = True"
        return None

    def _graph_mode(self, cuda: bool):
        """What runs the training steps: ``"captured"`` (CUDA graphs), ``"static"`` (the same fixed-buffer steps,
        eager, on the CPU), ``None`` (the default loop).  Sets ``graphs_`` when graphs are asked for but cannot
        run."""
        want = self.graphs
        if want is None:
            want = cuda and os.environ.get("CELLBOOK_CUDA_GRAPHS", "0") == "1"
        self.graphs_ = False
        if not want:
            return None
        if not self.resident_:
            self.graphs_ = "not resident: the data do not fit on the device"
            return None
        if not cuda:
            return "static"
        why = self._graph_safe()
        if why:
            self.graphs_ = f"not graph-safe: {why}"
            return None
        return "captured"

    def _optimizer(self, cuda: bool, capture: bool):
        """The optimiser; on CUDA one fused kernel per step, and for captured steps a device-side learning rate
        (and step count) that a graph can read."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        fast = {"fused": True} if cuda else {}
        lr = torch.tensor(self.lr, dtype=torch.float32, device=self.device) if capture else self.lr
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.weight_decay, **fast)
        if capture:
            fast["capturable"] = True
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=lr, weight_decay=self.weight_decay, **fast)

    def _want_resident(self, X, X_val=None) -> bool:
        if self.resident is False:
            return False
        need = dense_bytes(X) + (0 if X_val is None else dense_bytes(X_val))
        if self.resident is True:
            return True
        return need <= resident_budget_bytes(self.device)

    def _evaluate(self, X, Y, idx) -> dict:
        """Loss (and accuracy) on rows ``idx`` of X (all rows when None); host rows, batch by batch."""
        return self._evaluate_source(HostRows(X, Y, self.device), idx)
