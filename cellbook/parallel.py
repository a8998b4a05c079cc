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
import importlib.util
import os
import reprlib
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["TaskError", "configure", "map_tasks", "settings", "shutdown"]

SHARE_MIN_BYTES = 1_000_000  # an argument this big, shared by several tasks, is sent once
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

        configure(backend="dask", n_workers=4)      # later map_tasks calls use a 4-worker cluster
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
    chosen = None  # the first layer that names a backend or a scheduler decides the backend
    for lay in layers:
        if lay.get("backend") is not None or lay.get("scheduler") is not None:
            chosen = lay.get("backend") or "dask"
            break
    chosen = str(chosen or "serial").lower()
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
    cached = _CLIENTS.get(key)
    if cached is not None and cached[0].status == "running":
        return cached
    if not _CLIENTS:
        atexit.register(shutdown)
    if conf["scheduler"]:
        client, cluster = Client(conf["scheduler"], set_as_default=False), None
        where = f"joined dask scheduler {conf['scheduler']}"
    else:
        import dask

        # The scheduler reads this when it starts: a worker death fails its tasks at once
        # (KilledWorker), and map_tasks' own resubmission is the one retry.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=conf["n_workers"], processes=True,
                                   threads_per_worker=conf["threads_per_worker"], host="127.0.0.1")
        client = Client(cluster, set_as_default=False)
        where = "started local dask cluster"
    hint = "" if importlib.util.find_spec("bokeh") else " (serving it needs bokeh>=3.1)"
    print(f"cellbook.parallel: {where}: {len(client.nthreads())} workers, "
          f"dashboard {client.dashboard_link}{hint}", flush=True)
    _CLIENTS[key] = (client, cluster)
    return client, cluster


def shutdown() -> None:
    """Close every client and local cluster this module started (also run at interpreter exit)."""
    while _CLIENTS:
        for closable in _CLIENTS.popitem()[1]:  # the client, then its LocalCluster (or None)
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # closing at exit: a cluster already gone is fine
                pass


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


def _describe_task(task: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={_describe(v)}" for k, v in task.items())
    return "{" + (text if len(text) <= 400 else text[:400] + "...") + "}"


def _run_task(fn: Callable, threads: int | None, kwargs: dict) -> Any:
    """Run one task on a worker, with torch limited to the worker's thread count."""
    if threads and "torch" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (first task on this worker)
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
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
    task when one raises, or when its worker died twice.

    >>> map_tasks(pow, [{"base": 2, "exp": 3}, {"base": 3, "exp": 2}], progress=False)
    [8, 9]

    On two local worker processes, ``X`` sent to each worker once rather than once per task::

        map_tasks(fit_one, [{"seed": s, "X": X} for s in range(8)], backend="dask", n_workers=2)
    """
    from tqdm.auto import tqdm

    tasks = [dict(t) for t in tasks]
    conf = settings(backend=backend, n_workers=n_workers, threads_per_worker=threads_per_worker,
                    scheduler=scheduler)
    if not tasks:
        return []
    with tqdm(total=len(tasks), desc=desc, disable=not progress) as bar:
        if conf["backend"] == "serial":
            results = []
            for index, task in enumerate(tasks):
                try:
                    results.append(fn(**task))
                except Exception as exc:
                    raise _task_error(index, task, exc) from exc
                bar.update()
            return results
        return _map_dask(*_client(conf), fn, tasks, conf["threads_per_worker"], bar)


def _task_error(index: int, task: dict, exc: BaseException, why: str = "") -> TaskError:
    cause = f"{type(exc).__name__}: {exc}"
    return TaskError(f"task {index} {_describe_task(task)} failed: {why or cause}", index, task)


def _heal(cluster) -> None:
    """Keep our LocalCluster at its size while waiting on it.

    A LocalCluster forgets a worker that is still down ``distributed.deploy.lost-worker-timeout``
    (15 s) after it died, e.g. one that died again while restarting: ask it for it back.
    """
    if cluster is not None and len(cluster.workers) < len(cluster.worker_spec):
        cluster.scale(len(cluster.worker_spec))


def _next_finished(finished, cluster) -> Any:
    while not finished.has_ready():
        _heal(cluster)
        time.sleep(0.02)
    return next(finished)


def _scatter(client, cluster, value: Any) -> Any:
    """Broadcast ``value`` to the workers; wait for one first (the scheduler gives up after 2 s)."""
    for attempt in range(3):
        while True:
            _heal(cluster)
            try:
                client.wait_for_workers(1, timeout=1)
                break
            except TimeoutError:
                pass
        try:
            return client.scatter([value], broadcast=True, hash=False)[0]
        except TimeoutError:  # the workers died in between
            if attempt == 2:
                raise


def _map_dask(client, cluster, fn: Callable, tasks: list[dict], threads: int | None, bar) -> list:
    """Submit as many tasks as the cluster has threads; gather as they finish; retry worker deaths."""
    from concurrent.futures import CancelledError

    from distributed import as_completed
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    shared_values = _find_shared(tasks)
    scattered: dict[int, Any] = {}  # id(value) -> Future of its broadcast copy

    def scatter_lost() -> None:  # (re)send shared values, e.g. after their only holder died
        for i, value in shared_values.items():
            if i not in scattered or scattered[i].status != "finished":
                scattered[i] = _scatter(client, cluster, value)

    def submit(index: int) -> None:
        kwargs = {k: scattered.get(id(v), v) for k, v in tasks[index].items()}
        # kwargs travel as one positional dict (dask resolves the futures inside it), so that
        # argument names such as `key` or `workers` never collide with submit()'s own.
        future = client.submit(_run_task, fn, threads, kwargs, pure=False)
        running[future] = index
        finished.add(future)

    results: list[Any] = [None] * len(tasks)
    deaths, lost_inputs = [0] * len(tasks), [0] * len(tasks)
    todo = deque(range(len(tasks)))
    running: dict[Any, int] = {}
    finished = as_completed(loop=client.loop)  # our client is not the default one
    try:
        scatter_lost()
        while todo or running:
            # Only as many tasks in flight as threads: the scheduler blames every task assigned
            # to a worker that dies, so tasks queued behind the culprit would lose their retry.
            while todo and len(running) < max(1, sum(client.nthreads().values())):
                submit(todo.popleft())
            future = _next_finished(finished, cluster)
            index = running.pop(future)
            try:
                results[index] = future.result()
            except (KilledWorker, CommClosedError) as exc:
                deaths[index] += 1
                if deaths[index] > 1:
                    raise _task_error(index, tasks[index], exc, why=(
                        f"its worker died twice ({type(exc).__name__}: killed, crashed or out of "
                        "memory; with several threads per worker, a task running beside it may "
                        "be the cause)")) from exc
                scatter_lost()
                todo.appendleft(index)
            except CancelledError as exc:  # its scattered inputs died with a worker
                lost_inputs[index] += 1
                if lost_inputs[index] > _LOST_INPUT_RESUBMITS:
                    raise _task_error(index, tasks[index], exc,
                                      why="its inputs were lost with dying workers") from exc
                scatter_lost()
                todo.appendleft(index)
            except Exception as exc:
                raise _task_error(index, tasks[index], exc) from exc
            else:
                bar.update()
            finally:  # we hold the result: the cluster must not keep (or recompute) it
                future.release()
    finally:
        if running:  # an error: stop what is still queued or running
            client.cancel(list(running))
    return results
