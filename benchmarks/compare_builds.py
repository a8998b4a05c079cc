"""Compare two quick builds figure by figure: did a change keep every number?

    python benchmarks/compare_builds.py BEFORE/book/_build/results AFTER/book/_build/results

Reads every results JSON under both trees (``<part>/<notebook>.json``) and compares their ``figures`` and
``tables`` value by value. Timing and provenance fields (run times, dates, commits, run ids, versions) are
left out: they differ between any two runs; so are table and headline rows about time (a t-test of fit
seconds, a claim that one model trains faster). A ``"mean ± SD"`` string compares as numbers, at the coarser of
the two precisions, so a changed display precision is not a changed number. Exits 1 on any difference,
listing each (file, path, before, after); figures that exist on one side only are listed by name.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

# Keys (or table columns) that hold times or run bookkeeping, not results.
TIMING = re.compile(r"(second|(^|[_:\s])s$|_s::|^fit_s|\(s\)|\btime\b|_time|time_|wall|elapsed|duration|"
                    r"throughput|cells/s|per_s|_utc$|^run_id$|^commit$|^versions$)", re.IGNORECASE)
# A table or headline row about time (a t-test of fit seconds, "seconds to classify 96 images", a claim
# that one model trains faster): its numbers are timings too, and the whole row is left out.
TIMING_ROW = re.compile(TIMING.pattern + r"|\bfaster\b|\bslower\b|\bmin(utes)?\b|seconds", re.IGNORECASE)
PM = re.compile(r"^\s*([-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?)\s*(%?)\s*±"
                r"\s*([-+]?[\d,]*\.?\d+(?:[eE][-+]?\d+)?)\s*(%?)\s*$")


def load_tree(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(Path(root).glob("**/*.json")):
        rel = p.relative_to(root)
        if p.name.startswith("_") or any(part.startswith(".") for part in rel.parts):
            continue
        out[str(rel.with_suffix("")).replace("\\", "/")] = json.loads(p.read_text())
    return out


def _decimals(text: str) -> int:
    text = text.replace(",", "")
    return len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 0


def _same_pm(a: str, b: str) -> bool | None:
    """None when either is not ``mean ± sd``; else whether both agree at the coarser precision."""
    ma, mb = PM.match(a), PM.match(b)
    if not (ma and mb):
        return None
    for ia in (1, 3):
        xa, xb = ma.group(ia), mb.group(ia)
        d = min(_decimals(xa), _decimals(xb))
        va, vb = float(xa.replace(",", "")), float(xb.replace(",", ""))
        if abs(round(va, d) - round(vb, d)) > 1.01 * 10 ** -d:   # 1 unit: rounding a rounded number
            return False
    return True


def _timing_row(row) -> bool:
    return isinstance(row, dict) and any(isinstance(v, str) and TIMING_ROW.search(v) for v in row.values())


def compare(a, b, path: str, out: list, rtol: float = 0.0) -> int:
    """Append ``(path, a, b)`` for every difference; returns the number of leaf values compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        n = 0
        for k in sorted(set(a) | set(b), key=str):
            if TIMING.search(str(k)):
                continue
            if k not in a or k not in b:
                out.append((f"{path}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>")))
                continue
            n += compare(a[k], b[k], f"{path}.{k}", out, rtol)
        return n
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"<{len(a)} items>", f"<{len(b)} items>"))
            return 1
        return sum(compare(x, y, f"{path}[{i}]", out, rtol) for i, (x, y) in enumerate(zip(a, b))
                   if not (_timing_row(x) or _timing_row(y)))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not (a == b or (rtol and math.isclose(a, b, rel_tol=rtol, abs_tol=0.0))):
            out.append((path, a, b))
        return 1
    if isinstance(a, str) and isinstance(b, str) and a != b:
        if not _same_pm(a, b):
            out.append((path, a, b))
        return 1
    if a != b:
        out.append((path, a, b))
    return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path, help="results tree of the build before the change (book/_build/results)")
    ap.add_argument("after", type=Path, help="results tree of the build after the change")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers (default: exact)")
    ap.add_argument("--allow", action="append", default=[], metavar="FILE[:KEY]",
                    help="a figure whose form changed on purpose: listed, not counted (repeatable)")
    args = ap.parse_args(argv)
    for root in (args.before, args.after):
        if not root.is_dir():
            ap.error(f"{root} is not a results folder (book/_build/results of a build)")
    before, after = load_tree(args.before), load_tree(args.after)
    diffs: list[tuple[str, str, object, object]] = []
    only = sorted(set(before) ^ set(after))
    n_values = 0
    for name in sorted(set(before) & set(after)):
        found: list = []
        for part in ("figures", "tables"):
            n_values += compare(before[name].get(part, {}), after[name].get(part, {}), part, found, args.rtol)
        diffs += [(name, *d) for d in found]
    allowed = [d for d in diffs if any(d[0] == a or f"{d[0]}:{d[1].split('.')[1].split('[')[0]}" == a
                                       for a in args.allow)]
    counted = [d for d in diffs if d not in allowed]
    for name in only:
        print(f"{name}: only in {'the build before' if name in before else 'the build after'}")
    for name, path, a, b in counted:
        print(f"{name}: {path}: {a!r} -> {b!r}")
    if allowed:
        print(f"changed on purpose (--allow): {len(allowed)} value(s) in "
              + ", ".join(sorted({f'{d[0]}:{d[1]}' for d in allowed})))
    print(f"compared {len(set(before) & set(after))} results files, {n_values} values "
          f"(timing and provenance left out): {len(counted)} difference(s), {len(only)} file(s) on one side only")
    return 1 if counted or only else 0


if __name__ == "__main__":
    sys.exit(main())
