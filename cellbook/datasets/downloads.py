"""Downloads with pooch, and what pooch lacks: resuming a cut file (HTTP ``Range``), a file lock per file.

:func:`download` fetches one URL into place; :func:`cellbook.datasets.cache.fetch_raw` makes one
pooch repository of a dataset's raw files.  Every file is checked against its registry pin
(:func:`file_checksum`: sha256 through pooch, a git blob sha1 or a pixel digest here) before it
is moved into place, so a partial or corrupt file never reaches the cache.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from .. import __version__
from . import build as builders
from .registry import ChecksumError, sha256sum


class DownloadError(OSError):
    """A file could not be downloaded (network error, not found, connection cut)."""


class _NotOnMirror(DownloadError):
    """The mirror does not have this file (HTTP 404 or no such local file)."""


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("CELLBOOK_PROGRESS", "1") != "0"


def _bar(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


# ----------------------------------------------------------------------------- checksums

def file_checksum(path: Path, checksum: str) -> tuple[bool | None, str]:
    """Check ``path`` against a registry checksum; returns ``(ok, the file's value)``.

    ``ok`` is None when nothing is pinned (``checksum == ""``: the sha256 is returned to record).
    """
    kind, _, want = checksum.partition(":")
    path = Path(path)
    if not checksum or kind == "sha256":
        got = sha256sum(path)
        return (None if not checksum else got == want), got
    if kind == "gitsha1":
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        got = h.hexdigest()
        return got == want, got
    if kind == "pixels":
        try:
            got = builders.pixels_digest(builders._imread(path))
        except ValueError:
            return False, "not a readable image"
        return got == want, got
    raise ValueError(f"unknown checksum kind {kind!r} in {checksum!r}")


# ----------------------------------------------------------------------------- downloads

class _Resumable:
    """A pooch downloader that resumes: the bytes received so far stay in ``.<name>.resume`` beside the file.

    A connection cut mid-file keeps them; the next attempt (pooch retries) or the next run asks for
    the rest with an HTTP ``Range`` header.  ``file://`` URLs (a mirror folder) are copied.  A write
    that fails on this side (a full disk) removes them: nothing is left behind.
    """

    def __init__(self, dest: Path, checksum: str, progress: bool, desc: str, timeout: float):
        self.dest, self.checksum, self.progress, self.desc, self.timeout = dest, checksum, progress, desc, timeout
        self.partial = dest.parent / f".{dest.name}.resume"

    def __call__(self, url: str, output_file: str, pooch_obj=None, check_only: bool = False) -> None:
        if url.startswith("file:"):
            source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
            if not source.is_file():
                raise _NotOnMirror(f"{url}: no such file")
            shutil.copyfile(source, self.partial)
        else:
            self._get(url)
        kind = self.checksum.partition(":")[0]
        if kind in ("gitsha1", "pixels") and not file_checksum(self.partial, self.checksum)[0]:
            self.partial.unlink()
            raise ValueError(f"the {kind} checksum of {self.dest.name} does not match")
        os.replace(self.partial, output_file)

    def _get(self, url: str) -> None:
        import requests

        have = self.partial.stat().st_size if self.partial.is_file() else 0
        headers = {"User-Agent": f"cellbook/{__version__}", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as resp:
            if resp.status_code in (403, 404, 410):
                raise _NotOnMirror(f"{url}: HTTP {resp.status_code} {resp.reason}")
            if resp.status_code == 416:       # the kept part is not a prefix of this file: start again
                self.partial.unlink()
            resp.raise_for_status()
            have = have if resp.status_code == 206 else 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            received = self._receive(resp, have, total, requests.RequestException)
        if total is not None and received != total:
            raise requests.ConnectionError(f"connection cut after {received} of {total} bytes")

    def _receive(self, resp, have: int, total: int | None, network_error) -> int:
        received = have
        small = total is not None and total < (4 << 20)   # one bar per big file; small ones count in the file bar
        with open(self.partial, "ab" if have else "wb") as fh, _bar(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=self.desc,
                leave=False, disable=not self.progress or small) as bar:
            try:
                for block in resp.iter_content(1 << 16):
                    _write(fh, block)
                    received += len(block)
                    bar.update(len(block))
            except network_error:
                pass                            # a cut connection: kept, resumed by the next attempt
            except OSError as err:              # this side failed (a full disk): keep nothing
                fh.close()
                self.partial.unlink(missing_ok=True)
                raise DownloadError(f"writing {self.dest} failed ({err}); nothing was kept") from err
        return received


def _write(fh, block: bytes) -> None:
    fh.write(block)


def _remove_pooch_debris(folder: Path) -> None:
    """Remove the empty temporary files (``tmpXXXXXXXX``) that pooch made for a download killed in flight.

    The downloader fills pooch's temporary file only at the very end, so a download still running
    has an empty one too; removing it is harmless (it is filled, and so re-created, at the end).
    """
    for p in folder.glob("tmp*"):
        if len(p.name) == 11 and p.is_file() and p.stat().st_size == 0:
            p.unlink(missing_ok=True)


def _repository(root: Path, base_url: str, registry: dict, urls: dict, retries: int):
    """A pooch repository: files under ``root``, their pins (sha256, or None: checked here), their URLs."""
    import pooch

    return pooch.create(path=root, base_url=base_url, registry=registry, urls=urls, retry_if_failed=retries)


def _retrieve(repo, fname: str, checksum: str, *, progress: bool, desc: str | None = None,
              timeout: float = 60.0) -> Path:
    """``repo.fetch(fname)`` under a file lock, resuming; pooch's errors become the package's own."""
    import filelock
    import requests

    dest = Path(repo.abspath) / fname
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = repo.get_url(fname)
    with filelock.FileLock(dest.parent / f".{dest.name}.lock"):
        _remove_pooch_debris(dest.parent)
        if dest.is_file() and not checksum.startswith("sha256:") and file_checksum(dest, checksum)[0] is False:
            dest.unlink()                       # pooch checks sha256 pins itself; the other kinds here
        try:
            repo.fetch(fname, downloader=_Resumable(dest, checksum, progress, desc or dest.name, timeout))
        except ValueError:
            raise ChecksumError(
                f"{dest.name} downloaded from {url} does not match the registry: expected {checksum}. The file "
                f"on the server is corrupt or a different version; nothing was kept.") from None
        except requests.RequestException as err:
            raise DownloadError(f"could not download {url} ({repo.retry_if_failed + 1} attempts): {err}") from None
    return dest


def download(url: str, dest: str | os.PathLike, checksum: str = "", *, progress: bool | None = None,
             desc: str | None = None, retries: int = 2, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (pooch) and check it against ``checksum``; returns ``dest``.

    Network errors and cut connections are retried ``retries`` times, each attempt resuming where
    the last one stopped (also across runs); a missing file (HTTP 404) is not retried.  One process
    at a time writes ``dest`` (a file lock); a ``dest`` already there and matching ``checksum`` is
    kept.  Whatever fails, ``dest`` is left as it was: a corrupt or partial file is never placed there.
    """
    dest = Path(dest)
    pin = checksum if checksum.startswith("sha256:") else None
    repo = _repository(dest.parent, "", {dest.name: pin}, {dest.name: url}, retries)
    return _retrieve(repo, dest.name, checksum, progress=_progress_enabled(progress), desc=desc, timeout=timeout)
