"""One Trainer for every PyTorch model in the book.

The Trainer knows nothing about any one model.  It takes inputs as a NumPy array,
a torch tensor or a SciPy sparse matrix (rows are densified one minibatch at a
time, never the whole matrix), and targets as class labels (classification),
a float array (regression / reconstruction) or ``None`` (target = input, for
autoencoders).  A custom ``loss(model, xb, yb) -> scalar tensor`` covers models
with several outputs.

    trainer = Trainer(model, max_epochs=30, batch_size=128, lr=5e-4,
                      lr_step=200, lr_gamma=0.9, patience=5, seed=0)
    trainer.fit(X_train, y_train)          # validation split carved from the training data
    proba = trainer.predict_proba(X_test)  # (n_samples, n_classes)
    trainer.history                        # pandas DataFrame, one row per epoch

On a GPU the training data go to the device once when they fit (``resident``): each epoch's
shuffled batch order is copied over in one piece, batches are drawn by indexing on the device,
losses stay there until the epoch ends, and validation runs in large batches.  The batches, their
order and the maths are the same as on the CPU path; only where the rows are gathered changes.

With ``graphs`` (or ``CELLBOOK_CUDA_GRAPHS=1``) a resident fit on CUDA also captures one whole training
step (gather, forward, loss, backward, optimiser step) as a CUDA graph and replays it for every full batch,
so a step costs one launch instead of hundreds.  Only steps known to be the same every time are captured:
the built-in losses and :func:`gaussian_noise`; a custom ``loss`` or ``augment`` must say
``graph_safe = True`` (an augmentation that draws on the host, such as random flips, must not be captured).
"""
from __future__ import annotations

import copy
import os
import time
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from .config import resolve_device, seed_everything

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = ["Trainer", "NotFittedError", "count_parameters", "CurveTrainer", "train_autoencoder",
           "train_classifier_autoencoder", "classifier_ae_loss", "gaussian_noise", "pack_targets"]


def _n_rows(X) -> int:
    return X.shape[0]


def _rows(X, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of X as a dense, C-contiguous float32 array (sparse rows densified per batch).

    C order always: a view with other strides (e.g. channels-last images) would take other kernels and
    round differently, so the same data would give different numbers in another process (pickling makes
    arrays C-contiguous)."""
    if sp.issparse(X):
        return np.ascontiguousarray(X[idx].toarray(), dtype=np.float32)
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(idx)].float().contiguous().numpy()
    return np.ascontiguousarray(X[idx], dtype=np.float32)


def resident_budget_bytes(device: str) -> int:
    """How many bytes of training data :class:`Trainer` may place on ``device`` at once.

    CUDA: half the memory free at the time (``CELLBOOK_RESIDENT_GB`` overrides, ``0`` turns the resident
    path off).  CPU: 0, so the CPU keeps densifying one minibatch at a time (no whole dense copy of a
    sparse matrix in host memory).
    """
    env = os.environ.get("CELLBOOK_RESIDENT_GB")
    if env is not None:
        try:
            return int(float(env) * 2 ** 30)
        except ValueError:
            raise ValueError(f"CELLBOOK_RESIDENT_GB must be a number of GiB, got {env!r}") from None
    if not str(device).startswith("cuda"):
        return 0
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free // 2)


def _on_device(X, device: str, chunk: int = 2048) -> torch.Tensor:
    """All rows of X as one dense float32 tensor on ``device``, filled ``chunk`` rows at a time
    (a sparse matrix is never densified whole in host memory)."""
    n = _n_rows(X)
    out = torch.empty((n, *X.shape[1:]), dtype=torch.float32, device=device)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(start + chunk, n))
        out[start:start + len(idx)] = torch.from_numpy(_rows(X, idx)).to(device)
    return out


def _dense_bytes(X) -> int:
    return int(np.prod(X.shape, dtype=np.int64)) * 4


def _check_inputs(X, y, what: str = "X"):
    """Validate ``X`` (and the length of ``y``); return ``X`` in a row-indexable form.

    Any SciPy sparse format becomes CSR (COO / DIA cannot be sliced by rows; CSC would be slow),
    once, here; a DataFrame becomes its values (``X[idx]`` on a DataFrame would pick columns).
    """
    if X is None or not hasattr(X, "shape") or len(X.shape) < 2:
        raise ValueError(f"{what} must be a 2-D (or image-shaped) array, tensor or sparse matrix with samples in "
                         f"rows; got {type(X).__name__}{'' if not hasattr(X, 'shape') else ' of shape ' + str(X.shape)}")
    if sp.issparse(X) and X.format != "csr":
        X = X.tocsr()
    elif isinstance(X, (pd.DataFrame, pd.Series)):
        X = X.to_numpy()
    if _n_rows(X) == 0:
        raise ValueError(f"{what} has no rows")
    data = X.data if sp.issparse(X) else (X.numpy() if isinstance(X, torch.Tensor) else np.asarray(X))
    if not (np.issubdtype(np.asarray(data).dtype, np.number) or np.asarray(data).dtype == bool):
        raise ValueError(f"{what} must hold numbers; got dtype {np.asarray(data).dtype}")
    if np.issubdtype(np.asarray(data).dtype, np.number) and not np.all(np.isfinite(data)):
        raise ValueError(f"{what} contains NaN or infinite values")
    if y is not None and len(y) != _n_rows(X):
        raise ValueError(f"{what} has {_n_rows(X)} rows but y has {len(y)} entries")
    return X


def _declared_width(model: nn.Module) -> int | None:
    """Input width a model declares (``n_genes`` / ``n_inputs`` / a leading ``nn.Linear``), else None."""
    for m in (model, *getattr(model, "members", [])[:1]):
        for attr in ("n_genes", "n_inputs", "n_features"):
            if isinstance(getattr(m, attr, None), int):
                return int(getattr(m, attr))
    first = next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))), None)
    return int(first.in_features) if isinstance(first, nn.Linear) else None


class Trainer:
    """Minibatch training with early stopping, LR schedule, progress bar and best-checkpoint restore.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``(batch, ...)`` to outputs (logits for classification).
    task : {"classification", "regression", "reconstruction"}
        Chooses the default loss (cross-entropy, MSE, MSE against the input).
    loss : callable, optional
        ``loss(model, xb, yb) -> scalar tensor``; overrides ``task``'s loss.
    max_epochs, batch_size, lr, weight_decay
        The usual.  ``optimizer`` is ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
    lr_step, lr_gamma
        Multiply the learning rate by ``lr_gamma`` every ``lr_step`` optimiser steps
        (iterations, not epochs); ``lr_step=None`` keeps it constant.
    val_fraction, patience
        Hold out this share of the training rows (stratified for classification) and stop
        after ``patience`` epochs without a better validation loss; the best weights are
        restored.  ``val_fraction=0`` trains for ``max_epochs`` on everything.
    augment : callable, optional
        Applied to each training batch tensor (e.g. input noise for a denoising autoencoder).
    device : "auto" | "cpu" | "cuda"
        Mixed precision (bfloat16 autocast) is used on CUDA only, when ``amp`` is true.
    checkpoint : path, optional
        Also save the best state dict there.
    label_smoothing : float
        Cross-entropy label smoothing during training (classification; validation losses are
        plain cross-entropy).
    monitor : {"val", "train"}
        Which loss selects the best checkpoint and drives early stopping.  ``"train"`` only
        *logs* the validation loss (e.g. a test-set learning curve that must not steer training).
    progress : bool, optional
        A tqdm bar per epoch; default on, off when ``CELLBOOK_PROGRESS=0`` (set by ``cellbook run``).
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
    """

    def __init__(self, model: nn.Module, *, task: str = "classification", loss: LossFn | None = None,
                 max_epochs: int = 20, batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
                 weight_decay: float = 0.0, lr_step: int | None = None, lr_gamma: float = 0.9,
                 val_fraction: float = 0.1, patience: int | None = 5, augment: Callable | None = None,
                 device: str = "auto", amp: bool = True, seed: int = 0, progress: bool | None = None,
                 checkpoint: str | None = None, class_weight: np.ndarray | None = None,
                 predict_batch_size: int = 1024, monitor: str = "val", label_smoothing: float = 0.0,
                 resident: bool | str = "auto", graphs: bool | None = None):
        if task not in ("classification", "regression", "reconstruction"):
            raise ValueError(f"unknown task {task!r}; valid: classification, regression, reconstruction")
        if optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: adam, adamw, sgd")
        if monitor not in ("val", "train"):
            raise ValueError(f"unknown monitor {monitor!r}; valid: val, train")
        if not 0 <= val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if max_epochs < 1 or batch_size < 1:
            raise ValueError("max_epochs and batch_size must be positive")
        self.model, self.task, self.loss = model, task, loss
        self.max_epochs, self.batch_size, self.lr = int(max_epochs), int(batch_size), float(lr)
        self.optimizer, self.weight_decay = optimizer, float(weight_decay)
        self.lr_step, self.lr_gamma = lr_step, float(lr_gamma)
        self.val_fraction, self.patience, self.augment = float(val_fraction), patience, augment
        self.device = resolve_device(device)
        self.amp = bool(amp) and self.device.startswith("cuda")
        if progress is None:  # on by default; `cellbook run` turns it off for the published pages
            progress = os.environ.get("CELLBOOK_PROGRESS", "1") != "0"
        self.seed, self.progress, self.checkpoint = int(seed), progress, checkpoint
        self.class_weight = class_weight
        self.predict_batch_size = int(predict_batch_size)
        self.monitor = monitor
        if not 0 <= float(label_smoothing) < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        if resident not in ("auto", True, False):
            raise ValueError(f"resident must be 'auto', True or False, got {resident!r}")
        self.resident = resident
        self.resident_ = False
        if graphs not in (None, True, False):
            raise ValueError(f"graphs must be None, True or False, got {graphs!r}")
        self.graphs = graphs
        self.graphs_ = False
        self._weight_t = None
        self.history = pd.DataFrame()
        self.fit_seconds = 0.0
        self.best_epoch = None
        self.classes_ = None
        self._fitted = False

    # ------------------------------------------------------------------ helpers
    def _targets(self, y):
        if self.task == "classification":
            from .splits import check_missing

            y = check_missing(y, "y", unit="rows")
            self.classes_, codes = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError(f"classification needs at least 2 classes; y has {len(self.classes_)}")
            return codes.astype(np.int64)
        if self.task == "regression":
            Y = np.asarray(y, dtype=np.float32)
            if not np.all(np.isfinite(Y)):
                raise ValueError(f"y contains {int((~np.isfinite(Y)).sum())} NaN or infinite targets; drop or fill "
                                 f"those rows")
            return Y
        return None

    def _class_weight(self):
        """``class_weight`` checked against ``classes_``: an array in ``classes_`` order (or None)."""
        cw = self.class_weight
        if cw is None or self.task != "classification":
            return None
        n = len(self.classes_)
        if isinstance(cw, dict):
            missing = [c for c in self.classes_ if c not in cw]
            if missing:
                raise ValueError(f"class_weight has no weight for class(es) {', '.join(map(str, missing))}; give "
                                 f"one per class of y: {', '.join(map(str, self.classes_))}")
            cw = [cw[c] for c in self.classes_]
        w = np.asarray(cw, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"class_weight has {w.size} value(s) (shape {w.shape}) but y has {n} classes "
                             f"({', '.join(map(str, self.classes_))}); give one weight per class in that (sorted) "
                             f"order, or a dict {{class: weight}}")
        if not np.all(np.isfinite(w)) or (w < 0).any() or not (w > 0).any():
            raise ValueError(f"class_weight must be finite, >= 0 and not all zero; got {w.tolist()}")
        return w

    def _dry_run(self, X, n_classes: int | None):
        """Run the model on the first row of X (eval mode, no grad) so that a shape mismatch is a clear error.

        Checks the input width against what the model declares / its first layer, and (classification with
        the default loss) that the model outputs one score per class.
        """
        got = tuple(X.shape[1:])
        expected = _declared_width(self.model)
        name = type(self.model).__name__
        if expected is not None and len(got) == 1 and got[0] != expected:
            raise ValueError(f"X has {got[0]} columns (features per row) but the model ({name}) expects {expected}; "
                             f"give the same features (genes, in the same order) the model was built for, or build "
                             f"it for {got[0]} inputs")
        params = next(self.model.parameters(), None)
        dev = params.device if params is not None else torch.device("cpu")
        xb = torch.from_numpy(_rows(X, np.arange(1))).to(dev)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(xb)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ValueError(f"the model ({name}) cannot take rows of shape {got}"
                             f"{f' (it expects {expected} features)' if expected else ''}: {type(err).__name__}: "
                             f"{msg}; give X the shape the model was built for") from None
        finally:
            self.model.train(was_training)
        if n_classes is not None and self.loss is None and isinstance(out, torch.Tensor):
            n_out = out.shape[1] if out.ndim == 2 else None
            if n_out != n_classes:
                raise ValueError(f"y has {n_classes} classes ({', '.join(map(str, self.classes_[:8]))}"
                                 f"{', ...' if n_classes > 8 else ''}) but the model ({name}) outputs "
                                 f"{n_out if n_out is not None else tuple(out.shape[1:])} scores per row; build the "
                                 f"model with one output per class (n_classes={n_classes}), or drop the extra classes")

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
            from sklearn.model_selection import GroupShuffleSplit
            groups = np.asarray(groups)
            if len(groups) != n:
                raise ValueError(f"groups has {len(groups)} entries but X has {n} rows")
            if len(np.unique(groups)) < 2:
                raise ValueError("a grouped validation split needs at least 2 groups")
            tr, va = next(GroupShuffleSplit(n_splits=1, test_size=self.val_fraction,
                                            random_state=self.seed).split(np.arange(n), groups=groups))
            return tr, va
        if self.task == "classification":
            from sklearn.model_selection import train_test_split
            counts = np.bincount(y_codes)
            strat = y_codes if counts[counts > 0].min() >= 2 else None
            tr, va = train_test_split(np.arange(n), test_size=self.val_fraction,
                                      random_state=self.seed, stratify=strat)
            return tr, va
        perm = rng.permutation(n)
        n_val = max(1, int(round(n * self.val_fraction)))
        return perm[n_val:], perm[:n_val]

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return torch.autocast(device_type="cpu", enabled=False)

    # ---------------------------------------------------------------------- API
    def fit(self, X, y=None, X_val=None, y_val=None, groups=None) -> "Trainer":
        """Train; ``X_val``/``y_val`` replace the internal validation split when given.

        ``groups`` (one id per row, e.g. donor or source frame) makes the internal validation
        split hold out whole groups, so early stopping is not fooled by near-duplicates.
        """
        X = _check_inputs(X, y)
        if y is None and self.task != "reconstruction":
            raise ValueError(f"task {self.task!r} needs targets y")
        Y = self._targets(y) if y is not None else None
        self.class_weight_ = self._class_weight()
        self._weight_t = (None if self.class_weight_ is None
                          else torch.as_tensor(self.class_weight_, dtype=torch.float32, device=self.device))
        self._dry_run(X, len(self.classes_) if self.task == "classification" else None)
        if X_val is not None:
            X_val = _check_inputs(X_val, y_val, "X_val")
            if tuple(X_val.shape[1:]) != tuple(X.shape[1:]):
                raise ValueError(f"X_val rows have shape {tuple(X_val.shape[1:])} but X rows {tuple(X.shape[1:])}; "
                                 f"give validation data with the same features")
            if y_val is None and self.task != "reconstruction":
                raise ValueError(f"X_val was given without y_val; task {self.task!r} needs validation targets")
        seed_everything(self.seed)
        if X_val is not None:
            train_idx, val_idx = np.arange(_n_rows(X)), None
            Yv = (self._val_codes(y_val) if self.task == "classification"
                  else (None if y_val is None else np.asarray(y_val, dtype=np.float32)))
        else:
            train_idx, val_idx = self._split(_n_rows(X), Y, groups)
            X_val, Yv = X, Y
        self.model.to(self.device)
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        # the data: on the device once (resident), or densified per batch (default on the CPU)
        same_val = X_val is X
        self.resident_ = self._want_resident(X, None if same_val else X_val) or (self.graphs is True and not cuda)
        graph_mode = self._graph_mode(cuda)
        capture = graph_mode == "captured"
        opt = self._optimizer(cuda, capture)
        # the learning-rate schedule: StepLR, or (fixed-buffer steps) the same products by hand, so a captured
        # step reads the rate from a tensor that is updated in place
        sched = (torch.optim.lr_scheduler.StepLR(opt, step_size=int(self.lr_step), gamma=self.lr_gamma)
                 if self.lr_step and graph_mode is None else None)
        if self.resident_:
            src = _Resident(X, Y, self.device)
            val_src = src if same_val else _Resident(X_val, Yv, self.device)
        else:
            src = _HostRows(X, Y, self.device)
            val_src = src if same_val else _HostRows(X_val, Yv, self.device)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        need_clean = self.augment is not None and Y is None and self.loss is None
        static = (_StaticSteps(self, opt, src, need_clean, capture) if graph_mode in ("captured", "static")
                  else None)
        rng = np.random.default_rng(self.seed)
        rows, best, best_state, stale = [], np.inf, None, 0
        t0 = time.perf_counter()
        bar = _progress(range(1, self.max_epochs + 1), self.progress, type(self.model).__name__)
        for epoch in bar:
            self.model.train()
            order = rng.permutation(train_idx)
            batches = [np.sort(order[start:start + self.batch_size]) for start in range(0, len(order), self.batch_size)]
            if has_bn:  # a batch of one breaks batch-norm statistics
                batches = [b for b in batches if len(b) >= 2]
            if static is not None:
                total, seen = static.epoch(batches)
            else:
                total, seen = 0.0, 0
                for xb, yb, clean in src.batches(batches, need_clean=need_clean):
                    if self.augment is not None:
                        xb = self.augment(xb)
                        if clean is not None:
                            yb = clean
                    opt.zero_grad(set_to_none=True)
                    with self._autocast():
                        res = self._loss(xb, yb)
                    loss = res[0] if isinstance(res, tuple) else res
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    total += loss.detach() * xb.shape[0]
                    seen += xb.shape[0]
            row = {"epoch": epoch, "train_loss": float(total) / max(seen, 1),
                   "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - t0}
            if val_idx is None or len(val_idx):
                row.update(self._evaluate_source(val_src, val_idx))
            rows.append(row)
            monitor = row.get("val_loss", row["train_loss"]) if self.monitor == "val" else row["train_loss"]
            if monitor < best:
                best, stale, self.best_epoch = monitor, 0, epoch
                best_state = copy.deepcopy(self.model.state_dict())
                if self.checkpoint:
                    torch.save(best_state, self.checkpoint)
            else:
                stale += 1
            if self.progress:
                bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()
                                 if k in ("train_loss", "val_loss", "val_accuracy")})
            if self.patience is not None and (self.monitor == "train" or "val_loss" in row) \
                    and stale >= self.patience:
                break
        if static is not None:
            self.graphs_ = static.outcome()
        del src, val_src, static
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.fit_seconds = time.perf_counter() - t0
        self.history = pd.DataFrame(rows)
        self.model.eval()
        self._fitted = True
        return self

    def _val_codes(self, y_val) -> np.ndarray:
        """Validation labels -> class codes; a label never seen in training is an error (not a wrong code)."""
        from .splits import check_missing

        yv = check_missing(y_val, "y_val", unit="rows")
        unseen = ~np.isin(yv, self.classes_)
        if unseen.any():
            bad = pd.Series(yv[unseen]).astype(str).value_counts()
            raise ValueError(f"y_val has {int(unseen.sum())} label(s) never seen in training: "
                             + ", ".join(f"{k} ({v})" for k, v in bad.iloc[:8].items())
                             + f"; training classes: {', '.join(map(str, self.classes_))}. Drop those validation "
                               f"rows, or train on data that has those classes")
        return np.searchsorted(self.classes_, yv)

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
        eager, on the CPU), ``None`` (the default loop).  Sets ``graphs_`` when graphs were asked for but cannot
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
        need = _dense_bytes(X) + (0 if X_val is None else _dense_bytes(X_val))
        if self.resident is True:
            return True
        return need <= resident_budget_bytes(self.device)

    def _evaluate(self, X, Y, idx) -> dict:
        """Loss (and accuracy) on rows ``idx`` of X (all rows when None); host rows, batch by batch."""
        return self._evaluate_source(_HostRows(X, Y, self.device), idx)

    @torch.no_grad()
    def _evaluate_source(self, src, idx) -> dict:
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

    @torch.no_grad()
    def forward(self, X, fn: Callable | None = None) -> np.ndarray:
        """Model outputs for every row of X, batch by batch, as a NumPy array.

        ``fn(model, xb)`` replaces ``model(xb)`` (e.g. ``lambda m, x: m.encode(x)``).
        """
        X = _check_inputs(X, None)
        self._dry_run(X, None)
        self.model.to(self.device).eval()
        outs = []
        for start in range(0, _n_rows(X), self.predict_batch_size):
            idx = np.arange(start, min(start + self.predict_batch_size, _n_rows(X)))
            xb = torch.from_numpy(_rows(X, idx)).to(self.device)
            with self._autocast():
                out = fn(self.model, xb) if fn else self.model(xb)
            if isinstance(out, tuple):
                out = out[0]
            outs.append(out.float())
        return torch.cat(outs).cpu().numpy()

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


class _StaticSteps:
    """Training steps on fixed index buffers, replayed as one CUDA graph per full batch (``Trainer(graphs=...)``).

    A full batch copies its row indices into a fixed buffer (device to device) and replays the captured step:
    gather, augment, forward, loss, backward, optimiser step, and the epoch's loss sum.  The first ``warmup``
    full batches run eagerly on a side stream (cuDNN chooses kernels, the optimiser creates its state); the next
    is captured, then replayed.  A shorter last batch runs eagerly.  The learning rate follows ``StepLR`` by
    hand (the same products), written in place into the optimiser's rate.  Without ``capture`` (the CPU) every
    step runs eagerly through the same code, which gives the default loop's numbers.
    """

    def __init__(self, trainer: "Trainer", opt, src: "_Resident", need_clean: bool, capture: bool, warmup: int = 3):
        self.tr, self.opt, self.src, self.need_clean = trainer, opt, src, need_clean
        self.capture, self.warmup, self.full_steps = capture, int(warmup), 0
        dev = src.device
        self.idx = torch.zeros(trainer.batch_size, dtype=torch.long, device=dev)
        self.total = torch.zeros((), dtype=torch.float32, device=dev)
        self.graph, self.failed, self.replays = None, None, 0
        self.steps, self.lr = 0, trainer.lr
        self.side = torch.cuda.Stream(device=dev) if capture else None

    def _autocast(self):
        if self.tr.amp:   # no cast cache: a captured graph must not keep the cast weights of the capture step
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
        return torch.autocast(device_type="cpu", enabled=False)

    def _body(self, idx: torch.Tensor):
        tr = self.tr
        xb = self.src.X.index_select(0, idx)
        yb = xb if self.src.Y is None else self.src.Y.index_select(0, idx)
        clean = self.src.X.index_select(0, idx) if self.need_clean else None
        if tr.augment is not None:
            xb = tr.augment(xb)
            if clean is not None:
                yb = clean
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            res = tr._loss(xb, yb)
        loss = res[0] if isinstance(res, tuple) else res
        loss.backward()
        self.opt.step()
        self.total += loss.detach() * idx.shape[0]

    def _full(self, idx: torch.Tensor):
        if self.graph is not None:
            self.idx.copy_(idx)
            self.graph.replay()
            self.replays += 1
            return
        if self.failed is not None or self.full_steps < self.warmup:
            cur = torch.cuda.current_stream(self.side.device)
            self.side.wait_stream(cur)
            with torch.cuda.stream(self.side):
                self._body(idx)
            cur.wait_stream(self.side)
            self.full_steps += 1
            return
        self.idx.copy_(idx)
        graph = torch.cuda.CUDAGraph()
        try:
            self.opt.zero_grad(set_to_none=True)   # the gradients are then made inside the graph's memory
            # captured on the stream the warm-up ran on (its library handles exist there already)
            with torch.cuda.graph(graph, stream=self.side, capture_error_mode="thread_local"):
                self._body(self.idx)
        except Exception as err:   # e.g. an operation that syncs with the host: go on eagerly
            import warnings

            self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            warnings.warn(f"CUDA graph capture failed ({self.failed}); training goes on without graphs",
                          RuntimeWarning, stacklevel=4)
            torch.cuda.synchronize()
            self._full(idx)
            return
        self.graph = graph
        graph.replay()
        self.replays += 1

    def _schedule(self):
        self.steps += 1
        tr = self.tr
        if tr.lr_step and self.steps % int(tr.lr_step) == 0:
            self.lr = self.lr * tr.lr_gamma            # StepLR's product, step by step
            for group in self.opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(self.lr)
                else:
                    group["lr"] = self.lr

    def epoch(self, batches) -> tuple[torch.Tensor, int]:
        """Train on ``batches`` (index arrays); returns the summed batch losses (a device tensor) and the rows."""
        self.total.zero_()
        seen = 0
        if batches:
            flat = torch.from_numpy(np.concatenate(batches).astype(np.int64)).to(self.src.device)
            start = 0
            for b in batches:
                idx = flat[start:start + len(b)]
                start += len(b)
                if self.capture and len(b) == self.tr.batch_size:
                    self._full(idx)
                else:
                    self._body(idx)
                self._schedule()
                seen += len(b)
        return self.total, seen

    def outcome(self):
        if not self.capture:
            return "static"
        if self.failed is not None:
            return f"capture failed: {self.failed}"
        return "captured" if self.graph is not None else "not captured: too few full batches"


class _HostRows:
    """Rows densified on the host one batch at a time and copied to the device (the CPU path)."""

    def __init__(self, X, Y, device: str):
        self.X, self.Y, self.device, self.n = X, Y, device, _n_rows(X)

    def batches(self, batches, need_clean: bool = False):
        """Yield ``(xb, yb, clean)`` per index array; ``clean`` is a second copy of xb when asked for
        (the target of a denoising autoencoder, before ``augment`` changes xb)."""
        for idx in batches:
            xb = torch.from_numpy(_rows(self.X, idx)).to(self.device, non_blocking=True)
            if self.Y is None:
                yb = xb
            elif sp.issparse(self.Y):
                yb = torch.from_numpy(_rows(self.Y, idx)).to(self.device)
            else:
                yb = torch.as_tensor(self.Y[idx]).to(self.device)
            clean = torch.from_numpy(_rows(self.X, idx)).to(self.device) if need_clean else None
            yield xb, yb, clean


class _Resident:
    """X (and the targets) on the device once; an epoch's batch indices go over in one copy and rows
    are gathered there, so a step makes no host copy and no synchronisation."""

    def __init__(self, X, Y, device: str):
        self.device, self.n = device, _n_rows(X)
        self.X = _on_device(X, device)
        if Y is None:
            self.Y = None
        elif sp.issparse(Y):
            self.Y = _on_device(Y, device)
        else:
            self.Y = torch.as_tensor(np.asarray(Y)).to(device)

    def batches(self, batches, need_clean: bool = False):
        if not batches:
            return
        flat = torch.from_numpy(np.concatenate(batches).astype(np.int64)).to(self.device)
        start = 0
        for b in batches:
            idx = flat[start:start + len(b)]
            start += len(b)
            xb = self.X.index_select(0, idx)
            yb = xb if self.Y is None else self.Y.index_select(0, idx)
            clean = self.X.index_select(0, idx) if need_clean else None
            yield xb, yb, clean


def _progress(iterable, enabled: bool, desc: str):
    """A tqdm bar when enabled (notebook widget or terminal), else the plain iterable."""
    if not enabled:
        return iterable
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto warns when ipywidgets is missing; text bars are fine
        from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, unit="epoch", leave=False)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

# ------------------------------------------------------------------------------------------
# Part III: training the autoencoders (the networks are in cellbook.models.autoencoder).
# Plain autoencoders train with task="reconstruction"; the classifier autoencoder with
# task="regression", the target pack_targets(X, y) (clean input and class code in one float
# array) and loss=classifier_ae_loss(mse_weight); denoising with augment=gaussian_noise(sd)
# (noise on the input only; the target stays clean).

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
    from .models.autoencoder import Autoencoder

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
    """Build and train a :class:`cellbook.models.autoencoder.ClassifierAutoencoder`; returns ``(model, trainer, classes)``.

    Predict with ``classes[model.logits(X).argmax(1)]``.
    """
    from .splits import check_missing

    X_train = np.asarray(X_train, dtype=np.float32)
    if len(y_train) != len(X_train):
        raise ValueError(f"X_train has {len(X_train)} rows but y_train has {len(y_train)} labels")
    classes, codes = np.unique(check_missing(y_train, "y_train", unit="samples"), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a classifier autoencoder needs >= 2 classes; y has {len(classes)}")
    from .models.autoencoder import ClassifierAutoencoder

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
