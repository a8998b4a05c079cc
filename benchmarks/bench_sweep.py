"""Part III's architecture sweep (chapter III.1): in process against a 2-worker Dask LocalCluster.

    python benchmarks/bench_sweep.py                      # 10 architectures x 3 folds, 20 epochs, 1000 genes
    python benchmarks/bench_sweep.py --folds 2 --epochs 10 --workers 2

Prints the seconds of each way (the cluster's start-up and the workers' first imports apart), their ratio, and
whether the results are the same numbers. Each way runs the same tasks (cellbook.sweeps.fit_autoencoder_fold, one per
architecture and fold, each with its own seed). The serial run uses one torch thread, as the notebook
does; a serial run on every core is printed beside it for reference.
"""
from __future__ import annotations

import argparse
import os
import time

ARCHITECTURES = ["L300,G,L30", "L300,S,L30", "L300,G,L100,L30", "L300,S,L100,L30", "L300,R,L30",
                 "L300,T,L30", "L300,Sig,L30", "L100,G,L30", "L300,G,L100,G,L30", "L30"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--genes", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-path", default=None)
    args = ap.parse_args()

    import torch

    import cellbook as cb
    from cellbook import parallel
    from cellbook.datasets import bulk

    adata = bulk.load_bulk("tcga6", path=args.data_path)
    X, y = adata.X, adata.obs["cell_type"].astype(str).to_numpy()
    data = cb.sweeps.prepare_folds(X, cb.splits.stratified_kfold(y, args.folds, seed=0), n_genes=args.genes)
    tasks = [dict(X_train=Xtr, X_test=Xte, architecture=a, seed=f, epochs=args.epochs, batch_size=32, lr=1e-3,
                  optimizer="adam", device="cpu")
             for f, (Xtr, Xte) in enumerate(data) for a in ARCHITECTURES]
    print(f"{len(tasks)} fits ({len(ARCHITECTURES)} architectures x {args.folds} folds, {args.epochs} epochs, "
          f"{args.genes} genes, {X.shape[0]} samples); {os.cpu_count()} CPU cores")

    def timed(**kw):
        t0 = time.perf_counter()
        out = cb.map_tasks(cb.sweeps.fit_autoencoder_fold, tasks, progress=False, **kw)
        return time.perf_counter() - t0, out

    torch.set_num_threads(1)
    t_serial, serial = timed(backend="serial", threads_per_worker=1)
    torch.set_num_threads(os.cpu_count() or 1)
    t_serial_all, _ = timed(backend="serial", threads_per_worker=os.cpu_count() or 1)
    torch.set_num_threads(1)
    dask_kw = dict(backend="dask", n_workers=args.workers, threads_per_worker=1)
    t0 = time.perf_counter()
    parallel._client(parallel.settings(**dask_kw))
    t_start = time.perf_counter() - t0
    t_cold, dask = timed(**dask_kw)                     # the workers import cellbook on their first task
    t_dask, dask = timed(**dask_kw)                     # warm workers: what every later sweep costs
    parallel.shutdown()

    same = [{k: v for k, v in r.items() if k != "seconds"} for r in serial] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in dask]
    print(f"{'way':44s} {'seconds':>8s}")
    print(f"{'serial, 1 torch thread (the notebook)':44s} {t_serial:8.1f}")
    print(f"{'serial, ' + str(os.cpu_count()) + ' torch threads':44s} {t_serial_all:8.1f}")
    print(f"{f'Dask LocalCluster, {args.workers} workers x 1 thread':44s} {t_dask:8.1f}")
    print(f"{'  first sweep (workers import cellbook)':44s} {t_cold:8.1f}  (+{t_start:.1f} s cluster start-up)")
    print(f"ratio serial (1 thread) / Dask: {t_serial / t_dask:.2f}x; first sweep with start-up: "
          f"{t_serial / (t_cold + t_start):.2f}x; "
          f"serial ({os.cpu_count()} threads) / Dask: {t_serial_all / t_dask:.2f}x")
    busy_serial, busy_dask = sum(r["seconds"] for r in serial), sum(r["seconds"] for r in dask)
    print(f"training seconds summed over fits: serial {busy_serial:.1f}, Dask {busy_dask:.1f} "
          f"(each fit {busy_dask / busy_serial:.2f}x as long in a worker); the best a {args.workers}-worker split "
          f"of these fits could do: "
          f"{busy_serial / max(busy_dask / args.workers, max(r['seconds'] for r in dask)):.2f}x")
    print(f"same numbers on both: {same}")


if __name__ == "__main__":
    main()
