"""Results JSON and provenance for each executed notebook.

    rec = cellbook.results.Recorder(profile=profile, device=device, seed=seed)  # starts the clock
    rec.data(info)                       # a DataInfo from cellbook.datasets (name, source, sha256, real)
    rec["accuracy"] = 0.91               # a key figure (numbers, strings, small lists)
    rec.table("table1", df)              # a small table
    rec.save()                           # book/_build/results/<part>/<name>.json + provenance box

Figures in prose are read back from the recorder (``rec["accuracy"]``) or, on another
page, with :func:`load`, so every number in the book comes from the run that built it.
"""
from __future__ import annotations

import datetime as _dt
import html
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .config import resolve_device
from .fsutil import read_json, write_json
from .layout import REPO_ROOT, build_dir

VERSION_PACKAGES = ("cellbook", "torch", "numpy", "scipy", "scikit-learn", "pandas", "anndata", "scanpy",
                    "umap-learn", "opencv-python-headless", "papermill")


def results_dir() -> Path:
    """Where the published results JSON files are: ``$CELLBOOK_RESULTS`` or ``book/_build/results``."""
    return Path(os.environ.get("CELLBOOK_RESULTS", build_dir() / "results"))


def save_dir() -> Path:
    """Where :meth:`Recorder.save` writes: ``$CELLBOOK_RESULTS_STAGING`` while ``cellbook run``
    executes a notebook (the runner moves the file into :func:`results_dir` only when the whole
    notebook succeeded, together with its executed copy), else :func:`results_dir`."""
    staging = os.environ.get("CELLBOOK_RESULTS_STAGING")
    return Path(staging) if staging else results_dir()


def git_commit(root: Path = REPO_ROOT) -> str:
    """The checkout's commit (``+dirty`` when tracked files differ), or ``"unknown"``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("+dirty" if sha and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in VERSION_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if not np.isfinite(v) else v
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, _dt.datetime)):
        return value.isoformat()
    return value


class Recorder:
    """Collects a notebook's key figures, tables and provenance, and writes them as JSON."""

    def __init__(self, name: str | None = None, *, profile: str = "quick", device: str = "auto",
                 seed: int | None = None, parameters: dict | None = None):
        self.name = name or os.environ.get("CELLBOOK_NOTEBOOK") or "interactive"
        self.figures: dict = {}
        self.tables: dict = {}
        self.datasets: list[dict] = []
        self.profile, self.device, self.seed = profile, device, seed
        self.parameters = dict(parameters or {})
        self._t0 = time.perf_counter()
        self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # figures ---------------------------------------------------------------
    def __setitem__(self, key: str, value):
        self.figures[key] = _jsonable(value)

    def __getitem__(self, key: str):
        return self.figures[key]

    def __contains__(self, key: str) -> bool:
        return key in self.figures

    def update(self, mapping: dict, prefix: str = ""):
        for k, v in mapping.items():
            self[f"{prefix}{k}"] = v

    def table(self, key: str, df: pd.DataFrame, index: bool = True):
        """Store a small table (records orientation)."""
        frame = df.reset_index() if index and df.index.name is not None else df
        self.tables[key] = _jsonable(frame.to_dict(orient="records"))

    def headline(self, metric: str, ours, paper=None, note: str = "", part: str | None = None):
        """A row for the book's results-summary page: our figure beside the paper's."""
        self.figures.setdefault("headline", [])
        self.figures["headline"] = [h for h in self.figures["headline"] if h["metric"] != metric] + [
            _jsonable({"metric": metric, "ours": ours, "paper": paper, "note": note,
                       "part": part or self.name.split("/")[0]})]

    def data(self, info) -> None:
        """Record a dataset's provenance (a :class:`cellbook.datasets.DataInfo` or dict)."""
        entry = info.to_dict() if hasattr(info, "to_dict") else dict(info)
        self.datasets = [d for d in self.datasets if d.get("name") != entry.get("name")] + [entry]

    @property
    def synthetic(self) -> bool:
        """True when any dataset this notebook recorded is a synthetic stand-in."""
        return any(not d.get("real", True) for d in self.datasets)

    def takeaways(self, text: str):
        """The chapter's take-aways as Markdown; headed by a SYNTHETIC warning when the data was."""
        from IPython.display import Markdown

        return Markdown((SYNTHETIC_BANNER + "\n\n" if self.synthetic else "") + text)

    # output ----------------------------------------------------------------
    def provenance(self) -> dict:
        device = self.device
        if str(device).lower() != "cpu":  # "cpu" needs no torch import
            try:
                device = resolve_device(self.device)
            except ValueError:
                pass
        return {
            "commit": git_commit(),
            "data": self.datasets,
            "profile": self.profile,
            "device": device,
            "seed": self.seed,
            "parameters": _jsonable(self.parameters),
            "wall_s": round(time.perf_counter() - self._t0, 1),
            "started_utc": self.started,
            "saved_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            # the `cellbook run` that executed the notebook; its executed copy carries the same id
            "run_id": os.environ.get("CELLBOOK_RUN_ID"),
            "versions": versions(),
        }

    def to_dict(self) -> dict:
        figures = dict(self.figures)
        if self.synthetic and figures.get("headline"):  # every headline row says what its number is about
            stand_in = "SYNTHETIC stand-in data, not real cells"
            figures["headline"] = [{**h, "metric": h["metric"] + SYNTHETIC_TAG, "synthetic": True,
                                    "note": stand_in + (f"; {h['note']}" if h.get("note") else "")}
                                   for h in figures["headline"]]
        return {"notebook": self.name, "figures": figures, "tables": self.tables,
                "provenance": {**self.provenance(), "synthetic": self.synthetic}}

    def save(self, display: bool = True) -> Path:
        """Write ``<save_dir>/<name>.json`` atomically; show the provenance box in the notebook."""
        payload = self.to_dict()
        path = write_json(save_dir() / f"{self.name}.json", payload, indent=2, default=str)
        if display:
            try:
                from IPython.display import HTML
                from IPython.display import display as _display
                _display(HTML(provenance_html(payload)))
            except ImportError:  # pragma: no cover
                pass
        return path


SYNTHETIC_TAG = " [SYNTHETIC data]"
SYNTHETIC_BANNER = ("> **SYNTHETIC stand-in data.** This run used labelled synthetic data "
                    "(`fallback='synthetic'`), not real cells: none of the numbers below is about biology.")


def provenance_html(payload: dict) -> str:
    """The provenance box shown at the end of every executed page."""
    prov = payload["provenance"]
    synthetic = any(not d.get("real", True) for d in prov.get("data") or [])
    banner = ('<strong style="color:#b00">SYNTHETIC stand-in data: these numbers are not about real cells.'
              '</strong><br>') if synthetic else ""
    rows = []
    for d in prov.get("data") or []:
        real = "real data" if d.get("real") else "SYNTHETIC stand-in"
        sha = (d.get("sha256") or "")[:16]
        rows.append(f"{html.escape(str(d.get('name')))} ({real}; {html.escape(str(d.get('source') or ''))}"
                    f"{'; sha256 ' + sha + '…' if sha else ''})")
    data = "<br>".join(rows) or "none"
    v = prov.get("versions", {})
    vers = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "scanpy", "scikit-learn") if k in v)
    return (
        '<div class="cellbook-provenance" style="border:1px solid #888;border-radius:6px;padding:0.6em 1em;'
        'margin:1em 0;font-size:0.85em;background:rgba(127,127,127,0.08)">'
        f"{banner}<strong>Provenance</strong> of <code>{html.escape(payload['notebook'])}</code><br>"
        f"commit <code>{html.escape(str(prov['commit']))}</code>"
        f" · profile <code>{html.escape(str(prov['profile']))}</code>"
        f" · device <code>{html.escape(str(prov['device']))}</code> · seed <code>{prov.get('seed')}</code>"
        f" · wall time {prov['wall_s']} s · run {html.escape(prov['started_utc'])}<br>"
        f"data: {data}<br>versions: {html.escape(vers)}</div>"
    )


def load(name: str, directory: Path | None = None) -> dict:
    """Read another notebook's results JSON (e.g. ``load("part1/03_results")``)."""
    path = Path(directory or results_dir()) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no results for {name!r} at {path}; run `cellbook run {name}` first")
    return read_json(path, f"results JSON of {name}")


def load_all(directory: Path | None = None) -> dict:
    """Every results JSON under the results directory, keyed by notebook name."""
    base = Path(directory or results_dir())
    out = {}
    for p in sorted(base.glob("**/*.json")):
        if p.name.startswith("_") or any(part.startswith(".") for part in p.relative_to(base).parts):
            continue  # _run.json and the like; hidden: temporary files of an atomic write
        name = str(p.relative_to(base).with_suffix("")).replace(os.sep, "/")
        out[name] = read_json(p, f"results JSON of {name}")
    return out
