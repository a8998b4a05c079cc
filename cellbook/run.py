"""Execute the book's notebooks with papermill: ``cellbook run`` / ``python -m cellbook.run``.

    cellbook run all --profile quick            # every notebook, CPU settings
    cellbook run part1/01_data -p n_top_genes=500
    cellbook run all --profile full --device cuda
    cellbook list                               # notebooks and their parameters
    cellbook data list | fetch NAME | verify NAME | where NAME   # datasets (cellbook.datasets.cache)
    cellbook annotate query.h5ad --model model.cbm -o out.h5ad [--majority-voting] [--threshold 0.5]
    cellbook annotate query.h5ad --reference ref.h5ad --label-key cell_type --model-out model.cbm -o out.h5ad

Before the first notebook runs, the datasets their setup cells name are fetched and built into
the cache when they are not already here (:func:`fetch_data`).

Source notebooks (``notebooks/``) are never written to. Nothing is half-published:

* Everything is checked before the first notebook runs: notebook names (and that ``--root``
  holds notebooks), each ``-p`` value's type against the notebook's parameters cell, the
  device (``--device cuda`` without a GPU is refused) and the run record ``_run.json``.
* Each notebook executes into a private staging folder (``book/_build/.staging/``), and its
  ``Recorder.save()`` writes its results JSON there too (``$CELLBOOK_RESULTS_STAGING``). Only
  when every cell ran does the runner stamp the executed copy with a run id (the results JSON
  carries the same id), move both to ``book/_build/executed/<name>.ipynb`` and
  ``book/_build/results/<name>.json`` with :func:`os.replace`, and add the notebook to
  ``book/_build/results/_run.json``; the moves happen with SIGINT/SIGTERM held back.
* Any failure (a raising cell, a dead kernel, Ctrl-C, SIGTERM, ...) is one line naming the
  notebook and the cell; the failed copy goes to ``book/_build/failed/<name>.ipynb`` (which
  also makes ``python -m cellbook.book`` refuse until the notebook runs again), and the
  previously published copy and results are left exactly as they were.

"cell N" is the 1-based position of the cell among all cells of the source notebook (see
:func:`cellbook.nbtools.cell_labels`); the book check uses the same numbers.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import functools
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml

from .config import profile_names, profile_parameters
from .fsutil import read_json, write_json, write_text
from .nbtools import cell_labels, failed_cell, first_line

REPO_ROOT = Path(__file__).resolve().parents[1]
# Parameters the runner passes itself; every notebook's parameters cell has them.
RUNNER_PARAMETERS = ("profile", "device")
RUN_RECORD = "_run.json"
STAGING = ".staging"
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


class NotebookFailed(RuntimeError):
    """A notebook did not run to the end; the message names the notebook and the cell."""


class NotebookInterrupted(NotebookFailed):
    """The run was interrupted (SIGINT / SIGTERM) while a notebook executed."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGNAL.get(signal_name, 130)


# ------------------------------------------------------------------------------------------
# paths

def notebook_dir(root: Path = REPO_ROOT) -> Path:
    return Path(root) / "notebooks"


def build_dir(root: Path = REPO_ROOT) -> Path:
    return Path(root) / "book" / "_build"


def failed_copy_path(name: str, out_dir: Path) -> Path:
    """Where the executed copy of a failed run is kept for debugging (never the published path)."""
    return Path(out_dir) / "failed" / f"{name}.ipynb"


def run_record_path(out_dir: Path) -> Path:
    return Path(out_dir) / "results" / RUN_RECORD


def list_notebooks(root: Path = REPO_ROOT) -> list[str]:
    """Notebook names (``part1/01_data``) in book order."""
    base = notebook_dir(root)
    return sorted(
        str(p.relative_to(base).with_suffix("")).replace(os.sep, "/")
        for p in base.glob("**/*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    )


# ------------------------------------------------------------------------------------------
# parameters

@functools.lru_cache(maxsize=256)
def _inspect(path: str, mtime_ns: int) -> dict:
    import papermill as pm

    return pm.inspect_notebook(path)


def notebook_info(name: str, root: Path = REPO_ROOT) -> dict:
    """papermill's view of the parameters cell: ``{name: {"default": source text, ...}}``."""
    path = notebook_dir(root) / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no notebook {name!r}: {path} does not exist")
    return _inspect(str(path), path.stat().st_mtime_ns)


def notebook_parameters(name: str, root: Path = REPO_ROOT) -> dict:
    """The parameters cell of a notebook: ``{name: default}`` (the default as source text)."""
    return {k: v.get("default") for k, v in notebook_info(name, root).items()}


def parse_overrides(items: list[str] | None) -> dict:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": 0.001}`` (YAML-typed values)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. -p epochs=3)")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"override {item!r}: {key!r} is not a parameter name")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(
                f"override {item!r}: the value {value!r} cannot be read ({problem}); write numbers as 3 or "
                f"1e-3, lists as [1, 2], mappings as {{a: 1}}, and quote text that has ':', '#' or brackets"
            ) from None
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key] = parsed
    return out


_KIND_NAMES = {"None": "null", "bool": "a bool (true/false)", "int": "an integer", "float": "a number",
               "str": "text", "list": "a list", "dict": "a mapping"}
_VALUE_NAMES = {**_KIND_NAMES, "float": "a decimal number"}


def _kind(value) -> str:
    for types, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                        (dict, "dict"), (type(None), "None")):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def _check_seed(where: str, key: str, value, fix: str) -> None:
    values = value if key == "seeds" and isinstance(value, (list, tuple)) else [value]
    for v in values:
        if _kind(v) != "int" or not 0 <= v < 2 ** 32:
            raise ValueError(f"{where}: parameter {key!r} must be a non-negative integer below 2**32 (seeds seed "
                             f"NumPy and PyTorch), not {value!r}; {fix}")


def check_parameter(name: str, key: str, value, default_src: str | None, *, nullable: bool = False,
                    origin: str = "override") -> None:
    """Refuse ``value`` for parameter ``key`` of notebook ``name`` when its type differs from the
    default's in the parameters cell (int / float / bool / str / list / dict; an int is fine where
    the default is a float; a ``None`` default takes any of these). ``None`` is accepted only where
    ``nullable`` (the default is ``None`` or a profile sets ``None``). Seeds must be >= 0."""
    fix = (f"pass e.g. -p {key}={default_src}" if origin == "override"
           else "fix cellbook/profiles.yaml")
    where = f"notebook {name}" + ("" if origin == "override" else f" ({origin})")
    if key in ("seed", "seeds"):
        _check_seed(where, key, value, fix if default_src not in (None, "None") else "pass e.g. -p seed=0")
    try:
        default = ast.literal_eval(default_src) if default_src is not None else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return  # the default is an expression: nothing to compare with
    dk, vk = _kind(default), _kind(value)
    if dk == "None":
        ok = vk in _KIND_NAMES
        expected = "a number, text, a bool, a list, a mapping or null"
    else:
        ok = vk == dk or (dk == "float" and vk == "int") or (vk == "None" and nullable)
        expected = _KIND_NAMES.get(dk, dk)
    if not ok:
        if vk == "None":
            expected += " (null only where the default or a profile uses it)"
        raise ValueError(f"{where}: parameter {key!r} takes {expected} (its default is {default_src}), "
                         f"not {value!r} ({_VALUE_NAMES.get(vk, vk)}); {fix}")


def resolve_names(requested: list[str], root: Path = REPO_ROOT) -> list[str]:
    """Expand ``all`` and part prefixes (``part1``) to notebook names; unknown names are an error."""
    base = notebook_dir(root)
    if not base.is_dir():
        raise FileNotFoundError(f"no notebooks at {root}: {base} does not exist; --root must be the repository "
                                f"root (the folder that holds notebooks/ and _toc.yml)")
    available = list_notebooks(root)
    if not available:
        raise FileNotFoundError(f"no notebooks at {root}: {base} holds no .ipynb files; --root must be the "
                                f"repository root (the folder that holds notebooks/ and _toc.yml)")
    if not requested or requested == ["all"]:
        return available
    names = []
    for req in requested:
        req = req.removesuffix(".ipynb").removeprefix("notebooks/")
        if req in available:
            names.append(req)
            continue
        matched = [n for n in available if n.startswith(req.rstrip("/") + "/")]
        if not matched:
            raise ValueError(f"unknown notebook {req!r}; valid: all, {', '.join(available)}")
        names.extend(matched)
    return list(dict.fromkeys(names))


def plan(name: str, profile: str, device: str, overrides: dict, root: Path = REPO_ROOT) -> dict:
    """The parameters ``name`` will run with; unknown parameter names and values of the wrong
    type (compared with the parameters cell's defaults) are an error."""
    defaults = notebook_parameters(name, root)
    params = {k: v for k, v in profile_parameters(profile, name).items()}
    params.update({"profile": profile, "device": device})
    missing_runner = [p for p in RUNNER_PARAMETERS if p not in defaults]
    if missing_runner:
        raise ValueError(f"{name}: the parameters cell must define {', '.join(missing_runner)}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{name}: profile {profile!r} sets unknown parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(defaults))}"
        )
    unknown = sorted(set(overrides) - set(defaults))
    if unknown and overrides:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}"
        )
    # Where a profile sets a parameter to null, null is a meaningful value for it (e.g. "all genes").
    nullable = {k for p in profile_names() for k, v in profile_parameters(p, name).items() if v is None}
    for key, value in params.items():
        if key not in RUNNER_PARAMETERS:
            check_parameter(name, key, value, defaults[key], nullable=True, origin=f"profile {profile!r}")
    for key, value in overrides.items():
        check_parameter(name, key, value, defaults[key], nullable=key in nullable)
    params.update(overrides)
    return params


def resolve_run_device(device: str) -> tuple[str, str | None]:
    """``(resolved device, GPU name or None)``; ``cuda`` without a GPU is a ``ValueError``."""
    if str(device).lower() == "cpu":
        return "cpu", None  # no torch import needed
    from .config import resolve_device

    try:
        resolved = resolve_device(device)
    except ValueError as err:
        raise ValueError(f"--device {device}: {err}") from None
    gpu = None
    if resolved.startswith("cuda"):
        import torch

        index = int(resolved.split(":", 1)[1]) if ":" in resolved else 0
        gpu = torch.cuda.get_device_name(index)
    return resolved, gpu


# ------------------------------------------------------------------------------------------
# the run record (_run.json)

def read_run_record(out_dir: Path) -> dict:
    """``_run.json`` of ``out_dir`` (``{}`` when absent); a corrupt one is a ``ValueError`` naming it."""
    return read_run_file(run_record_path(out_dir))


def read_run_file(path: Path) -> dict:
    """A ``_run.json`` file (``{}`` when absent); a corrupt one is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.exists():
        return {}
    record = read_json(path, "run record")
    if not isinstance(record, dict):
        raise ValueError(f"run record {path} holds a {type(record).__name__}, not an object; delete it and "
                         f"re-run `cellbook run`")
    return record


@contextlib.contextmanager
def _run_record_lock(out_dir: Path):
    """One writer of ``_run.json`` at a time, across processes (``cellbook run --jobs`` runs parts at once)."""
    import fcntl

    path = Path(out_dir) / ".run.lock"      # beside results/, whose every file is published
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_run(out_dir: Path, name: str, entry: dict) -> None:
    """Add one finished notebook to ``_run.json`` (atomic write, under a lock)."""
    with _run_record_lock(out_dir):
        _record_run_locked(out_dir, name, entry)


def _record_run_locked(out_dir: Path, name: str, entry: dict) -> None:
    record = read_run_record(out_dir)
    record["profile"] = entry["profile"]          # last run's, for readers of the old format
    record["device"] = entry["device"]
    record.setdefault("seconds", {})[name] = entry["seconds"]
    record.setdefault("notebooks", {})[name] = entry
    # every (profile, device) kept apart, so quick-on-CPU and full-on-GPU times stand side by side
    record.setdefault("by_setting", {}).setdefault(setting_label(entry), {})[name] = entry
    write_json(run_record_path(out_dir), record)


def setting_label(entry: dict) -> str:
    """``"quick on cpu"``, ``"full on cuda (NVIDIA H200)"``: how a run record entry was run."""
    gpu = entry.get("gpu")
    return f"{entry.get('profile')} on {entry.get('device')}" + (f" ({gpu})" if gpu else "")


# ------------------------------------------------------------------------------------------
# executing one notebook

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT / SIGTERM back (delivered on exit) so that a publish step is never cut in two."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    can = hasattr(signal, "pthread_sigmask")
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


def _clean_stale_staging(out_dir: Path) -> None:
    """Remove staging folders of runs whose process is gone (a runner killed with SIGKILL)."""
    base = Path(out_dir) / STAGING
    if not base.is_dir():
        return
    for d in base.iterdir():
        try:
            pid = int(d.name.split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            pass


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _describe_error(err: BaseException) -> str:
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    if isinstance(err, KeyboardInterrupt):
        return f"interrupted ({_signal_name(err)})"
    if isinstance(err, pm.PapermillExecutionError):
        return f"{err.ename}: {err.evalue}".splitlines()[0] if err.evalue else err.ename
    if isinstance(err, DeadKernelError):
        return ("the kernel died (its process was killed, e.g. by the out-of-memory killer, or it crashed); "
                "if memory is short, try a smaller profile or parameters")
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _signal_name(err: KeyboardInterrupt) -> str:
    return str(err.args[0]) if err.args and str(err.args[0]).startswith("SIG") else "SIGINT"


def _failure(name: str, err: BaseException, tmp: Path, failed: Path, run_id: str, root: Path) -> NotebookFailed:
    """Keep the failed copy at ``failed`` and build the one-line error naming notebook and cell."""
    what = _describe_error(err)
    where, kept, nb = "before its first cell ran", None, None
    if tmp.exists():
        try:
            nb = json.loads(tmp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            nb = None
    if nb is not None:
        idx = failed_cell(nb)
        if idx is not None:
            cell = nb["cells"][idx]
            count = cell.get("execution_count")
            where = (f"in {cell_labels(nb)[idx]} (execution count {count if count is not None else '-'}, "
                     f"starting `{first_line(cell)}`)")
    shown = failed.relative_to(root) if failed.is_relative_to(root) else failed
    message = f"notebook {name} failed {where}: {what}"
    if nb is None:  # nothing executed: a stub still marks the failure for `python -m cellbook.book`
        nb = {"cells": [{"cell_type": "markdown", "id": "failure", "metadata": {}, "source": message}],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    nb.setdefault("metadata", {})["cellbook"] = {"status": "failed", "run_id": run_id, "notebook": name,
                                                 "error": message, "failed_utc": _now()}
    try:
        write_text(failed, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        kept = shown
    except OSError:
        pass
    message += (f"; failed copy: {kept}" if kept else "") + "; the published copy and results were not changed"
    if isinstance(err, KeyboardInterrupt):
        return NotebookInterrupted(message, _signal_name(err))
    return NotebookFailed(message)


def run_notebook(name: str, profile: str = "quick", device: str = "auto", overrides: dict | None = None,
                 root: Path = REPO_ROOT, out_dir: Path | None = None, progress: bool = True) -> Path:
    """Execute one notebook; publish its executed copy and results only if every cell ran.

    Returns the executed copy's path. Raises :class:`NotebookFailed` (one line: notebook, cell,
    error, where the failed copy is) for any failure, :class:`NotebookInterrupted` for
    SIGINT / SIGTERM; the published copy and results are then left as they were.
    """
    import nbformat
    import papermill as pm

    root = Path(root)
    params = plan(name, profile, device, overrides or {}, root)
    resolved, gpu = resolve_run_device(device)
    out_dir = Path(out_dir) if out_dir else build_dir(root)
    src = notebook_dir(root) / f"{name}.ipynb"
    dst = out_dir / "executed" / f"{name}.ipynb"
    failed = failed_copy_path(name, out_dir)
    _clean_stale_staging(out_dir)
    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    stage = out_dir / STAGING / run_id
    tmp = stage / "executed" / f"{name}.ipynb"
    staged_results = stage / "results"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "CELLBOOK_NOTEBOOK": name,
        "CELLBOOK_RESULTS": str(out_dir / "results"),      # published results: what notebooks read
        "CELLBOOK_RESULTS_STAGING": str(staged_results),   # where Recorder.save writes
        "CELLBOOK_RUN_ID": run_id,
        "CELLBOOK_PROGRESS": "0",  # progress bars are for interactive use, not the published page
    }
    env_before = {k: os.environ.get(k) for k in [*env, "JUPYTER_PATH"]}
    os.environ.update(env)
    # The kernel must be this environment's Python (with cellbook), even if the user has their own
    # "python3" kernelspec in ~/.local: JUPYTER_PATH is searched first.
    own = str(Path(sys.prefix) / "share" / "jupyter")
    if own not in os.environ.get("JUPYTER_PATH", "").split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (own, os.environ.get("JUPYTER_PATH")) if p)
    started = _now()
    t0 = time.perf_counter()
    try:
        try:
            pm.execute_notebook(
                str(src), str(tmp), parameters=params, cwd=str(src.parent),
                kernel_name="python3", progress_bar=progress, log_output=False,
                shutdown_kernel="immediate",  # also on Ctrl-C: never leave a busy kernel behind
            )
            seconds = round(time.perf_counter() - t0, 1)
            entry = {"seconds": seconds, "profile": profile, "device": resolved, "device_requested": device,
                     "gpu": gpu, "started_utc": started, "finished_utc": _now(), "run_id": run_id}
            nb = nbformat.read(str(tmp), as_version=4)
            nb.metadata["cellbook"] = {"status": "ok", "notebook": name, **entry,
                                       "parameters": json.loads(json.dumps(params, default=str))}
            nbformat.write(nb, str(tmp))
            _fsync(tmp)
        except BaseException as err:  # noqa: BLE001 - every way of stopping is a failure to report
            raise _failure(name, err, tmp, failed, run_id, root) from None
        with _signals_held():  # publish: results, executed copy and run record move together
            if staged_results.is_dir():
                for f in sorted(staged_results.rglob("*.json")):
                    rel = f.relative_to(staged_results)
                    if any(part.startswith(".") for part in rel.parts):
                        continue  # a temporary file of an unfinished write
                    target = out_dir / "results" / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(f, target)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dst)
            failed.unlink(missing_ok=True)
            _record_run(out_dir, name, entry)
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            (out_dir / STAGING).rmdir()  # only when empty
    print(f"[cellbook] {name}: {time.perf_counter() - t0:.1f} s -> {dst.relative_to(root) if dst.is_relative_to(root) else dst}",
          flush=True)
    return dst


def _own_overrides(name: str, overrides: dict, root: Path) -> dict:
    params = notebook_parameters(name, root)
    return {k: v for k, v in overrides.items() if k in params}


def fetch_data(names: list[str], overrides: dict, root: Path = REPO_ROOT) -> dict:
    """Fetch (download and build) every dataset the notebooks' setup cells name, before any runs.

    Skipped for notebooks run with ``fallback=synthetic`` (the offline demo) or an explicit
    ``data_path``.  A dataset that cannot be had stops the run with one message naming it, its
    URL and ``cellbook data fetch NAME``.  Returns ``{dataset: path}``.
    """
    from .datasets.cache import ensure, notebook_datasets

    needed: list[str] = []
    for name in names:
        own = _own_overrides(name, overrides, root)
        if own.get("fallback") == "synthetic" or own.get("data_path") is not None:
            continue
        needed += notebook_datasets(notebook_dir(root) / f"{name}.ipynb")
    needed = list(dict.fromkeys(needed))
    return ensure(*needed) if needed else {}


def run_many(names: list[str], profile: str, device: str, overrides: dict,
             root: Path = REPO_ROOT, out_dir: Path | None = None, fetch: bool = True,
             progress: bool = True) -> dict:
    """Run notebooks in order; stops at the first failure. Returns ``{name: seconds}``.

    Everything that can be checked is checked before the first notebook runs (plans and
    parameter types, the device, the run record), so a bad input costs no notebook time.
    """
    root = Path(root)
    out = Path(out_dir) if out_dir else build_dir(root)
    for name in names:
        plan(name, profile, device, _own_overrides(name, overrides, root), root)
    resolve_run_device(device)
    read_run_record(out)
    if fetch:
        fetch_data(names, overrides, root)
    times = {}
    for name in names:
        t0 = time.perf_counter()
        run_notebook(name, profile, device, _own_overrides(name, overrides, root), root, out_dir, progress=progress)
        times[name] = round(time.perf_counter() - t0, 1)
    return times


def chains(names: list[str]) -> tuple[list[list[str]], list[str]]:
    """Independent chains of notebooks: each part's chapters in order (a chapter may read an earlier
    chapter's results), and the pages that read every part (the summary), which run last."""
    parts: dict[str, list[str]] = {}
    last = []
    for name in names:
        if name.startswith("summary/"):
            last.append(name)
        else:
            parts.setdefault(name.split("/", 1)[0], []).append(name)
    return list(parts.values()), last


def run_parallel(names: list[str], profile: str, device: str, raw_overrides: list[str] | None, jobs: int,
                 root: Path = REPO_ROOT, out_dir: Path | None = None) -> dict:
    """Run the parts' chains ``jobs`` at a time, each in its own ``cellbook run`` process, then the summary.

    Checks and fetches everything first, as :func:`run_many` does. Each chain's output is printed with its
    part as a prefix. If a chain fails, the chains already running finish (their notebooks are published),
    no new one starts, the summary is not run, and :class:`NotebookFailed` names every failed chain.
    Returns ``{chain: seconds}``.
    """
    import subprocess

    root = Path(root)
    out = Path(out_dir) if out_dir else build_dir(root)
    overrides = parse_overrides(raw_overrides)
    for name in names:
        plan(name, profile, device, _own_overrides(name, overrides, root), root)
    resolve_run_device(device)
    read_run_record(out)
    fetch_data(names, overrides, root)
    groups, last = chains(names)
    base = [sys.executable, "-m", "cellbook.run", "run", "--profile", profile, "--device", device,
            "--root", str(root), "--out", str(out), "--no-fetch", "--quiet",
            *[a for item in (raw_overrides or []) for a in ("-p", item)]]
    pending, running, failed, times = list(groups), {}, [], {}

    def pump(proc, label):
        for line in proc.stdout:
            print(f"[{label}] {line.rstrip()}", flush=True)

    def start(group):
        label = group[0].split("/", 1)[0]
        proc = subprocess.Popen([*base, *group], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=False)
        th = threading.Thread(target=pump, args=(proc, label), daemon=True)
        th.start()
        running[label] = (proc, th, time.perf_counter())
        print(f"[cellbook] started {label}: {', '.join(group)}", flush=True)

    try:
        while pending or running:
            while pending and len(running) < max(1, int(jobs)) and not failed:
                start(pending.pop(0))
            if not running:
                break
            time.sleep(0.2)
            for label, (proc, th, t0) in list(running.items()):
                if proc.poll() is not None:
                    th.join()
                    times[label] = round(time.perf_counter() - t0, 1)
                    del running[label]
                    if proc.returncode != 0:
                        failed.append(f"{label} (exit {proc.returncode})")
    except BaseException:
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGINT)
        for proc, _, _ in running.values():
            proc.wait()
        raise
    if failed:
        raise NotebookFailed(f"{', '.join(failed)} failed (see its lines above); the other parts' notebooks that "
                             f"finished are published; {', '.join(last) or 'nothing'} not run")
    if last:
        times.update(run_many(last, profile, device, overrides, root, out_dir, fetch=False))
    return times


# ------------------------------------------------------------------------------------------
# command line

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


def _cmd_list(args) -> int:
    root = Path(args.root)
    for name in resolve_names(["all"], root):
        print(f"{name}: {notebook_parameters(name, root)}")
    return 0


def _cmd_run(args) -> int:
    if args.profile not in profile_names():
        raise ValueError(f"unknown profile {args.profile!r}; valid profiles: {', '.join(profile_names())}")
    root = Path(args.root)
    names = resolve_names(args.notebooks, root)
    overrides = parse_overrides(args.parameter)
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
    if args.jobs > 1 and len(chains(names)[0]) > 1:
        run_parallel(names, args.profile, args.device, args.parameter, args.jobs, root, out_dir=out)
    else:
        run_many(names, args.profile, args.device, overrides, root, out_dir=out, fetch=args.fetch,
                 progress=not args.quiet)
    print(f"[cellbook] {len(names)} notebook(s), profile {args.profile}: {time.perf_counter() - t0:.1f} s"
          + (f"; executed copies and results in {out}" if out else ""), flush=True)
    return 0


def _configure_sweeps(args, names: list[str]) -> dict:
    """How the notebooks' sweeps run (:func:`cellbook.parallel.map_tasks`), set for their kernels through
    the environment: ``--scheduler`` (an existing Dask cluster), else ``--workers`` (a local Dask cluster
    per notebook; default: the profile's ``parallel.workers``, or with ``--jobs N`` the cores left per running
    part, ``N // parts``), else in process. Returns the settings."""
    from .config import profile_parallel
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


def _cmd_annotate(args) -> int:
    import warnings

    from .annotate import UNASSIGNED, fit_reference, load_model, save_model, summary
    from .annotate import annotate as annotate_cells
    from .datasets.scrna import read_h5ad
    from .fsutil import atomic_path

    if (args.model is None) == (args.reference is None):
        raise ValueError("give either --model MODEL.cbm (a saved model) or --reference REF.h5ad (labelled cells to "
                         "train on), not both or neither")
    if args.reference is None:
        given = [o for o, v in (("--method", args.method), ("--model-out", args.model_out), ("-p", args.param),
                                ("--label-key", args.label_key)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} only apply when training with --reference REF.h5ad")
    out = Path(args.output)
    if out.suffix != ".h5ad":
        raise ValueError(f"-o {out}: the output is an AnnData file; give a name ending in .h5ad")
    if args.model_out and Path(args.model_out).resolve() == out.resolve():
        raise ValueError("--model-out and -o name the same file")
    params = parse_overrides(args.param)
    query = read_h5ad(args.query, "query")
    layer = _cli_layer(query, args.layer, args.query)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.reference is not None:
            ref = read_h5ad(args.reference, "reference")
            ref_layer = _cli_layer(ref, args.layer, args.reference)
            from .annotate import ARCHITECTURES

            if args.progress and sys.stderr.isatty() and "progress" not in params and args.method in ARCHITECTURES:
                params["progress"] = True
            try:
                model = fit_reference(ref, args.method or "logreg", genes=query.var_names,
                                      label_key=args.label_key or "cell_type", layer=ref_layer, params=params,
                                      seed=args.seed, device=args.device)
            except ValueError as err:
                raise ValueError(f"{args.reference}: {err}") from None
            source = f"trained on {ref.n_obs} cells of {args.reference}"
        else:
            model = load_model(args.model, device=args.device)
            source = f"from {args.model}"
        try:
            annotate_cells(query, model, key_added=args.key, layer=layer, threshold=args.threshold,
                           majority_voting=args.majority_voting, resolution=args.resolution, seed=args.seed,
                           device=args.device)
        except ValueError as err:
            raise ValueError(f"{args.query}: {err}") from None
        if args.model_out:
            save_model(model, args.model_out)
        with atomic_path(out) as tmp:
            query.write_h5ad(tmp)
    for message in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in caught
                                 if issubclass(w.category, UserWarning) and str(w.message).strip()):
        print(f"cellbook: warning: {message}", file=sys.stderr)
    info = query.uns[args.key]
    found = info["n_genes_found"]
    unassigned = (f"{info['n_unassigned']} unassigned (confidence < {info['threshold']:g})"
                  if "threshold" in info else "no threshold")
    print(f"{args.query}: {query.n_obs} cells annotated by {info['model']} ({source}) -> {out}")
    voting = (f"; majority voting over {info['over_clustering']['n_clusters']} clusters"
              if args.majority_voting else "")
    print(f"genes: {found} of the model's {info['n_genes_model']} found; "
          f"{len(set(query.obs[args.key].astype(str)) - {UNASSIGNED})} labels; {unassigned}{voting}")
    if args.model_out:
        print(f"model saved to {args.model_out}")
    print(summary(query, args.key).to_string())
    return 0


def _add_annotate_parser(sub) -> None:
    p = sub.add_parser("annotate", help="label cells of an .h5ad with a saved model, or train one on a reference first",
                       description="Annotate the cells of QUERY (raw counts) with a saved model (--model), or train "
                                   "a model on the genes QUERY shares with a labelled reference (--reference) first. "
                                   "Writes OUT.h5ad with obs[KEY], obs[KEY_confidence] (and KEY_majority_voting, "
                                   "KEY_over_clustering) and uns[KEY]. Model files unpickle: use only trusted ones.")
    p.add_argument("query", help="the cells to annotate (.h5ad, raw counts in layers['counts'] or X)")
    p.add_argument("-o", "--output", required=True, help="output .h5ad (written atomically)")
    p.add_argument("--model", help="a model file written by model.save / --model-out")
    p.add_argument("--reference", help="labelled cells (.h5ad) to train a model on, on the genes shared with QUERY")
    p.add_argument("--label-key", help="reference obs column with the labels (default: cell_type)")
    p.add_argument("--method", help="model to train on --reference: logreg (default: tuned logistic regression), logreg_scaled, gbm, "
                        "celltypist, knn, mlp, cnn, lstm, lstm_att")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="a parameter of the model trained on --reference (repeatable), e.g. -p max_epochs=5")
    p.add_argument("--model-out", help="save the model trained on --reference to this file (e.g. model.cbm)")
    p.add_argument("--majority-voting", action="store_true", help="over-cluster QUERY; each cluster takes its "
                                                                  "majority label (KEY_majority_voting)")
    p.add_argument("--resolution", type=float, help="over-clustering resolution (default: from the number of cells)")
    p.add_argument("--threshold", type=float, help="cells whose top probability is below this are 'Unassigned'")
    p.add_argument("--layer", help="layer of raw counts (default: 'counts' when present, else X)")
    p.add_argument("--key", default="predicted_cell_type", help="obs column for the labels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for training and over-clustering (default: 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no training progress bar")
    p.set_defaults(func=_cmd_annotate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellbook", description="Run the cellbook notebooks with papermill; fetch and check their data.")
    sub = parser.add_subparsers(dest="command", required=True)
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
    p_run.add_argument("--no-fetch", dest="fetch", action="store_false", help=argparse.SUPPRESS)
    p_run.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    p_run.set_defaults(func=_cmd_run)
    p_list = sub.add_parser("list", help="list notebooks and their parameters")
    p_list.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this checkout)")
    p_list.set_defaults(func=_cmd_list)
    from .datasets import cache as data_cache

    data_cache.add_parser(sub)
    sub.choices["data"].set_defaults(func=data_cache.run_cli)
    _add_annotate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return args.func(args)
        except NotebookInterrupted as err:
            print(f"cellbook: error: {err}", file=sys.stderr)
            return err.exit_code
        except (ValueError, KeyError, NotebookFailed, OSError) as err:
            print(f"cellbook: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as err:
            sig = _signal_name(err)
            print(f"cellbook: interrupted ({sig}) between notebooks; the notebooks that finished are published",
                  file=sys.stderr)
            return EXIT_SIGNAL.get(sig, 130)


if __name__ == "__main__":
    sys.exit(main())
