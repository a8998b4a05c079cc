"""Nothing half-published, nothing silently wrong (``cellbook run`` and the book check).

One row per reported case. Every row asserts the exception type or exit code and a message
that names the thing and the fix. The run rows execute the fixture repository
``tests/fixtures/runbook`` (a ``--root`` with two tiny notebooks; regenerate it with
``tests/fixtures/make_runbook.py``) in a temporary copy: a baseline run is made once, and
each case starts from a copy of it, so the real ``book/_build`` is never touched.

"cell N" is 1-based among all cells of the source notebook: in ``demo/02_work`` cell 4 is the
cell that raises / kills its kernel / sleeps, cell 6 is ``rec.save();``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellbook import book, cli, layout, report, results, runner
from cellbook.fsutil import read_json
from cellbook.nbtools import error_outputs

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "runbook"
WORK = "demo/02_work"


def _build(root: Path) -> Path:
    return root / "book" / "_build"


def _published(root: Path, name: str = WORK) -> tuple[bytes, bytes]:
    b = _build(root)
    return (b / "executed" / f"{name}.ipynb").read_bytes(), (b / "results" / f"{name}.json").read_bytes()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The fixture repository after one good `cellbook run demo` (two kernels, once per module)."""
    root = tmp_path_factory.mktemp("baseline") / "repo"
    shutil.copytree(FIXTURE, root)
    assert cli.main(["run", "demo", "--root", str(root), "--device", "cpu"]) == 0
    assert book.check(root) == [], "a good run must publish a consistent book"
    umask = os.umask(0o022)
    os.umask(umask)
    for f in (_build(root) / "results").rglob("*.json"):  # atomic writes keep the usual file modes
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    return root


@pytest.fixture
def repo(baseline, tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(baseline, root)
    return root


@pytest.fixture
def fresh(tmp_path) -> Path:
    """The fixture repository never run (no book/_build)."""
    root = tmp_path / "fresh"
    shutil.copytree(FIXTURE, root)
    return root


# ------------------------------------------------------------------------------------------
# CLI input: refused up front, before any notebook runs, with a message naming the fix

def _no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _corrupt_run_record(root: Path):
    path = _build(root) / "results" / "_run.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"profile": "quick", "seconds": {"demo/01')  # what a kill during a write leaves


INPUT_ROWS = [
    # id, argv after `run`, setup, regexes the one-line error must match
    ("epochs-not-an-int", ["demo", "-p", "epochs=abc"], None,
     [r"notebook demo/02_work: parameter 'epochs' takes an integer \(its default is 2\), not 'abc'",
      r"pass e\.g\. -p epochs=2"]),
    ("negative-seed", ["demo", "-p", "seed=-1"], None,
     [r"notebook demo/01_ok: parameter 'seed' must be a non-negative integer", r"not -1", r"-p seed=0"]),
    ("unreadable-yaml", ["demo", "-p", "seed=[1,2"], None,
     [r"override 'seed=\[1,2': the value '\[1,2' cannot be read", r"lists as \[1, 2\]"]),
    ("float-for-int", [WORK, "-p", "epochs=2.5"], None,
     [r"parameter 'epochs' takes an integer", r"not 2\.5 \(a decimal number\)"]),
    ("cuda-without-gpu", ["demo", "--device", "cuda"], _no_gpu,
     [r"--device cuda: .*no CUDA device is available", r"use 'auto' or 'cpu'"]),
    ("root-without-notebooks", ["demo", "--root", "/nonexistent/cellbook"], None,
     [r"no notebooks at /nonexistent/cellbook", r"--root must be the repository root"]),
    ("corrupt-run-record", ["demo"], "corrupt-run-record",
     [r"run record .*_run\.json is corrupt", r"delete it"]),
]


@pytest.mark.parametrize("argv, setup, patterns", [r[1:] for r in INPUT_ROWS], ids=[r[0] for r in INPUT_ROWS])
def test_bad_input_is_refused_before_anything_runs(fresh, monkeypatch, capsys, argv, setup, patterns):
    if setup == "corrupt-run-record":
        _corrupt_run_record(fresh)
    elif setup:
        setup(monkeypatch)
    args = ["run", *argv, "--device", "cpu"] if "--device" not in argv else ["run", *argv]
    if "--root" not in argv:
        args += ["--root", str(fresh)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for pat in patterns:
        assert re.search(pat, err), f"{pat!r} not in {err!r}"
    assert not (_build(fresh) / "executed").exists(), "a notebook ran although the input was refused"


def test_null_is_accepted_where_default_or_profile_uses_it(fresh):
    assert runner.plan(WORK, "quick", "cpu", {"data_path": "/x", "lr": 1}, fresh)["lr"] == 1
    assert runner.plan("part1/02_models", "quick", "cpu", {"n_genes": None})["n_genes"] is None  # full sets null
    with pytest.raises(ValueError, match=r"'epochs' takes an integer .*null only where"):
        runner.plan(WORK, "quick", "cpu", {"epochs": None}, fresh)


# ------------------------------------------------------------------------------------------
# Runs that fail: one line naming notebook and cell; nothing published; the check refuses

def _cli(root: Path, *args: str) -> tuple[int, str]:
    """In-process `cellbook run` (same main(), stderr captured by the caller's capsys)."""
    return cli.main(["run", *args, "--root", str(root), "--device", "cpu"]), ""


def _signalled(root: Path, sig: int) -> tuple[int, str, int]:
    """`cellbook run demo` in a subprocess, sent ``sig`` while cell 4 of demo/02_work sleeps."""
    ready = root / "ready.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cellbook.cli", "run", "demo", "--root", str(root), "--device", "cpu",
         "-p", "mode=sleep", "-p", f"ready_file={ready}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a job started in the background (`cmd &` in a script) inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the run the disposition a user's terminal gives it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        kernel_pid = int(ready.read_text())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)   # a loaded 2-core CI machine can take a while to stop the kernel
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, kernel_pid


RUN_ROWS = [
    # id, how, exit code, failing cell, regexes
    ("cell-raises", ["-p", "mode=raise"], 1, 4, [r"ValueError: fixture asked to raise"]),
    ("kernel-killed", ["-p", "mode=kill"], 1, 4, [r"the kernel died", r"out-of-memory"]),
    ("torn-write-kernel-killed-in-save", ["-p", "mode=torn"], 1, 6, [r"the kernel died"]),
    ("sigint", signal.SIGINT, 130, 4, [r"interrupted \(SIGINT\)"]),
    ("sigterm", signal.SIGTERM, 143, 4, [r"interrupted \(SIGTERM\)"]),
]


@pytest.mark.parametrize("how, code, cell, patterns", [r[1:] for r in RUN_ROWS], ids=[r[0] for r in RUN_ROWS])
def test_failed_run_publishes_nothing_and_the_check_refuses(repo, capsys, how, code, cell, patterns):
    before = _published(repo)
    record_before = read_json(_build(repo) / "results" / "_run.json")
    if isinstance(how, list):
        rc, _ = _cli(repo, "demo", *how)
        err = capsys.readouterr().err
        kernel_pid = None
    else:
        rc, err, kernel_pid = _signalled(repo, how)
    lines = [ln for ln in err.splitlines() if ln.startswith("cellbook:")]
    assert rc == code, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    line = lines[0]
    failed = _build(repo) / "failed" / f"{WORK}.ipynb"
    assert re.search(rf"notebook {WORK} failed in cell {cell} \(", line), line
    for pat in patterns:
        assert re.search(pat, line), f"{pat!r} not in {line!r}"
    assert f"failed copy: {failed.relative_to(repo)}" in line and failed.exists()
    assert "published copy and results were not changed" in line
    # the previous good executed copy and results, byte for byte
    assert _published(repo) == before
    assert not (_build(repo) / ".staging").exists()
    assert not [p for p in (_build(repo) / "results").rglob(".*")], "temporary files left in results"
    # demo/01_ok ran before the failure: published and recorded in _run.json
    record = read_json(_build(repo) / "results" / "_run.json")
    ok_entry = record["notebooks"]["demo/01_ok"]
    assert ok_entry["run_id"] != record_before["notebooks"]["demo/01_ok"]["run_id"]
    assert {"seconds", "profile", "device", "gpu", "finished_utc"} <= set(ok_entry) and ok_entry["device"] == "cpu"
    assert record["notebooks"][WORK] == record_before["notebooks"][WORK]
    # the book check refuses, naming the same cell
    problems = book.check(repo)
    assert any(p.startswith(f"{WORK}: the last `cellbook run {WORK}` failed") and f"cell {cell} " in p
               and "re-run" in p for p in problems), problems
    assert not [p for p in problems if p.startswith("demo/01_ok")], problems
    if kernel_pid is not None:  # the sleeping kernel was shut down with the run
        with pytest.raises(ProcessLookupError):
            os.kill(kernel_pid, 0)


def test_cli_and_book_check_number_cells_alike(repo, capsys):
    """The CLI's "failed in cell N" and the check's "cell N" (on the failed copy) are the same N."""
    assert cli.main(["run", WORK, "-p", "mode=raise", "--root", str(repo), "--device", "cpu"]) == 1
    cli_cell = re.search(r"failed in cell (\d+)", capsys.readouterr().err).group(1)
    check = error_outputs(_build(repo) / "failed" / f"{WORK}.ipynb")
    assert check == [f"cell {cli_cell}: ValueError: fixture asked to raise",
                     "cell 6: not completed (papermill status 'pending')"]
    # success afterwards clears the failure and the check passes again
    assert cli.main(["run", WORK, "--root", str(repo), "--device", "cpu"]) == 0
    assert not (_build(repo) / "failed" / f"{WORK}.ipynb").exists() and book.check(repo) == []


# ------------------------------------------------------------------------------------------
# The book check: an executed copy is published only if it is complete and consistent

def _edit_nb(root: Path, fn):
    path = _build(root) / "executed" / f"{WORK}.ipynb"
    nb = json.loads(path.read_text())
    fn(nb)
    path.write_text(json.dumps(nb))


def _dead_kernel_after_cell_4(nb):
    """What papermill 2.7 writes when the kernel dies in cell 4: later cells "completed", never run."""
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code_cells[-2:]:  # source cells 4 and 6
        c["execution_count"], c["outputs"] = None, []
        c["metadata"]["papermill"].update(status="completed", end_time=None)


def _no_provenance(nb):
    nb["cells"][-1]["outputs"] = []


def _not_from_cellbook_run(nb):
    nb["metadata"].pop("cellbook")


def _older_results(root: Path):
    path = _build(root) / "results" / f"{WORK}.json"
    res = json.loads(path.read_text())
    res["provenance"].update(run_id="1-older", saved_utc="2000-01-01T00:00:00+00:00")
    path.write_text(json.dumps(res))


def _torn_results(root: Path):
    path = _build(root) / "results" / f"{WORK}.json"
    path.write_bytes(path.read_bytes()[:100])


CHECK_ROWS = [
    ("half-executed-status-says-completed", lambda r: _edit_nb(r, _dead_kernel_after_cell_4),
     [rf"{WORK}: cells 4-6: never ran \(no execution count, no papermill end time; papermill's status field "
      rf"says 'completed'\)", rf"{WORK}: .* has no provenance box"]),
    ("no-provenance-box", lambda r: _edit_nb(r, _no_provenance),
     [rf"{WORK}: .*02_work\.ipynb has no provenance box \(the last cell must be `rec\.save\(\);`.*run `cellbook run"]),
    ("not-published-by-cellbook-run", lambda r: _edit_nb(r, _not_from_cellbook_run),
     [rf"{WORK}: .* was not published by `cellbook run`.*run `cellbook run {WORK}`"]),
    ("results-missing", lambda r: (_build(r) / "results" / f"{WORK}.json").unlink(),
     [rf"{WORK}: no results JSON at .*02_work\.json .*run `cellbook run {WORK}`"]),
    ("results-older-than-executed-copy", _older_results,
     [rf"{WORK}: results JSON .* does not belong to the executed copy: it is from an older run",
      rf"re-run `cellbook run {WORK}`"]),
    ("results-torn", _torn_results,
     [rf"{WORK}: results JSON of {WORK} .*02_work\.json is corrupt .*delete it and re-create it"]),
]


@pytest.mark.parametrize("mutate, patterns", [r[1:] for r in CHECK_ROWS], ids=[r[0] for r in CHECK_ROWS])
def test_book_check_refuses_incomplete_or_inconsistent_chapters(repo, mutate, patterns):
    mutate(repo)
    problems = book.check(repo)
    for pat in patterns:
        assert any(re.search(pat, p) for p in problems), f"{pat!r} not in {problems}"
    assert not [p for p in problems if p.startswith("demo/01_ok")], problems
    assert book.build(repo) == 1  # refused before staging anything
    assert not (_build(repo) / "site").exists()


# ------------------------------------------------------------------------------------------
# Torn JSON: writers are atomic, readers name the corrupt file

def _half_then_interrupt(monkeypatch):
    """A write that stops half-way (what a kill during the write does)."""
    original = Path.write_text

    def half(self, text, *args, **kwargs):
        original(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(Path, "write_text", half)


def _save_results(root: Path):
    rec = results.Recorder(WORK, profile="quick", device="cpu", seed=0)
    rec["x"] = 1
    rec.save(display=False)


def _record(root: Path):
    layout.record_run(_build(root), "demo/01_ok", {"seconds": 1.0, "profile": "quick", "device": "cpu"})


WRITE_ROWS = [
    ("results-json", _save_results, f"results/{WORK}.json"),
    ("run-record", _record, "results/_run.json"),
]


@pytest.mark.parametrize("write, rel", [r[1:] for r in WRITE_ROWS], ids=[r[0] for r in WRITE_ROWS])
def test_writes_are_atomic(repo, monkeypatch, write, rel):
    monkeypatch.delenv("CELLBOOK_RESULTS_STAGING", raising=False)
    monkeypatch.setenv("CELLBOOK_RESULTS", str(_build(repo) / "results"))
    path = _build(repo) / rel
    before = path.read_bytes()
    _half_then_interrupt(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write(repo)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"


READ_ROWS = [
    ("results.load", lambda r: results.load(WORK, _build(r) / "results"), f"results/{WORK}.json"),
    ("results.load_all", lambda r: results.load_all(_build(r) / "results"), f"results/{WORK}.json"),
    ("report.load_run", lambda r: report.load_run(_build(r) / "results"), "results/_run.json"),
    ("layout.read_run_record", lambda r: layout.read_run_record(_build(r)), "results/_run.json"),
    ("nbtools.error_outputs", lambda r: error_outputs(_build(r) / "executed" / f"{WORK}.ipynb"),
     f"executed/{WORK}.ipynb"),
]


@pytest.mark.parametrize("read, rel", [r[1:] for r in READ_ROWS], ids=[r[0] for r in READ_ROWS])
def test_readers_name_a_torn_file(repo, read, rel):
    path = _build(repo) / rel
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError) as info:
        read(repo)
    msg = str(info.value)
    assert str(path) in msg and "is corrupt" in msg and "re-create it" in msg, msg


def test_run_out_writes_elsewhere_and_leaves_the_published_book(repo):
    """Exercises run with --out book/_build/exercises: the published copy and results stay as they were."""
    before = _published(repo)
    out = repo / "book" / "_build" / "exercises"
    assert cli.main(["run", WORK, "--root", str(repo), "--device", "cpu", "--out", str(out)]) == 0
    assert _published(repo) == before
    assert (out / "executed" / f"{WORK}.ipynb").exists() and (out / "results" / f"{WORK}.json").exists()
    assert WORK in read_json(out / "results" / "_run.json")["notebooks"]
    assert book.check(repo) == []                      # the book itself is still consistent
    bad = ["run", WORK, "--root", str(repo), "--device", "cpu", "--out", str(repo / "book" / "_build" / "results")]
    assert cli.main(bad) == 1
