"""Annotation at scale: time and peak memory of training and annotating against cells, cellbook beside CellTypist.

The real cells of a labelled dataset are split once (stratified, 2:1): the training part is the "real"
reference, the held-out part scores every model.  Larger references and queries are **resampled** from those
cells (:func:`write_resampled`): each new cell copies a real cell of the same part and draws its counts
again, ``1 + Poisson(s (c - 1))`` for each non-zero count ``c`` with a log-normal library factor ``s``
(sigma 0.2) per cell, so non-zero entries per cell (what reading and predicting cost) stay those of real
cells and library sizes keep their spread.  They are labelled resampled in every output.

Each measurement runs in its own process (:func:`measure`): wall time, peak resident memory (the process's
own high-water mark, and the parent's samples of it), and a kill, reported as skipped, when it passes the
memory or time limit.  :func:`annotation_scaling` runs the grid and returns one row per measurement;
:func:`scaling_table` adds ratios to CellTypist.  ``benchmarks/bench_annotate.py`` prints it.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .annotation import H5adCounts, annotate_file, fit_reference, save_model
from .baselines._celltypist_model import _celltypist_session
from .fsutil import atomic_path
from .metrics import classification
from .preprocess.scrna import log_normalize
from .validation import PATH, SEED, Interval, validate_params

#: What each method does at fit and at predict (names as the table prints them).
METHODS = {"cellbook": "cellbook annotate (default: tuned logistic regression)",
           "cellbook_cnn": "cellbook annotate, CNN ensemble (joint, K = 5)",
           "celltypist": "CellTypist 1.7 (whole query, as documented)",
           "celltypist_blocks": "CellTypist 1.7, query in blocks"}
#: Cells per block of the block-wise CellTypist run: its scaling step makes the query dense (cells x model genes).
CELLTYPIST_BLOCK = 5_000
_LIBRARY_SIGMA = 0.2


# ------------------------------------------------------------------------------------------- the cells
def split_cells(labels, seed: int = 0, test_size: float = 1 / 3):
    """``(training rows, held-out rows)``: a stratified split of the cells, sorted."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    tr, te = train_test_split(rows, test_size=test_size, stratify=np.asarray(labels), random_state=int(seed))
    return np.sort(tr), np.sort(te)


def resample_block(X, n: int, rng: np.random.Generator):
    """``(counts of n new cells, the source rows)``: each copies a random row of ``X`` (CSR) and draws its
    non-zero counts again (see the module docstring)."""
    src = np.sort(rng.integers(0, X.shape[0], n))
    B = sp.csr_matrix(X[src], dtype=np.float32)
    s = rng.lognormal(0.0, _LIBRARY_SIGMA, n)
    lam = np.repeat(s, np.diff(B.indptr)) * np.maximum(B.data - 1.0, 0.0)
    B.data = (1.0 + rng.poisson(lam)).astype(np.float32)
    return B, src


@validate_params({"path": PATH, "n": Interval(int, 1, None), "seed": SEED, "block": Interval(int, 1, None)})
def write_resampled(path, adata, n: int, seed: int = 0, label_key: str = "cell_type", block: int = 50_000,
                    source: str = "") -> Path:
    """Write ``n`` cells resampled from ``adata`` (raw counts in ``layers['counts']`` or ``X``) to the .h5ad
    ``path``, a block at a time (CSR counts in ``X``, ``obs[label_key]``, ``obs['source_cell']``,
    ``uns['resampled']``); an existing file of the same recipe is kept.  Returns the path."""
    import anndata as ad
    import h5py

    path = Path(path)
    recipe = {"n": int(n), "seed": int(seed), "from_cells": int(adata.n_obs), "source": source,
              "scheme": f"1 + Poisson(s (c - 1)) per non-zero count, s ~ lognormal(0, {_LIBRARY_SIGMA}) per cell"}
    if path.is_file():
        with h5py.File(path, "r") as f:
            if "uns" in f and "resampled" in f["uns"] and ad.io.read_elem(f["uns"]["resampled"]) == recipe:
                return path
    X = sp.csr_matrix(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    rng = np.random.default_rng(int(seed))
    labels, sources = [], []
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for start in range(0, n, block):
            B, src = resample_block(X, min(block, n - start), rng)
            if start == 0:
                ad.io.write_elem(f, "X", B, dataset_kwargs={"chunks": (1 << 18,)})
                matrix = ad.io.sparse_dataset(f["X"])
            else:
                matrix.append(B)
            labels.append(np.asarray(adata.obs[label_key])[src])
            sources.append(src)
        obs = pd.DataFrame({label_key: pd.Categorical(np.concatenate(labels)),
                            "source_cell": pd.Categorical.from_codes(np.concatenate(sources),
                                                                     categories=list(map(str, adata.obs_names)))},
                           index=[f"resampled_{i}" for i in range(n)])
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", pd.DataFrame(index=list(map(str, adata.var_names))))
        ad.io.write_elem(f, "uns", {"resampled": recipe})
        for name in ("obsm", "varm", "obsp", "varp", "layers"):
            ad.io.write_elem(f, name, {})
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
    return path


# -------------------------------------------------------------------------------------- measurements
def _peak_rss_gb() -> float:
    """This process's peak resident memory since it started: ``VmHWM`` (Linux).  Not ``ru_maxrss``, which keeps
    the high-water mark of the parent's memory copied at ``fork``, across ``exec``."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 2 ** 20    # kB
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


@validate_params({"timeout": Interval(float, 0, None, closed="neither"),
                  "memory_gb": Interval(float, 0, None, closed="neither")})
def measure(job: dict, timeout: float = 1200.0, memory_gb: float = 16.0) -> dict:
    """Run ``job`` (see :func:`run_job`) in a new Python process; its result with ``seconds`` (the job's own
    timing), ``peak_rss_gb`` and ``status`` (``"ok"``, or why it was skipped: over ``memory_gb`` of resident
    memory, over ``timeout`` seconds, or the error it raised)."""
    import psutil

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "cellbook.scaling", json.dumps(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    watched, peak, t0, why = psutil.Process(proc.pid), 0.0, time.perf_counter(), None
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]) / 2 ** 30
        except psutil.Error:
            rss = 0.0
        peak = max(peak, rss)
        if rss > memory_gb:
            why = f"skipped: passed {memory_gb:g} GB of memory"
        elif time.perf_counter() - t0 > timeout:
            why = f"skipped: not done in {timeout / 60:g} min"
        if why:
            proc.kill()
            break
        time.sleep(0.2)
    out, err = proc.communicate()
    if why:
        return {**job, "status": why, "peak_rss_gb": round(peak, 2), "seconds": None}
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        last = (err.strip().splitlines() or ["no output"])[-1][:200]
        return {**job, "status": f"failed: {last}", "peak_rss_gb": round(peak, 2), "seconds": None}
    result = json.loads(lines[-1][len("RESULT "):])
    result["peak_rss_gb"] = round(max(peak, result.pop("own_peak_rss_gb")), 2)
    return {**job, **result, "status": "ok"}


def _labels_of(path, label_key: str = "cell_type") -> np.ndarray:
    with H5adCounts(path) as counts:
        return counts.obs_column(label_key).astype(str)


def _scores(truth, pred) -> dict:
    m = classification(np.asarray(truth).astype(str), np.asarray(pred).astype(str))
    return {"accuracy": round(float(m["accuracy"]), 4), "f1_macro": round(float(m["f1_macro"]), 4)}


def _celltypist_input(X, var_names, dense: bool = True):
    """Log1p of counts per 10k as an AnnData: dense (CellTypist's scaling makes a query dense anyway, and needs
    it so without centring), or sparse (a reference trained without centring)."""
    import anndata as ad

    Xl = sp.csr_matrix(log_normalize(sp.csr_matrix(X, dtype=np.float32), 1e4))
    a = ad.AnnData(np.asarray(Xl.toarray()) if dense else Xl)
    a.var_names = list(var_names)
    return a


def _celltypist_predict(model_path, X, var_names, seed: int = 0) -> np.ndarray:
    with _celltypist_session(seed) as ct:
        result = ct.annotate(_celltypist_input(X, var_names), model=str(model_path), mode="best match")
    return result.predicted_labels["predicted_labels"].astype(str).to_numpy()


def _fit(job: dict) -> dict:
    """Train ``job["method"]`` on the reference file, save it to ``job["model"]``; score the held-out cells."""
    method, ref = job["method"], job["reference"]
    t0 = time.perf_counter()
    if method.startswith("cellbook"):
        params = {"ensemble": "joint", "k": 5} if method == "cellbook_cnn" else None
        model = fit_reference(ref, "cnn" if method == "cellbook_cnn" else "logreg", params=params, seed=0,
                              device="cpu")
        seconds = time.perf_counter() - t0
        save_model(model, job["model"])
        pred = annotate_file(job["heldout"], model=model, progress=False)["predicted_cell_type"]
    else:
        with H5adCounts(ref) as counts:
            X, genes = counts.rows(0, counts.n_obs), counts.var_names
        settings = celltypist_settings(X.shape[0])
        with _celltypist_session(0) as ct:
            a = _celltypist_input(X, genes, dense=settings["with_mean"])
            a.obs["cell_type"] = _labels_of(ref)
            del X
            model = ct.train(a, labels="cell_type", n_jobs=-1, check_expression=False, **settings)
        seconds = time.perf_counter() - t0
        model.write(job["model"])
        with H5adCounts(job["heldout"]) as counts:
            pred = _celltypist_predict(job["model"], counts.rows(0, counts.n_obs), counts.var_names)
    return {"seconds": round(seconds, 2), **_scores(_labels_of(job["heldout"]), pred)}


def celltypist_settings(n_cells: int) -> dict:
    """CellTypist's training options for ``n_cells`` reference cells, as its documentation advises: SGD from
    50k cells, mini-batches from 100k ("may improve the training efficiency for large datasets (for example,
    >100k cells)"), and no centring from 50k (``with_mean=False`` "can lower the memory usage when the input is
    a sparse matrix"; centring makes 50k x 28k genes dense, 11 GB)."""
    big = n_cells >= 50_000
    return {"use_SGD": big, "mini_batch": n_cells >= 100_000, "with_mean": not big}


def _predict(job: dict) -> dict:
    """Annotate the query file with the saved model; time it; score against the query's labels."""
    method, query = job["method"], job["query"]
    t0 = time.perf_counter()
    if method.startswith("cellbook"):
        pred = annotate_file(query, model=job["model"], chunk_size=int(job.get("chunk_size", 20_000)),
                             progress=False)["predicted_cell_type"].to_numpy()
    elif method == "celltypist":
        with H5adCounts(query) as counts:
            pred = _celltypist_predict(job["model"], counts.rows(0, counts.n_obs), counts.var_names)
    else:
        with H5adCounts(query) as counts:
            pred = np.concatenate([_celltypist_predict(job["model"], counts.rows(a, min(a + CELLTYPIST_BLOCK,
                                                                                         counts.n_obs)),
                                                       counts.var_names)
                                   for a in range(0, counts.n_obs, CELLTYPIST_BLOCK)])
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), **_scores(_labels_of(query), pred)}


def run_job(job: dict) -> dict:
    """One measurement in this process: ``job["stage"]`` ``"fit"`` or ``"predict"`` (see :func:`measure`)."""
    result = _fit(job) if job["stage"] == "fit" else _predict(job)
    return {**result, "own_peak_rss_gb": _peak_rss_gb()}


# ------------------------------------------------------------------------------------------ the grid
def machine() -> str:
    """The machine, in words: CPU model, cores this process may use, memory."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {psutil.virtual_memory().total / 2 ** 30:.0f} GB"


def _too_slow(done: list[dict], method: str, stage: str, cells: int, timeout: float):
    """A reason to skip ``method`` at ``cells`` when a smaller size already failed or, scaled linearly from the
    largest size measured, would take more than ``timeout``; else ``None``."""
    before = [r for r in done if r["method"] == method and r["stage"] == stage and r["cells"] < cells]
    if not before:
        return None
    last = max(before, key=lambda r: r["cells"])
    if last["status"] != "ok":
        return f"skipped: {last['status'].removeprefix('skipped: ')} at {last['cells']:,} cells already"
    estimate = last["seconds"] * cells / last["cells"]
    if estimate > timeout:
        return (f"skipped: about {estimate / 60:.0f} min expected ({last['seconds']:.0f} s at {last['cells']:,} "
                f"cells), over the {timeout / 60:g}-min limit")
    return None


def annotation_scaling(adata, workdir, reference_sizes=(None,), query_sizes=(10_000,), methods=("cellbook",),
                       predict_methods=None, label_key: str = "cell_type", seed: int = 0, timeout: float = 1200.0,
                       memory_gb: float = 16.0, source: str = "", log=print) -> pd.DataFrame:
    """Train every method on each reference size and annotate each query size; one row per measurement.

    ``reference_sizes``: ``None`` is the real training cells, a number that many cells resampled from them.
    ``query_sizes``: cells resampled from the held-out cells; each is annotated with the model trained on the
    real training cells.  ``predict_methods`` (default: ``methods``, plus ``celltypist_blocks`` with
    ``celltypist``).  Files go to ``workdir`` (kept: a second run reuses them).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tr, te = split_cells(adata.obs[label_key].to_numpy(), seed)
    train, held = adata[tr].copy(), adata[te].copy()
    heldout = workdir / "heldout.h5ad"
    _write_real(held, heldout)
    rows: list[dict] = []
    for size in reference_sizes:
        ref = workdir / (f"reference_{size}.h5ad" if size else "reference_real.h5ad")
        if size:
            write_resampled(ref, train, int(size), seed=seed + 1, label_key=label_key, source=source)
        else:
            _write_real(train, ref)
        cells = int(size or train.n_obs)
        for method in methods:
            job = {"stage": "fit", "method": method, "cells": cells, "resampled": bool(size),
                   "reference": str(ref), "heldout": str(heldout),
                   "model": str(workdir / f"{method}_{cells}.{'pkl' if 'celltypist' in method else 'cbm'}")}
            rows.append(_run(job, rows, timeout, memory_gb, log))
    predict_methods = list(predict_methods or [*methods, *(["celltypist_blocks"] if "celltypist" in methods else [])])
    for n in query_sizes:
        query = write_resampled(workdir / f"query_{n}.h5ad", held, int(n), seed=seed + 2, label_key=label_key,
                                source=source)
        for method in predict_methods:
            fitted = "celltypist" if method == "celltypist_blocks" else method
            model = next((r["model"] for r in rows if r["stage"] == "fit" and r["method"] == fitted
                          and not r["resampled"] and r["status"] == "ok"), None)
            job = {"stage": "predict", "method": method, "cells": int(n), "resampled": True, "query": str(query),
                   "model": model}
            rows.append(_run(job, rows, timeout, memory_gb, log) if model else
                        {**job, "status": "skipped: no model (its training failed)", "seconds": None})
    return pd.DataFrame(rows)


def _write_real(adata, path: Path) -> None:
    if not path.is_file():
        a = adata.copy()
        if "counts" in a.layers:
            a.X = a.layers.pop("counts")
        a.X = sp.csr_matrix(a.X, dtype=np.float32)
        with atomic_path(path) as tmp:
            a.write_h5ad(tmp)


def _run(job: dict, done: list[dict], timeout: float, memory_gb: float, log) -> dict:
    why = _too_slow(done, job["method"], job["stage"], job["cells"], timeout)
    row = {**job, "status": why, "seconds": None} if why else measure(job, timeout, memory_gb)
    if log is None:
        return row
    log(f"{job['stage']:>7} {job['method']:<17} {job['cells']:>9,} cells: "
        + (f"{row['seconds']:8.1f} s {row['peak_rss_gb']:6.2f} GB  acc {row.get('accuracy', float('nan')):.3f}"
           if row["status"] == "ok" else row["status"]))
    return row


def scaling_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The measurements with ``time_vs_celltypist`` and ``memory_vs_celltypist``: each method's seconds and peak
    memory over those of the CellTypist run that finished at the same stage and size (whole query, else in
    blocks)."""
    out = rows.copy()
    for col in ("time_vs_celltypist", "memory_vs_celltypist"):
        out[col] = np.nan
    for _, grp in out.groupby(["stage", "cells"]):
        ct = grp[grp["method"].isin(["celltypist", "celltypist_blocks"]) & (grp["status"] == "ok")]
        if ct.empty:
            continue
        base = ct.sort_values("method").iloc[0]
        ok = grp.index[grp["status"] == "ok"]
        out.loc[ok, "time_vs_celltypist"] = out.loc[ok, "seconds"] / base["seconds"]
        out.loc[ok, "memory_vs_celltypist"] = out.loc[ok, "peak_rss_gb"] / base["peak_rss_gb"]
    return out


#: Short names of the methods for tables and legends.
SHORT = {"cellbook": "cellbook annotate", "cellbook_cnn": "cellbook annotate, CNN ensemble", "celltypist": "CellTypist",
         "celltypist_blocks": f"CellTypist, {CELLTYPIST_BLOCK // 1000}k-cell blocks"}


def format_table(table: pd.DataFrame, stage: str = "predict") -> pd.DataFrame:
    """One stage's rows (``"fit"`` or ``"predict"``) of :func:`scaling_table` for reading: text columns, numbers
    rounded, accuracy and macro-F1 side by side, blanks where a run was skipped (its reason in ``note``)."""
    table = table[table["stage"] == stage]

    def fmt(col, spec, suffix=""):
        vals = table[col] if col in table else pd.Series(np.nan, index=table.index)
        return vals.map(lambda v: "" if pd.isna(v) else f"{v:{spec}}{suffix}")

    def pair(a, b):
        return [f"{x} / {y}" if x and y else "" for x, y in zip(a, b)]

    cells = [f"{c:,}" + ("" if r else " (real)") for c, r in zip(table["cells"], table["resampled"])]
    return pd.DataFrame({
        "method": table["method"].map(lambda m: SHORT.get(m, m)).to_numpy(), "cells": cells,
        "seconds": fmt("seconds", ".1f").to_numpy(), "peak GB": fmt("peak_rss_gb", ".2f").to_numpy(),
        "accuracy / macro-F1": pair(fmt("accuracy", ".3f"), fmt("f1_macro", ".3f")),
        "vs CellTypist: time / memory": pair(fmt("time_vs_celltypist", ".2f", "x"),
                                             fmt("memory_vs_celltypist", ".2f", "x")),
        "note": table["status"].map(_short_status).to_numpy()})


def _short_status(status: str) -> str:
    """A table's few words for a run's status (the full reason is in the rows' ``status``)."""
    if status == "ok":
        return ""
    if "GB of memory" in status:
        gb = status.split("passed ", 1)[1].split(" GB", 1)[0]
        return f"stopped: over {gb} GB" + (" (smaller size)" if "already" in status else "")
    if "already" in status:
        return "not run: a smaller size was not run or stopped"
    if "expected" in status:
        return f"not run: about {status.split('about ', 1)[1].split(' min', 1)[0]} min expected"
    if "not done in" in status:
        return "stopped: over the time limit"
    return status.removeprefix("skipped: ")[:40]


def read_results(path) -> tuple[pd.DataFrame, str]:
    """``(rows, machine)`` of a results file written by ``benchmarks/bench_annotate.py``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path} is not a results file of benchmarks/bench_annotate.py (no 'rows')")
    rows = pd.DataFrame(data["rows"])
    return rows.drop(columns=["time_vs_celltypist", "memory_vs_celltypist"], errors="ignore"), data.get("machine", "")


if __name__ == "__main__":
    print("RESULT " + json.dumps(run_job(json.loads(sys.argv[1]))), flush=True)
