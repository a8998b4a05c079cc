"""Assemble and build the HTML book: ``python -m cellbook.book`` (what ``make html`` runs).

1. **Check**: every chapter in ``_toc.yml`` that is a notebook (``notebooks/<part>/<name>``) must
   have an executed copy in ``book/_build/executed/`` published by ``cellbook run`` in which every
   code cell really ran, with its provenance box, and the results JSON of that same run; and its
   last run must not have failed (see :func:`chapter_problems`). Otherwise stop here with the
   names, instead of producing a silently half-built or inconsistent book.
2. **Stage** ``book/_build/site/``: a tree that mirrors the repository (``_config.yml``,
   ``_toc.yml``, ``book/*.md``) but with the *executed* notebooks at ``notebooks/...``, so page
   URLs and the Colab/Binder launch buttons point at the real source paths.
3. **Build** it with Jupyter Book into ``book/_build/html``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .fsutil import read_json, write_text
from .layout import REPO_ROOT
from .nbtools import error_outputs, has_output_html, raw_outputs, strip_progress_bars
from .project import BRANCH, REPOSITORY_URL

NOTEBOOK_PREFIX = "notebooks/"


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every ``file`` entry of ``_toc.yml`` (root first)."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return out


def executed_chapters(root: Path = REPO_ROOT) -> list[str]:
    """Notebook names (``part1/01_data``) the table of contents lists."""
    return [f[len(NOTEBOOK_PREFIX):] for f in toc_files(root) if f.startswith(NOTEBOOK_PREFIX)]


def executed_path(name: str, root: Path = REPO_ROOT) -> Path:
    return Path(root) / "book" / "_build" / "executed" / f"{name}.ipynb"


def results_path(name: str, root: Path = REPO_ROOT) -> Path:
    return Path(root) / "book" / "_build" / "results" / f"{name}.json"


def failed_path(name: str, root: Path = REPO_ROOT) -> Path:
    """Where ``cellbook run`` keeps the executed copy of a run that failed."""
    return Path(root) / "book" / "_build" / "failed" / f"{name}.ipynb"


PROVENANCE_MARKER = "cellbook-provenance"


def chapter_problems(name: str, root: Path = REPO_ROOT) -> list[str]:
    """Why the executed chapter ``name`` must not be published (empty list: it may be).

    * the last ``cellbook run`` of it failed (a failed copy is waiting in ``book/_build/failed``);
    * no executed copy, or one with a cell that did not really run (see
      :func:`cellbook.nbtools.error_outputs`: execution count, papermill end time, no exception);
    * the copy was not published by ``cellbook run`` (no run stamp in its metadata);
    * no provenance box among its outputs (``rec.save();`` did not run or was removed);
    * its results JSON is missing, corrupt, or from another run than the executed copy.
    """
    root = Path(root)
    problems = []
    failed = failed_path(name, root)
    if failed.exists():
        try:
            error = ((read_json(failed, "failed copy").get("metadata") or {}).get("cellbook") or {}).get("error")
        except ValueError:
            error = None
        problems.append(f"the last `cellbook run {name}` failed ({error or 'see the failed copy'}); fix it and "
                        f"re-run `cellbook run {name}`, or delete {failed} to publish the previous good run")
    path = executed_path(name, root)
    if not path.exists():
        return problems + [f"no executed copy at {path} (run `cellbook run {name}`)"]
    try:
        nb = read_json(path, "executed notebook")
        problems += error_outputs(path)
    except ValueError as err:
        return problems + [f"{err}"]
    stamp = (nb.get("metadata") or {}).get("cellbook") or {}
    if stamp.get("status") != "ok" or not stamp.get("run_id"):
        problems.append(f"{path} was not published by `cellbook run` (no run stamp in its metadata); "
                        f"run `cellbook run {name}`")
    raw = raw_outputs(nb)
    if raw:
        problems.append(f"{path} shows readers raw output ({len(raw)}): " + "; ".join(raw[:6])
                        + (" ..." if len(raw) > 6 else "") + "; fix it at its source and re-run "
                        f"`cellbook run {name}`")
    if not has_output_html(nb, PROVENANCE_MARKER):
        problems.append(f"{path} has no provenance box (the last cell must be `rec.save();` and it must have "
                        f"run); run `cellbook run {name}`")
    res_path = results_path(name, root)
    if not res_path.exists():
        problems.append(f"no results JSON at {res_path} (the notebook must call `rec.save()`); "
                        f"run `cellbook run {name}`")
        return problems
    try:
        res = read_json(res_path, f"results JSON of {name}")
    except ValueError as err:
        return problems + [f"{err}"]
    prov = (res.get("provenance") if isinstance(res, dict) else None) or {}
    if stamp.get("run_id") and prov.get("run_id") != stamp.get("run_id"):
        when = prov.get("saved_utc") or prov.get("started_utc") or "an unknown time"
        older = _older(prov, stamp)
        problems.append(
            f"results JSON {res_path} does not belong to the executed copy: it is from "
            f"{'an older' if older else 'another'} run (run id {prov.get('run_id')}, saved {when}) than the "
            f"executed copy (run id {stamp.get('run_id')}, started {stamp.get('started_utc')}); "
            f"re-run `cellbook run {name}`")
    return problems


def _older(prov: dict, stamp: dict) -> bool:
    """True when the results were saved before the executed copy's run started."""
    import datetime as dt

    try:
        saved = dt.datetime.fromisoformat(prov.get("saved_utc") or prov.get("started_utc"))
        started = dt.datetime.fromisoformat(stamp["started_utc"])
        return saved < started
    except (TypeError, ValueError, KeyError):
        return False


def check(root: Path = REPO_ROOT) -> list[str]:
    """Problems that would make a half-built or inconsistent book (empty list: fine).

    Cell numbers in the messages are those of :func:`cellbook.nbtools.cell_labels` (1-based,
    among all cells of the source notebook), the same as ``cellbook run``'s.
    """
    root = Path(root)
    problems = []
    for name in executed_chapters(root):
        problems += [f"{name}: {p}" for p in chapter_problems(name, root)]
    for f in toc_files(root):
        if f.startswith(NOTEBOOK_PREFIX):
            continue
        if not any((root / f"{f}{ext}").exists() for ext in ("", ".md", ".ipynb")):
            problems.append(f"_toc.yml lists {f}, which does not exist")
    return problems


def stage(root: Path = REPO_ROOT) -> Path:
    """Copy the book's pages and the executed notebooks into ``book/_build/site``."""
    root = Path(root)
    site = root / "book" / "_build" / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    shutil.copy2(root / "_toc.yml", site / "_toc.yml")
    # the repository address of every button comes from the one place it is set
    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("repository", {}).update(url=REPOSITORY_URL, branch=BRANCH)
    write_text(site / "_config.yml", yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(root / "book", site / "book", ignore=shutil.ignore_patterns("_build", "_static"))
    # pages include the README's set-up commands (one place for them): ``{include} ../README.md``
    shutil.copy2(root / "README.md", site / "README.md")
    if (root / "book" / "_static").is_dir():   # Jupyter Book adds every CSS file of <site>/_static to each page
        shutil.copytree(root / "book" / "_static", site / "_static")
    for name in executed_chapters(root):
        dst = site / "notebooks" / f"{name}.ipynb"
        dst.parent.mkdir(parents=True, exist_ok=True)
        nb = strip_progress_bars(read_json(executed_path(name, root), "executed notebook"))
        for cell in nb["cells"]:  # papermill's injected values: folded, one click away
            tags = cell.get("metadata", {}).get("tags", [])
            if "injected-parameters" in tags and "hide-input" not in tags:
                cell["metadata"]["tags"] = tags + ["hide-input"]
        write_text(dst, json.dumps(nb, indent=1, ensure_ascii=False))
    return site


def build(root: Path = REPO_ROOT) -> int:
    root = Path(root)
    problems = check(root)
    if problems:
        print("cellbook: the book cannot be built:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    site = stage(root)
    print(f"cellbook: {len(executed_chapters(root))} executed chapters staged in {site}")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(site), "--path-output", str(root / "book"),
           "--keep-going"]
    res = subprocess.run(cmd)
    index = root / "book" / "_build" / "html" / "index.html"
    if res.returncode != 0 or not index.exists():
        print(f"cellbook: jupyter-book build failed (exit {res.returncode})", file=sys.stderr)
        return res.returncode or 1
    print(f"cellbook: book at {index}")
    return 0


def main() -> int:
    return build()


if __name__ == "__main__":
    sys.exit(main())
