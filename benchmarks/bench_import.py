"""How long a cold start takes: ``import cellbook``, ``cellbook --help`` and ``cellbook list``.

    python benchmarks/bench_import.py            # median of 5 fresh interpreters each
    python benchmarks/bench_import.py --repeats 9

Each measurement is a new Python process (nothing cached in memory but the OS's file cache),
timed from start to exit.  Targets: ``import cellbook`` <= 0.5 s, ``cellbook --help`` and
``cellbook list`` <= 1 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "import cellbook": [sys.executable, "-c", "import cellbook"],
    "cellbook --help": [sys.executable, "-m", "cellbook.cli", "--help"],
    "cellbook list": [sys.executable, "-m", "cellbook.cli", "list"],
    "python (no import)": [sys.executable, "-c", "pass"],
}
TARGETS = {"import cellbook": 0.5, "cellbook --help": 1.0, "cellbook list": 1.0}


def cold_seconds(command: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'what':<20} {'median s':>9} {'min s':>7} {'max s':>7}  target")
    for name, command in COMMANDS.items():
        times = cold_seconds(command, args.repeats)
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target} s: {'ok' if statistics.median(times) <= target else 'OVER'}"
        print(f"{name:<20} {statistics.median(times):>9.2f} {min(times):>7.2f} {max(times):>7.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
