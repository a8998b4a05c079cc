"""Fetch each dataset from its official source (or a mirror), build it, check it: ``cellbook data``.

    cellbook data list                                  # every dataset: present, cached, buildable, missing
    cellbook data fetch vangalen2019_bm_seqwell         # download the raw files, build into the cache
    cellbook data fetch --book                          # everything the book's chapters need
    cellbook data verify vangalen2019_bm_seqwell        # checksums against the registry
    cellbook data where vangalen2019_bm_seqwell         # the path a loader would read

From Python: :func:`fetch`, :func:`verify_dataset`, :func:`status`, :func:`ensure`.

**Downloads** (:mod:`cellbook.datasets.downloads`) go through pooch: one repository per dataset
with the registry's pins (``manifests/<name>.tsv``), retries, and a temporary file moved into
place only once its checksum matches; a corrupt file is a
:class:`~cellbook.datasets.registry.ChecksumError` naming the file, the URL and the pin.  A cut
connection resumes where it stopped (HTTP ``Range``), also on the next run; processes fetching
the same dataset at once take turns (file locks), so it is downloaded once.

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
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from .. import __version__
from ..fsutil import atomic_dir, write_json
from . import build as builders
from .downloads import (
    DownloadError,
    _bar,
    _NotOnMirror,
    _progress_enabled,
    _repository,
    _retrieve,
    download,
    file_checksum,
)
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
    file_stats,
    get,
    locate,
    sha256sum,
)

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


def fetch_raw(name: str, *, mirror: str | None = None, progress: bool | None = None) -> Path:
    """Download every raw file of ``name`` into the raw cache (files already there and good are kept).

    The registry's files and pins make one pooch repository, with the mirror's ``raw/`` as its base
    URL (without a mirror, each file's official URL).  Returns the raw cache folder (the
    ``raw_root`` for the dataset's builder).
    """
    ds = get(name)
    root = raw_cache()
    progress = _progress_enabled(progress)
    pins = {r.path: (r.checksum if r.checksum.startswith("sha256:") else None) for r in ds.raw}
    repo = _repository(root, f"{mirror}/raw/" if mirror else ds.source, pins,
                       {r.path: raw_url(r, mirror) for r in ds.raw}, retries=2)
    with _bar(total=len(ds.raw), unit="file", desc=f"{name}: raw files", disable=not progress) as bar:
        for raw in ds.raw:
            _retrieve(repo, raw.path, raw.checksum, progress=progress, desc=raw.path.rsplit("/", 1)[-1])
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
            "files": files, "content_sha256": digest, "stat": file_stats(folder), **source}


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
    Processes fetching the same dataset at once take turns (a file lock): it is downloaded once,
    and each of them gets it.  Returns the path loaders read.
    """
    import filelock

    ds = get(name)
    target = cache_target(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(target.parent / f".{name}.lock"):
        if not force:
            try:
                return locate(name, target)
            except DatasetNotFoundError:
                pass
        if not ds.buildable:
            raise DatasetNotFoundError(f"{name}: {fetch_hint(name)}")
        return _fetch_unlocked(name, mirror_base(mirror), _progress_enabled(progress))


def _fetch_unlocked(name: str, base: str | None, progress: bool) -> Path:
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
    found = locate(name, path, check=False)
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
        if "stat" in record and record["stat"] != file_stats(folder) and all(ok for _, ok, _ in rows):
            write_json(folder / BUILD_RECORD, {**record, "stat": file_stats(folder)})
            rows.append((str(folder), True, "files touched since the fetch, content unchanged: times re-recorded"))
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
        path = locate(name, check=False)
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
