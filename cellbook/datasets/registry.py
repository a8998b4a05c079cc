"""Where each dataset comes from and where it is looked for.

Every dataset has an entry here: its official source (URL / accession), the files it
consists of with their sha256, and a citation.  :func:`locate` looks for it, in order:

1. an explicit ``path`` (the file itself, or a folder holding it);
2. ``$CELLBOOK_DATA/<name>/`` and ``$CELLBOOK_DATA/`` (``CELLBOOK_DATA`` may list several
   folders separated by ``:``);
3. the cache, ``$CELLBOOK_CACHE`` or ``~/.cache/cellbook/<name>/``;
4. a download into the cache, when ``download=True`` and the entry has a direct URL.

If none works it raises :class:`DatasetNotFoundError` naming every path tried, the
environment variable and the download source.  Loaders attach a :class:`DataInfo` to
what they return (``adata.uns["cellbook_data"]``) so the results JSON can record it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV_DATA = "CELLBOOK_DATA"
ENV_CACHE = "CELLBOOK_CACHE"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset could not be found locally or downloaded."""


@dataclass(frozen=True)
class Dataset:
    """A registry entry.

    ``files`` are the file names that make up the dataset (the first is the main one);
    an empty tuple means the dataset is a folder (e.g. one sub-folder per image class)
    recognised by ``marker`` (a file that must exist in it).
    """

    name: str
    title: str
    source: str                      # official landing page / accession
    citation: str
    files: tuple[str, ...] = ()
    sha256: dict = field(default_factory=dict)   # file name -> sha256
    urls: dict = field(default_factory=dict)     # file name -> direct download URL
    marker: str | None = None
    note: str = ""


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
        return f"[{kind}] {self.title} <- {self.path or self.source}" + (f" ({self.note})" if self.note else "")


REGISTRY: dict[str, Dataset] = {}


def register(ds: Dataset) -> Dataset:
    REGISTRY[ds.name] = ds
    return ds


def get(name: str) -> Dataset:
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def data_roots() -> list[Path]:
    value = os.environ.get(ENV_DATA, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "cellbook")).expanduser()


def candidates(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Every place :func:`locate` looks, in order (files, or folders for folder datasets)."""
    ds = get(name)
    out: list[Path] = []
    if ds.files:
        main = ds.files[0]
        if path is not None:
            p = Path(path).expanduser()
            out += [p, p / main, p / name / main]
        for root in data_roots():
            out += [root / name / main, root / main]
        out.append(cache_dir() / name / main)
    else:
        if path is not None:
            p = Path(path).expanduser()
            out += [p, p / name]
        for root in data_roots():
            out += [root / name, root]
        out.append(cache_dir() / name)
    return list(dict.fromkeys(out))


def _matches(p: Path, ds: Dataset) -> bool:
    if ds.files:
        return p.is_file()
    return p.is_dir() and (ds.marker is None or (p / ds.marker).exists())


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


def verify(path: Path, ds: Dataset, strict: bool = True) -> str | None:
    """Checksum of the dataset's main file; an error (or warning) when it differs from the registry."""
    if not path.is_file():
        return None
    digest = sha256sum(path)
    expected = ds.sha256.get(path.name)
    if expected and digest != expected:
        msg = (f"{path}: sha256 {digest} does not match the registry's {expected} for {ds.name}; "
               f"the file is corrupt or a different version")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)
    return digest


def download(name: str) -> Path:
    """Download a dataset's files into the cache (needs network and a direct URL)."""
    ds = get(name)
    if not ds.urls:
        raise DatasetNotFoundError(f"{name}: no direct download; get it from {ds.source}")
    target = cache_dir() / name
    target.mkdir(parents=True, exist_ok=True)
    for fname, url in ds.urls.items():
        dest = target / fname
        if dest.exists():
            continue
        tmp = dest.with_suffix(dest.suffix + ".part")
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as fh:  # noqa: S310
            shutil.copyfileobj(resp, fh)
        tmp.rename(dest)
        verify(dest, ds)
    return target / ds.files[0] if ds.files else target


def locate(name: str, path: str | os.PathLike | None = None, download_missing: bool = False) -> Path:
    """Path of dataset ``name`` (see the module docstring for the search order)."""
    ds = get(name)
    tried = candidates(name, path)
    for p in tried:
        if _matches(p, ds):
            return p
    if download_missing and ds.urls:
        try:
            return download(name)
        except Exception as err:  # network errors of all kinds
            reason = f"download failed: {err}"
        else:  # pragma: no cover
            reason = ""
    else:
        reason = "no direct download URL" if not ds.urls else "download not attempted (download=False)"
    lines = "\n".join(f"  - {p}" for p in tried)
    raise DatasetNotFoundError(
        f"dataset {name!r} ({ds.title}) was not found. Paths tried:\n{lines}\n"
        f"Set {ENV_DATA} to a folder that holds '{name}/' (currently "
        f"{os.environ.get(ENV_DATA) or 'unset'}), pass path=..., or get it from {ds.source} ({reason})."
    )


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
    """Load ``loaders[source](path=path)``; when its data is missing, a labelled stand-in or the error.

    ``fallback="synthetic"`` calls ``synthetic(seed=seed)`` (with a warning) when the loader raises
    :class:`DatasetNotFoundError`; ``fallback="error"`` re-raises it.  ``info(obj)`` gives the
    :class:`DataInfo` that is printed (default: ``obj.uns["cellbook_data"]``, for AnnData).
    """
    if source not in loaders:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(loaders)}")
    if fallback not in ("synthetic", "error"):
        raise ValueError("fallback must be 'synthetic' or 'error'")
    try:
        obj = loaders[source](path=path)
    except DatasetNotFoundError as err:
        if fallback == "error" or synthetic is None:
            raise
        warnings.warn(f"{err}\nFalling back to a SYNTHETIC stand-in.", stacklevel=3)
        obj = synthetic(seed=seed)
    announce(info(obj) if info else DataInfo(**obj.uns["cellbook_data"]))
    return obj
