"""Where each dataset comes from and where it is looked for.

Every dataset has an entry here (filled in by :mod:`cellbook.datasets.sources`): its official
source, the files a ready dataset consists of with their sha256, the public **raw files** it is
derived from (``manifests/<name>.tsv``: official URL and pinned checksum of each), the builder
that derives it (:mod:`cellbook.datasets.build`) and a digest of its content.  :func:`locate`
looks for a ready dataset, in order:

1. an explicit ``path`` (the file itself, or a folder holding it).  When ``path`` is given it is
   the only place looked at: a ``path`` that does not hold the dataset is an error, never a
   silent fall-through to another copy;
2. ``$CELLBOOK_DATA/<name>/`` and ``$CELLBOOK_DATA/`` (``CELLBOOK_DATA`` may list several
   folders separated by ``:``);
3. the cache, ``$CELLBOOK_CACHE`` or ``~/.cache/cellbook/<name>/``, where
   :func:`cellbook.datasets.cache.fetch` downloads the raw files and builds the dataset.

If none works it raises :class:`DatasetNotFoundError` naming every path tried, the environment
variable, the official source and the command that fetches it.  Loaders attach a
:class:`DataInfo` to what they return (``adata.uns["cellbook_data"]``) for the results JSON.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..fsutil import read_json

ENV_DATA = "CELLBOOK_DATA"
ENV_CACHE = "CELLBOOK_CACHE"
ENV_MIRROR = "CELLBOOK_MIRROR"
BUILD_RECORD = "cellbook-build.json"     # written next to a dataset built by cellbook.datasets.cache.fetch
MANIFESTS = Path(__file__).with_name("manifests")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset could not be found locally (and was not, or could not be, fetched)."""


class ChecksumError(ValueError):
    """A file's checksum differs from the one the registry pins."""


class DatasetChangedError(ChecksumError):
    """A fetched dataset's files changed since the fetch (their size or modification time differ)."""


@dataclass(frozen=True)
class RawFile:
    """One public original a dataset is built from.

    path : where the file lives on a mirror and in the raw cache (``<mirror>/raw/<path>``)
    url : its official download address
    checksum : ``"sha256:<hex>"`` (the bytes), ``"gitsha1:<hex>"`` (the bytes' git blob id, where
        only that is published), ``"pixels:<hex>"`` (the decoded pixels, see
        :func:`cellbook.datasets.build.pixels_digest`) or ``""`` (not pinned)
    """

    path: str
    url: str
    checksum: str = ""


def read_manifest(path: Path) -> tuple[RawFile, ...]:
    """Read a ``manifests/<name>.tsv`` file (``#`` comment lines, then ``path url checksum``)."""
    rows = [ln for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows or rows[0].split("\t") != ["path", "url", "checksum"]:
        raise ValueError(f"{path}: expected a header line 'path<TAB>url<TAB>checksum'")
    out = []
    for i, ln in enumerate(rows[1:], 2):
        parts = ln.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}: row {i} has {len(parts)} fields, expected 3")
        out.append(RawFile(*parts))
    return tuple(out)


@dataclass(frozen=True)
class Dataset:
    """A registry entry.

    ``files`` are the file names that make up the ready dataset (the first is the main one); an
    empty tuple means the dataset is a folder (e.g. one sub-folder per image class) recognised
    by ``marker`` (a file that must exist in it).  ``sha256`` pins the ready files as the
    reference copy distributes them; ``content_sha256`` pins what a built copy must hold
    (:func:`cellbook.datasets.build.content_digest`), however it was encoded.
    ``raw`` lists the public originals and ``builder`` names the function in
    :data:`cellbook.datasets.build.BUILDERS` that derives the dataset from them.
    """

    name: str
    title: str
    source: str                      # official landing page / accession
    citation: str
    files: tuple[str, ...] = ()
    sha256: dict = field(default_factory=dict)   # ready file name -> sha256
    marker: str | None = None
    note: str = ""
    kind: str = "anndata"            # "anndata" | "images" | "files" (what content_sha256 digests)
    builder: str | None = None
    content_sha256: str | None = None
    raw: tuple[RawFile, ...] = ()

    @property
    def buildable(self) -> bool:
        return bool(self.raw) and self.builder is not None

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.raw]


@dataclass
class DataInfo:
    """Provenance of the data a notebook used (recorded in the results JSON)."""

    name: str
    title: str
    source: str
    path: str | None
    sha256: str | None
    real: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        kind = "REAL data" if self.real else "SYNTHETIC stand-in (not real data)"
        sha = f", sha256 {self.sha256[:12]}…" if self.sha256 else ""
        note = f"\n  {self.note}" if self.note else ""
        return f"[{kind}] {self.title}\n  {self.name}{sha}\n  from {self.source}{note}"


REGISTRY: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    """Add an entry; its raw-file list comes from ``manifests/<name>.tsv`` when that exists."""
    manifest = MANIFESTS / f"{ds.name}.tsv"
    if not ds.raw and manifest.exists():
        ds = replace(ds, raw=read_manifest(manifest))
    REGISTRY[ds.name] = ds
    return ds


class UnknownDatasetError(KeyError, ValueError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def get(name: str) -> Dataset:
    if name not in REGISTRY:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def data_roots() -> list[Path]:
    value = os.environ.get(ENV_DATA, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "cellbook")).expanduser()


def fetch_hint(name: str) -> str:
    """One line: where the dataset comes from and the command that fetches it."""
    ds = get(name)
    if ds.buildable:
        first = ds.raw[0].url
        more = f" and {len(ds.raw) - 1} more file(s)" if len(ds.raw) > 1 else ""
        return (f"official source {ds.source} (e.g. {first}{more}); fetch and build it with "
                f"`cellbook data fetch {name}` (set {ENV_MIRROR} to use a mirror)")
    return f"official source {ds.source}; no automatic download: get it there and set {ENV_DATA}"


def candidates(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Every place :func:`locate` looks, in order (files, or folders for folder datasets).

    With an explicit ``path`` only the places that ``path`` names are listed.
    """
    ds = get(name)
    out: list[Path] = []
    main = ds.files[0] if ds.files else None
    if path is not None:
        p = Path(path).expanduser()
        out = [p, p / main, p / name / main] if main else [p, p / name]
        return list(dict.fromkeys(out))
    for root in data_roots():
        out += [root / name / main, root / main] if main else [root / name, root]
    out.append(cache_dir() / name / main if main else cache_dir() / name)
    return list(dict.fromkeys(out))


def _matches(p: Path, ds: Dataset) -> bool:
    if ds.files:
        return p.is_file()
    return p.is_dir() and (ds.marker is None or (p / ds.marker).exists())


def locate(name: str, path: str | os.PathLike | None = None, check: bool = True) -> Path:
    """Path of dataset ``name`` (see the module docstring for the search order).

    ``check``: a fetched dataset whose files changed since the fetch is a :class:`DatasetChangedError`
    (:func:`check_unchanged`), raised before anything reads them.
    """
    ds = get(name)
    tried = candidates(name, path)
    for p in tried:
        if _matches(p, ds):
            if check:
                check_unchanged(name, p if p.is_dir() else p.parent)
            return p
    lines = "\n".join(f"  - {p}" for p in tried)
    if path is not None:
        what = "does not exist" if not Path(path).expanduser().exists() else f"does not hold {name!r}"
        raise DatasetNotFoundError(
            f"path={str(path)!r} {what}. Looked for dataset {name!r} ({ds.title}) at:\n{lines}\n"
            f"An explicit path is the only place looked at: fix the path, or leave it out to use "
            f"{ENV_DATA} and the cache ({fetch_hint(name)})")
    raise DatasetNotFoundError(
        f"dataset {name!r} ({ds.title}) was not found. Paths tried:\n{lines}\n"
        f"Set {ENV_DATA} to a folder that holds '{name}/' (currently "
        f"{os.environ.get(ENV_DATA) or 'unset'}), pass path=..., or: {fetch_hint(name)}."
    )


_SHA_CACHE: dict[tuple, str] = {}


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file (memoised on path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def build_record(folder: Path) -> dict | None:
    """The record :func:`cellbook.datasets.cache.build` left in a built dataset's folder, if any."""
    p = Path(folder) / BUILD_RECORD
    return read_json(p, what="dataset build record") if p.is_file() else None


def verify(path: Path, ds: Dataset, strict: bool = True) -> str | None:
    """Checksum of a dataset's main file; an error (or warning) when it is not a known-good copy.

    A file is good when its sha256 is the registry's pin (the reference copy), or when it was
    built by ``cellbook data fetch`` (whose record says which content digest the build matched
    against the registry) and has not changed since.
    """
    if not path.is_file():
        return None
    digest = sha256sum(path)
    expected = ds.sha256.get(path.name)
    if not expected or digest == expected:
        return digest
    record = build_record(path.parent)
    if (record and record.get("files", {}).get(path.name) == digest and ds.content_sha256
            and record.get("content_sha256") == ds.content_sha256):
        return digest
    msg = (f"{path}: sha256 {digest} is neither the registry's {expected} for {ds.name} nor that of a "
           f"verified build; the file is corrupt or a different version. Delete it and run "
           f"`cellbook data fetch {ds.name}`, or check it with `cellbook data verify {ds.name}`")
    if strict:
        raise ChecksumError(msg)
    warnings.warn(msg, stacklevel=3)
    return digest


def file_stats(folder: Path) -> dict:
    """``{relative path: [size, mtime_ns]}`` of every file under ``folder`` but the build record."""
    return {str(p.relative_to(folder)): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != BUILD_RECORD}


def check_unchanged(name: str, folder: Path) -> None:
    """Raise :class:`DatasetChangedError` when a fetched dataset's files differ from its build record.

    A cheap check (sizes and modification times, recorded at fetch), made on every load: a
    truncated, edited or replaced file is noticed before it is read.
    """
    record = build_record(folder)
    if not record or "stat" not in record:
        return
    now = file_stats(folder)
    changed = [f for f, st in record["stat"].items() if now.get(f) != st]
    if changed:
        how = "is missing" if changed[0] not in now else (
            f"has {now[changed[0]][0]} bytes (fetched: {record['stat'][changed[0]][0]})"
            if now[changed[0]][0] != record["stat"][changed[0]][0] else "was modified after the fetch")
        raise DatasetChangedError(
            f"{name}: {len(changed)} file(s) in {folder} changed since the dataset was fetched on "
            f"{record.get('built_utc', '?')} (e.g. {changed[0]} {how}). Check it with `cellbook data verify "
            f"{name}`, or fetch a fresh copy with `cellbook data fetch {name} --force`")


def info_for(name: str, path: Path | None, real: bool = True, note: str = "", strict: bool = True) -> DataInfo:
    ds = get(name)
    digest = verify(path, ds, strict=strict) if (real and path is not None) else None
    return DataInfo(name=name, title=ds.title, source=ds.source, path=str(path) if path else None,
                    sha256=digest, real=real, note=note)


def announce(info: DataInfo) -> DataInfo:
    """Print which source a notebook used (real or synthetic), loudly for synthetic."""
    print(info.describe())
    if not info.real:
        warnings.warn(f"{info.name}: using a SYNTHETIC stand-in; numbers are not about real cells", stacklevel=2)
    return info


def load_source(loaders: dict, source: str, *, path=None, fallback: str = "error", synthetic=None,
                seed: int = 0, info=None):
    """Load ``loaders[source](path=path)``; when its data is missing, the error or a labelled stand-in.

    ``fallback="error"`` (the default) re-raises the loader's :class:`DatasetNotFoundError`;
    ``fallback="synthetic"`` calls ``synthetic(seed=seed)`` (with a warning) instead, and the
    stand-in's provenance says SYNTHETIC.  An explicit ``path`` that does not hold the data is
    always an error.  ``info(obj)`` gives the :class:`DataInfo` that is printed (default:
    ``obj.uns["cellbook_data"]``, for AnnData).
    """
    if source not in loaders:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(loaders)}")
    if fallback not in ("synthetic", "error"):
        raise ValueError(f"fallback must be 'error' or 'synthetic', not {fallback!r}")
    try:
        obj = loaders[source](path=path)
    except DatasetNotFoundError as err:
        if fallback == "error" or synthetic is None or path is not None:
            raise
        # stacklevel 4: the caller of load_scrna / load_images / load_bulk (each wrapped by validate_params)
        warnings.warn(f"{err}\nFalling back to a SYNTHETIC stand-in (fallback='synthetic').", stacklevel=4)
        obj = synthetic(seed=seed)
    announce(info(obj) if info else DataInfo(**obj.uns["cellbook_data"]))
    return obj
