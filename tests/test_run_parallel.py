"""`cellbook run --jobs N`: parts at once (each part's chapters in order), the summary last; how the sweeps
are told to run; one run record written by several processes."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp

import pytest

from cellbook import cli, layout
from cellbook.nbtools import code, md, params, write_notebook

PARAMS = 'profile = "quick"\ndevice = "auto"\nseed = 0\nmode = "ok"'
BODY = ("import os, time\n"
        "time.sleep(0.5)\n"
        "if mode == 'raise':\n    raise ValueError('asked to fail')\n"
        "print('backend', os.environ.get('CELLBOOK_BACKEND'), os.environ.get('CELLBOOK_WORKERS'))")


# `cellbook run` tells the kernels how to run sweeps through the environment: put back after each test
pytestmark = pytest.mark.usefixtures("parallel_clean")   # tests/conftest.py


def _repo(tmp_path):
    for name in ("partA/01_x", "partA/02_y", "partB/01_z", "summary/01_results"):
        write_notebook(tmp_path / "notebooks" / f"{name}.ipynb", [md(f"# {name}"), params(PARAMS), code(BODY)])
    return tmp_path


def test_chains_keep_each_part_in_order_and_the_summary_last():
    names = ["part1/01", "part1/02", "part2/01", "part3/01", "part3/02", "summary/01"]
    assert layout.chains(names) == ([["part1/01", "part1/02"], ["part2/01"], ["part3/01", "part3/02"]], ["summary/01"])


def test_jobs_runs_parts_at_once_and_the_summary_after_them(tmp_path):
    root = _repo(tmp_path)
    assert cli.main(["run", "all", "--root", str(root), "--device", "cpu", "--jobs", "2"]) == 0
    record = layout.read_run_record(root / "book" / "_build")
    entries = record["notebooks"]
    assert set(entries) == {"partA/01_x", "partA/02_y", "partB/01_z", "summary/01_results"}
    # within a part in order; the summary started after every part had finished
    assert entries["partA/02_y"]["started_utc"] >= entries["partA/01_x"]["finished_utc"]
    assert entries["summary/01_results"]["started_utc"] >= max(
        entries[n]["finished_utc"] for n in ("partA/02_y", "partB/01_z"))
    # the two parts ran in separate processes (their run ids carry the process id)
    pids = {n: e["run_id"].split("-")[0] for n, e in entries.items()}
    assert pids["partA/01_x"] != pids["partB/01_z"]


def test_a_failed_part_stops_the_summary_and_names_the_part(tmp_path, capsys):
    root = _repo(tmp_path)
    nb = root / "notebooks" / "partB" / "01_z.ipynb"
    write_notebook(nb, [md("# z"), params(PARAMS.replace('"ok"', '"raise"')), code(BODY)])
    assert cli.main(["run", "all", "--root", str(root), "--device", "cpu", "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "partB (exit 1) failed" in err and "summary/01_results not run" in err
    entries = layout.read_run_record(root / "book" / "_build")["notebooks"]
    assert {"partA/01_x", "partA/02_y"} <= set(entries) and "summary/01_results" not in entries


def _args(**kw):
    base = dict(profile="quick", jobs=1, workers=None, threads_per_worker=None, scheduler=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("kw, names, expect", [
    (dict(jobs=2), ["part3/01", "part3/02"], {"backend": "dask", "n_workers": 2}),       # one part: its sweeps get 2
    (dict(jobs=2), ["part1/01", "part2/01", "part3/01"], {"backend": "serial"}),          # parts share the cores
    (dict(workers=3), ["part3/01"], {"backend": "dask", "n_workers": 3}),
    (dict(), ["part3/01"], {"backend": "serial"}),                                        # the profile: in process
    (dict(scheduler="tcp://10.1.2.3:8786"), ["part3/01"], {"backend": "dask", "scheduler": "tcp://10.1.2.3:8786"}),
])
def test_sweep_settings_from_the_command_line(kw, names, expect):
    got = cli._configure_sweeps(_args(**kw), names)
    assert {k: got[k] for k in expect} == expect


def _writer(out_dir, k):
    for i in range(15):
        layout.record_run(out_dir, f"p{k}/{i:02d}", {"seconds": 1.0, "profile": "quick", "device": "cpu"})


def test_run_record_keeps_every_entry_when_processes_write_at_once(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    record = json.loads((tmp_path / "results" / "_run.json").read_text())
    assert len(record["notebooks"]) == 60
