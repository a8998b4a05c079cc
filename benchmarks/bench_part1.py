"""Part I benchmark: training throughput (cells/s) of the CNN and the CNN ensemble.

The same model is trained (a) by ``cellbook.Trainer`` (batch 128, the paper's batch size; loss kept on
the device, no per-step host copies) and (b) by a plain loop written the way the authors' notebook
trains: batch 32, the outputs copied to the CPU every step, and accuracy / F1 recomputed from growing
Python lists after every step.  Both run in this one process on the same cells, so the ratio is
measured in one run.  Also shown: the Trainer at batch 32, which separates the effect of the batch
size from the effect of the loop.

    python benchmarks/bench_part1.py                     # CPU, 2000 HVGs, 2 epochs
    python benchmarks/bench_part1.py --device cuda --genes 0 --epochs 3   # GPU, all detected genes

Prints a table and writes ``<results dir>/_bench_part1.json`` (quoted by chapter I.6).
Not a test: numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from torch import nn


def plain_loop(model, X: np.ndarray, y: np.ndarray, epochs: int, device: str, batch_size: int = 32,
               lr: float = 5e-4, seed: int = 0) -> float:
    """Train like the authors' notebook; returns seconds."""
    from sklearn.metrics import accuracy_score, f1_score

    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=200, gamma=0.9)
    crit = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(epochs):
        preds, labels, losses = [], [], []
        for xb, yb in loader:
            xb, yb = xb.unsqueeze(1).to(device), yb.to(device)
            opt.zero_grad()
            out = model(xb)
            loss = crit(out, yb)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())                                   # host sync every step
            preds.extend(out.detach().cpu().numpy().argmax(1).tolist())  # outputs copied to the CPU
            labels.extend(yb.cpu().numpy().tolist())
            _ = accuracy_score(labels, preds), f1_score(labels, preds, average="micro")  # recomputed each step
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def trainer_fit(model, X, y, epochs, device, batch_size=128, seed=0, resident="auto", graphs=False) -> float:
    import cellbook as cb

    tr = cb.Trainer(model, max_epochs=epochs, batch_size=batch_size, lr=5e-4, lr_step=200, lr_gamma=0.9,
                    val_fraction=0.0, patience=None, device=device, seed=seed, progress=False, resident=resident,
                    graphs=graphs)
    tr.fit(X, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return tr.fit_seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--genes", type=int, default=2000, help="HVGs as input (0: every gene detected in >= 3 cells)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--k", type=int, default=5, help="CNN ensemble members")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=1, help="time each setting this many times, keep the fastest")
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--synthetic", action="store_true", help="allow the labelled SYNTHETIC stand-in when the data "
                                                              "are missing (default: stop with an error)")
    ap.add_argument("--out", default=None, help="JSON output (default: <results dir>/_bench_part1.json)")
    args = ap.parse_args(argv)

    from bench_data import part1_matrix

    import cellbook as cb
    from cellbook.models.cnn1d import CNN1D
    from cellbook.models.ensemble import joint

    if args.threads:
        torch.set_num_threads(args.threads)
    device = cb.resolve_device(args.device)
    adata, X, y = part1_matrix(args.genes, args.data_path, "synthetic" if args.synthetic else "error")
    n_cls = int(y.max()) + 1
    n_cells = X.shape[0] * args.epochs
    print(f"{adata.uns['cellbook_data']['title']}: {X.shape[0]} cells x {X.shape[1]} genes, {n_cls} types; "
          f"device {device}; {args.epochs} epochs; torch {torch.__version__}, {torch.get_num_threads()} threads")

    makers = {"cnn": lambda: CNN1D(X.shape[1], n_cls),
              "cnn_ensemble": lambda: joint(lambda i: CNN1D(X.shape[1], n_cls), k=args.k, seed=0)}
    # what each change buys (GPU only: on the CPU both are the default path already)
    variants = {"cnn_ensemble": lambda: joint(lambda i: CNN1D(X.shape[1], n_cls), k=args.k, seed=0, fused=False)}
    out = {"device": device, "cells": int(X.shape[0]), "genes": int(X.shape[1]), "epochs": args.epochs, "k": args.k,
           "repeats": args.repeats,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    if device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    print(f"{'model':14s} {'plain loop b32':>16s} {'Trainer b32':>14s} {'Trainer b128':>14s} {'ratio':>7s}  (cells/s)")
    for name, make in makers.items():
        plain_s = t32 = t128 = float("inf")
        for _ in range(max(1, args.repeats)):   # interleaved, so load changes hit all three alike
            torch.manual_seed(0)
            plain_s = min(plain_s, plain_loop(make(), X, y, args.epochs, device))
            t32 = min(t32, trainer_fit(make(), X, y, args.epochs, device, batch_size=32))
            t128 = min(t128, trainer_fit(make(), X, y, args.epochs, device, batch_size=128))
        res = {"plain_cells_per_s": n_cells / plain_s, "trainer_b32_cells_per_s": n_cells / t32,
               "trainer_cells_per_s": n_cells / t128, "ratio": plain_s / t128, "ratio_same_batch": plain_s / t32}
        out[name] = res
        print(f"{name:14s} {res['plain_cells_per_s']:16,.0f} {res['trainer_b32_cells_per_s']:14,.0f} "
              f"{res['trainer_cells_per_s']:14,.0f} {res['ratio']:6.1f}x", flush=True)
    if device.startswith("cuda"):
        print("What each change buys, Trainer batch 128 (cells/s): data on the device vs rows copied per batch; "
              "the K-member ensemble as one batched pass vs member by member")
        for name, make in makers.items():
            host = min(trainer_fit(make(), X, y, args.epochs, device, resident=False)
                       for _ in range(max(1, args.repeats)))
            out[name]["trainer_host_rows_cells_per_s"] = n_cells / host
            print(f"  {name:14s} resident {out[name]['trainer_cells_per_s']:10,.0f}"
                  f"   host rows {n_cells / host:10,.0f}")
        for name, make in variants.items():
            loop = min(trainer_fit(make(), X, y, args.epochs, device) for _ in range(max(1, args.repeats)))
            out[name]["trainer_member_loop_cells_per_s"] = n_cells / loop
            print(f"  {name:14s} fused    {out[name]['trainer_cells_per_s']:10,.0f}"
                  f"   member loop {n_cells / loop:8,.0f}")
        print("CUDA graphs (Trainer(graphs=True), batch 128): one captured step replayed per full batch")
        for name, make in makers.items():
            gsec = min(trainer_fit(make(), X, y, args.epochs, device, graphs=True) for _ in range(max(1, args.repeats)))
            res = out[name]
            res["trainer_graphs_cells_per_s"] = n_cells / gsec
            res["ratio_graphs"] = n_cells / gsec / res["plain_cells_per_s"]
            print(f"  {name:14s} graphs   {n_cells / gsec:10,.0f}   ratio to the plain loop {res['ratio_graphs']:.1f}x")
    print("ratio = Trainer (batch 128) cells/s divided by the plain loop's (batch 32), same process, same cells.")
    path = args.out or (cb.results.results_dir() / "_bench_part1.json")
    from pathlib import Path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    from cellbook.fsutil import write_json
    write_json(Path(path), out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
