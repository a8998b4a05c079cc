"""The one table of ``benchmarks/gpu_check.sh``: seconds per notebook, the slowest cells, cells/s.

    python benchmarks/gpu_report.py DIR      # DIR: what gpu_check.sh wrote (GPU_CHECK_OUT)

Reads ``DIR/_run.json`` (notebooks that finished), ``DIR/executed`` and ``DIR/failed`` (papermill's
per-cell durations; a notebook stopped at its time limit is in ``failed``), ``DIR/steps.txt``, the
two benchmark JSON files and ``DIR/sweeps.jsonl`` (each sweep's tasks done, its pace, and how long it ran).
Prints plain text; changes nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cell_seconds(path: Path) -> list[tuple[float, str, str]]:
    """``(seconds, "cell N", first line)`` per executed code cell, slowest first (the numbering of
    ``cellbook run``'s messages, :func:`cellbook.nbtools.cell_labels`)."""
    from cellbook.nbtools import cell_labels

    nb = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for i, cell in zip(cell_labels(nb), nb.get("cells", [])):
        pm = (cell.get("metadata") or {}).get("papermill") or {}
        if cell.get("cell_type") == "code" and pm.get("duration") is not None:
            src = "".join(cell.get("source", "")).strip().splitlines()
            rows.append((float(pm["duration"]), i, (src[0] if src else "")[:70]))
    return sorted(rows, reverse=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/gpu_report.py DIR", file=sys.stderr)
        return 2
    d = Path(argv[0])
    if (d / "gpu.txt").exists():
        print("GPU:", " | ".join((d / "gpu.txt").read_text().strip().splitlines()))
    if (d / "steps.txt").exists():
        print("\nSteps (seconds, exit status; 124 = stopped at its time limit):")
        print((d / "steps.txt").read_text().rstrip())
    bench = d / "bench_part1.json"
    if bench.exists():
        b = json.loads(bench.read_text())
        print(f"\nTraining throughput, {b['cells']} cells x {b['genes']} genes, {b['epochs']} epochs (cells/s):")
        print(f"{'model':14s} {'authors loop b32':>17s} {'Trainer b32':>12s} {'Trainer b128':>13s} {'ratio':>6s}"
              f" {'host rows':>10s} {'member loop':>12s}")
        for name in ("cnn", "cnn_ensemble"):
            r = b.get(name) or {}
            if r:
                print(f"{name:14s} {r['plain_cells_per_s']:17,.0f} {r['trainer_b32_cells_per_s']:12,.0f} "
                      f"{r['trainer_cells_per_s']:13,.0f} {r['ratio']:5.1f}x "
                      f"{r.get('trainer_host_rows_cells_per_s', float('nan')):10,.0f} "
                      f"{r.get('trainer_member_loop_cells_per_s', float('nan')):12,.0f}")
    models = d / "bench_part1_models.json"
    if models.exists():
        m = json.loads(models.read_text())
        print(f"\nChapter I.3 ({m['profile']}), one split of {m['cells']} cells x {m['genes']} genes: "
              f"{m['split_seconds']:.1f} s; x {m['seeds']} seeds = about {m['split_seconds'] * m['seeds']:.0f} s")
        for r in m["models"]:
            ep = "" if r.get("epochs") is None else f"{r['epochs']:.0f} epochs"
            print(f"  {r['model']:40s} {r['fit_seconds']:8.1f} s  {ep:>10s}  acc {r['accuracy']:.3f}  "
                  f"macro-F1 {r['f1_macro']:.3f}")
    run = json.loads((d / "_run.json").read_text()) if (d / "_run.json").exists() else {}
    done = run.get("notebooks") or {}
    if (d / "started.txt").exists():   # runs recorded before this check began (the same checkout) are not its own
        since = (d / "started.txt").read_text().strip()
        done = {k: v for k, v in done.items() if str(v.get("started_utc") or "") >= since}
    names = sorted({*done, *(str(p.relative_to(d / sub).with_suffix("")) for sub in ("executed", "failed")
                             if (d / sub).is_dir() for p in (d / sub).rglob("*.ipynb"))})
    if names:
        print("\nSeconds per notebook (profile full):")
    for name in names:
        entry = done.get(name)
        failed = d / "failed" / f"{name}.ipynb"
        executed = d / "executed" / f"{name}.ipynb"
        if entry and entry.get("profile") == "full":
            status, path = f"{entry['seconds']:8.1f} s  finished on {entry.get('gpu') or entry.get('device')}", executed
        elif failed.exists():
            cells = cell_seconds(failed)
            status = f"{sum(c[0] for c in cells):8.1f} s  STOPPED (time limit or error) in the cells shown"
            path = failed
        else:
            continue
        print(f"  {name:34s} {status}")
        if path.exists():
            for sec, label, first in cell_seconds(path)[:4]:
                print(f"      {label:>9s} {sec:8.1f} s  {first}")
    sweeps = sweep_progress(d / "sweeps.jsonl")
    if sweeps:
        print("\nSweeps (cellbook.map_tasks; a stopped one is projected at its pace so far):")
        for r in sweeps:
            pace = f"{r['seconds'] / r['done']:7.1f} s/task" if r["done"] else "      - s/task"
            whole = ("finished" if r["done"] == r["total"] else
                     f"all {r['total']}: about {r['seconds'] / r['done'] * r['total']:.0f} s" if r["done"] else
                     "no task finished yet")
            print(f"  {str(r['notebook']):34s} {r['desc'][:28]:28s} {r['done']:4d}/{r['total']:<4d} "
                  f"{r['running']:8.1f} s {pace}  {whole}")
    return 0


def sweep_progress(path: Path) -> list[dict]:
    """Each sweep of a ``CELLBOOK_SWEEP_LOG`` file (:class:`cellbook.parallel._SweepLog`), in the order the sweeps
    began: its last line that counted a task (``done``, and ``seconds`` when that task finished: the pace) with
    ``running``, the seconds of its latest line of any kind (heartbeats included: how long it ran).  A line cut
    short by a stopped run is skipped."""
    if not path.exists():
        return []
    last: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        running = max(r["seconds"], last.get(r["sweep"], {}).get("running", 0.0))
        last[r["sweep"]] = {**(last[r["sweep"]] if r.get("beat") and r["sweep"] in last else r), "running": running}
    return list(last.values())


if __name__ == "__main__":
    sys.exit(main())
