"""Part I baselines (issue 11): fit seconds, predict seconds, accuracy and macro-F1 on van Galen 2019.

Each baseline is fitted single-threaded on a stratified 2/3 of the 3,641 cells (``cellbook.splits.
stratified_split``, test_size=1/3) and scored on the other third, for each ``--seeds`` value.  The chosen
hyper-parameters are printed too.  Needs the real data (``CELLBOOK_DATA``).

    CELLBOOK_DATA=/path/to/data python benchmarks/bench_baselines.py                 # seed 0, all but tuned_lr_wide
    CELLBOOK_DATA=/path/to/data python benchmarks/bench_baselines.py --seeds 0 1 --models tuned_lr gbm

Not a test: it prints measurements and asserts nothing; numbers depend on the machine and its load.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"                                    # before numpy / scipy load their BLAS

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import pandas as pd  # noqa: E402


def models():
    from cellbook import baselines as B

    return {
        "hvg_lr": lambda s: B.HVGLogisticRegression(seed=s),              # the book's reference baseline
        "knn": lambda s: B.PCAKNN(seed=s),
        "tuned_lr": lambda s: B.TunedLogisticRegression(seed=s),
        "tuned_lr_wide": lambda s: B.TunedLogisticRegression(param_grid=B.TUNED_LR_WIDE_GRID, seed=s),
        "gbm": lambda s: B.HVGGradientBoosting(seed=s),
        "celltypist": lambda s: B.CellTypistClassifier(seed=s),
        "celltypist_fast": lambda s: B.CellTypistClassifier(with_mean=False, seed=s),
        "celltypist_fs": lambda s: B.CellTypistClassifier(with_mean=False, feature_selection=True, seed=s),
        "celltypist_mv": lambda s: B.CellTypistClassifier(with_mean=False, majority_voting=True, seed=s),
    }


def chosen(m) -> str:
    """The hyper-parameters a baseline chose while fitting."""
    if hasattr(m, "best_params_"):
        return ", ".join(f"{k}={v}" for k, v in m.best_params_.items())
    if hasattr(m, "best_iteration_"):
        return f"best_iteration={m.best_iteration_}, n_iter={m.n_iter_}"
    return ""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--models", nargs="+", choices=list(models()),
                    default=[m for m in models() if m != "tuned_lr_wide"])
    args = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    import cellbook as cb
    from cellbook.metrics import classification

    torch.set_num_threads(1)
    adata = cb.datasets.load_scrna("vangalen2019")
    X, y, genes = adata.layers["counts"], adata.obs["cell_type"].astype(str).to_numpy(), list(adata.var_names)
    print(f"van Galen 2019: {X.shape[0]} cells x {X.shape[1]} genes, {len(set(y))} types; "
          f"{platform.processor() or platform.machine()}, 1 thread")
    rows = []
    with threadpool_limits(1):
        for seed in args.seeds:
            tr, te = cb.splits.stratified_split(y, test_size=1 / 3, seed=seed)
            for name in args.models:
                m = models()[name](seed)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m.fit(X[tr], y[tr], gene_names=genes)
                    fit_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    pred = m.predict(X[te], gene_names=genes)
                    pred_s = time.perf_counter() - t0
                    m.predict_proba(X[te], gene_names=genes)     # shape check only (CellTypist: cached)
                s = classification(y[te], pred)
                rows.append({"seed": seed, "model": name, "fit_s": round(fit_s, 1), "predict_s": round(pred_s, 1),
                             "accuracy": round(s["accuracy"], 3), "f1_macro": round(s["f1_macro"], 3),
                             "chosen": chosen(m)})
                print(" | ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(df.to_string(index=False))
        if len(args.seeds) > 1:
            print(df.groupby("model", sort=False)[["fit_s", "predict_s", "accuracy", "f1_macro"]]
                  .agg(["mean", "std"]).round(3).to_string())


if __name__ == "__main__":
    main()
