"""Checks before the HTML build: ``python -m cellbook.book``.

Every chapter in ``_toc.yml`` that points at an executed notebook must exist and carry
no error output; otherwise the build stops here with the names, instead of producing a
silently half-built book.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .nbtools import error_outputs

REPO_ROOT = Path(__file__).resolve().parents[1]


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    toc = yaml.safe_load((root / "_toc.yml").read_text())
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
    """Notebook names (``part1/01_data``) the table of contents expects executed copies of."""
    prefix = "book/_build/executed/"
    return [f[len(prefix):] for f in toc_files(root) if f.startswith(prefix)]


def check(root: Path = REPO_ROOT) -> list[str]:
    problems = []
    for name in executed_chapters(root):
        path = root / "book" / "_build" / "executed" / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{name}: no executed copy at {path} (run `cellbook run {name}`)")
            continue
        problems += [f"{name}: {e}" for e in error_outputs(path)]
    for f in toc_files(root):
        if f.startswith("book/_build/"):
            continue
        if not any((root / f"{f}{ext}").exists() for ext in ("", ".md", ".ipynb")):
            problems.append(f"_toc.yml lists {f}, which does not exist")
    return problems


def main() -> int:
    problems = check()
    if problems:
        print("cellbook: the book cannot be built:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"cellbook: {len(executed_chapters())} executed chapters present, none with errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
