"""Fetch each dataset from its official source (or a mirror), build it, check it: ``cellbook data``.

    cellbook data list                                  # every dataset: present, cached, buildable, missing
    cellbook data fetch vangalen2019_bm_seqwell         # download the raw files, build into the cache
    cellbook data fetch --book                          # everything the book's chapters need
    cellbook data verify vangalen2019_bm_seqwell        # checksums against the registry
    cellbook data where vangalen2019_bm_seqwell         # the path a loader would read

From Python: :func:`fetch`, :func:`verify_dataset`, :func:`status`, :func:`ensure`.

**Downloads.**  Every raw file is streamed to a temporary file beside its destination, checked
against the checksum the registry pins (``manifests/<name>.tsv``), and only then moved into
place (:func:`cellbook.fsutil.atomic_path`): an interrupted download, a connection cut mid-file
or a corrupt file never leaves anything in the cache.  A checksum mismatch is a
:class:`~cellbook.datasets.registry.ChecksumError` naming the file, the URL and both digests.

**Builds.**  The dataset is built from the raw files by its builder
(:mod:`cellbook.datasets.build`) into a temporary folder, its content digest is compared with
the registry's pin, and only a matching build replaces ``<cache>/<name>/`` (with a
``cellbook-build.json`` record of what went in).

**Mirrors.**  ``CELLBOOK_MIRROR=<base URL>`` (``http(s)://``, ``file://`` or a folder) replaces
the official hosts.  A mirror is laid out like a ``CELLBOOK_DATA`` folder: the originals under
``raw/`` at the paths the registry lists (``<base>/raw/GSE116256/GSM3587996_BM1.dem.txt.gz``),
and optionally ready datasets under ``<base>/<name>/``, used when an original is not on the
mirror.  File names and checksums are the same as from the official hosts.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .. import __version__
from ..fsutil import atomic_dir, atomic_path, write_json
from . import build as builders
from .registry import (
    BUILD_RECORD,
    ENV_DATA,
    ENV_MIRROR,
    ChecksumError,
    DatasetNotFoundError,
    RawFile,
    build_record,
    cache_dir,
    fetch_hint,
    get,
    locate,
    sha256sum,
)


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


# ----------------------------------------------------------------------------- addresses

def mirror_base(mirror: str | None = None) -> str | None:
    """The mirror to use (argument, else ``$CELLBOOK_MIRROR``) as a URL, or None."""
    base = mirror if mirror is not None else os.environ.get(ENV_MIRROR, "")
    base = (base or "").strip()
    if not base:
        return None
    if "://" not in base:  # a local folder
        folder = Path(base).expanduser().resolve()
        if not folder.is_dir():
            raise ValueError(f"{ENV_MIRROR}={base!r} is neither a URL nor an existing folder")
        base = folder.as_uri()
    return base.rstrip("/")


def raw_url(raw: RawFile, mirror: str | None = None) -> str:
    """Where to download ``raw`` from: the mirror's ``raw/<path>``, else the official URL."""
    if mirror:
        return f"{mirror}/raw/{urllib.parse.quote(raw.path)}"
    return raw.url


def raw_cache() -> Path:
    """Where downloaded originals are kept (``<cache>/raw/<path>``)."""
    return cache_dir() / "raw"


def cache_target(name: str) -> Path:
    """Where :func:`fetch` puts dataset ``name``: ``<cache>/<name>/``."""
    return cache_dir() / name


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

_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def _stream(url: str, dest: Path, progress: bool, desc: str, timeout: float) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": f"cellbook/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(dest, "wb") as fh:  # noqa: S310
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        small = total is not None and total < (4 << 20)  # one bar per big file; small ones count in the file bar
        with _bar(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False,
                  disable=not progress or small) as bar:
            while True:
                try:
                    block = resp.read(1 << 16)
                except http.client.IncompleteRead as err:
                    received += len(err.partial)
                    raise DownloadError(f"connection cut after {received} of {total} bytes") from None
                if not block:
                    break
                fh.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise DownloadError(f"connection cut after {received} of {total} bytes")
    return received


def download(url: str, dest: str | os.PathLike, checksum: str = "", *, progress: bool | None = None,
             desc: str | None = None, retries: int = 2, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically and check it against ``checksum``.

    Network errors and cut connections are retried ``retries`` times; a missing file (HTTP 404)
    and a checksum mismatch are not.  Whatever fails, ``dest`` is left as it was (nothing
    partial or corrupt is ever placed there).
    """
    dest = Path(dest)
    progress = _progress_enabled(progress)
    last: Exception | None = None
    for _attempt in range(retries + 1):
        try:
            with atomic_path(dest) as tmp:
                _stream(url, tmp, progress, desc or dest.name, timeout)
                ok, got = file_checksum(tmp, checksum)
                if ok is False:
                    raise ChecksumError(
                        f"{dest.name} downloaded from {url} does not match the registry: expected "
                        f"{checksum}, got {checksum.partition(':')[0]}:{got}. The file on the server is "
                        f"corrupt or a different version; nothing was kept.")
            return dest
        except ChecksumError:
            raise
        except urllib.error.HTTPError as err:
            if err.code in (403, 404, 410):
                raise _NotOnMirror(f"{url}: HTTP {err.code} {err.reason}") from None
            last = err
        except urllib.error.URLError as err:
            if isinstance(err.reason, FileNotFoundError) or "No such file" in str(err.reason):
                raise _NotOnMirror(f"{url}: no such file") from None
            last = err
        except (DownloadError, *_TRANSIENT) as err:
            last = err
    raise DownloadError(f"could not download {url} ({retries + 1} attempts): {last}")


def fetch_raw(name: str, *, mirror: str | None = None, progress: bool | None = None) -> Path:
    """Download every raw file of ``name`` into the raw cache (files already there and good are kept).

    Returns the raw cache folder (the ``raw_root`` for the dataset's builder).
    """
    ds = get(name)
    root = raw_cache()
    progress = _progress_enabled(progress)
    with _bar(total=len(ds.raw), unit="file", desc=f"{name}: raw files", disable=not progress) as bar:
        for raw in ds.raw:
            dest = root / raw.path
            if not (dest.is_file() and file_checksum(dest, raw.checksum)[0] is not False):
                download(raw_url(raw, mirror), dest, raw.checksum, progress=progress,
                         desc=raw.path.rsplit("/", 1)[-1])
            bar.update(1)
    return root


# ----------------------------------------------------------------------------- builds

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _record(ds, folder: Path, source: dict) -> dict:
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != BUILD_RECORD:
            files[p.name] = sha256sum(p)
    digest = builders.content_digest(ds, folder / ds.files[0] if ds.files else folder)
    return {"dataset": ds.name, "builder": ds.builder, "built_utc": _now(), "cellbook": __version__,
            "files": files, "content_sha256": digest, **source}


def _check_content(ds, record: dict) -> None:
    if ds.content_sha256 and record["content_sha256"] != ds.content_sha256:
        raise ChecksumError(
            f"{ds.name}: the built dataset's content digest {record['content_sha256']} differs from the "
            f"registry's {ds.content_sha256}; the raw files or the builder changed. Nothing was published.")
    if ds.kind == "files":  # each ready file must be a pinned original
        pins = {r.path.rsplit("/", 1)[-1]: r.checksum for r in ds.raw}
        for fname, digest in record["files"].items():
            want = pins.get(fname, "")
            if want.startswith("sha256:") and want[7:] != digest:
                raise ChecksumError(f"{ds.name}/{fname}: sha256 {digest} is not the registry's {want[7:]}")


def build(name: str, raw_root: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
          raw_files=None) -> Path:
    """Build dataset ``name`` from raw files under ``raw_root`` (default: the raw cache) into ``dest``.

    ``dest`` (default ``<cache>/<name>/``) is replaced only by a build whose content digest matches
    the registry's pin.  ``raw_files`` restricts the build to some raw files (a partial build, e.g.
    a few image frames; its digest is then not checked).  Returns the path a loader reads.
    """
    ds = get(name)
    if not ds.buildable:
        raise DatasetNotFoundError(f"{name}: no builder; {fetch_hint(name)}")
    raw_root = Path(raw_root) if raw_root is not None else raw_cache()
    files = list(ds.raw if raw_files is None else raw_files)
    absent = [r.path for r in files if not (raw_root / r.path).is_file()]
    if absent:
        raise DatasetNotFoundError(f"{name}: {len(absent)} raw file(s) missing under {raw_root} "
                                   f"(e.g. {absent[0]}); run `cellbook data fetch {name}`")
    dest = Path(dest) if dest is not None else cache_target(name)
    with atomic_dir(dest) as tmp:
        builders.BUILDERS[ds.builder](raw_root, tmp, files)
        record = _record(ds, tmp, {"source": "raw", "raw": {r.path: r.checksum for r in files},
                                   "raw_root": str(raw_root)})
        if raw_files is None:
            _check_content(ds, record)
        else:
            record["partial"] = True
        write_json(tmp / BUILD_RECORD, record)
    return dest / ds.files[0] if ds.files else dest


def _fetch_prebuilt(name: str, mirror: str, progress: bool) -> Path:
    """Download a ready dataset from ``<mirror>/<name>/`` and check it against the registry."""
    ds = get(name)
    dest = cache_target(name)
    base = f"{mirror}/{urllib.parse.quote(name)}"
    with atomic_dir(dest) as tmp:
        if ds.kind == "images":
            download(f"{base}/metadata.csv", tmp / "metadata.csv", progress=progress)
            import pandas as pd

            rels = pd.read_csv(tmp / "metadata.csv")["file"].tolist()
            with _bar(total=len(rels), unit="file", desc=f"{name}: ready files", disable=not progress) as bar:
                for rel in rels:
                    download(f"{base}/{urllib.parse.quote(rel)}", tmp / rel, progress=False)
                    bar.update(1)
        else:
            names = list(ds.files) or [r.path.rsplit("/", 1)[-1] for r in ds.raw]
            for fname in names:
                pin = ds.sha256.get(fname)
                if pin is None:
                    pin = next((r.checksum[7:] for r in ds.raw if r.path.endswith("/" + fname)
                                and r.checksum.startswith("sha256:")), None)
                download(f"{base}/{urllib.parse.quote(fname)}", tmp / fname,
                         f"sha256:{pin}" if pin else "", progress=progress)
        record = _record(ds, tmp, {"source": "prebuilt", "mirror": mirror})
        if not (ds.files and ds.sha256.get(ds.files[0])):  # a pinned main file was checked on download
            _check_content(ds, record)
        write_json(tmp / BUILD_RECORD, record)
    return dest / ds.files[0] if ds.files else dest


def fetch(name: str, *, mirror: str | None = None, force: bool = False, progress: bool | None = None) -> Path:
    """Download dataset ``name``'s raw files (official hosts or ``mirror``) and build it into the cache.

    A dataset already in the cache is kept unless ``force``.  With a mirror that lacks some
    original, a ready copy under ``<mirror>/<name>/`` is used instead (checked the same way).
    Returns the path loaders read.
    """
    ds = get(name)
    progress = _progress_enabled(progress)
    target = cache_target(name)
    if not force:
        try:
            found = locate(name, target)
            return found
        except DatasetNotFoundError:
            pass
    if not ds.buildable:
        raise DatasetNotFoundError(f"{name}: {fetch_hint(name)}")
    base = mirror_base(mirror)
    try:
        raw_root = fetch_raw(name, mirror=base, progress=progress)
    except _NotOnMirror as err:
        if not base:
            raise DownloadError(f"{name}: {err}") from None
        try:
            return _fetch_prebuilt(name, base, progress)
        except _NotOnMirror as err2:
            raise DownloadError(f"{name}: the mirror {base} has neither all raw files ({err}) nor a ready "
                                f"copy ({err2})") from None
    return build(name, raw_root)


# ----------------------------------------------------------------------------- checks

def verify_dataset(name: str, path: str | os.PathLike | None = None) -> list[tuple[str, bool, str]]:
    """Check a dataset (and its cached raw files) against the registry.

    Returns ``(what, ok, detail)`` rows; nothing is changed.  Raises ``DatasetNotFoundError``
    when the dataset is not found at all.
    """
    ds = get(name)
    found = locate(name, path)
    rows = []
    folder = found.parent if ds.files else found
    if ds.files:
        digest = sha256sum(found)
        pin = ds.sha256.get(found.name)
        if pin and digest == pin:
            rows.append((str(found), True, "sha256 matches the registry (reference copy)"))
        elif ds.content_sha256:
            content = builders.content_digest(ds, found)
            ok = content == ds.content_sha256
            rows.append((str(found), ok, "content digest matches the registry (built copy)" if ok else
                         f"content digest {content} differs from the registry's {ds.content_sha256}"))
        elif pin:
            rows.append((str(found), False, f"sha256 {digest} differs from the registry's {pin}"))
        else:
            rows.append((str(found), True, f"sha256 {digest} (nothing pinned to compare with)"))
    elif ds.kind == "images":
        content = builders.content_digest(ds, found)
        ok = content == ds.content_sha256
        rows.append((str(found), ok, "content digest (metadata.csv + pixels) matches the registry" if ok else
                     f"content digest {content} differs from the registry's {ds.content_sha256}"))
    else:  # a folder of ready files, each a pinned original
        for raw in ds.raw:
            fname = raw.path.rsplit("/", 1)[-1]
            p = found / fname
            if not p.is_file():
                rows.append((str(p), False, "missing"))
                continue
            ok, got = file_checksum(p, raw.checksum)
            rows.append((str(p), ok is not False, "sha256 matches the registry" if ok else
                         f"{got} differs from the registry's {raw.checksum}" if ok is False else "not pinned"))
    record = build_record(folder)
    if record:
        how = (f"fetched ready from the mirror {record.get('mirror')}" if record.get("source") == "prebuilt"
               else f"built from the raw files by the {record.get('builder')!r} builder")
        rows.append((str(folder / BUILD_RECORD), True, f"{how} on {record.get('built_utc')}"))
    cached = [(r, raw_cache() / r.path) for r in ds.raw if (raw_cache() / r.path).is_file()]
    bad = [r.path for r, p in cached if file_checksum(p, r.checksum)[0] is False]
    if cached:
        rows.append((str(raw_cache()), not bad, f"{len(cached) - len(bad)} of {len(cached)} cached raw files match "
                     "the registry" + (f"; corrupt: {', '.join(bad[:5])}" if bad else "")))
    return rows


def status(name: str) -> dict:
    """``{"name", "status", "path", "detail"}``: status is present, cached, buildable or missing."""
    ds = get(name)
    try:
        path = locate(name)
    except DatasetNotFoundError:
        if ds.buildable:
            return {"name": name, "status": "buildable", "path": None,
                    "detail": f"{len(ds.raw)} raw file(s) from {ds.source}"}
        return {"name": name, "status": "missing", "path": None, "detail": fetch_hint(name)}
    in_cache = Path(path).resolve().is_relative_to(cache_dir().resolve())
    return {"name": name, "status": "cached" if in_cache else "present", "path": str(path), "detail": ""}


def ensure(*names: str, fallback: str = "error", path=None, mirror: str | None = None,
           progress: bool | None = None) -> dict:
    """Make sure every dataset in ``names`` can be loaded: find it, else fetch and build it.

    ``fallback="synthetic"`` (the explicit offline demo) skips fetching: the chapters then use
    their labelled stand-ins.  An explicit ``path`` (a chapter's ``data_path``) also skips
    fetching: the loaders then read only that path, and say so if it does not hold the data.
    Otherwise a dataset that cannot be had is one ``DatasetNotFoundError`` naming it, its URL
    and the command that fetches it.  Returns ``{name: path or None}``.
    """
    if fallback not in ("error", "synthetic"):
        raise ValueError(f"fallback must be 'error' or 'synthetic', not {fallback!r}")
    out = {}
    for name in names:
        get(name)
        if path is not None:
            out[name] = None
            continue
        try:
            out[name] = locate(name)
            continue
        except DatasetNotFoundError:
            if fallback == "synthetic":
                print(f"[cellbook] {name}: not found; fallback='synthetic', so the chapter uses a labelled "
                      f"SYNTHETIC stand-in", file=sys.stderr)
                out[name] = None
                continue
        try:
            out[name] = fetch(name, mirror=mirror, progress=progress)
        except (DownloadError, ChecksumError, DatasetNotFoundError, ValueError, OSError) as err:
            ds = get(name)
            url = ds.raw[0].url if ds.raw else ds.source
            raise DatasetNotFoundError(
                f"dataset {name!r} is not in {ENV_DATA} or the cache, and fetching it failed: {err}. "
                f"Source: {url}. Fetch it with `cellbook data fetch {name}` (set {ENV_MIRROR} for a mirror, or "
                f"{ENV_DATA} to a folder that holds it)") from None
    return out
