"""Annotation at scale: cellbook annotate beside CellTypist, training on 10^3-10^5 cells, annotating 10^4-10^6.

    python benchmarks/bench_annotate.py                      # references: real, 50k, 200k; queries 10k, 100k, 1M
    python benchmarks/bench_annotate.py --references real --queries 10000,100000 --methods cellbook,celltypist

Data: van Galen 2019 bone marrow (``vangalen2019_bm_seqwell``, all 27,899 genes, sparse CSR h5ad files on disk),
split 2:1 (stratified).  The real training cells are the "real" reference; larger references are resampled from
them, queries from the held-out cells (see :mod:`cellbook.scaling`): every such row says "resampled".  Each
measurement runs in its own process; one that passes ``--memory-gb`` or ``--timeout-min`` is killed and printed
as skipped, with the reason, as is a size whose smaller size already failed or whose linear estimate is over
the time limit.  Accuracy and macro-F1: on the real held-out cells (fit rows) and on the resampled query's
labels (predict rows).  ``--json`` keeps the rows; ``cellbook run part1/07_annotate_at_scale -p
scaling_results=FILE`` draws the book's figure from them.  scANVI (scvi-tools) is not timed here: it is
printed as skipped when absent.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from cellbook import scaling
from cellbook.annotation import load_reference


def _sizes(text: str) -> list:
    return [None if s.strip() == "real" else int(float(s)) for s in text.split(",") if s.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--references", default="real,50000,200000", help="reference sizes ('real': the real cells)")
    p.add_argument("--queries", default="10000,100000,1000000", help="query sizes (resampled)")
    p.add_argument("--methods", default="cellbook,cellbook_cnn,celltypist",
                   help=f"of {', '.join(m for m in scaling.METHODS if m != 'celltypist_blocks')}")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "cellbook-bench-annotate"),
                   help="where the h5ad and model files go (kept; a second run reuses the files)")
    p.add_argument("--timeout-min", type=float, default=20.0)
    p.add_argument("--memory-gb", type=float, default=16.0)
    p.add_argument("--json", help="write the rows here (default: WORKDIR/results.json)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in scaling.METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}")
    print(f"machine: {scaling.machine()}")
    for name, package in (("scANVI", "scvi"),):
        if importlib.util.find_spec(package) is None:
            print(f"{name}: skipped (scvi-tools is not installed: pip install 'cellbook[anchors]')")
        else:
            print(f"{name}: installed, but not timed by this benchmark (its fit needs hours of CPU at 200k cells)")
    adata, _ = load_reference("vangalen2019_bm_seqwell")
    t0 = time.perf_counter()
    rows = scaling.annotation_scaling(adata, args.workdir, reference_sizes=_sizes(args.references),
                                      query_sizes=[s for s in _sizes(args.queries) if s], methods=methods,
                                      timeout=args.timeout_min * 60, memory_gb=args.memory_gb,
                                      source="vangalen2019_bm_seqwell")
    table = scaling.scaling_table(rows)
    out = Path(args.json or Path(args.workdir) / "results.json")
    out.write_text(json.dumps({"machine": scaling.machine(), "rows": json.loads(table.to_json(orient="records"))},
                              indent=1), encoding="utf-8")
    _print(table)
    print(f"\n{time.perf_counter() - t0:.0f} s in all; rows in {out}")
    return 0


def _print(table: pd.DataFrame) -> None:
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        for stage, title in (("fit", "Training (cells: resampled unless real)"),
                             ("predict", "Annotating (query cells: resampled)")):
            print(f"\n{title}")
            print(scaling.format_table(table, stage).to_string(index=False))
        skipped = table[table["status"] != "ok"]
        if len(skipped):
            print("\nNot run or stopped:")
            for _, r in skipped.iterrows():
                print(f"  {r['stage']} {scaling.SHORT.get(r['method'], r['method'])}, {r['cells']:,} cells: "
                      f"{r['status']}")


if __name__ == "__main__":
    sys.exit(main())
