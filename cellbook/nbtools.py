"""Small tools for writing and checking the book's notebooks (used by authors and tests).

Source notebooks are written from Python so they stay output-free and reviewable::

    from cellbook.nbtools import md, code, params, write_notebook
    write_notebook("notebooks/part1/01_data.ipynb", [md("# Title"), params("seed = 0"), code("...")])

Tags: ``params`` is tagged ``parameters`` (papermill); ``code(..., hide=True)`` is tagged
``remove-input`` so the book shows only its output (generated prose, provenance box).
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat


def md(source: str):
    return nbformat.v4.new_markdown_cell(source.strip("\n"))


def code(source: str, hide: bool = False, tags: list[str] | None = None):
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    tags = list(tags or []) + (["remove-input"] if hide else [])
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(source: str):
    return code(source, tags=["parameters"])


def write_notebook(path: str | Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Cell ids are derived from position so rewriting a notebook gives a stable diff.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


def hygiene_problems(path: str | Path) -> list[str]:
    """Problems of a source notebook: stored outputs, execution counts, no ``parameters`` cell."""
    nb = json.loads(Path(path).read_text())
    problems = []
    code_cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if any(c.get("outputs") for c in code_cells):
        problems.append("has stored outputs")
    if any(c.get("execution_count") for c in code_cells):
        problems.append("has execution counts")
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.get("cells", [])):
        problems.append("no cell tagged 'parameters'")
    return problems


def error_outputs(path: str | Path) -> list[str]:
    """Error outputs of an executed notebook (``ename: evalue`` per failing cell), and cells that
    papermill did not complete (a run that was killed leaves them ``pending`` or ``running``)."""
    nb = json.loads(Path(path).read_text())
    errs = []
    for i, c in enumerate(nb.get("cells", [])):
        status = c.get("metadata", {}).get("papermill", {}).get("status")
        if c.get("cell_type") == "code" and status not in (None, "completed"):
            errs.append(f"cell {i}: not completed (papermill status {status!r})")
    for i, c in enumerate(nb.get("cells", [])):
        for o in c.get("outputs", []) or []:
            if o.get("output_type") == "error":
                errs.append(f"cell {i}: {o.get('ename')}: {o.get('evalue')}")
    return errs
