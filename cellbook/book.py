"""Assemble and build the HTML book: ``python -m cellbook.book`` (what ``make html`` runs).

1. **Check**: every chapter in ``_toc.yml`` that is a notebook (``notebooks/<part>/<name>``) must
   have an executed copy in ``book/_build/executed/`` with no error output; otherwise stop here
   with the names, instead of producing a silently half-built book.
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

from .nbtools import error_outputs

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def check(root: Path = REPO_ROOT) -> list[str]:
    """Problems that would make a half-built book (empty list: fine)."""
    root = Path(root)
    problems = []
    for name in executed_chapters(root):
        path = executed_path(name, root)
        if not path.exists():
            problems.append(f"{name}: no executed copy at {path} (run `cellbook run {name}`)")
            continue
        problems += [f"{name}: {e}" for e in error_outputs(path)]
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
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / f, site / f)
    shutil.copytree(root / "book", site / "book", ignore=shutil.ignore_patterns("_build"))
    for name in executed_chapters(root):
        dst = site / "notebooks" / f"{name}.ipynb"
        dst.parent.mkdir(parents=True, exist_ok=True)
        nb = json.loads(executed_path(name, root).read_text())
        for cell in nb["cells"]:  # papermill's injected values: folded, one click away
            tags = cell.get("metadata", {}).get("tags", [])
            if "injected-parameters" in tags and "hide-input" not in tags:
                cell["metadata"]["tags"] = tags + ["hide-input"]
        dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
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
