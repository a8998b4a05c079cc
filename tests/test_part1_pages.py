"""Part I's chapters as a reader meets them: visible code shows the method only, tables go through the
book's renderer, no helper is defined in a notebook, no internal reference reaches the prose."""
import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "notebooks" / "part1").glob("*.ipynb"))
HIDDEN = {"hide-input", "remove-input", "remove-cell"}


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_code_is_short(path):
    for i, c in enumerate(_cells(path), 1):
        if c["cell_type"] != "code" or _tags(c) & HIDDEN:
            continue
        lines = _src(c).strip("\n").splitlines()
        assert len(lines) <= 15, f"{path.stem} cell {i}: {len(lines)} visible lines (at most 15)"
        wide = [ln for ln in lines if len(ln) > 88]
        assert not wide, f"{path.stem} cell {i}: lines over 88 characters: {wide}"
        assert not re.search(r"rec\[[^\]]+\]\s*=[^=]|rec\.(update|table)\(", _src(c)), \
            f"{path.stem} cell {i}: recording belongs in a hide-input cell or the package"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_helpers_raw_tables_or_internal_references(path):
    for i, c in enumerate(_cells(path), 1):
        src = _src(c)
        if c["cell_type"] == "markdown":
            assert "REFERENCE" not in src, f"{path.stem} cell {i}: an internal reference in the prose"
            assert not re.search(r"seed[- ]`seed`", src), f"{path.stem} cell {i}: 'seed seed' in the prose"
            continue
        if "cellbook-setup" in _tags(c):
            continue
        tree = ast.parse(src.replace("display(", "print("))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda, ast.ClassDef))]
        assert not defs, f"{path.stem} cell {i}: defines a function (move it into cellbook.comparison)"
        assert ".style" not in src and ".round(4)\n" not in src and not src.rstrip().endswith(".round(3)"), \
            f"{path.stem} cell {i}: a table shown without cellbook.report.table"
        assert "import cellbook.plots.scrna as" not in src and "splits as cbs" not in src


def test_the_last_chapter_ends_with_the_claims():
    cells = _cells(REPO / "notebooks" / "part1" / "06_annotate_conclusion.ipynb")
    assert _src(cells[-1]).strip() == "rec.save();"
    assert _src(cells[-2]).strip() == 'cb.claims.part_table("part1", rec)' and "remove-input" in _tags(cells[-2])
    assert _src(cells[-3]).strip() == "## The paper's claims, checked"
