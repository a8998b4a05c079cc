"""The page linter on a built book: every page at 1,400 and 400 px in headless Chromium (issue 22, item 7).

    .venv/bin/python benchmarks/page_lint_report.py [BOOK_ROOT] [--json OUT] [--quiet]

``BOOK_ROOT`` is a checkout whose book is built (``BOOK_ROOT/book/_build/html``; default: this one), or an
HTML folder itself. Prints one line per page: at each width the visible code share (executed chapters),
the smallest displayed figure text in px (read from the figures' ``cellbook:min_text_px`` PNG chunks),
the smallest figure scale (displayed / drawn width) and the widest table / code block / output against
the article column; then the number of problems, and every problem (page, width, element, what is
wrong). ``--json`` also writes the figures and problems as JSON. Exits 1 when there are problems,
2 when the book is not built or Chromium is missing.

The checks and their limits are those of ``tests/test_browser.py::test_page_lint_*``
(``tests/browser_util.py``: ``lint_site``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from browser_util import (  # noqa: E402
    LINT_WIDTHS,
    chromium,
    chromium_missing_reason,
    lint_site,
    serve,
)


def html_dir(root: Path) -> Path:
    root = Path(root)
    if (root / "index.html").exists() and not (root / "book").is_dir():
        return root
    return root / "book" / "_build" / "html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("book_root", nargs="?", default=str(REPO),
                    help="a checkout with a built book (book/_build/html), or an HTML folder (default: this checkout)")
    ap.add_argument("--json", metavar="OUT", help="also write the per-page figures and the problems as JSON")
    ap.add_argument("--widths", default=",".join(map(str, LINT_WIDTHS)),
                    help="window widths in px (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="the table only, not every problem")
    args = ap.parse_args(argv)
    html = html_dir(Path(args.book_root))
    if not (html / "index.html").exists():
        print(f"page_lint_report: no built book at {html} (run `make book` first)", file=sys.stderr)
        return 2
    reason = chromium_missing_reason()
    if reason:
        print(f"page_lint_report: cannot open the pages: {reason}", file=sys.stderr)
        return 2
    widths = tuple(int(w) for w in args.widths.split(","))
    with serve(html) as base, chromium() as driver:
        report = lint_site(driver, base, html, widths=widths)
    print(f"page lint of {html}\n")
    print(report.table())
    problems = report.problems()
    if problems and not args.quiet:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  {p}" for p in problems))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2))
        print(f"\nwritten: {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
