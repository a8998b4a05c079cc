"""Execute one notebook with papermill and publish it only if every cell ran.

Each notebook executes into a private staging folder (``book/_build/.staging/``), and its
``Recorder.save()`` writes its results JSON there too (``$CELLBOOK_RESULTS_STAGING``). Only when
every cell ran does the runner stamp the executed copy with a run id (the results JSON carries the
same id), move both to ``book/_build/executed/<name>.ipynb`` and ``book/_build/results/<name>.json``
with :func:`os.replace`, and add the notebook to ``book/_build/results/_run.json``; the moves happen
with SIGINT/SIGTERM held back.  Any failure (a raising cell, a dead kernel, Ctrl-C, SIGTERM, ...) is
one line naming the notebook and the cell; the failed copy goes to ``book/_build/failed/<name>.ipynb``
and the previously published copy and results are left exactly as they were.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import nbformat
import papermill as pm
from nbclient.exceptions import DeadKernelError

from ..fsutil import write_text
from ..layout import REPO_ROOT, STAGING, build_dir, failed_copy_path, notebook_dir, record_run
from ..nbtools import cell_labels, failed_cell, first_line
from ._parameters import plan, resolve_run_device


def exit_code(signal_name: str) -> int:
    """The shell's exit status for a run stopped by ``signal_name``: 128 + the signal's number."""
    return 128 + int(getattr(signal, signal_name, signal.SIGINT))

class NotebookFailed(RuntimeError):
    """A notebook did not run to the end; the message names the notebook and the cell."""

class NotebookInterrupted(NotebookFailed):
    """The run was interrupted (SIGINT / SIGTERM) while a notebook executed."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal_name = signal_name
        self.exit_code = exit_code(signal_name)

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
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted ({signal_name(err)})"
    if isinstance(err, pm.PapermillExecutionError):
        return f"{err.ename}: {err.evalue}".splitlines()[0] if err.evalue else err.ename
    if isinstance(err, DeadKernelError):
        return ("the kernel died (its process was killed, e.g. by the out-of-memory killer, or it crashed); "
                "if memory is short, try a smaller profile or parameters")
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__

def signal_name(err: KeyboardInterrupt) -> str:
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
        return NotebookInterrupted(message, signal_name(err))
    return NotebookFailed(message)

def run_notebook(name: str, profile: str = "quick", device: str = "auto", overrides: dict | None = None,
                 root: Path = REPO_ROOT, out_dir: Path | None = None, progress: bool = True) -> Path:
    """Execute one notebook; publish its executed copy and results only if every cell ran.

    Returns the executed copy's path. Raises :class:`NotebookFailed` (one line: notebook, cell,
    error, where the failed copy is) for any failure, :class:`NotebookInterrupted` for
    SIGINT / SIGTERM; the published copy and results are then left as they were.
    """
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
    tmp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with _kernel_environment(name, out_dir, stage / "results", run_id):
            try:
                entry = {"profile": profile, "device": resolved, "device_requested": device, "gpu": gpu,
                         "run_id": run_id}
                _execute(name, src, tmp, params, entry, progress)
            except BaseException as err:  # noqa: BLE001 - every way of stopping is a failure to report
                raise _failure(name, err, tmp, failed, run_id, root) from None
            with _signals_held():  # publish: results, executed copy and run record move together
                _publish(name, stage / "results", tmp, dst, failed, out_dir, entry)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            (out_dir / STAGING).rmdir()  # only when empty
    shown = dst.relative_to(root) if dst.is_relative_to(root) else dst
    print(f"[cellbook] {name}: {time.perf_counter() - t0:.1f} s -> {shown}", flush=True)
    return dst


@contextlib.contextmanager
def _kernel_environment(name: str, out_dir: Path, staged_results: Path, run_id: str):
    """The environment the notebook's kernel inherits while it runs; restored afterwards."""
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
    try:
        yield
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(name: str, src: Path, tmp: Path, params: dict, entry: dict, progress: bool) -> None:
    """Run ``src`` into ``tmp`` and stamp the copy with the run's metadata (``entry`` gains the times)."""
    started = _now()
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(src), str(tmp), parameters=params, cwd=str(src.parent),
        kernel_name="python3", progress_bar=progress, log_output=False,
        shutdown_kernel="immediate",  # also on Ctrl-C: never leave a busy kernel behind
    )
    entry.update({"seconds": round(time.perf_counter() - t0, 1), "started_utc": started, "finished_utc": _now()})
    nb = nbformat.read(str(tmp), as_version=4)
    nb.metadata["cellbook"] = {"status": "ok", "notebook": name, **_ordered_entry(entry),
                               "parameters": json.loads(json.dumps(params, default=str))}
    nbformat.write(nb, str(tmp))
    _fsync(tmp)


def _publish(name: str, staged_results: Path, tmp: Path, dst: Path, failed: Path, out_dir: Path,
             entry: dict) -> None:
    """Move the staged results and executed copy into place and add the run to ``_run.json``."""
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
    record_run(out_dir, name, _ordered_entry(entry))


def _ordered_entry(entry: dict) -> dict:
    """The run record entry, keys in their published order."""
    keys = ("seconds", "profile", "device", "device_requested", "gpu", "started_utc", "finished_utc", "run_id")
    return {k: entry[k] for k in keys}
