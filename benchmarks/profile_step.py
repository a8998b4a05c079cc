"""Part I benchmark: where a training step's time goes (issue 12), in one process on the same cells.

For the paper's MLP, CNN and K = 5 CNN ensemble on all detected genes, at batch 128:

* ``Trainer``: :class:`cellbook.Trainer` for ``--epochs`` epochs (10 % validation, early stopping off);
  cells/s over the whole fit and in the steady state (epochs after the first, from ``history``);
* ``eager loop``: the least a PyTorch loop can do per step (rows on the device, bf16 autocast, fused
  Adam, no validation), the yardstick for the Trainer's own overhead;
* ``fp32 loop``: the same without autocast (what bf16 buys);
* ``graph loop``: the same step captured once as a CUDA graph and replayed (what launch overhead costs);
* ``Trainer + graphs``: the Trainer's own captured step (``graphs=True``), steady state;
* the top operators of the Trainer's fit by host and by device time (``torch.profiler``).

    python benchmarks/profile_step.py --device cuda
    python benchmarks/profile_step.py --device cpu --genes 2000 --epochs 3     # a dry run

Not a test: the numbers depend on the machine.  Writes ``--out`` (JSON) when given.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hand_loop(model, Xd, yd, steps, device, batch=128, amp=True, graph=False, seed=0):
    """Cells/s of a bare training loop on device-resident rows (see the module docstring)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    n = Xd.shape[0]
    idx_all = torch.randint(0, n, (steps + 10, batch), generator=g).to(device)
    model.to(device).train()
    cuda = device.startswith("cuda")
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, **({"fused": True} if cuda and not graph else {}),
                           **({"capturable": True} if graph else {}))
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (amp and cuda) else \
        (lambda: torch.autocast("cpu", enabled=False))

    def step(idx):
        xb, yb = Xd.index_select(0, idx), yd.index_select(0, idx)
        opt.zero_grad(set_to_none=not graph)
        with ctx():
            loss = nn.functional.cross_entropy(model(xb).float(), yb)
        loss.backward()
        opt.step()
        return loss

    if graph:
        static_idx = idx_all[0].clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):       # warm up on a side stream (allocations, cuDNN choices)
                step(static_idx)
        torch.cuda.current_stream().wait_stream(s)
        gr = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=False)
        with torch.cuda.graph(gr):
            step(static_idx)
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            static_idx.copy_(idx_all[i + 3])
            gr.replay()
        _sync(device)
        return steps * batch / (time.perf_counter() - t0)
    for i in range(5):
        step(idx_all[i])
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(idx_all[i + 5])
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def trainer_run(make, X, y, epochs, device, graphs=False):
    import cellbook as cb

    torch.manual_seed(0)
    tr = cb.Trainer(make(), max_epochs=epochs, batch_size=128, lr=5e-4, lr_step=200, val_fraction=0.1,
                    patience=None, device=device, seed=0, progress=False, graphs=graphs)
    tr.fit(X, y)
    _sync(device)
    h = tr.history
    n_train = int(round(X.shape[0] * 0.9))
    whole = n_train * epochs / tr.fit_seconds
    steady = n_train * (epochs - 1) / (h["seconds"].iloc[-1] - h["seconds"].iloc[0]) if epochs > 1 else float("nan")
    return whole, steady, tr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--genes", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from bench_data import part1_matrix

    import cellbook as cb
    from cellbook.models.cnn1d import CNN1D
    from cellbook.models.ensemble import joint
    from cellbook.models.mlp import MLP

    device = cb.resolve_device(args.device)
    _, X, y = part1_matrix(args.genes)
    n_cls = int(y.max()) + 1
    G = X.shape[1]
    print(f"{X.shape[0]} cells x {G} genes; {device}"
          f"{' (' + torch.cuda.get_device_name(0) + ')' if device.startswith('cuda') else ''}; "
          f"torch {torch.__version__}")
    Xd, yd = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    makers = {"MLP": lambda: MLP(G, n_cls), "CNN": lambda: CNN1D(G, n_cls),
              f"CNN ensemble K={args.k}": lambda: joint(lambda i: CNN1D(G, n_cls), k=args.k, seed=0)}
    out = {"device": device, "cells": int(X.shape[0]), "genes": G, "models": {}}
    print(f"{'model':20s} {'Trainer whole':>14s} {'Trainer steady':>15s} {'eager loop':>11s} {'fp32 loop':>10s} "
          f"{'graph loop':>11s} {'Trainer+graphs':>15s}   (cells/s, batch 128)")
    last = None
    for name, make in makers.items():
        whole, steady, last = trainer_run(make, X, y, args.epochs, device)
        res = {"trainer_whole": whole, "trainer_steady": steady}
        torch.manual_seed(0)
        res["eager"] = hand_loop(make(), Xd, yd, args.steps, device)
        if device.startswith("cuda"):
            torch.manual_seed(0)
            res["fp32"] = hand_loop(make(), Xd, yd, args.steps, device, amp=False)
            try:
                torch.manual_seed(0)
                res["graph"] = hand_loop(make(), Xd, yd, args.steps, device, graph=True)
            except Exception as err:  # noqa: BLE001 - an experiment; report and go on
                res["graph"], res["graph_error"] = float("nan"), f"{type(err).__name__}: {str(err)[:200]}"
            _, res["trainer_graphs_steady"], gtr = trainer_run(make, X, y, args.epochs, device, graphs=True)
            res["trainer_graphs"] = gtr.graphs_
        out["models"][name] = res
        print(f"{name:20s} {whole:14,.0f} {steady:15,.0f} {res['eager']:11,.0f} {res.get('fp32', float('nan')):10,.0f} "
              f"{res.get('graph', float('nan')):11,.0f} {res.get('trainer_graphs_steady', float('nan')):15,.0f}"
              + (f"   graph: {res['graph_error']}" if "graph_error" in res else "")
              + (f"   Trainer graphs: {res['trainer_graphs']}"
                 if res.get("trainer_graphs", "captured") != "captured" else ""),
              flush=True)
    # where the Trainer's time goes: 3 epochs of the CNN under the profiler
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        trainer_run(makers["CNN"], X, y, 3, device)
    print("\nCNN, Trainer.fit for 3 epochs: top operators by host time (self)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=45))
    if device.startswith("cuda"):
        print("... and by device time (self)")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=45))
    if args.out:
        from pathlib import Path

        from cellbook.fsutil import write_json
        write_json(Path(args.out), out, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
