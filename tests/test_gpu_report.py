"""benchmarks/gpu_report.py: the one table of the prepared GPU check, read from what the check leaves."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _report(folder) -> str:
    """What benchmarks/gpu_report.py prints for ``folder``."""
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), str(folder)],
                          capture_output=True, text=True, cwd=REPO, check=True).stdout


def _nb(durations):
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "profile = 'quick'"},
             {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "profile = 'full'"}]
    cells += [{"cell_type": "code", "metadata": {"papermill": {"duration": d}}, "source": f"step_{i}()\nmore()"}
              for i, d in enumerate(durations)]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_gpu_report_reads_finished_and_stopped_notebooks(tmp_path):
    (tmp_path / "executed" / "part1").mkdir(parents=True)
    (tmp_path / "failed" / "part1").mkdir(parents=True)
    (tmp_path / "executed" / "part1" / "01_data.ipynb").write_text(json.dumps(_nb([1.5, 7.0])))
    (tmp_path / "failed" / "part1" / "03_table1.ipynb").write_text(json.dumps(_nb([2.0, 140.0])))
    (tmp_path / "_run.json").write_text(json.dumps({"notebooks": {"part1/01_data": {
        "seconds": 10.2, "profile": "full", "device": "cuda", "gpu": "NVIDIA H200"}}}))
    (tmp_path / "steps.txt").write_text("bench_part1 rc=0 seconds=64\nrun_part1 rc=124 seconds=196\n")
    (tmp_path / "bench_part1.json").write_text(json.dumps({"cells": 3641, "genes": 17043, "epochs": 3, "cnn": {
        "plain_cells_per_s": 3000.0, "trainer_b32_cells_per_s": 8000.0, "trainer_cells_per_s": 30000.0,
        "ratio": 10.0}}))
    out = _report(tmp_path)
    assert "part1/01_data" in out and "10.2 s  finished on NVIDIA H200" in out
    assert "part1/03_table1" in out and "142.0 s  STOPPED" in out
    # slowest cell first, numbered as `cellbook run` numbers cells (the injected cell is not counted)
    stopped = out.split("part1/03_table1")[1]
    assert stopped.index("cell 3") < stopped.index("cell 2") and "step_1()" in stopped
    assert "30,000" in out and "10.0x" in out and "rc=124" in out


def test_gpu_report_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "usage" in res.stderr


def _gpu_pack_drops():
    """The wheels benchmarks/gpu_pack.sh leaves out: (for every part, for parts other than Part I)."""
    import re
    text = (REPO / "benchmarks" / "gpu_pack.sh").read_text()
    always = re.search(r"^drop=\(([^)]*)\)", text, re.M).group(1).split()
    not_part1 = re.search(r"drop\+=\(([^)]*)\)", text).group(1).split()
    return always, not_part1


def test_gpu_pack_leaves_out_only_packages_cellbook_imports_lazily():
    """Every cellbook module imports without the wheels gpu_pack leaves out (they are imported where used)."""
    always, not_part1 = _gpu_pack_drops()
    assert {"debugpy", "jedi", "celltypist", "lightgbm", "leidenalg"} <= set(always + not_part1)
    code = ("import importlib, pkgutil, sys, cellbook\n"
            "for m in pkgutil.walk_packages(cellbook.__path__, 'cellbook.'):\n"
            "    if m.name != 'cellbook.__main__': importlib.import_module(m.name)\n"
            f"drop = {sorted(set(always + not_part1))!r}\n"
            "print(sorted({n.split('.')[0] for n in sys.modules} & set(drop)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout


def test_gpu_report_projects_a_stopped_sweep(tmp_path):
    log = [{"notebook": "part3/02_code_size", "sweep": "a", "desc": "code sizes x folds", "done": d, "total": 100,
            "seconds": 12.5 * d} for d in range(9)]
    log += [{"notebook": "part3/01_architectures", "sweep": "b", "desc": "architectures x folds", "done": d,
             "total": 4, "seconds": 3.0 * d} for d in range(5)]
    log.insert(5, {**log[4], "seconds": 55.0, "beat": True})   # heartbeats: how long, not the pace
    log.append({**log[8], "seconds": 140.0, "beat": True})
    log += [{"notebook": "part3/03_accuracy", "sweep": "c", "desc": "folds", "done": 0, "total": 10, "seconds": s,
             **({"beat": True} if s else {})} for s in (0.0, 30.0, 60.0)]
    text = "\n".join(json.dumps(r) for r in log) + '\n{"notebook": "part3/02_code_s'   # cut short by the stop
    (tmp_path / "sweeps.jsonl").write_text(text)
    out = _report(tmp_path)
    stopped = next(line for line in out.splitlines() if "code sizes x folds" in line)
    assert "8/100" in stopped and "12.5 s/task" in stopped and "all 100: about 1250 s" in stopped
    assert "140.0 s" in stopped
    waiting = next(line for line in out.splitlines() if "part3/03_accuracy" in line)
    assert "0/10" in waiting and "60.0 s" in waiting and "no task finished yet" in waiting
    done = next(line for line in out.splitlines() if "architectures x folds" in line)
    assert "4/4" in done and "finished" in done


def test_gpu_report_leaves_out_runs_from_before_the_check(tmp_path):
    entry = {"seconds": 5.0, "profile": "full", "device": "cuda", "gpu": "NVIDIA H100"}
    (tmp_path / "_run.json").write_text(json.dumps({"notebooks": {
        "part1/01_data": {**entry, "started_utc": "2026-11-01T10:00:00+00:00"},
        "part2/01_data_preprocessing": {**entry, "started_utc": "2026-11-28T12:00:05+00:00"}}}))
    (tmp_path / "started.txt").write_text("2026-11-28T12:00:00+00:00\n")
    out = _report(tmp_path)
    assert "part2/01_data_preprocessing" in out and "part1/01_data" not in out
