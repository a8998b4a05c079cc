"""Execute the book's notebooks with papermill: ``cellbook run`` / ``python -m cellbook.run``.

    cellbook run all --profile quick            # every notebook, CPU settings
    cellbook run part1/01_data -p n_top_genes=500
    cellbook run all --profile full --device cuda
    cellbook list                               # notebooks and their parameters

Source notebooks (``notebooks/``) are never written to: executed copies go to
``book/_build/executed/<part>/<name>.ipynb`` and each notebook's results JSON to
``book/_build/results/<part>/<name>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from .config import profile_names, profile_parameters

REPO_ROOT = Path(__file__).resolve().parents[1]
# Parameters the runner passes itself; every notebook's parameters cell has them.
RUNNER_PARAMETERS = ("profile", "device")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the failing cell."""


def notebook_dir(root: Path = REPO_ROOT) -> Path:
    return Path(root) / "notebooks"


def build_dir(root: Path = REPO_ROOT) -> Path:
    return Path(root) / "book" / "_build"


def list_notebooks(root: Path = REPO_ROOT) -> list[str]:
    """Notebook names (``part1/01_data``) in book order."""
    base = notebook_dir(root)
    return sorted(
        str(p.relative_to(base).with_suffix("")).replace(os.sep, "/")
        for p in base.glob("**/*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    )


def notebook_parameters(name: str, root: Path = REPO_ROOT) -> dict:
    """The parameters cell of a notebook: ``{name: default}``."""
    import papermill as pm

    path = notebook_dir(root) / f"{name}.ipynb"
    info = pm.inspect_notebook(str(path))
    return {k: v.get("default") for k, v in info.items()}


def parse_overrides(items: list[str] | None) -> dict:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": 0.001}`` (YAML-typed values)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"override {item!r}: {key!r} is not a parameter name")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key] = parsed
    return out


def resolve_names(requested: list[str], root: Path = REPO_ROOT) -> list[str]:
    """Expand ``all`` and part prefixes (``part1``) to notebook names; unknown names are an error."""
    available = list_notebooks(root)
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


def plan(name: str, profile: str, device: str, overrides: dict, root: Path = REPO_ROOT) -> dict:
    """The parameters ``name`` will run with; unknown parameter names are an error."""
    valid = notebook_parameters(name, root)
    params = {k: v for k, v in profile_parameters(profile, name).items()}
    params.update({"profile": profile, "device": device})
    missing_runner = [p for p in RUNNER_PARAMETERS if p not in valid]
    if missing_runner:
        raise ValueError(f"{name}: the parameters cell must define {', '.join(missing_runner)}")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"{name}: profile {profile!r} sets unknown parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    unknown = sorted(set(overrides) - set(valid))
    if unknown and overrides:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    params.update(overrides)
    return params


def _first_line(path: Path, index: int) -> str:
    try:
        cells = [c for c in json.loads(Path(path).read_text())["cells"]
                 if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        cell = cells[index]
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        return next((ln.strip() for ln in src.splitlines() if ln.strip()), "")[:80]
    except (OSError, ValueError, KeyError, IndexError):
        return "?"


def run_notebook(name: str, profile: str = "quick", device: str = "auto", overrides: dict | None = None,
                 root: Path = REPO_ROOT, out_dir: Path | None = None, progress: bool = True) -> Path:
    """Execute one notebook; returns the executed copy's path.

    Raises :class:`NotebookFailed` (notebook name, cell number, error) if a cell raises.
    """
    import papermill as pm

    root = Path(root)
    params = plan(name, profile, device, overrides or {}, root)
    out_dir = Path(out_dir) if out_dir else build_dir(root)
    src = notebook_dir(root) / f"{name}.ipynb"
    dst = out_dir / "executed" / f"{name}.ipynb"
    dst.parent.mkdir(parents=True, exist_ok=True)
    env_before = {k: os.environ.get(k) for k in ("CELLBOOK_NOTEBOOK", "CELLBOOK_RESULTS", "CELLBOOK_PROGRESS")}
    os.environ["CELLBOOK_NOTEBOOK"] = name
    os.environ["CELLBOOK_PROGRESS"] = "0"  # progress bars are for interactive use, not the published page
    # The kernel must be this environment's Python (with cellbook), even if the user has their own
    # "python3" kernelspec in ~/.local: JUPYTER_PATH is searched first.
    own = str(Path(sys.prefix) / "share" / "jupyter")
    if own not in os.environ.get("JUPYTER_PATH", "").split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (own, os.environ.get("JUPYTER_PATH")) if p)
    os.environ["CELLBOOK_RESULTS"] = str(out_dir / "results")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(src), str(dst), parameters=params, cwd=str(src.parent),
            kernel_name="python3", progress_bar=progress, log_output=False,
        )
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(
            f"notebook {name} failed in cell {err.cell_index} of the executed copy "
            f"(execution count {err.exec_count}, starting `{_first_line(dst, err.cell_index)}`): "
            f"{err.ename}: {err.evalue}\n  executed copy with the traceback: {dst}"
        ) from None
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(f"[cellbook] {name}: {time.perf_counter() - t0:.1f} s -> {dst.relative_to(root) if dst.is_relative_to(root) else dst}",
          flush=True)
    return dst


def run_many(names: list[str], profile: str, device: str, overrides: dict,
             root: Path = REPO_ROOT, out_dir: Path | None = None) -> dict:
    """Run notebooks in order; stops at the first failure. Returns ``{name: seconds}``."""
    # Validate every plan before spending minutes on the first notebook.
    for name in names:
        plan(name, profile, device, {k: v for k, v in overrides.items()
                                     if k in notebook_parameters(name, root)}, root)
    times = {}
    for name in names:
        own = {k: v for k, v in overrides.items() if k in notebook_parameters(name, root)}
        t0 = time.perf_counter()
        run_notebook(name, profile, device, own, root, out_dir)
        times[name] = round(time.perf_counter() - t0, 1)
    out = (Path(out_dir) if out_dir else build_dir(root)) / "results" / "_run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update({"profile": profile, "device": device})
    previous.setdefault("seconds", {}).update(times)
    out.write_text(json.dumps(previous, indent=2))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellbook", description="Run the cellbook notebooks with papermill.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks into book/_build/executed")
    p_run.add_argument("notebooks", nargs="*", default=["all"],
                       help="'all', a part ('part1') or notebook names ('part1/01_data')")
    p_run.add_argument("--profile", default="quick", help=f"parameter profile ({', '.join(profile_names())})")
    p_run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p_run.add_argument("-p", "--parameter", action="append", metavar="KEY=VALUE",
                       help="override a parameter (repeatable); applied to the notebooks that have it")
    p_run.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this checkout)")
    sub.add_parser("list", help="list notebooks and their parameters")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for name in list_notebooks():
                print(f"{name}: {notebook_parameters(name)}")
            return 0
        if args.profile not in profile_names():
            raise ValueError(f"unknown profile {args.profile!r}; valid profiles: {', '.join(profile_names())}")
        root = Path(args.root)
        names = resolve_names(args.notebooks, root)
        overrides = parse_overrides(args.parameter)
        if overrides:
            known = set().union(*(notebook_parameters(n, root) for n in names))
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for the notebooks asked for; "
                                 f"valid: {', '.join(sorted(known))}")
        t0 = time.perf_counter()
        run_many(names, args.profile, args.device, overrides, root)
        print(f"[cellbook] {len(names)} notebook(s), profile {args.profile}: {time.perf_counter() - t0:.1f} s", flush=True)
    except (ValueError, NotebookFailed, FileNotFoundError) as err:
        print(f"cellbook: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
