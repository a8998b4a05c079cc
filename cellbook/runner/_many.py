"""Run several notebooks: in order, or the parts side by side (``cellbook run --jobs N``).

Before the first notebook runs, every plan, parameter type, the device and the run record are
checked, and the datasets the notebooks' setup cells name are fetched into the cache
(:func:`fetch_data`), so a bad input costs no notebook time.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..datasets.cache import ensure
from ..layout import REPO_ROOT, build_dir, chains, notebook_datasets, notebook_dir, read_run_record
from ._execute import NotebookFailed, run_notebook
from ._parameters import own_overrides, parse_overrides, plan, resolve_run_device, smoke_overrides


def _check_all(names: list[str], profile: str, device: str, overrides: dict, root: Path, out: Path) -> None:
    """Every check that can run before the first notebook: plans, the device, the run record."""
    for name in names:
        plan(name, profile, device, own_overrides(name, overrides, root), root)
    resolve_run_device(device)
    read_run_record(out)


def fetch_data(names: list[str], overrides: dict, root: Path = REPO_ROOT) -> dict:
    """Fetch (download and build) every dataset the notebooks' setup cells name, before any runs.

    Skipped for notebooks run with ``fallback=synthetic`` (the offline demo) or an explicit
    ``data_path``.  A dataset that cannot be had stops the run with one message naming it, its
    URL and ``cellbook data fetch NAME``.  Returns ``{dataset: path}``.
    """
    needed: list[str] = []
    for name in names:
        own = own_overrides(name, overrides, root)
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
    _check_all(names, profile, device, overrides, root, out)
    if fetch:
        fetch_data(names, overrides, root)
    times = {}
    for name in names:
        t0 = time.perf_counter()
        run_notebook(name, profile, device, own_overrides(name, overrides, root), root, out_dir, progress=progress)
        times[name] = round(time.perf_counter() - t0, 1)
    return times

def run_parallel(names: list[str], profile: str, device: str, raw_overrides: list[str] | None, jobs: int,
                 root: Path = REPO_ROOT, out_dir: Path | None = None, smoke: bool = False) -> dict:
    """Run the parts' chains ``jobs`` at a time, each in its own ``cellbook run`` process, then the summary.

    Checks and fetches everything first, as :func:`run_many` does. Each chain's output is printed with its
    part as a prefix. If a chain fails, the chains already running finish (their notebooks are published),
    no new one starts, the summary is not run, and :class:`NotebookFailed` names every failed chain.
    Returns ``{chain: seconds}``.
    """
    root = Path(root)
    out = Path(out_dir) if out_dir else build_dir(root)
    overrides = {**(smoke_overrides(profile, names, root) if smoke else {}), **parse_overrides(raw_overrides)}
    _check_all(names, profile, device, overrides, root, out)
    fetch_data(names, overrides, root)
    groups, last = chains(names)
    command = [sys.executable, "-m", "cellbook.cli", "run", "--profile", profile, "--device", device,
               "--root", str(root), "--out", str(out), "--no-fetch", "--quiet", *(["--smoke"] if smoke else []),
               *[a for item in (raw_overrides or []) for a in ("-p", item)]]
    times, failed = _run_chains(command, groups, jobs)
    if failed:
        raise NotebookFailed(f"{', '.join(failed)} failed (see its lines above); the other parts' notebooks that "
                             f"finished are published; {', '.join(last) or 'nothing'} not run")
    if last:
        times.update(run_many(last, profile, device, overrides, root, out_dir, fetch=False))
    return times


def _pump(proc, label: str) -> None:
    for line in proc.stdout:
        print(f"[{label}] {line.rstrip()}", flush=True)


def _run_chains(command: list[str], groups: list[list[str]], jobs: int) -> tuple[dict, list[str]]:
    """Run each group with ``command + group``, at most ``jobs`` at once; ``({label: seconds}, [failed])``.
    No new group starts after a failure; on an interrupt every running group gets SIGINT."""
    pending, running, failed, times = list(groups), {}, [], {}
    try:
        while pending or running:
            while pending and len(running) < max(1, int(jobs)) and not failed:
                group = pending.pop(0)
                label = group[0].split("/", 1)[0]
                proc = subprocess.Popen([*command, *group], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=False)
                th = threading.Thread(target=_pump, args=(proc, label), daemon=True)
                th.start()
                running[label] = (proc, th, time.perf_counter())
                print(f"[cellbook] started {label}: {', '.join(group)}", flush=True)
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
    return times, failed
