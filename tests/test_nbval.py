"""Published outputs re-run to the same numbers (nbval).

Each published executed copy (``book/_build/executed/<name>.ipynb``) is executed again with nbval, cell
by cell, and every text output is compared with the one stored in the copy; a difference fails naming
the chapter, the cell and both values. Run times, dates, run ids, commits and local paths are
sanitised first (``tests/nbval_sanitize.cfg``); cells whose outputs are timings by nature carry
nbval's ``nbval-ignore-output`` tag in the source notebook. Figures (PNG) are not compared.

The re-run never touches the published build: it runs a copy of the executed notebook in a temporary
folder, its kernel started in the source notebook's folder (``notebooks/partN``, as ``cellbook run``
does), against a temporary copy of ``book/_build/results`` and ``artifacts`` (chapters read the earlier
chapters' results there; Part I writes its artifacts next to them); ``Recorder.save`` writes to a
temporary staging folder.

``CELLBOOK_NBVAL`` picks the chapters: ``quick`` (the default, what ``make test`` runs): those that
took under a minute in the build's ``_run.json``; ``all`` (``make verify``): every chapter; ``off``.
Nothing runs until the book is built (``make book``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellbook.book import executed_chapters, executed_path
from cellbook.config import profile_parallel
from cellbook.layout import build_dir, notebook_dir, read_run_record
from cellbook.nbtools import cell_labels, first_line

HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "nbval_sanitize.cfg"
CONFTEST = HERE / "nbval_conftest.py"
QUICK_SECONDS = 20   # chapters the book ran in under this many seconds re-run in `make test`
MODE = os.environ.get("CELLBOOK_NBVAL", "quick").strip().lower() or "quick"
if MODE not in {"quick", "all", "off"}:
    raise ValueError(f"CELLBOOK_NBVAL={MODE!r}: use quick (chapters under {QUICK_SECONDS:.0f} s), all or off")


def _chapters() -> list:
    executed = build_dir() / "executed"
    if MODE == "off":
        return [pytest.param("none", marks=pytest.mark.skip(reason="CELLBOOK_NBVAL=off"))]
    built = [n for n in executed_chapters() if executed_path(n).exists()] if executed.is_dir() else []
    if not built:
        return [pytest.param("none", marks=pytest.mark.skip(
            reason=f"the book has not been built ({executed} is missing): nothing to re-run; run `make book` first"))]
    if MODE == "all":
        return built
    seconds = read_run_record(build_dir()).get("seconds") or {}
    quick = [n for n in built if (seconds.get(n) or float("inf")) < QUICK_SECONDS]
    return quick or [pytest.param("none", marks=pytest.mark.skip(
        reason=f"no chapter took under {QUICK_SECONDS:.0f} s in this build: `make verify` re-runs them all"))]


def nbval_run(copy: Path, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``python -m pytest --nbval`` on ``copy`` (alone in its temporary folder), the kernel started in
    ``cwd`` and this interpreter's environment, outputs sanitised with ``tests/nbval_sanitize.cfg``."""
    folder = copy.parent
    shutil.copyfile(CONFTEST, folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = {k: v for k, v in env.items() if k not in {"PYTEST_ADDOPTS", "PYTEST_PLUGINS"}}
    env["CELLBOOK_NBVAL_CWD"] = str(cwd)
    cmd = [sys.executable, "-m", "pytest", str(copy), "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", str(SANITIZE), "-c", str(folder / "pytest.ini"), "--rootdir", str(folder),
           "-p", "no:cacheprovider", "-q", "-rf", "--color=no", "-W", "ignore::DeprecationWarning"]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def differing_cells(nb: dict, proc: subprocess.CompletedProcess) -> str:
    """The failed cells of an nbval run, each named as the book names it, with nbval's report."""
    code = [i for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"]
    labels = cell_labels(nb)
    out = proc.stdout + proc.stderr
    failed = sorted({int(k) for k in re.findall(r"::Cell (\d+)", "\n".join(
        ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))))})
    lines = []
    for k in failed:
        i = code[k] if k < len(code) else None
        where = (f"{labels[i]} (code cell {k} for nbval, starting `{first_line(nb['cells'][i])}`)"
                 if i is not None else f"code cell {k} for nbval")
        lines.append(f"- {where}")
    report = out.split("= FAILURES =", 1)[-1].lstrip("=\n") if "= FAILURES =" in out else out
    if len(report) > 12000:
        report = report[:12000] + "\n[... nbval's report cut at 12000 characters]"
    legend = "nbval's report (`stored == re-run`; in the diff, `+` lines are the stored output, `-` the re-run's)"
    return ("\n".join(lines) or "- (no cell named: nbval itself failed)") + f"\n\n{legend}:\n{report}"


def with_source_tags(nb: dict, source: dict) -> dict:
    """Give ``nb``'s cells the ``nbval-*`` tags of the source notebook's cells (matched by cell id): the
    source decides which outputs are timings, also for a copy executed before a cell was tagged."""
    tags = {c.get("id"): [t for t in (c.get("metadata") or {}).get("tags", []) if t.startswith("nbval-")]
            for c in source.get("cells", [])}
    for cell in nb.get("cells", []):
        meta = cell.setdefault("metadata", {})
        own = [t for t in meta.get("tags", []) if not t.startswith("nbval-")]
        if tags.get(cell.get("id")) or len(own) != len(meta.get("tags", [])):
            meta["tags"] = own + tags.get(cell.get("id"), [])
    return nb


def rerun_matches(name: str, executed: Path, build: Path, tmp: Path, timeout: float = 1800) -> tuple[bool, str]:
    """Re-run the executed copy ``executed`` of chapter ``name`` against a copy of ``build``'s results;
    ``(True, "")`` when every output matches, else ``(False, message naming each differing cell)``."""
    work = tmp / "build"
    for sub in ("results", "artifacts"):
        if (build / sub).is_dir():
            shutil.copytree(build / sub, work / sub)
    (work / "results").mkdir(parents=True, exist_ok=True)
    nb = json.loads(executed.read_text(encoding="utf-8"))
    source = notebook_dir() / f"{name}.ipynb"
    if source.exists():
        with_source_tags(nb, json.loads(source.read_text(encoding="utf-8")))
    copy = tmp / "nbval" / executed.name
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    profile = (nb.get("metadata", {}).get("cellbook") or {}).get("profile", "quick")
    env = dict(os.environ)
    for var in ("CELLBOOK_BACKEND", "CELLBOOK_WORKERS", "CELLBOOK_SCHEDULER"):
        env.pop(var, None)
    env.update({
        "CELLBOOK_NOTEBOOK": name,
        "CELLBOOK_RESULTS": str(work / "results"),          # a copy of the published results
        "CELLBOOK_RESULTS_STAGING": str(tmp / "staging"),   # where Recorder.save writes
        "CELLBOOK_PROGRESS": "0",
        "CELLBOOK_THREADS_PER_WORKER": str(profile_parallel(profile).get("threads_per_worker") or 1),
        "PYTHONHASHSEED": "0",
    })
    env.pop("CELLBOOK_RUN_ID", None)
    cwd = (notebook_dir() / name).parent
    proc = nbval_run(copy, cwd if cwd.is_dir() else copy.parent, env, timeout)
    if proc.returncode == 0:
        return True, ""
    return False, (f"{name}: re-running the published copy {executed} does not give its stored outputs "
                   f"(nbval exit status {proc.returncode}); differing cells:\n" + differing_cells(nb, proc))


@pytest.mark.nbval
@pytest.mark.parametrize("name", _chapters())
def test_published_outputs_rerun_to_the_same_values(name, tmp_path):
    t0 = time.perf_counter()
    ok, message = rerun_matches(name, executed_path(name), build_dir(), tmp_path)
    print(f"[nbval] {name}: {'same outputs' if ok else 'DIFFERS'} ({time.perf_counter() - t0:.1f} s)")
    assert ok, message


def _fixture_notebook(path: Path) -> Path:
    """A two-cell executed notebook whose second stored output (``x = 1``) is not what its code prints."""
    def cell(n, source, text):
        return {"cell_type": "code", "execution_count": n, "id": f"c{n}", "metadata": {}, "source": source,
                "outputs": [{"name": "stdout", "output_type": "stream", "text": text}]}
    nb = {"cells": [cell(1, "print('ran at 2026-01-02T03:04:05+00:00 in 1.5 s')",
                         "ran at 2025-12-31T23:59:59+00:00 in 9.9 s\n"),
                    {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "A note."},
                    cell(2, "x = 1 + 1\nprint(f'x = {x}')", "x = 1\n")],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return path


def test_a_differing_output_fails_naming_the_cell_and_both_values(tmp_path):
    """The check fails usefully: the cell named as the book names it, the stored and the new value; the
    timestamp and the seconds in the first cell are sanitised away."""
    nb = _fixture_notebook(tmp_path / "fixture.ipynb")
    (tmp_path / "build" / "results").mkdir(parents=True)
    ok, message = rerun_matches("part0/fixture", nb, tmp_path / "build", tmp_path / "rerun", timeout=300)
    assert not ok
    assert "part0/fixture" in message and "cell 3 (code cell 1 for nbval, starting `x = 1 + 1`)" in message
    assert "- cell 1 " not in message   # the first cell matched once its timestamp and seconds were sanitised
    assert "x = 1" in message and "x = 2" in message, message
    print(message)


@pytest.mark.nbval
def test_a_changed_seed_in_a_published_chapter_fails_naming_the_cell(tmp_path):
    """A real chapter whose injected parameters set another seed does not re-run to its published outputs:
    the check names the cell and both values (run once the book is built; about as long as the chapter)."""
    name = "part1/02_models"
    executed = executed_path(name)
    if not executed.exists():
        pytest.skip(f"the book has not been built ({executed} is missing); run `make book` first")
    nb = json.loads(executed.read_text(encoding="utf-8"))
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    injected["source"] = "".join(injected["source"]) + "seed = 1\n"
    changed = tmp_path / "changed.ipynb"
    changed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    ok, message = rerun_matches(name, changed, build_dir(), tmp_path / "rerun")
    assert not ok, "a chapter re-run with another seed gave its published outputs: the check cannot fail"
    assert f"{name}: re-running" in message and "differing cells:" in message and "- cell " in message, message
    print(message[:2000])
