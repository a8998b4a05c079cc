"""Atomic writes: the previous file survives a killed writer, and the next write removes its debris."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cellbook import fsutil

ROOT = Path(__file__).resolve().parents[1]


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_write_keeps_the_old_file_and_the_next_write_cleans_up(tmp_path):
    dest = tmp_path / "results.json"
    fsutil.write_json(dest, {"good": 1})
    # a writer killed half-way through a large results file
    code = ("import sys, time\nfrom cellbook.fsutil import atomic_path\n"
            f"with atomic_path({str(dest)!r}) as tmp:\n"
            "    tmp.write_text('{\"half\": ' + 'x' * 100000)\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = _debris(tmp_path)
    assert len(left) == 1 and left[0].startswith(".results.json.") and left[0].endswith(".part.json")
    assert fsutil.read_json(dest) == {"good": 1}          # the last good file is untouched
    fsutil.write_json(dest, {"good": 2})                  # the next write of the same file
    assert _debris(tmp_path) == []
    assert fsutil.read_json(dest) == {"good": 2}


def test_only_a_gone_writer_on_this_host_loses_its_temporary_file(tmp_path):
    dest = tmp_path / "table.csv"
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = {
            "dead": f".table.csv.{host}-{_dead_pid()}.abc123.part.csv",
            "live": f".table.csv.{host}-{live.pid}.abc123.part.csv",
            "other host": f".table.csv.elsewhere-{_dead_pid()}.abc123.part.csv",
            "old format": ".table.csv.abc123.part.csv",
            "other file": f".tables.csv.{host}-{_dead_pid()}.abc123.part.csv",
        }
        for name in names.values():
            (tmp_path / name).write_text("partial")
        stale_dir = tmp_path / f".table.csv.{host}-{_dead_pid()}.xyz.old"
        stale_dir.mkdir()
        removed = fsutil.remove_stale_parts(dest)
        assert sorted(p.name for p in removed) == sorted([names["dead"], stale_dir.name])
        assert _debris(tmp_path) == sorted(names[k] for k in ("live", "other host", "old format", "other file"))
    finally:
        live.kill()
        live.wait()


def test_atomic_dir_cleans_up_after_a_killed_build(tmp_path):
    dest = tmp_path / "dataset"
    with fsutil.atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("v1")
    stale = tmp_path / f".dataset.{socket.gethostname()}-{_dead_pid()}.q1w2e3.part"
    stale.mkdir()
    (stale / "a.txt").write_text("half")
    time.sleep(0.01)
    with fsutil.atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("v2")
    assert (dest / "a.txt").read_text() == "v2"
    assert _debris(tmp_path) == []
