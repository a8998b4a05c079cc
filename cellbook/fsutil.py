"""Atomic writes and checked reads: a killed run never leaves a torn file behind.

Every file the package writes for later readers (results JSON, run records, executed
notebooks, fetched data, built datasets) goes through :func:`atomic_path` (or the helpers
built on it): the content is written to a temporary file in the same folder, flushed to
disk, and moved over the destination with :func:`os.replace` only when writing finished.
A crash, kill or exception before that leaves the previous file untouched, and the temporary
file a killed writer leaves behind is removed by the next write to the same destination (its
name carries the writer's host and process id; only a writer that is gone is cleaned up).

    with atomic_path("out.json") as tmp:      # write tmp; it replaces out.json on success
        tmp.write_text("...")
    write_json("results.json", payload)
    payload = read_json("results.json")        # a corrupt file is a ValueError naming it
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# tempfile creates private files (0600) and folders (0700); what we publish gets the usual
# modes (0666 / 0777 less the umask), as a plain open() or mkdir() would give it.
_UMASK = _umask()


def _writer_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True      # someone else's process, or we cannot tell: keep its file
    return True


def remove_stale_parts(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that killed writers of ``dest`` left beside it.

    A temporary name is ``.<name>.<host>-<pid>.<random>.part...`` (or ``.old`` for :func:`atomic_dir`'s
    moved-aside folder); one is removed only when it was made on this host by a process that no longer
    exists.  Returns what was removed.
    """
    dest = Path(dest)
    removed = []
    if not dest.parent.is_dir():
        return removed
    host = socket.gethostname()
    for p in dest.parent.iterdir():
        if not p.name.startswith(f".{dest.name}."):
            continue
        middle = p.name[len(dest.name) + 2:]
        tag = middle.rsplit(".part", 1)[0] if ".part" in middle else middle.rsplit(".old", 1)[0]
        writer, _, pid = tag.rsplit(".", 1)[0].rpartition("-")
        if writer != host or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``dest``; on normal exit it replaces ``dest`` atomically.

    On any exception (``KeyboardInterrupt`` included) the temporary file or folder is removed
    and ``dest`` is left as it was.  The temporary name keeps ``dest``'s suffix (or ``suffix``)
    so that tools which look at extensions (papermill, h5py, OpenCV) behave as for ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    sfx = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{_writer_tag()}.", suffix=f".part{sfx}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike):
    """Yield a temporary folder beside ``dest``; on normal exit it takes ``dest``'s place.

    An existing ``dest`` is moved aside first and removed only after the new folder is in
    place, so a failure at any point leaves either the old or the new folder, never a mix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_writer_tag()}.", suffix=".part", dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_writer_tag()}.", suffix=".old", dir=dest.parent))
            old.rmdir()
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)


def write_json(dest: str | os.PathLike, payload, **kwargs) -> Path:
    """Write ``payload`` as JSON to ``dest`` atomically (``indent=2`` unless given)."""
    kwargs.setdefault("indent", 2)
    return write_text(dest, json.dumps(payload, **kwargs))


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """Read a JSON file; a missing file is ``FileNotFoundError`` and a corrupt one ``ValueError``,
    both naming the file (never a bare ``JSONDecodeError``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text ({err.reason}); it is corrupt: delete it and "
                         f"re-create it") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is corrupt ({err.msg} at line {err.lineno}, column {err.colno}; "
                         f"{len(text)} bytes): delete it and re-create it (re-run the step that writes it)") from None
