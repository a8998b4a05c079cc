"""cellbook.parallel.map_tasks: serial and dask give the same results; failures are contained.

The task functions below live in this module: pytest puts ``tests/`` on ``sys.path``, the
LocalCluster's worker processes inherit it, and the command-line worker gets it through
PYTHONPATH, so workers import them by reference.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cellbook import parallel
from cellbook.parallel import TaskError, map_tasks

TESTS = Path(__file__).resolve().parent
LOCAL = dict(backend="dask", n_workers=2, threads_per_worker=1)  # the cluster the tests share


# ----------------------------------------------------------------------------- task functions

def fit_seeded(seed: int, X: np.ndarray, y: np.ndarray, C: float = 1.0) -> dict:
    """A seeded bootstrap fit: the same seed gives the same numbers on any worker."""
    import torch
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), size=len(X), replace=True)
    model = LogisticRegression(C=C, random_state=seed, max_iter=300).fit(X[rows], y[rows])
    torch.manual_seed(seed)
    return {"seed": seed, "coef": model.coef_.copy(), "noise": torch.randn(3).numpy(),
            "X_type": type(X).__name__}


def fail_on_two(seed: int, X: np.ndarray | None = None) -> int:
    if seed == 2:
        raise ValueError(f"seed {seed} is cursed")
    return seed


def die_once(marker: str, value: int, X: np.ndarray | None = None) -> int:
    """Kill the worker process on the first attempt (no marker yet); succeed on the second."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value * 10


def die_always(value: int) -> int:
    if value == 1:
        os._exit(1)
    return value


def threads_then_raise(value: int) -> int:
    """Report torch's thread count at the start of the task, then change it (as scanpy's neighbours did)."""
    import torch

    seen = torch.get_num_threads()
    torch.set_num_threads(value)
    return seen


def blas_threads(seed: int) -> tuple[int, int]:
    """(torch threads, the most threads any BLAS pool may use) inside the task."""
    import torch
    from threadpoolctl import threadpool_info

    return torch.get_num_threads(), max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


def nested_backend(seed: int) -> tuple[str, list]:
    """Inside a worker map_tasks runs serially, whatever it is asked."""
    return parallel.settings(backend="dask")["backend"], map_tasks(
        pow, [{"base": seed, "exp": 2}], backend="dask", progress=False)


# ----------------------------------------------------------------------------- fixtures

pytestmark = pytest.mark.usefixtures("parallel_clean", "parallel_shutdown")   # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 100))  # 1.2 MB: big enough to be scattered once, not per task
    y = (X[:, 0] + 0.5 * rng.normal(size=len(X)) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def fit_tasks(data):
    X, y = data
    return [{"seed": s, "X": X, "y": y, "C": 0.5} for s in (5, 3, 8, 1)]


def _same(a: list[dict], b: list[dict]) -> None:
    assert [r["seed"] for r in a] == [r["seed"] for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra["coef"], rb["coef"])
        np.testing.assert_array_equal(ra["noise"], rb["noise"])


@pytest.fixture(scope="module")
def serial_results(fit_tasks):
    return map_tasks(fit_seeded, fit_tasks, backend="serial", progress=False)


# ----------------------------------------------------------------------------- settings

def test_settings_resolution(monkeypatch):
    assert parallel.settings()["backend"] == "serial"
    monkeypatch.setenv("CELLBOOK_SCHEDULER", "tcp://10.1.2.3:8786")
    resolved = parallel.settings()
    assert resolved["backend"] == "dask" and resolved["scheduler"] == "tcp://10.1.2.3:8786"
    assert parallel.settings(backend="serial")["backend"] == "serial"  # an argument wins
    monkeypatch.delenv("CELLBOOK_SCHEDULER")
    monkeypatch.setenv("CELLBOOK_BACKEND", "dask")
    monkeypatch.setenv("CELLBOOK_WORKERS", "3")
    assert parallel.settings() == {"backend": "dask", "n_workers": 3, "threads_per_worker": 1,
                                   "scheduler": None}
    parallel.configure(n_workers=5, threads_per_worker=2)  # configure() beats the environment
    assert parallel.settings()["n_workers"] == 5 and parallel.settings()["threads_per_worker"] == 2
    monkeypatch.setenv("CELLBOOK_WORKERS", "many")
    with pytest.raises(ValueError, match="CELLBOOK_WORKERS"):
        parallel.settings()
    monkeypatch.delenv("CELLBOOK_WORKERS")
    with pytest.raises(ValueError, match="unknown backend"):
        parallel.settings(backend="spark")


def test_short_params_and_shared_detection(data):
    X, y = data
    tasks = [{"seed": s, "X": X, "small": y[:10]} for s in range(3)]
    assert set(parallel._find_shared(tasks)) == {id(X)}  # y[:10] is small and a new view each time
    error = parallel._task_error(7, {"seed": np.int64(3), "X": X, "name": "a" * 200}, KeyError("k"))
    text = str(error)
    assert text.startswith("task 7 {seed=3, X=array((1500, 100), float64), name='aaa")
    assert text.endswith("failed: KeyError: 'k'") and len(text) < 200 and error.index == 7


class FakeCluster:
    """What parallel._Watch reads of a LocalCluster."""

    def __init__(self, workers, spec, running):
        self.workers, self.worker_spec = dict.fromkeys(workers), dict.fromkeys(spec)
        self.scheduler_info = {"workers": dict.fromkeys(running)}
        self.scaled, self.closed = [], False

    def scale(self, n):
        self.scaled.append(n)

    def close(self):
        self.closed = True


def test_watch_restores_forgotten_workers_and_never_waits_forever(monkeypatch):
    # A LocalCluster forgets a worker still down 15 s after it died: the watch asks it back ...
    cluster = FakeCluster(workers=[0], spec=[0, 1], running=["tcp://a"])
    watch = parallel._Watch(None, cluster)
    watch()
    assert cluster.scaled == [2]
    # ... and a cluster left without any worker is an error, not an endless wait.
    monkeypatch.setattr(parallel, "NO_WORKER_TIMEOUT_S", 0.0)
    cluster = FakeCluster(workers=[0, 1], spec=[0, 1], running=[])
    watch = parallel._Watch(None, cluster)
    watch()  # starts the clock
    time.sleep(0.01)
    with pytest.raises(RuntimeError, match="no worker"):
        watch()
    assert cluster.closed and cluster.scaled == []
    parallel._Watch(None, None)()  # a joined cluster is its owner's business


# ----------------------------------------------------------------------------- serial

def test_serial_in_task_order_and_errors(fit_tasks):
    assert map_tasks(pow, [{"base": 2, "exp": 3}, {"base": 3, "exp": 2}], progress=False) == [8, 9]
    assert map_tasks(pow, [], progress=False) == []
    tasks = [{"seed": s, "X": fit_tasks[0]["X"]} for s in range(4)]
    with pytest.raises(TaskError) as err:
        map_tasks(fail_on_two, tasks, progress=False)
    message = str(err.value)
    assert "task 2" in message and "seed=2" in message and "array((1500, 100), float64)" in message
    assert "ValueError: seed 2 is cursed" in message
    assert isinstance(err.value.__cause__, ValueError) and err.value.index == 2


def test_serial_tasks_each_start_with_the_callers_torch_threads(caller_on_one_torch_thread):
    import torch

    seen = map_tasks(threads_then_raise, [{"value": 3}, {"value": 2}, {"value": 4}], progress=False)
    assert seen == [1, 1, 1]                 # no task sees what the one before it left behind
    assert torch.get_num_threads() == 1


def test_serial_tasks_hold_blas_to_the_callers_torch_threads(caller_on_one_torch_thread):
    """A worker of 1 thread runs BLAS on 1 thread; so must a serial task whose caller set torch to 1 thread
    (CellTypist's over-clustering, a dense PCA, clustered differently on 1 and 2 BLAS threads)."""
    assert map_tasks(blas_threads, [{"seed": 0}, {"seed": 1}], progress=False) == [(1, 1), (1, 1)]


# ----------------------------------------------------------------------------- local cluster

def test_local_cluster_matches_serial(fit_tasks, serial_results, capsys):
    pytest.importorskip("distributed")
    parallel.shutdown()  # so that this call starts the cluster and prints its line
    results = map_tasks(fit_seeded, fit_tasks, desc="fits", **LOCAL)
    _same(results, serial_results)
    assert {r["X_type"] for r in results} == {"ndarray"}  # the scattered future arrived as X
    assert "127.0.0.1" in capsys.readouterr().out  # the dashboard line
    assert map_tasks(nested_backend, [{"seed": 3}], progress=False, **LOCAL) == [("serial", [9])]
    threads = LOCAL.get("threads_per_worker", 1)
    assert map_tasks(blas_threads, [{"seed": 0}], progress=False, **LOCAL) == [(threads, threads)]


def test_local_cluster_task_error(fit_tasks):
    pytest.importorskip("distributed")
    tasks = [{"seed": s, "X": fit_tasks[0]["X"]} for s in range(6)]
    with pytest.raises(TaskError) as err:
        map_tasks(fail_on_two, tasks, progress=False, **LOCAL)
    message = str(err.value)
    assert "task 2" in message and "seed=2" in message and "array((1500, 100), float64)" in message
    assert "ValueError: seed 2 is cursed" in message and isinstance(err.value.__cause__, ValueError)


def test_killed_worker_is_retried_once(tmp_path, fit_tasks):
    pytest.importorskip("distributed")
    X = fit_tasks[0]["X"]  # scattered to both workers; lost when both die, then sent again
    tasks = [{"marker": str(tmp_path / f"m{i}"), "value": i, "X": X} for i in range(4)]
    (tmp_path / "m0").touch()
    (tmp_path / "m3").touch()  # tasks 1 and 2 kill their workers, once each
    # Tasks 1 and 2 each end the process they run on, so normally both workers die: the retries
    # then run on workers the nannies restarted, with X scattered again (its copies died too).
    assert map_tasks(die_once, tasks, progress=False, **LOCAL) == [0, 10, 20, 30]
    with pytest.raises(TaskError, match=r"task 1 \{value=1\} failed: its worker died twice"):
        map_tasks(die_always, [{"value": v} for v in range(3)], progress=False, **LOCAL)


# ----------------------------------------------------------------------------- remote cluster

@pytest.fixture
def scheduler_address(tmp_path):
    pytest.importorskip("distributed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}
    file = tmp_path / "scheduler.json"
    common = ["--no-dashboard", "--scheduler-file", str(file)]
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", "0", *common],
                              env=env, start_new_session=True, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                       "--nthreads", "1", "--host", "127.0.0.1", *common],
                                      env=env, start_new_session=True, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while True:
            try:
                address = json.loads(file.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):  # not written yet, or half written
                assert time.monotonic() < deadline, "the dask scheduler did not start"
                time.sleep(0.2)
        yield address
    finally:
        parallel.shutdown()  # close our client before its scheduler goes away
        for proc in reversed(procs):  # worker (and its nanny's child), then scheduler
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_remote_scheduler_matches_serial(scheduler_address, fit_tasks, serial_results):
    results = map_tasks(fit_seeded, fit_tasks, scheduler=scheduler_address, progress=False)
    _same(results, serial_results)
    assert parallel.settings(scheduler=scheduler_address)["backend"] == "dask"


@pytest.mark.parametrize("where", [{}, LOCAL], ids=["serial", "local cluster"])
def test_sweep_log_records_every_finished_task(tmp_path, monkeypatch, where):
    """With CELLBOOK_SWEEP_LOG, each sweep appends a line when it starts and one per finished task: how far a
    stopped run got (benchmarks/gpu_report.py projects it); a failing sweep's log stops at its last task."""
    log = tmp_path / "sweeps.jsonl"
    monkeypatch.setenv("CELLBOOK_SWEEP_LOG", str(log))
    monkeypatch.setenv("CELLBOOK_NOTEBOOK", "part9/01_demo")
    assert map_tasks(fail_on_two, [{"seed": s} for s in (0, 1, 3)], desc="seeds", **where) == [0, 1, 3]
    with pytest.raises(TaskError):
        map_tasks(fail_on_two, [{"seed": s} for s in (0, 2)], desc="bad", **where)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    first = [r for r in lines if r["desc"] == "seeds"]
    assert [r["done"] for r in first] == [0, 1, 2, 3] and {r["total"] for r in first} == {3}
    assert {r["notebook"] for r in lines} == {"part9/01_demo"} and len({r["sweep"] for r in first}) == 1
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(first, first[1:]))
    assert max(r["done"] for r in lines if r["desc"] == "bad") <= 1


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_sweep_log_heartbeat_while_a_task_runs(tmp_path, monkeypatch):
    """A sweep stopped before its first task ends still says how long it ran: heartbeat lines carry the time
    so far; none is written once map_tasks has returned (or raised), and a bad interval is a clear error."""
    log = tmp_path / "sweeps.jsonl"
    monkeypatch.setenv("CELLBOOK_SWEEP_LOG", str(log))
    monkeypatch.setenv("CELLBOOK_SWEEP_LOG_EVERY", "0.05")
    assert map_tasks(nap, [{"seconds": 0.4}], desc="slow") == [0.4]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    beats = [r for r in lines if r.get("beat")]
    assert len(beats) >= 3 and all(r["done"] == 0 for r in beats)
    assert max(r["seconds"] for r in beats) >= 0.2
    assert lines[0]["done"] == 0 and "beat" not in lines[0] and lines[-1]["done"] == 1
    with pytest.raises(TaskError):
        map_tasks(fail_on_two, [{"seed": 2}], desc="bad")
    n = len(log.read_text().splitlines())
    time.sleep(0.3)
    assert len(log.read_text().splitlines()) == n   # every heartbeat stopped with its sweep
    monkeypatch.setenv("CELLBOOK_SWEEP_LOG_EVERY", "often")
    with pytest.raises(ValueError, match="CELLBOOK_SWEEP_LOG_EVERY='often' is not a number"):
        map_tasks(nap, [{"seconds": 0}])
    monkeypatch.setenv("CELLBOOK_SWEEP_LOG_EVERY", "0")
    log.unlink()
    map_tasks(nap, [{"seconds": 0.2}])
    assert not any(json.loads(x).get("beat") for x in log.read_text().splitlines())


def test_no_sweep_log_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLBOOK_SWEEP_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert map_tasks(fail_on_two, [{"seed": 0}]) == [0]
    assert list(tmp_path.iterdir()) == []
