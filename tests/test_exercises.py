"""The exercise solutions' expected numbers (``book/exercises_part*.md``).

Each solution ends with a table of what a correct ``quick`` run gives::

    | number | results JSON, key | default settings | this exercise |
    |---|---|---|---|
    | CNN test accuracy | `part1/02_models` `cnn_accuracy` | 0.60–0.68 | 0.40–0.55 |

The key may be followed by ``mean`` or ``SD`` (a ``[mean, SD]`` pair), or ``[i]`` (an element of a
list); a dotted key reaches into a mapping (``raw_mean_v_by_class.P2``). A range is ``low–high``
(en dash), one number (that value, to its last decimal), or ``–`` (not applicable).

* ``test_default_ranges_hold_the_built_book`` (fast): the *default settings* column contains the
  numbers of the built book (``book/_build/results``, built with the ``quick`` profile on real
  data); skipped when the book has not been built.
* ``test_exercise_run_falls_in_its_range`` (slow, marked ``notebook``, and only with
  ``CELLBOOK_EXERCISES=1``): re-runs each exercise's command with ``--out`` into a temporary folder
  and checks that its numbers fall inside the *this exercise* column.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cellbook import layout

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "book").glob("exercises_part*.md"))
RESULTS = REPO / "book" / "_build" / "results"
EXERCISE_OUT = "book/_build/exercises"

ROW = re.compile(r"^\|\s*(?P<label>[^|]+?)\s*\|\s*`(?P<nb>(?:part\d|summary)/\w+)`\s*`(?P<key>[^`]+)`\s*"
                 r"(?P<sel>mean|SD|\[\d+\])?\s*\|\s*(?P<default>[^|]*?)\s*\|\s*(?P<exercise>[^|]*?)\s*\|\s*$")
NUMBER = r"-?\d+(?:\.\d+)?"
RANGE = re.compile(rf"^(?P<low>{NUMBER})\s*–\s*(?P<high>{NUMBER})$")
EXACT = re.compile(rf"^(?P<value>{NUMBER})$")


@dataclass
class Row:
    page: str
    exercise: str          # the section heading, e.g. "2. How much of a ..."
    line: int
    label: str
    notebook: str
    key: str
    selector: str | None
    default: tuple[float, float] | None
    this: tuple[float, float] | None

    def where(self) -> str:
        sel = f" {self.selector}" if self.selector else ""
        return f"{self.page}:{self.line} ({self.exercise}): {self.label} [{self.notebook} {self.key}{sel}]"


def parse_range(cell: str) -> tuple[float, float] | None:
    """``"0.60–0.68"`` -> (0.60, 0.68); ``"12"`` -> (12 - 0.5, 12 + 0.5); ``"–"`` -> None."""
    cell = cell.strip().replace(",", "")
    if cell in ("", "–", "-"):
        return None
    m = RANGE.match(cell)
    if m:
        low, high = float(m["low"]), float(m["high"])
        if low > high:
            raise ValueError(f"range {cell!r} runs backwards")
        return low, high
    m = EXACT.match(cell)
    if m:
        decimals = len(m["value"].split(".")[1]) if "." in m["value"] else 0
        half = 0.5 * 10 ** -decimals
        return float(m["value"]) - half, float(m["value"]) + half
    raise ValueError(f"{cell!r} is not a range (write low–high with an en dash, one number, or –)")


def sections(text: str) -> list[tuple[str, int, str]]:
    """``(heading, first line, body)`` of every ``## N. ...`` exercise."""
    out, current, start, body = [], None, 0, []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            if current:
                out.append((current, start, "\n".join(body)))
            current, start, body = line[3:].strip(), n, []
        elif current:
            body.append(line)
    if current:
        out.append((current, start, "\n".join(body)))
    return out


def exercise_commands(body: str) -> list[list[str]]:
    """The ``cellbook run`` commands of an exercise, as argument lists (after ``run``)."""
    text = body.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(?:\.venv/bin/)?cellbook run (.*)$", line)
        if m:
            out.append(shlex.split(m.group(1), comments=True))
    return out


def rows(page: Path) -> list[Row]:
    out = []
    for heading, start, body in sections(page.read_text()):
        for k, line in enumerate(body.splitlines(), start + 1):
            m = ROW.match(line)
            if m:
                out.append(Row(f"book/{page.name}", heading, k, m["label"], m["nb"], m["key"], m["sel"],
                               parse_range(m["default"]), parse_range(m["exercise"])))
    return out


def value(results: dict, row: Row):
    figures = results["figures"]
    if row.key in figures:
        v = figures[row.key]
    else:
        v = figures
        for part in row.key.split("."):
            if not isinstance(v, dict) or part not in v:
                raise KeyError(f"{row.where()}: no key {row.key!r} in the results of {row.notebook}")
            v = v[part]
    if row.selector:
        index = {"mean": 0, "SD": 1}.get(row.selector)
        index = int(row.selector.strip("[]")) if index is None else index
        v = v[index]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{row.where()}: {v!r} is not a number")
    return v


def out_of_range(rows_: list[Row], results_dir: Path, column: str) -> list[str]:
    problems = []
    for row in rows_:
        expected = getattr(row, column)
        if expected is None:
            continue
        path = results_dir / f"{row.notebook}.json"
        try:
            v = value(json.loads(path.read_text()), row)
        except (KeyError, TypeError, IndexError) as err:
            problems.append(str(err))
            continue
        low, high = expected
        if not low <= v <= high:
            problems.append(f"{row.where()}: {v:.4g} is outside the stated {low:g}–{high:g}")
    return problems


ALL_ROWS = [r for p in PAGES for r in rows(p)]


# --------------------------------------------------------------------------------------------
# structure (always)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_solution_states_expected_numbers(page):
    """Every exercise has a table of expected numbers; those of an exercise with a command have a
    range for that command's run, from a notebook the command runs."""
    text = page.read_text()
    found = rows(page)
    for heading, _, body in sections(text):
        mine = [r for r in found if r.exercise == heading]
        assert mine, f"book/{page.name}: exercise {heading!r} gives no expected numbers"
        commands = exercise_commands(body)
        names = {n for args in commands for n in args if re.fullmatch(r"(part\d|summary)/\w+", n)}
        for r in mine:
            assert r.notebook in layout.list_notebooks(), f"{r.where()}: no notebook {r.notebook}"
            assert r.default or r.this, f"{r.where()}: no range at all"
            if r.this:
                assert r.notebook in names, f"{r.where()}: the exercise's command does not run {r.notebook}"
        if commands:
            assert any(r.this for r in mine), f"book/{page.name}: {heading!r} runs a command but states no " \
                                              f"range for its run"


def test_a_doctored_range_is_caught(tmp_path):
    (tmp_path / "part1").mkdir()
    (tmp_path / "part1" / "02_models.json").write_text(json.dumps(
        {"figures": {"cnn_accuracy": 0.65, "acc::CNN": [0.67, 0.02], "by_class": {"P2": 40.0}}}))
    page = tmp_path / "exercises_part9.md"
    page.write_text("# x\n\n## 1. One\n\n| number | key | default settings | this exercise |\n|---|---|---|---|\n"
                    "| acc | `part1/02_models` `cnn_accuracy` | 0.70–0.75 | – |\n"
                    "| acc | `part1/02_models` `acc::CNN` mean | 0.66–0.68 | – |\n"
                    "| sd | `part1/02_models` `acc::CNN` SD | 0.02 | – |\n"
                    "| v | `part1/02_models` `by_class.P2` | 40 | – |\n"
                    "| gone | `part1/02_models` `no_such_key` | 1–2 | – |\n")
    problems = out_of_range(rows(page), tmp_path, "default")
    assert len(problems) == 2, problems
    assert "exercises_part9.md:7 (1. One): acc [part1/02_models cnn_accuracy]: 0.65 is outside the stated " \
           "0.7–0.75" in problems[0]
    assert "no key 'no_such_key'" in problems[1]
    with pytest.raises(ValueError):
        parse_range("0.7-0.6")


# --------------------------------------------------------------------------------------------
# against the built book (fast; skipped when it has not been built with the quick profile)


def _built_quick(name: str) -> bool:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return False
    prov = json.loads(path.read_text()).get("provenance") or {}
    return prov.get("profile") == "quick" and all(d.get("real", True) for d in prov.get("data") or [])


def test_default_ranges_hold_the_built_book():
    checked = [r for r in ALL_ROWS if r.default and _built_quick(r.notebook)]
    if not checked:
        pytest.skip("the book has not been built with the quick profile on real data (make book)")
    problems = out_of_range(checked, RESULTS, "default")
    assert not problems, "the exercise solutions no longer match the built book:\n" + "\n".join(problems)


# --------------------------------------------------------------------------------------------
# re-running the exercises (slow: CELLBOOK_EXERCISES=1 pytest tests/test_exercises.py)

EXERCISES = [(p, heading, body) for p in PAGES for heading, _, body in sections(p.read_text())
             if exercise_commands(body)]


@pytest.mark.notebook
@pytest.mark.skipif(os.environ.get("CELLBOOK_EXERCISES") != "1",
                    reason="re-runs the exercises (minutes each): set CELLBOOK_EXERCISES=1")
@pytest.mark.parametrize("page,heading,body", EXERCISES, ids=[f"{p.stem}:{h.split('.')[0]}" for p, h, _ in EXERCISES])
def test_exercise_run_falls_in_its_range(page, heading, body, tmp_path, data_root):
    env = {**os.environ, "CELLBOOK_DATA": os.environ.get("CELLBOOK_DATA") or str(data_root), "PYTHONHASHSEED": "0"}
    for args in exercise_commands(body):
        assert args[:2] == ["--out", EXERCISE_OUT], f"book/{page.name}: {heading}: {args}"
        cmd = [sys.executable, "-m", "cellbook.cli", "run", "--out", str(tmp_path), *args[2:], "--quiet"]
        res = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True)
        assert res.returncode == 0, f"book/{page.name}: {heading}: `cellbook run {shlex.join(args)}` failed:\n" \
                                    f"{res.stderr[-3000:]}"
    mine = [r for r in rows(page) if r.exercise == heading and r.this]
    problems = out_of_range(mine, tmp_path / "results", "this")
    assert not problems, "\n".join(problems)
