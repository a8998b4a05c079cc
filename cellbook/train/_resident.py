"""Where the training rows live during a fit, and the fixed-buffer (CUDA-graph) training step.

:class:`HostRows` densifies rows on the host one batch at a time (the CPU path); :class:`Resident` puts all
rows on the device once and gathers batches there; :class:`StaticSteps` runs each training step on fixed index
buffers and, on CUDA, replays it as one captured graph.  The batches, their order and the maths are the same on
every path; only where the rows are gathered (and how the steps are launched) changes.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ._inputs import n_rows, rows


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


def on_device(X, device: str, chunk: int = 2048) -> torch.Tensor:
    """All rows of X as one dense float32 tensor on ``device``, filled ``chunk`` rows at a time
    (a sparse matrix is never densified whole in host memory)."""
    n = n_rows(X)
    out = torch.empty((n, *X.shape[1:]), dtype=torch.float32, device=device)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(start + chunk, n))
        out[start:start + len(idx)] = torch.from_numpy(rows(X, idx)).to(device)
    return out


class HostRows:
    """Rows densified on the host one batch at a time and copied to the device (the CPU path)."""

    def __init__(self, X, Y, device: str):
        self.X, self.Y, self.device, self.n = X, Y, device, n_rows(X)

    def batches(self, batches, need_clean: bool = False):
        """Yield ``(xb, yb, clean)`` per index array; ``clean`` is a second copy of xb when asked for
        (the target of a denoising autoencoder, before ``augment`` changes xb)."""
        for idx in batches:
            xb = torch.from_numpy(rows(self.X, idx)).to(self.device, non_blocking=True)
            if self.Y is None:
                yb = xb
            elif sp.issparse(self.Y):
                yb = torch.from_numpy(rows(self.Y, idx)).to(self.device)
            else:
                yb = torch.as_tensor(self.Y[idx]).to(self.device)
            clean = torch.from_numpy(rows(self.X, idx)).to(self.device) if need_clean else None
            yield xb, yb, clean


class Resident:
    """X (and the targets) on the device once; an epoch's batch indices go over in one copy and rows
    are gathered there, so a step makes no host copy and no synchronisation."""

    def __init__(self, X, Y, device: str):
        self.device, self.n = device, n_rows(X)
        self.X = on_device(X, device)
        if Y is None:
            self.Y = None
        elif sp.issparse(Y):
            self.Y = on_device(Y, device)
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


class StaticSteps:
    """Training steps on fixed index buffers, replayed as one CUDA graph per full batch (``Trainer(graphs=...)``).

    A full batch copies its row indices into a fixed buffer (device to device) and replays the captured step:
    gather, augment, forward, loss, backward, optimiser step, and the epoch's loss sum.  The first ``warmup``
    full batches run eagerly on a side stream (cuDNN chooses kernels, the optimiser creates its state); the next
    is captured, then replayed.  A shorter last batch runs eagerly.  The learning rate follows ``StepLR`` by
    hand (the same products), written in place into the optimiser's rate.  Without ``capture`` (the CPU) every
    step runs eagerly through the same code, which gives the default loop's numbers.  ``trainer`` is the
    :class:`~cellbook.train.Trainer` whose settings, loss and augmentation the steps use.
    """

    def __init__(self, trainer, opt, src: Resident, need_clean: bool, capture: bool, warmup: int = 3):
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

    def _eager(self, idx: torch.Tensor):
        """One warm-up step (or a step after a failed capture), eagerly on the side stream."""
        cur = torch.cuda.current_stream(self.side.device)
        self.side.wait_stream(cur)
        with torch.cuda.stream(self.side):
            self._body(idx)
        cur.wait_stream(self.side)
        self.full_steps += 1

    def _full(self, idx: torch.Tensor):
        if self.graph is not None:
            self.idx.copy_(idx)
            self.graph.replay()
            self.replays += 1
            return
        if self.failed is not None or self.full_steps < self.warmup:
            self._eager(idx)
            return
        self.idx.copy_(idx)
        graph = torch.cuda.CUDAGraph()
        try:
            self.opt.zero_grad(set_to_none=True)   # the gradients are then made inside the graph's memory
            # captured on the stream the warm-up ran on (its library handles exist there already)
            with torch.cuda.graph(graph, stream=self.side, capture_error_mode="thread_local"):
                self._body(self.idx)
        except Exception as err:   # e.g. an operation that syncs with the host: go on eagerly
            self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            warnings.warn(f"CUDA graph capture failed ({self.failed}); training goes on without graphs",
                          RuntimeWarning, stacklevel=5)   # points at the caller of Trainer.fit
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
