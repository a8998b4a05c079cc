"""Part III's pages: the notebooks' visible code (short cells, no function definitions, no unused imports,
tables through the book's renderer), the one-call opening, and the claims at the end of the part."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PART3 = sorted((REPO / "notebooks" / "part3").glob("*.ipynb"))
HIDDEN = {"remove-input", "remove-cell", "hide-input"}


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _source(cell):
    return "".join(cell["source"])


def _tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def test_seven_chapters():
    assert [p.stem[:2] for p in PART3] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", PART3, ids=lambda p: p.stem)
def test_visible_code_is_short_and_narrow(path):
    for i, c in enumerate(_cells(path)):
        if c["cell_type"] != "code" or _tags(c) & HIDDEN:
            continue
        lines = _source(c).splitlines()
        assert len(lines) <= 15, f"{path.name} cell {i}: {len(lines)} visible lines"
        assert max(map(len, lines)) <= 88, f"{path.name} cell {i}: a line over 88 characters"
        assert "rec[" not in _source(c) and "rec.headline" not in _source(c), \
            f"{path.name} cell {i}: recording belongs in a hide-input cell"


@pytest.mark.parametrize("path", PART3, ids=lambda p: p.stem)
def test_parameters_are_one_click_away_and_the_chapter_opens_with_one_call(path):
    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    params = next(c for c in cells if "parameters" in _tags(c))
    assert "hide-input" in _tags(params)
    first = next(c for c in cells if not _tags(c) & {"parameters", "cellbook-setup"})
    src = _source(first)
    assert 'ch = cb.open_chapter(globals(), data="bulk")' in src
    assert "rec, dev, X_all, y_all, PRE = ch.rec, ch.device, ch.X, ch.y, ch.settings" in src
    assert len(src.splitlines()) <= 8, f"{path.name}: the opening cell has {len(src.splitlines())} lines"


@pytest.mark.parametrize("path", PART3, ids=lambda p: p.stem)
def test_no_function_definitions_raw_tables_unused_imports_or_odd_aliases(path):
    cells = [c for c in _cells(path) if c["cell_type"] == "code" and "cellbook-setup" not in _tags(c)]
    code = "\n".join(_source(c) for c in cells)
    tree = ast.parse(code)
    defs = [getattr(n, "name", "lambda") for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))]
    assert not defs, f"{path.name} defines {defs}"
    assert not re.search(r"\.style\b|\.round\(\d\)\s*$|\.to_html\(", code, re.M), \
        f"{path.name}: a raw or rounded table"
    raw = re.search(r"\bdisplay\((?!\s*(report\.|Markdown\())", code)
    assert not raw, f"{path.name}: displays a raw object ({code[raw.start():raw.start() + 60]!r})"
    odd = re.findall(r"\bas (pp|sp|aem_|ae)\b", code)
    assert not odd, f"{path.name} imports with the aliases {odd}"
    # unused imports: tests/test_pages.py checks every notebook


@pytest.mark.parametrize("path", PART3, ids=lambda p: p.stem)
def test_no_internal_references_or_block_quotes_in_prose(path):
    for i, c in enumerate(_cells(path)):
        if c["cell_type"] != "markdown":
            continue
        src = _source(c)
        assert "REFERENCE" not in src, f"{path.name} cell {i}: an internal reference reaches the reader"
        quoted = [line for line in src.splitlines() if line.lstrip().startswith(">")]
        assert not quoted, f"{path.name} cell {i}: a line starts with '>' and becomes a block quote: {quoted}"


def test_last_chapter_ends_with_the_claims():
    cells = _cells(PART3[-1])
    sources = [_source(c) for c in cells]
    assert sources[-3] == "## The paper's claims, checked"
    assert sources[-2].strip() == 'cb.claims.part_table("part3", rec)'
    assert "remove-input" in _tags(cells[-2]) and sources[-1].strip() == "rec.save();"
