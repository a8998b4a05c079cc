"""The project's layout: where things are, which notebooks exist, and the run record.

A leaf module: it imports no other part of cellbook except :mod:`cellbook.fsutil`, so the data,
model and page layers can ask for paths and notebook names without importing the runner or the
command line.

    REPO_ROOT / notebook_dir() / build_dir()       # this checkout, notebooks/, book/_build/
    list_notebooks(); resolve_names(["part1"])     # notebook names in book order
    notebook_parameters("part1/01_data")           # the parameters cell
    notebook_datasets(path); book_datasets()       # datasets the setup cells name
    read_run_record(out); record_run(out, name, entry)   # book/_build/results/_run.json
"""
from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import json
import os
from pathlib import Path

from .fsutil import read_json, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_RECORD = "_run.json"
STAGING = ".staging"
SETUP_TAG = "cellbook-setup"


# ------------------------------------------------------------------------------------------ paths

def notebook_dir(root: Path = REPO_ROOT) -> Path:
    """The source notebooks: ``<root>/notebooks``."""
    return Path(root) / "notebooks"


def build_dir(root: Path = REPO_ROOT) -> Path:
    """The build folder: ``<root>/book/_build``."""
    return Path(root) / "book" / "_build"


def failed_copy_path(name: str, out_dir: Path) -> Path:
    """Where the executed copy of a failed run is kept for debugging (never the published path)."""
    return Path(out_dir) / "failed" / f"{name}.ipynb"


def run_record_path(out_dir: Path) -> Path:
    """``<out_dir>/results/_run.json``."""
    return Path(out_dir) / "results" / RUN_RECORD


# -------------------------------------------------------------------------------------- notebooks

def list_notebooks(root: Path = REPO_ROOT) -> list[str]:
    """Notebook names (``part1/01_data``) in book order."""
    base = notebook_dir(root)
    return sorted(
        str(p.relative_to(base).with_suffix("")).replace(os.sep, "/")
        for p in base.glob("**/*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    )


def resolve_names(requested: list[str], root: Path = REPO_ROOT) -> list[str]:
    """Expand ``all`` and part prefixes (``part1``) to notebook names; unknown names are an error."""
    base = notebook_dir(root)
    hint = "--root must be the repository root (the folder that holds notebooks/ and _toc.yml)"
    if not base.is_dir():
        raise FileNotFoundError(f"no notebooks at {root}: {base} does not exist; {hint}")
    available = list_notebooks(root)
    if not available:
        raise FileNotFoundError(f"no notebooks at {root}: {base} holds no .ipynb files; {hint}")
    if not requested or requested == ["all"]:
        return available
    names = []
    for req in requested:
        req = req.removesuffix(".ipynb").removeprefix("notebooks/")
        if req in available:
            names.append(req)
            continue
        matched = [n for n in available if n.startswith(req.rstrip("/") + "/")]
        if not matched:
            raise ValueError(f"unknown notebook {req!r}; valid: all, {', '.join(available)}")
        names.extend(matched)
    return list(dict.fromkeys(names))


def chains(names: list[str]) -> tuple[list[list[str]], list[str]]:
    """Independent chains of notebooks: each part's chapters in order (a chapter may read an earlier
    chapter's results), and the pages that read every part (the summary), which run last."""
    parts: dict[str, list[str]] = {}
    last = []
    for name in names:
        if name.startswith("summary/"):
            last.append(name)
        else:
            parts.setdefault(name.split("/", 1)[0], []).append(name)
    return list(parts.values()), last


def _cell_source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@functools.lru_cache(maxsize=256)
def _parameters(path: str, mtime_ns: int) -> dict:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cell = next((c for c in nb.get("cells", []) if c.get("cell_type") == "code"
                 and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    src = _cell_source(cell)
    out = {}
    for node in ast.parse(src).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if (
            isinstance(node, ast.AnnAssign) and node.value is not None) else []
        for target in targets:
            if isinstance(target, ast.Name):
                # the value's source, its lines stripped and joined (papermill's inspect_notebook)
                out[target.id] = "".join(line.strip() for line in
                                         ast.get_source_segment(src, node.value).splitlines())
    return out


def notebook_parameters(name: str, root: Path = REPO_ROOT) -> dict:
    """The parameters cell of a notebook: ``{name: default}`` (the default as source text).

    Read with :mod:`ast`, without papermill, so that ``cellbook list`` starts fast; a test checks that
    it agrees with ``papermill.inspect_notebook`` on every notebook.
    """
    path = notebook_dir(root) / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no notebook {name!r}: {path} does not exist")
    return dict(_parameters(str(path), path.stat().st_mtime_ns))


def notebook_datasets(path: str | os.PathLike) -> list[str]:
    """The datasets a chapter needs: the string arguments of ``ensure(...)`` in its setup cell.

    The setup cell (tagged ``cellbook-setup``) is the one place a chapter names its data; the
    runner fetches these before executing the chapter, and the cell itself fetches them when the
    chapter is opened elsewhere (Colab, Binder).
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    names: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or SETUP_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        lines = [ln for ln in _cell_source(cell).splitlines() if not ln.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "ensure":
                names += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return list(dict.fromkeys(names))


def book_datasets(root: Path | None = None) -> list[str]:
    """Every dataset named in a setup cell of the book's notebooks."""
    root = Path(root or REPO_ROOT)
    names: list[str] = []
    for nb in list_notebooks(root):
        names += notebook_datasets(notebook_dir(root) / f"{nb}.ipynb")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------ the run record

def read_run_record(out_dir: Path) -> dict:
    """``_run.json`` of ``out_dir`` (``{}`` when absent); a corrupt one is a ``ValueError`` naming it."""
    return read_run_file(run_record_path(out_dir))


def read_run_file(path: Path) -> dict:
    """A ``_run.json`` file (``{}`` when absent); a corrupt one is a ``ValueError`` naming it."""
    path = Path(path)
    if not path.exists():
        return {}
    record = read_json(path, "run record")
    if not isinstance(record, dict):
        raise ValueError(f"run record {path} holds a {type(record).__name__}, not an object; delete it and "
                         f"re-run `cellbook run`")
    return record


@contextlib.contextmanager
def run_record_lock(out_dir: Path):
    """One writer of ``_run.json`` at a time, across processes (``cellbook run --jobs`` runs parts at once)."""
    path = Path(out_dir) / ".run.lock"      # beside results/, whose every file is published
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_run(out_dir: Path, name: str, entry: dict) -> None:
    """Add one finished notebook to ``_run.json`` (atomic write, under a lock)."""
    with run_record_lock(out_dir):
        record = read_run_record(out_dir)
        record["profile"] = entry["profile"]          # last run's, for readers of the old format
        record["device"] = entry["device"]
        record.setdefault("seconds", {})[name] = entry["seconds"]
        record.setdefault("notebooks", {})[name] = entry
        # every (profile, device) kept apart, so quick-on-CPU and full-on-GPU times stand side by side
        record.setdefault("by_setting", {}).setdefault(setting_label(entry), {})[name] = entry
        write_json(run_record_path(out_dir), record)


def setting_label(entry: dict) -> str:
    """``"quick on cpu"``, ``"full on cuda (NVIDIA H200)"``: how a run record entry was run."""
    gpu = entry.get("gpu")
    return f"{entry.get('profile')} on {entry.get('device')}" + (f" ({gpu})" if gpu else "")
