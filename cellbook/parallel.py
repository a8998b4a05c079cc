"""Map a function over independent tasks: in process, on a local dask cluster, or on a remote one.

Each task is a dict of keyword arguments and carries its own seed, so the results do not
depend on the backend or on the number of workers::

    from cellbook.parallel import map_tasks
    tasks = [{"seed": s, "X": X, "y": y} for s in range(10)]     # X, y: the same objects
    scores = map_tasks(fit_one, tasks, desc="seeds")              # serial unless configured
    scores = map_tasks(fit_one, tasks, backend="dask", n_workers=4)
    scores = map_tasks(fit_one, tasks, scheduler="tcp://10.0.0.5:8786")

Settings resolve from the arguments, then :func:`configure`, then the environment
(``CELLBOOK_BACKEND`` = serial|dask, ``CELLBOOK_WORKERS``, ``CELLBOOK_THREADS_PER_WORKER``
(default 1), ``CELLBOOK_SCHEDULER``); a scheduler address implies the dask backend.  A call
made inside a dask worker runs serially (no nested clusters).

A task that raises stops the sweep with :class:`TaskError` (never retried: a function error is
deterministic).  A task whose worker dies is resubmitted once; a second death is a
:class:`TaskError`.  Either every result comes back, in task order, or an exception.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import reprlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError
from typing import Any

from threadpoolctl import threadpool_limits

from .config import keep_torch_threads

# distributed, dask and torch are imported where they are used: a serial sweep, and `cellbook data`, never load them.

__all__ = ["TaskError", "configure", "map_tasks", "settings", "shutdown"]

SHARE_MIN_BYTES = 1_000_000  # an argument this big, shared by several tasks, is sent once
NO_WORKER_TIMEOUT_S = 300.0  # our LocalCluster this long without a worker: an error, not a hang
_LOST_INPUT_RESUBMITS = 3  # resubmits of a task whose scattered inputs died with a worker
_ENV = {"backend": "CELLBOOK_BACKEND", "n_workers": "CELLBOOK_WORKERS",
        "threads_per_worker": "CELLBOOK_THREADS_PER_WORKER", "scheduler": "CELLBOOK_SCHEDULER"}
_CONFIG: dict[str, Any] = {}  # process-wide defaults set by configure()
_CLIENTS: dict[tuple, tuple[Any, Any]] = {}  # settings key -> (Client, LocalCluster or None)


class TaskError(RuntimeError):
    """A task failed: its index, parameters and the original error (chained as ``__cause__``)."""

    def __init__(self, message: str, index: int, params: Mapping[str, Any]):
        super().__init__(message)
        self.index, self.params = index, dict(params)

    def __reduce__(self):  # picklable, e.g. raised by a nested (serial) sweep inside a worker
        return type(self), (self.args[0], self.index, self.params)


# ----------------------------------------------------------------------------- settings

def configure(*, backend: str | None = None, n_workers: int | None = None,
              threads_per_worker: int | None = None, scheduler: str | None = None) -> dict:
    """Set process-wide defaults (``None`` leaves a setting as it was); returns :func:`settings`::

        configure(backend="dask", n_workers=4)      # later map_tasks calls use 4 local workers
        configure(scheduler="tcp://10.0.0.5:8786")  # ... or that running cluster
    """
    given = dict(backend=backend, n_workers=n_workers, threads_per_worker=threads_per_worker,
                 scheduler=scheduler)
    _CONFIG.update({k: v for k, v in given.items() if v is not None})
    return settings()


def _env(name: str) -> Any:
    raw = os.environ.get(_ENV[name], "").strip()
    if not raw or name in ("backend", "scheduler"):
        return raw or None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{_ENV[name]}={raw!r} is not an integer") from None


def settings(*, backend: str | None = None, n_workers: int | None = None,
             threads_per_worker: int | None = None, scheduler: str | None = None) -> dict:
    """The resolved settings (arguments, then :func:`configure`, then environment), for recording.

    >>> settings()
    {'backend': 'serial', 'n_workers': 1, 'threads_per_worker': None, 'scheduler': None}
    """
    layers = [dict(backend=backend, n_workers=n_workers, threads_per_worker=threads_per_worker,
                   scheduler=scheduler), _CONFIG, {k: _env(k) for k in _ENV}]
    first = lambda key: next((lay[key] for lay in layers if lay.get(key) is not None), None)  # noqa: E731
    # The first layer that names a backend or a scheduler decides the backend.
    chosen = next((lay.get("backend") or "dask" for lay in layers
                   if lay.get("backend") is not None or lay.get("scheduler") is not None), "serial")
    chosen = str(chosen).lower()
    if chosen not in ("serial", "dask"):
        raise ValueError(f"unknown backend {chosen!r}; expected 'serial' or 'dask'")
    if chosen == "serial" or _inside_dask_worker():
        return {"backend": "serial", "n_workers": 1, "threads_per_worker": None, "scheduler": None}
    threads = int(first("threads_per_worker") or 1)
    address = first("scheduler")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = None if address else (first("n_workers") or max(1, (cpus or 1) // threads))
    return {"backend": "dask", "n_workers": workers, "threads_per_worker": threads,
            "scheduler": address}


def _inside_dask_worker() -> bool:
    if "distributed" not in sys.modules:  # cannot be a worker without it; importing it is slow
        return False
    from distributed import get_worker
    try:
        get_worker()
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- clients

def _client(conf: dict) -> tuple[Any, Any]:
    """The cached (client, LocalCluster or None) for ``conf``: joined by address, or started here."""
    from distributed import Client, LocalCluster

    key = ("scheduler", conf["scheduler"]) if conf["scheduler"] else (
        "local", conf["n_workers"], conf["threads_per_worker"])
    if key in _CLIENTS:
        if _CLIENTS[key][0].status == "running":
            return _CLIENTS[key]
        _close(*_CLIENTS[key])
    if not _CLIENTS:
        atexit.register(shutdown)
    if conf["scheduler"]:
        client, cluster = Client(conf["scheduler"], set_as_default=False), None
        where = f"joined dask scheduler {conf['scheduler']}"
    else:
        import dask

        # The scheduler reads this when it starts: a worker death fails its tasks at once
        # (KilledWorker), and map_tasks' own resubmission is the one retry.
        environ = {k: v for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}      # see _keep_freed_memory
        with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                              "distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=conf["n_workers"], processes=True,
                                   threads_per_worker=conf["threads_per_worker"], host="127.0.0.1")
        client = Client(cluster, set_as_default=False)
        where = "started local dask cluster"
    hint = "" if importlib.util.find_spec("bokeh") else " (serving it needs bokeh>=3.1)"
    print(f"cellbook.parallel: {where}: {len(client.nthreads())} workers, "
          f"dashboard {client.dashboard_link}{hint}", flush=True)
    _CLIENTS[key] = (client, cluster)
    return client, cluster


def _close(client, cluster) -> None:
    """Close a client and its LocalCluster (if any), and forget them."""
    for key in [k for k, v in _CLIENTS.items() if v[0] is client]:
        del _CLIENTS[key]
    for closable in (client, cluster):
        try:
            if closable is not None:
                closable.close()
        except Exception:  # closing at exit: a cluster already gone is fine
            pass


def shutdown() -> None:
    """Close every client and local cluster this module started (also run at interpreter exit)."""
    for client, cluster in list(_CLIENTS.values()):
        _close(client, cluster)


class _Watch:
    """Called while we wait on a LocalCluster started here: keeps it at its size, and raises
    rather than wait forever once it has had no worker for ``NO_WORKER_TIMEOUT_S``.

    A LocalCluster forgets a worker still down ``distributed.deploy.lost-worker-timeout`` (15 s)
    after it died (a slow restart, or a second death while restarting): ask for it back.
    """

    def __init__(self, client, cluster):
        self.client, self.cluster, self.no_worker_since = client, cluster, None

    def __call__(self) -> None:
        cluster = self.cluster
        if cluster is None:  # a cluster we only joined: its owner looks after its workers
            return
        if len(cluster.workers) < len(cluster.worker_spec):
            cluster.scale(len(cluster.worker_spec))
        if cluster.scheduler_info.get("workers"):
            self.no_worker_since = None
        elif self.no_worker_since is None:
            self.no_worker_since = time.monotonic()
        elif time.monotonic() - self.no_worker_since > NO_WORKER_TIMEOUT_S:
            _close(self.client, cluster)
            raise RuntimeError(f"the local dask cluster had no worker for {NO_WORKER_TIMEOUT_S:.0f}"
                               " s; it is closed (the next call starts a new one)")


# ----------------------------------------------------------------------------- tasks

_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60


def _describe(value: Any) -> str:
    """A short repr: scalars as they are, arrays as ``array((100, 20), float64)``."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape == () and hasattr(value, "item"):  # numpy scalar
        return repr(value.item())
    if isinstance(shape, tuple) and shape:
        name = "array" if type(value).__name__ == "ndarray" else type(value).__name__
        return f"{name}({shape}, {dtype})" if dtype is not None else f"{name}({shape})"
    return _short_repr.repr(value)


def _task_error(index: int, task: dict, exc: BaseException, why: str = "") -> TaskError:
    params = ", ".join(f"{k}={_describe(v)}" for k, v in task.items())
    params = params if len(params) <= 400 else params[:400] + "..."
    why = why or f"{type(exc).__name__}: {exc}"
    return TaskError(f"task {index} {{{params}}} failed: {why}", index, task)


def _thread_limits(threads: int | None):
    """BLAS and OpenMP pools (numpy, scikit-learn, LightGBM) held to ``threads`` while tasks run.

    The same on every backend: a sum split over 1 or 2 threads can round differently in its last
    bit, so a task must use the same number of threads in process as on a worker (whose nanny
    also starts it with OMP_NUM_THREADS=1)."""
    if not threads:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads))


_MALLOC_SET = False


def _keep_freed_memory() -> None:
    """Undo the small malloc trim threshold that dask's nanny gives its workers.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that they hand freed memory back
    to the system; torch's many short-lived tensors then cost a page fault each time, and a fit runs
    markedly slower in a worker than in process. Raise it once per worker (glibc's M_TRIM_THRESHOLD),
    and the mmap threshold, which a set trim threshold freezes at 128 kB. A LocalCluster started here
    does not set the variable at all."""
    global _MALLOC_SET
    if _MALLOC_SET or not sys.platform.startswith("linux") or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_SET = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 * 2**20)     # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 * 2**20)      # M_MMAP_THRESHOLD: fixed once the trim threshold is set, so raise it too
    except (OSError, AttributeError):                         # not glibc: leave it
        pass


def _run_task(fn: Callable, threads: int | None, kwargs: dict) -> Any:
    """Run one task on a worker, with torch, BLAS and OpenMP limited to the worker's thread count."""
    _keep_freed_memory()
    if threads and "torch" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (first task on this worker)
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with _thread_limits(threads):
        return fn(**kwargs)


def _find_shared(tasks: list[dict], min_bytes: int = SHARE_MIN_BYTES) -> dict[int, Any]:
    """Argument values (by ``id``) that appear in several tasks and weigh at least ``min_bytes``."""
    from dask.sizeof import sizeof

    seen: dict[int, Any] = {}
    counts: dict[int, int] = {}
    for task in tasks:
        for value in task.values():
            seen[id(value)] = value
            counts[id(value)] = counts.get(id(value), 0) + 1
    return {i: v for i, v in seen.items() if counts[i] > 1 and sizeof(v) >= min_bytes}


def map_tasks(fn: Callable[..., Any], tasks: Iterable[Mapping[str, Any]], *,
              backend: str | None = None, n_workers: int | None = None,
              threads_per_worker: int | None = None, scheduler: str | None = None,
              desc: str | None = None, progress: bool = True) -> list:
    """``[fn(**task) for task in tasks]``, serially or on dask workers; results in task order.

    ``fn`` must be a module-level (picklable) function.  Raises :class:`TaskError` naming the
    task when one raises, or when its worker died twice.  In process, every task runs with the caller's
    torch thread count, and BLAS / OpenMP held to it; on a worker, with ``threads_per_worker`` for both.  The
    numbers are the same on both when the two counts are equal (a sum over 1 or 2 threads can round
    differently in its last bit).

    >>> map_tasks(pow, [{"base": 2, "exp": 3}, {"base": 3, "exp": 2}], progress=False)
    [8, 9]

    On two local worker processes, ``X`` sent to each worker once rather than once per task::

        map_tasks(fit_one, [{"seed": s, "X": X} for s in range(8)], backend="dask", n_workers=2)
    """
    tasks = [dict(t) for t in tasks]
    conf = settings(backend=backend, n_workers=n_workers, threads_per_worker=threads_per_worker,
                    scheduler=scheduler)
    if not tasks:
        return []
    progress = progress and os.environ.get("CELLBOOK_PROGRESS", "1") != "0"   # off in `cellbook run`
    # tqdm.auto warns when imported in a headless kernel: it loads here, after open_chapter has hidden that
    from tqdm.auto import tqdm

    with tqdm(total=len(tasks), desc=desc, disable=not progress) as tq, _SweepLog(tq, desc, len(tasks)) as bar:
        if conf["backend"] == "serial":
            results = []
            # torch's threads stay as the caller set them (a notebook's `threads` parameter), for every task: one
            # that changes them (e.g. through scanpy) does not change the next, as on a worker.  BLAS and OpenMP
            # get as many: on a worker of that many threads a task then computes exactly what it computes here
            # (a dense PCA on 1 or 2 BLAS threads changed CellTypist's over-clustering, hence its majority vote)
            torch = sys.modules.get("torch")
            with _thread_limits(torch.get_num_threads() if torch is not None else None):
                for index, task in enumerate(tasks):
                    try:
                        with keep_torch_threads():
                            results.append(fn(**task))
                    except Exception as exc:
                        raise _task_error(index, task, exc) from exc
                    bar.update()
            return results
        return _map_dask(*_client(conf), fn, tasks, conf["threads_per_worker"], bar)


class _SweepLog:
    """The progress bar, and with ``CELLBOOK_SWEEP_LOG=FILE`` one JSON line per finished task appended to FILE
    (notebook, sweep, tasks done and total, seconds since the sweep began): how far a sweep got, and its pace,
    even when the run is stopped (``benchmarks/gpu_check.sh`` sets it; ``benchmarks/gpu_report.py`` reads it).

    While the sweep runs, a heartbeat line (``"beat": true``) is also written every
    ``CELLBOOK_SWEEP_LOG_EVERY`` seconds (default 30; 0: none), so a run stopped before a task finished still
    says how long its sweep had been running.  A context manager: leaving it stops the heartbeat."""

    def __init__(self, bar, desc: str | None, total: int):
        self.bar, self.desc, self.total, self.done = bar, desc or "tasks", total, 0
        self.path = os.environ.get("CELLBOOK_SWEEP_LOG") or None
        self.t0 = time.perf_counter()
        self.sweep = f"{os.getpid()}-{time.time_ns()}"   # tells apart two sweeps of one name in one notebook
        self._lock, self._stop, self._beat = threading.Lock(), threading.Event(), None
        self._write()
        every = _float_env("CELLBOOK_SWEEP_LOG_EVERY", 30.0) if self.path else 0.0
        if self.path and every > 0:
            self._beat = threading.Thread(target=self._heartbeat, args=(every,), name="cellbook-sweep-log",
                                          daemon=True)
            self._beat.start()

    def __enter__(self) -> _SweepLog:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()

    def update(self) -> None:
        self.bar.update()
        self.done += 1
        self._write()

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            self._write(beat=True)

    def _write(self, beat: bool = False) -> None:
        if not self.path:
            return
        line = {"notebook": os.environ.get("CELLBOOK_NOTEBOOK"), "sweep": self.sweep, "desc": self.desc,
                "done": self.done, "total": self.total, "seconds": round(time.perf_counter() - self.t0, 3)}
        if beat:
            line["beat"] = True
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        except OSError:   # a log, never a reason for a sweep to fail
            pass


def _float_env(name: str, default: float) -> float:
    """A number from the environment, ``default`` when unset; a clear error when it is not a number."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None


def _map_dask(client, cluster, fn: Callable, tasks: list[dict], threads: int | None, bar) -> list:
    """Submit as many tasks as the cluster has threads; collect them as they finish; resubmit a
    task whose worker died (once), or whose scattered inputs were lost with a worker."""
    return _DaskSweep(client, cluster, fn, tasks, threads).run(bar)


class _DaskSweep:
    """The state of one :func:`_map_dask` call: the tasks to do, those in flight, the inputs sent
    once to every worker, and each task's worker deaths and lost inputs."""

    def __init__(self, client, cluster, fn: Callable, tasks: list[dict], threads: int | None):
        from distributed import as_completed

        self.client, self.fn, self.tasks, self.threads = client, fn, tasks, threads
        self.watch = _Watch(client, cluster)
        self.shared = _find_shared(tasks)
        self.scattered: dict[int, Any] = {}  # id(value) -> Future of its copy on the workers
        self.results: list[Any] = [None] * len(tasks)
        self.deaths, self.lost_inputs = [0] * len(tasks), [0] * len(tasks)
        self.todo = deque(range(len(tasks)))
        self.running: dict[Any, int] = {}
        self.finished = as_completed(loop=client.loop)  # (our client is not the default client)

    def scatter_missing(self) -> None:
        """Send each shared input to the workers: the first time, or after the workers holding a copy all died."""
        for i, value in self.shared.items():
            while i not in self.scattered or self.scattered[i].status != "finished":
                self.watch()
                try:  # the scheduler refuses a scatter with no worker (after 2 s): wait for one
                    self.client.wait_for_workers(1, timeout=1)
                    self.scattered[i] = self.client.scatter([value], broadcast=True, hash=False)[0]
                except TimeoutError:
                    pass

    def submit(self, index: int) -> None:
        kwargs = {k: self.scattered.get(id(v), v) for k, v in self.tasks[index].items()}
        # kwargs travel as one positional dict (dask resolves the futures inside it), so that
        # argument names such as `key` or `workers` never collide with submit()'s own.
        future = self.client.submit(_run_task, self.fn, self.threads, kwargs, pure=False)
        self.running[future] = index
        self.finished.add(future)

    def run(self, bar) -> list:
        client = self.client
        try:
            self.scatter_missing()
            while self.todo or self.running:
                # Only as many tasks in flight as threads: the scheduler blames every task assigned
                # to a worker that dies, so tasks queued behind the culprit would lose their retry.
                while self.todo and len(self.running) < max(1, sum(client.nthreads().values())):
                    self.submit(self.todo.popleft())
                while not self.finished.has_ready():
                    self.watch()
                    time.sleep(0.02)
                future = next(self.finished)
                self.collect(future, self.running.pop(future), bar)
        finally:
            if self.running and client.status == "running":  # an error: stop what is queued or running
                client.cancel(list(self.running))
        return self.results

    def collect(self, future, index: int, bar) -> None:
        """Keep a finished task's result (and advance ``bar``), or queue the task again after a worker death
        or lost inputs; raise :class:`TaskError` for a task that failed, or died too often."""
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        try:
            self.results[index] = future.result()
        except (KilledWorker, CommClosedError) as exc:
            self.deaths[index] += 1
            if self.deaths[index] > 1:
                raise _task_error(index, self.tasks[index], exc, why=(
                    f"its worker died twice ({type(exc).__name__}: killed, crashed or out of "
                    "memory; with several threads per worker, a task running beside it may "
                    "be the cause)")) from exc
            self.scatter_missing()
            self.todo.appendleft(index)
        except CancelledError as exc:  # its scattered inputs died with a worker
            self.lost_inputs[index] += 1
            if self.lost_inputs[index] > _LOST_INPUT_RESUBMITS:
                raise _task_error(index, self.tasks[index], exc,
                                  why="its inputs were lost with dying workers") from exc
            self.scatter_missing()
            self.todo.appendleft(index)
        except Exception as exc:
            raise _task_error(index, self.tasks[index], exc) from exc
        else:
            bar.update()
        finally:  # we hold the result: the cluster must not keep (or recompute) it
            future.release()
