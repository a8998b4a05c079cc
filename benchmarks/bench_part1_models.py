"""Part I benchmark: where chapter I.3's time goes, model by model, on one split.

Fits every model of chapter I.3's zoo once (one random 2:1 split, seed 0) with the parameters a
profile gives that chapter (``--profile full``: all 3641 cells, every detected gene for the deep
models, the tuning grid, K = 5, the stacked ensemble), through the same code the chapter runs
(:func:`cellbook.comparison.evaluate_models`).  Prints seconds and epochs per model, and the
projection for the chapter's seeds.

    python benchmarks/bench_part1_models.py --profile full --device cuda
    python benchmarks/bench_part1_models.py --profile quick            # the CPU profile

Writes ``<results dir>/_bench_part1_models.json`` (or ``--out``).  Not a test: the numbers depend on
the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="full")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto")
    ap.add_argument("--notebook", default="part1/03_table1", help="whose parameters to use")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=None, help="comma-separated subset of the zoo (default: the profile's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch

    import cellbook as cb
    from cellbook import splits as cbs
    from cellbook.comparison import entry_names, evaluate_models, model_zoo
    from cellbook.fsutil import write_json
    from cellbook.runner import plan

    over = {}
    if args.models:
        over = {"models": [m.strip() for m in args.models.split(",")], "stack_members": []}
    import ast

    from cellbook.layout import notebook_parameters

    P = {k: ast.literal_eval(v) for k, v in notebook_parameters(args.notebook).items()}   # the cell's defaults
    P.update(plan(args.notebook, args.profile, args.device, over))                        # + profile + overrides
    device = cb.resolve_device(args.device)
    if P.get("threads"):
        torch.set_num_threads(int(P["threads"]))
    raw = cb.datasets.load_scrna(P["source"], path=P["data_path"], fallback="error", seed=P["seed"])
    adata = cb.datasets.bmmc(raw, n_types=P["n_types"], n_cells=P["n_cells"],
                             min_cells_per_gene=P["min_cells_per_gene"], seed=P["seed"])
    y = adata.obs["cell_type"].astype(str).values
    X = adata.layers["counts"]
    deep = dict(transform=P["transform"], n_genes=P["n_genes"], max_epochs=P["epochs"], lr=P["lr"],
                batch_size=P["batch_size"], model_kwargs={"chunk": P["chunk"]}, device=device,
                patience=P["patience"])
    zoo = model_zoo(k=P["k"], include=P["models"], grid=P["tune_grid"], stack_members=P["stack_members"],
                    stack_folds=P["stack_folds"], celltypist=P["celltypist"], baseline_genes=P["baseline_genes"])
    split = cbs.repeated_splits(y, seeds=[args.seed], test_size=P["test_size"])
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    print(f"{args.notebook}, profile {args.profile}: {adata.n_obs} cells x {adata.n_vars} genes; device {device}"
          f"{f' ({gpu})' if gpu else ''}; torch {torch.__version__}; {len(entry_names(zoo))} models", flush=True)
    t0 = time.perf_counter()
    records, _, _ = evaluate_models(X, y, split, zoo, gene_names=list(adata.var_names), progress=True, **deep)
    wall = time.perf_counter() - t0
    rows = records[["model", "fit_seconds", "epochs", "accuracy", "f1_macro"]].copy()
    print(rows.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    n_seeds = len(P.get("seeds") or [args.seed])
    print(f"one split: {wall:.1f} s in all (fits {rows['fit_seconds'].sum():.1f} s, the rest is prediction, "
          f"gene selection and scoring); x {n_seeds} seeds = about {wall * n_seeds:.0f} s for the chapter's fits")
    out = {"notebook": args.notebook, "profile": args.profile, "device": device, "gpu": gpu,
           "torch": torch.__version__, "machine": platform.machine(), "cells": int(adata.n_obs),
           "genes": int(adata.n_vars), "split_seconds": wall, "seeds": n_seeds,
           "models": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")}
    path = Path(args.out) if args.out else cb.results.results_dir() / "_bench_part1_models.json"
    write_json(path, out, default=float)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
