"""The ``cellbook`` command: run the notebooks, list them, fetch their data, annotate cells.

    cellbook run all --profile quick            # every notebook, CPU settings
    cellbook run part1/01_data -p n_top_genes=500
    cellbook run all --profile full --device cuda
    cellbook list                               # notebooks and their parameters
    cellbook data list | fetch NAME | verify NAME | where NAME   # datasets
    cellbook annotate query.h5ad --model model.cbm -o out.h5ad [--majority-voting] [--threshold 0.5]
    cellbook annotate query.h5ad --reference ref.h5ad --label-key cell_type --model-out model.cbm -o out.h5ad
    cellbook annotate query.h5ad --reference vangalen2019_bm_seqwell -o out.h5ad   # a dataset of `data list`

Each sub-command imports its implementation when it runs (:mod:`cellbook.runner`,
:mod:`cellbook.datasets.cache`, :mod:`cellbook.annotation`), so ``cellbook --help`` and
``cellbook list`` start without torch, scanpy or scikit-learn.  Errors are one line,
``cellbook: error: ...``, with exit status 1; an interrupt exits with 128 + the signal's number.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from .config import ANNOTATE_CHUNK_SIZE, profile_names, profile_parallel
from .layout import REPO_ROOT, book_datasets, build_dir, chains, notebook_parameters, resolve_names

# ------------------------------------------------------------------------------------- cellbook run

def _cmd_list(args) -> int:
    root = Path(args.root)
    for name in resolve_names(["all"], root):
        print(f"{name}: {notebook_parameters(name, root)}")
    return 0


def _cmd_run(args) -> int:
    from . import runner

    if args.profile not in profile_names():
        raise ValueError(f"unknown profile {args.profile!r}; valid profiles: {', '.join(profile_names())}")
    root = Path(args.root)
    names = resolve_names(args.notebooks, root)
    overrides = runner.parse_overrides(args.parameter)
    if overrides:
        known = set().union(*(notebook_parameters(n, root) for n in names))
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for the notebooks asked for; "
                             f"valid: {', '.join(sorted(known))}")
    out = Path(args.out).resolve() if args.out else None
    if out is not None and out == build_dir(root).resolve() / "results":
        raise ValueError(f"--out {args.out} is the results folder itself; give a build folder (it gets executed/, "
                         f"results/ and failed/ inside), e.g. book/_build/exercises")
    _configure_sweeps(args, names)
    t0 = time.perf_counter()
    try:
        if args.jobs > 1 and len(chains(names)[0]) > 1:
            runner.run_parallel(names, args.profile, args.device, args.parameter, args.jobs, root, out_dir=out,
                                smoke=args.smoke)
        else:
            overrides = {**(runner.smoke_overrides(args.profile, names, root) if args.smoke else {}), **overrides}
            runner.run_many(names, args.profile, args.device, overrides, root, out_dir=out, fetch=args.fetch,
                            progress=not args.quiet)
    except runner.NotebookInterrupted as err:
        print(f"cellbook: error: {err}", file=sys.stderr)
        return err.exit_code
    except runner.NotebookFailed as err:
        print(f"cellbook: error: {err}", file=sys.stderr)
        return 1
    print(f"[cellbook] {len(names)} notebook(s), profile {args.profile}: {time.perf_counter() - t0:.1f} s"
          + (f"; executed copies and results in {out}" if out else ""), flush=True)
    return 0


def _configure_sweeps(args, names: list[str]) -> dict:
    """How the notebooks' sweeps run (:func:`cellbook.parallel.map_tasks`), set for their kernels through
    the environment: ``--scheduler`` (an existing Dask cluster), else ``--workers`` (a local Dask cluster
    per notebook; default: the profile's ``parallel.workers``, or with ``--jobs N`` the cores left per running
    part, ``N // parts``), else in process. Returns the settings."""
    from .parallel import settings

    prof = profile_parallel(args.profile)
    workers = args.workers
    if workers is None and args.jobs > 1:
        workers = max(1, args.jobs // max(1, min(args.jobs, len(chains(names)[0]))))
    if workers is None:
        workers = prof.get("workers") or 1
    threads = args.threads_per_worker or prof.get("threads_per_worker") or 1
    env = {"CELLBOOK_THREADS_PER_WORKER": str(threads)}
    if args.scheduler:
        env.update(CELLBOOK_SCHEDULER=args.scheduler, CELLBOOK_BACKEND="dask")
    elif int(workers) > 1:
        env.update(CELLBOOK_BACKEND="dask", CELLBOOK_WORKERS=str(int(workers)))
    os.environ.update(env)
    resolved = settings()
    if resolved["backend"] != "serial":
        where = resolved["scheduler"] or f"a local Dask cluster of {resolved['n_workers']} worker(s) per notebook"
        print(f"[cellbook] sweeps run on {where}, {threads} thread(s) per worker", flush=True)
    return resolved


def _add_run_parsers(sub) -> None:
    p_run = sub.add_parser("run", help="execute notebooks into book/_build/executed")
    p_run.add_argument("notebooks", nargs="*", default=["all"],
                       help="'all', a part ('part1') or notebook names ('part1/01_data')")
    p_run.add_argument("--profile", default="quick", help=f"parameter profile ({', '.join(profile_names())})")
    p_run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p_run.add_argument("-p", "--parameter", action="append", metavar="KEY=VALUE",
                       help="override a parameter (repeatable); applied to the notebooks that have it")
    p_run.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this checkout)")
    p_run.add_argument("--out", default=None, metavar="DIR",
                       help="build folder for executed copies, results and the run record (default: "
                            "<root>/book/_build); the exercises use book/_build/exercises, so trying a "
                            "parameter never overwrites the published book")
    p_run.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="run up to N parts at once (each part's chapters in order, the summary last); "
                            "with one part, its sweeps get N local Dask workers")
    p_run.add_argument("--workers", type=int, default=None, metavar="W",
                       help="Dask workers for each notebook's sweeps (a LocalCluster per notebook; default: the "
                            "profile's parallel.workers, 1 = in process)")
    p_run.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                       help="CPU threads of each Dask worker (default: the profile's, else 1)")
    p_run.add_argument("--scheduler", default=os.environ.get("CELLBOOK_SCHEDULER"), metavar="ADDRESS",
                       help="run the sweeps on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (a "
                            "`dask scheduler` + `dask worker`s, dask-jobqueue on SLURM, or dask-cuda); "
                            "default: $CELLBOOK_SCHEDULER")
    p_run.add_argument("--smoke", action="store_true",
                       help="keep the profile's settings but cut its loops (epochs, seeds, folds, cells; "
                            "profiles.yaml): minutes on a CPU through every path of --profile full")
    p_run.add_argument("--no-fetch", dest="fetch", action="store_false", help=argparse.SUPPRESS)
    p_run.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    p_run.set_defaults(func=_cmd_run)
    p_list = sub.add_parser("list", help="list notebooks and their parameters")
    p_list.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this checkout)")
    p_list.set_defaults(func=_cmd_list)


# ------------------------------------------------------------------------------------ cellbook data

def _print_table(rows: list[dict], cols: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c) or "").ljust(widths[c]) for c in cols))


def _cmd_data(args) -> int:
    """Carry out ``cellbook data ...``; returns the exit code."""
    from .datasets import cache, registry

    if args.cache:
        os.environ[registry.ENV_CACHE] = str(Path(args.cache).expanduser())
    progress = False if args.quiet else None
    cmd = args.data_command
    if cmd == "list":
        _print_table([cache.status(n) for n in sorted(registry.REGISTRY)], ["name", "status", "path", "detail"])
        print(f"\n{registry.ENV_DATA}={os.environ.get(registry.ENV_DATA) or '(unset)'}  cache={registry.cache_dir()}"
              f"  {registry.ENV_MIRROR}={os.environ.get(registry.ENV_MIRROR) or '(unset)'}")
        return 0
    names = list(args.names) + (book_datasets() if cmd == "fetch" and args.book else [])
    if not names:
        raise ValueError("name at least one dataset (see `cellbook data list`), or --book")
    for n in names:
        registry.get(n)
    failed = 0
    for n in dict.fromkeys(names):
        if cmd == "fetch":
            print(f"{n}: {cache.fetch(n, mirror=args.mirror, force=args.force, progress=progress)}")
        elif cmd == "where":
            print(registry.locate(n, args.path))
        elif cmd == "verify":
            rows = cache.verify_dataset(n, args.path)
            for what, ok, detail in rows:
                print(f"{'ok  ' if ok else 'FAIL'} {n}: {what}: {detail}")
            failed += not all(ok for _, ok, _ in rows)
    return 1 if failed else 0


def _add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="list, fetch, verify or locate the datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    dsub.add_parser("list", help="every dataset and its status")
    pf = dsub.add_parser("fetch", help="download the raw files and build datasets into the cache")
    pf.add_argument("names", nargs="*", help="dataset names")
    pf.add_argument("--book", action="store_true", help="every dataset the book's chapters need")
    pf.add_argument("--force", action="store_true", help="download and build again even if cached")
    for name, text in (("verify", "check a dataset against the registry's checksums"),
                       ("where", "print the path a loader would read")):
        q = dsub.add_parser(name, help=text)
        q.add_argument("names", nargs="+")
        q.add_argument("--path", default=None, help="check this file or folder instead of the search order")
    for q in dsub.choices.values():
        q.add_argument("--mirror", default=None, help="mirror base URL or folder (default: $CELLBOOK_MIRROR)")
        q.add_argument("--cache", default=None, help="cache folder (default: $CELLBOOK_CACHE or ~/.cache/cellbook)")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_data)


# -------------------------------------------------------------------------------- cellbook annotate

def _cli_layer(adata, layer: str | None, path) -> str | None:
    """The layer holding raw counts: ``--layer`` (checked), else ``"counts"`` when present, else ``X`` (None)."""
    if layer is None:
        return "counts" if "counts" in adata.layers else None
    if layer == "X":
        return None
    if layer not in adata.layers:
        raise ValueError(f"{path} has no layers[{layer!r}] (layers: {', '.join(adata.layers) or 'none'}); give "
                         f"--layer NAME of the raw counts, --layer X, or leave --layer out ('counts' if present, "
                         f"else X)")
    return layer


def _check_annotate_args(args) -> Path:
    if (args.model is None) == (args.reference is None):
        raise ValueError("give either --model MODEL.cbm (a saved model) or --reference REF.h5ad|DATASET (labelled "
                         "cells to train on), not both or neither")
    if args.reference is None:
        given = [o for o, v in (("--method", args.method), ("--model-out", args.model_out), ("-p", args.param),
                                ("--label-key", args.label_key)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} only apply when training with --reference REF.h5ad")
    elif args.trusted:
        raise ValueError("--trusted only applies to reading a model file (--model MODEL.cbm)")
    out = Path(args.output)
    if out.suffix != ".h5ad":
        raise ValueError(f"-o {out}: the output is an AnnData file; give a name ending in .h5ad")
    if args.model_out and Path(args.model_out).resolve() == out.resolve():
        raise ValueError("--model-out and -o name the same file")
    return out


def _annotate_model(args, genes):
    """The model: trained on ``--reference`` (an .h5ad file or a dataset name; on the genes it shares with the
    query, ``genes``), or read from ``--model``."""
    from .annotation import ARCHITECTURES, fit_reference, load_model, load_reference
    from .annotation._reference import _note_reference
    from .runner import parse_overrides

    if args.reference is None:
        return load_model(args.model, device=args.device, trusted=args.trusted), f"from {args.model}"
    params = parse_overrides(args.param)
    ref, name = load_reference(args.reference)
    ref_layer = _cli_layer(ref, args.layer, name)
    if args.progress and sys.stderr.isatty() and "progress" not in params and args.method in ARCHITECTURES:
        params["progress"] = True
    try:
        model = fit_reference(ref, args.method or "logreg", genes=genes,
                              label_key=args.label_key or "cell_type", layer=ref_layer, params=params,
                              seed=args.seed, device=args.device)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return _note_reference(model, name), f"trained on {ref.n_obs} cells of {name}"


def _cmd_annotate(args) -> int:
    from .annotation import H5adCounts, annotate, annotate_file, save_model
    from .datasets.scrna import read_h5ad
    from .fsutil import atomic_path

    out = _check_annotate_args(args)
    whole = args.majority_voting        # over-clustering needs every cell's counts in memory; else block by block
    if whole:
        query = read_h5ad(args.query, "query")
        layer, genes, n_cells = _cli_layer(query, args.layer, args.query), query.var_names, query.n_obs
    else:
        with H5adCounts(args.query, args.layer) as counts:      # the genes only; the counts stay on disk
            layer, genes, n_cells = counts.layer, counts.var_names, counts.n_obs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, source = _annotate_model(args, genes)
        try:
            if whole:
                annotate(query, model, key_added=args.key, layer=layer, threshold=args.threshold,
                         majority_voting=True, resolution=args.resolution, seed=args.seed, device=args.device,
                         chunk_size=args.chunk_size, progress=args.progress and None)
                table, info = query.obs, query.uns[args.key]
            else:
                table = annotate_file(args.query, out, model, key_added=args.key, layer=layer or "X",
                                      threshold=args.threshold, device=args.device, chunk_size=args.chunk_size,
                                      progress=args.progress and None)
                info = table.attrs["uns"]
        except ValueError as err:
            raise ValueError(f"{args.query}: {err}") from None
        if args.model_out:
            save_model(model, args.model_out)
        if whole:
            with atomic_path(out) as tmp:
                query.write_h5ad(tmp)
    for message in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in caught
                                 if issubclass(w.category, UserWarning) and str(w.message).strip()):
        print(f"cellbook: warning: {message}", file=sys.stderr)
    _print_annotation(args, n_cells, table, info, source, out)
    return 0


def _print_annotation(args, n_cells: int, table, info: dict, source: str, out: Path) -> None:
    from .annotation import UNASSIGNED
    from .annotation._annotate import _label_counts

    unassigned = (f"{info['n_unassigned']} unassigned (confidence < {info['threshold']:g})"
                  if "threshold" in info else "no threshold")
    print(f"{args.query}: {n_cells} cells annotated by {info['model']} ({source}) -> {out}")
    voting = (f"; majority voting over {info['over_clustering']['n_clusters']} clusters"
              if args.majority_voting else "")
    print(f"genes: {info['n_genes_found']} of the model's {info['n_genes_model']} found; "
          f"{len(set(table[args.key].astype(str)) - {UNASSIGNED})} labels; {unassigned}{voting}")
    if args.model_out:
        print(f"model saved to {args.model_out}")
    print(_label_counts(table, args.key).to_string())


def _add_annotate_parser(sub) -> None:
    p = sub.add_parser("annotate", help="label cells of an .h5ad with a saved model, or train one on a reference first",
                       description="Annotate the cells of QUERY (raw counts) with a saved model (--model), or train "
                                   "a model on the genes QUERY shares with a labelled reference (--reference) first. "
                                   "Writes OUT.h5ad with obs[KEY], obs[KEY_confidence] (and KEY_majority_voting, "
                                   "KEY_over_clustering) and uns[KEY]. Reading a model file runs no code from it; "
                                   "a pickled model of an older cellbook is read only with --trusted.")
    p.add_argument("query", help="the cells to annotate (.h5ad, raw counts in layers['counts'] or X)")
    p.add_argument("-o", "--output", required=True, help="output .h5ad (written atomically)")
    p.add_argument("--model", help="a model file written by model.save / --model-out")
    p.add_argument("--trusted", action="store_true",
                   help="read a --model file of an older cellbook that holds a pickle (which can run any code): "
                        "only for a file from a source you trust")
    p.add_argument("--reference", metavar="REF.h5ad|DATASET",
                   help="labelled cells to train a model on, on the genes shared with QUERY: an .h5ad file, or "
                        "the name of a single-cell dataset of `cellbook data list` (e.g. vangalen2019_bm_seqwell; "
                        "an existing file of that name wins)")
    p.add_argument("--label-key", help="reference obs column with the labels (default: cell_type)")
    p.add_argument("--method", help="model to train on --reference, as spelt here (lower case): logreg (default: "
                                     "tuned logistic regression), logreg_scaled, gbm, celltypist, knn, linear_svm, "
                                     "mlp, cnn, lstm, lstm_att")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="a parameter of the model trained on --reference (repeatable), e.g. -p max_epochs=5")
    p.add_argument("--model-out", help="save the model trained on --reference to this file (e.g. model.cbm)")
    p.add_argument("--majority-voting", action="store_true", help="over-cluster QUERY; each cluster takes its "
                                                                  "majority label (KEY_majority_voting)")
    p.add_argument("--resolution", type=float, help="over-clustering resolution (default: from the number of cells)")
    p.add_argument("--threshold", type=float,
                   help="cells whose top probability is below this are 'Unassigned' (default: none). It is the "
                        "probability of the fine label (the predicted type), not of its lineage: a cell whose "
                        "probability is split between close types, e.g. T 0.45, CTL 0.35, NK 0.20, is "
                        "Unassigned at 0.5 although its lineage (T/NK) is clear. To compare lineages, map the "
                        "labels afterwards with cellbook.annotation.to_lineage")
    p.add_argument("--layer", help="layer of raw counts (default: 'counts' when present, else X)")
    p.add_argument("--chunk-size", type=int, default=ANNOTATE_CHUNK_SIZE, metavar="CELLS",
                   help="cells read and predicted at a time; QUERY's counts are never loaded whole, so memory "
                        "follows this, not the file's size (default: %(default)s); --majority-voting reads QUERY "
                        "whole (its over-clustering needs every cell)")
    p.add_argument("--key", default="predicted_cell_type", help="obs column for the labels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for training and over-clustering (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress bar")
    p.set_defaults(func=_cmd_annotate)


# ------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    """The ``cellbook`` argument parser: ``run``, ``list``, ``data`` and ``annotate``."""
    parser = argparse.ArgumentParser(prog="cellbook", description="Run the cellbook notebooks with papermill; fetch "
                                                                  "and check their data; annotate cells.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parsers(sub)
    _add_data_parser(sub)
    _add_annotate_parser(sub)
    return parser


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM behaves like Ctrl-C: it raises ``KeyboardInterrupt("SIGTERM")``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    """Run ``cellbook`` with ``argv`` (default: the command line); returns the exit status."""
    args = build_parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return args.func(args)
        except (ValueError, KeyError, OSError) as err:
            print(f"cellbook: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as err:
            sig = str(err.args[0]) if err.args and str(err.args[0]).startswith("SIG") else "SIGINT"
            print(f"cellbook: interrupted ({sig}) between notebooks; the notebooks that finished are published",
                  file=sys.stderr)
            return 128 + int(getattr(signal, sig, signal.SIGINT))


if __name__ == "__main__":
    sys.exit(main())
