"""The built book as a reader meets it: served on localhost, every page opened in headless Chromium.

Checks (on ``book/_build/html``, crawled from ``index.html``): no broken internal link (nor a
``#fragment`` that names no heading), no image that did not load, no page showing a Python
traceback, every ``_toc.yml`` page reachable, a provenance box on every executed chapter, the
chapter template (Question / Paper section / Data / Take-aways) visible, each part's key
figure shown, and the exercises' solutions folded behind a toggle that opens on click.
Screenshots of the home page, one chapter and the results summary, and a JSON list of the pages
and figures per part, go to ``book/_build/screenshots/``. ``CELLBOOK_BOOK_ROOT=/path`` checks a book built in
another tree.

The page linter (``test_page_lint_*``, issue 22 item 7) opens every page at 1,400 and 400 px and fails
on a table / code block / output wider than its column that does not scroll in its own box (or a page
that scrolls sideways), text over text, figure text under 9 px, visible code above 15 % of a chapter
or a visible cell over 15 lines, a warning / traceback / stderr block / ``nan`` / >4-decimal number /
local path shown to the reader, and a part's chapter without its Question, Take-aways or provenance
box; it writes the per-page figures to ``book/_build/screenshots/page_lint.json``
(``benchmarks/page_lint_report.py`` prints them as a table).

Skips with a message when Chromium / chromedriver is absent or the book has not been built
(``make book``). ``test_fixture_book_*`` builds a tiny Jupyter Book with a broken link, a
missing image and a notebook that raised, and shows the same checks catch each of them;
``test_lint_fixture_*`` builds one with a clean and a doctored chapter (``fixtures/lintbook``) and
shows the linter names each problem of the doctored one and passes the clean one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_util import (  # noqa: E402
    LINT_WIDTHS,
    MIN_TEXT_KEY,
    chromium,
    chromium_missing_reason,
    crawl,
    figure_min_text_px,
    figures_missing,
    lint_site,
    page_path_of,
    png_text_chunks,
    provenance_missing,
    screenshot,
    serve,
    site_pages,
    structure_missing,
    unreached,
)

browser = pytest.mark.browser   # tests that drive Chromium (deselect with -m "not browser")

# The book to check: this checkout, or another tree laid out the same way (CELLBOOK_BOOK_ROOT).
REPO = Path(os.environ.get("CELLBOOK_BOOK_ROOT") or Path(__file__).resolve().parents[1]).resolve()
HTML = REPO / "book" / "_build" / "html"
RESULTS = REPO / "book" / "_build" / "results"
SCREENSHOTS = REPO / "book" / "_build" / "screenshots"
FIXTURE_BOOK = Path(__file__).resolve().parent / "fixtures" / "minibook"
LINT_BOOK = Path(__file__).resolve().parent / "fixtures" / "lintbook"
CHECKOUT = Path(__file__).resolve().parents[1]      # this checkout (its benchmarks/), whatever REPO is
EXECUTED = "notebooks/"   # toc entries of executed notebook chapters (staged by cellbook.book)
PARTS = ("part1", "part2", "part3")

# Each part's key figure: the chapter that must show it and how many figures that page shows at
# least. When the pinned chapter is not (yet) in _toc.yml, the part's chapters that record
# headline numbers (results JSON ``figures["headline"]``) stand in, else all its chapters.
KEY_FIGURES = {
    "part1": ("part1/03_table1", 1),     # Table 1 rebuilt: accuracy and macro-F1 per model, paper's beside
    "part2": ("part2/03_models_learning_curves", 1),   # Fig. 5a rebuilt: accuracy vs training-set size
    "part3": ("part3/03_accuracy", 3),   # Fig. 2 rebuilt: MSE curve, REP rank shares, REP-GEP distances, vs PCA/NMF
}


# --------------------------------------------------------------------------------------------
# the table of contents

def toc_parts(root: Path = REPO) -> dict[str, list[str]]:
    """``{"part1": [toc files...], ..., "other": [...]}``: every toc file, grouped by the part of
    the executed notebooks under it (a part's own .md pages go with its chapters)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    groups: dict[str, list[str]] = {"other": [toc["root"]]}

    def walk(entries, out):
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections"), out)
            walk(e.get("chapters"), out)

    for part in toc.get("parts") or []:
        files: list[str] = []
        walk(part.get("chapters"), files)
        names = {f[len(EXECUTED):].split("/")[0] for f in files if f.startswith(EXECUTED)}
        if not names:  # a part with no notebook chapters yet: named by its opening page (book/part2)
            names = {Path(f).name for f in files if re.fullmatch(r"book/part\d+", f)}
        key = names.pop() if len(names) == 1 else "other"
        groups.setdefault(key, []).extend(files)
    rest: list[str] = []
    walk(toc.get("chapters"), rest)
    groups["other"].extend(rest)
    return groups


def executed(files: list[str]) -> list[str]:
    return [f for f in files if f.startswith(EXECUTED)]


def all_toc_files() -> list[str]:
    return [f for files in toc_parts().values() for f in files]


def _headline_chapters(files: list[str]) -> list[str]:
    out = []
    for f in executed(files):
        path = RESULTS / f"{f[len(EXECUTED):]}.json"
        if path.exists() and json.loads(path.read_text()).get("figures", {}).get("headline"):
            out.append(f)
    return out


def _parts_to_check() -> list[str]:
    try:
        found = [p for p in toc_parts() if p.startswith("part")]
    except (OSError, yaml.YAMLError, KeyError):
        found = []
    return sorted(set(PARTS) | set(found))


# --------------------------------------------------------------------------------------------
# one crawl of the real book for the whole module

def _need_browser():
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    _need_browser()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def book_missing_reason(html_dir: Path = HTML) -> str | None:
    if not (Path(html_dir) / "index.html").exists():
        return (f"browser test skipped: the book has not been built ({Path(html_dir) / 'index.html'} missing); "
                "run `make book` first")
    return None


@pytest.fixture(scope="module")
def book(request):
    """The crawled real book (``SiteReport``) plus the screenshots taken of it."""
    reason = book_missing_reason()
    if reason:
        pytest.skip(reason)
    browser = request.getfixturevalue("driver")
    t0 = time.perf_counter()
    with serve(HTML) as base:   # stays up for the module's tests (report.base_url)
        report = crawl(browser, base)
        shots = {"home": screenshot(browser, base + "index.html", SCREENSHOTS / "home.png", full_page=False)}
        chapter = _screenshot_chapter(report)
        if chapter:
            shots["chapter"] = screenshot(browser, base + chapter, SCREENSHOTS / "chapter.png")
        summary = page_path_of(EXECUTED + "summary/01_results")
        if summary in report.pages:
            shots["results"] = screenshot(browser, base + summary, SCREENSHOTS / "results.png")
        report.seconds = time.perf_counter() - t0
        report.shots = shots
        _write_browser_report(report)
        yield report


def _write_browser_report(report) -> Path:
    """``book/_build/screenshots/browser_report.json``: the pages, figures per part and chapter,
    screenshots and seconds of this check (for the build's closing note)."""
    groups = toc_parts()
    part_of_page = {page_path_of(f): part for part, files in groups.items() for f in files}
    pages = {p: {"title": pg.title, "figures": len(pg.content_figures), "provenance_box": bool(pg.provenance),
                 "part": part_of_page.get(p, "other")} for p, pg in sorted(report.pages.items())}
    per_part: dict[str, int] = {}
    for info in pages.values():
        per_part[info["part"]] = per_part.get(info["part"], 0) + info["figures"]
    out = SCREENSHOTS / "browser_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "pages": pages, "figures_per_part": per_part,
        "screenshots": {k: str(v.relative_to(REPO)) for k, v in report.shots.items()},
        "problems": report.problems(), "seconds": round(report.seconds, 1)}, indent=2))
    return out


def _screenshot_chapter(report) -> str | None:
    """The first part's key-figure chapter if built, else the first executed chapter reached."""
    groups = toc_parts()
    for part in PARTS:
        files = executed(groups.get(part, []))
        pinned = EXECUTED + KEY_FIGURES[part][0] if part in KEY_FIGURES else None
        for f in ([pinned] if pinned in files else []) + files:
            if page_path_of(f) in report.pages:
                return page_path_of(f)
    return None


# --------------------------------------------------------------------------------------------
# the real book

def _stale_hint(files: list[str]) -> str:
    missing = [page_path_of(f) for f in files if not (HTML / page_path_of(f)).exists()]
    return (f"\n{len(missing)} page(s) listed in _toc.yml have no HTML file ({', '.join(missing[:5])}...): "
            "the built book predates _toc.yml, rebuild it (`make book`, or `make html` after `cellbook run`)"
            if missing else "")


@browser
def test_every_toc_page_is_reachable(book):
    assert len(book.pages) >= 2, f"only {sorted(book.pages)} reached from index.html"
    files = all_toc_files()
    assert unreached(book, files) == [], _stale_hint(files)


@browser
def test_no_broken_internal_links(book):
    assert book.broken_links == [], "\n".join(book.problems())


@browser
def test_no_missing_images(book):
    assert book.missing_images == [], "\n".join(book.problems())


@browser
def test_no_page_shows_a_traceback(book):
    assert book.tracebacks == [], (
        f"pages showing a Python traceback (a notebook raised): {book.tracebacks}")


@browser
def test_provenance_box_on_every_executed_chapter(book):
    chapters = executed(all_toc_files())
    if not chapters:
        pytest.skip("no executed chapters in _toc.yml yet")
    assert provenance_missing(book, chapters) == []


@browser
def test_chapters_show_question_data_and_takeaways(book):
    chapters = executed(all_toc_files())
    if not chapters:
        pytest.skip("no executed chapters in _toc.yml yet")
    assert structure_missing(book, chapters) == []


@browser
@pytest.mark.parametrize("part", _parts_to_check())
def test_key_figure_of_each_part(book, part):
    files = executed(toc_parts().get(part, []))
    if not files:
        pytest.skip(f"{part} has no executed chapters in _toc.yml yet")
    pinned = KEY_FIGURES.get(part)
    if pinned and EXECUTED + pinned[0] in files:
        assert figures_missing(book, [EXECUTED + pinned[0]], pinned[1]) == [], _stale_hint(files)
        return
    candidates = _headline_chapters(files) or files
    shown = [f for f in candidates if not figures_missing(book, [f], 1)]
    assert shown, f"{part}: no figure shown on any of {[page_path_of(f) for f in candidates]}" + _stale_hint(files)


@browser
def test_exercise_solutions_are_folded_and_open_on_click(book, driver):
    pages = [page_path_of(f) for f in all_toc_files() if re.fullmatch(r"book/exercises_part\d+", f)]
    if not pages:
        pytest.skip("no exercises pages in _toc.yml yet")
    assert not [p for p in pages if p not in book.pages], _stale_hint(
        [f for f in all_toc_files() if re.fullmatch(r"book/exercises_part\d+", f)])
    for path in pages:
        solutions = [d for d in book.page(path).dropdowns if d["title"].strip().startswith("Solution")]
        assert 2 <= len(solutions) <= 4, f"{path}: {len(solutions)} solution toggles, expected 2-4 exercises"
        assert all(d["hidden"] for d in solutions), f"{path}: a solution is visible before it is clicked"
    # The toggle works for a reader: one click shows the first solution.
    driver.get(book.base_url + pages[0])
    driver.execute_script("document.querySelector('.admonition.dropdown .admonition-title').click()")
    shown = driver.execute_script(
        "const d = document.querySelector('.admonition.dropdown');"
        "return Array.from(d.children).slice(1).some(c => c.offsetHeight > 0);")
    assert shown, f"{pages[0]}: clicking the first solution's title did not show it"


@browser
def test_one_search_box_at_desktop_width(book, driver):
    """The theme draws a search field in the sidebar and another in the top bar; only one may show."""
    driver.set_window_size(1400, 900)
    driver.get(book.base_url + "index.html")
    visible = driver.execute_script(
        "return Array.from(document.querySelectorAll('.search-button-field'))"
        ".filter(e => e.offsetWidth > 0 && e.offsetHeight > 0).length;")
    assert visible == 1, f"{visible} search boxes visible at 1400 px (book/_static/cellbook.css should hide one)"


@browser
def test_results_summary_lists_every_part(book):
    summary = page_path_of(EXECUTED + "summary/01_results")
    if EXECUTED + "summary/01_results" not in all_toc_files():
        pytest.skip("the results summary is not in _toc.yml yet")
    page = book.page(summary)
    for part in ("Part I", "Part II", "Part III"):
        assert part in page.text, f"{summary} does not mention {part}"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@browser
def test_screenshots_written(book):
    assert "home" in book.shots
    for name, path in book.shots.items():
        w, h = _png_size(path)
        assert w >= 800 and h >= 600, f"{name} screenshot {path} is only {w}x{h}"
        assert path.stat().st_size > 20_000, f"{name} screenshot {path} looks blank ({path.stat().st_size} bytes)"


@browser
def test_browser_report_written(book):
    data = json.loads((SCREENSHOTS / "browser_report.json").read_text())
    assert set(data["pages"]) == set(book.pages)
    assert sum(data["figures_per_part"].values()) == sum(len(p.content_figures) for p in book.pages.values())
    assert data["screenshots"]["home"] == "book/_build/screenshots/home.png"


# --------------------------------------------------------------------------------------------
# the page linter on the real book: every page at 1,400 and 400 px

@pytest.fixture(scope="module")
def page_lint(request):
    """Every page of the real book linted at each of ``LINT_WIDTHS`` (``LintReport``); the per-page
    figures go to ``book/_build/screenshots/page_lint.json``."""
    reason = book_missing_reason()
    if reason:
        pytest.skip(reason)
    browser = request.getfixturevalue("driver")
    with serve(HTML) as base:
        report = lint_site(browser, base, HTML)
    _write_page_lint(report)
    return report


def _write_page_lint(report) -> Path:
    """``book/_build/screenshots/page_lint.json``: per page and width the visible code share, smallest
    displayed figure text (px), smallest figure scale, widest element against the column, and the problems
    (for the build's closing note)."""
    out = SCREENSHOTS / "page_lint.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.to_json(), indent=2))
    return out


@browser
def test_page_lint_every_page_at_both_widths(page_lint):
    assert page_lint.pages, f"no pages found under {HTML}"
    problems = page_lint.problems()
    bad = sorted({p for p in page_lint.pages if page_lint.page_problems(p)})
    assert not problems, (f"the page linter found {len(problems)} problem(s) on {len(bad)} of {len(page_lint.pages)} "
                          f"pages (widths {', '.join(map(str, page_lint.widths))} px):\n" + "\n".join(problems)
                          + "\n\n" + page_lint.table())


@browser
def test_page_lint_report_written(page_lint):
    data = json.loads((SCREENSHOTS / "page_lint.json").read_text())
    assert set(data["pages"]) == set(page_lint.pages) == set(site_pages(HTML))
    for page, by_width in data["pages"].items():
        assert set(by_width) == {str(w) for w in LINT_WIDTHS}, page
        for figures in by_width.values():
            assert {"code_share", "min_figure_text_px", "widest_px", "column_px", "problems"} <= set(figures)
            assert figures["column_px"] > 0
    assert data["problems"] == page_lint.problems()


# --------------------------------------------------------------------------------------------
# the fixture book: the same checks catch a broken link, a missing image and a notebook that raised

def build_fixture_book(book: Path, tmp: Path) -> Path:
    """Build a copy of the fixture book ``book`` under ``tmp`` with Jupyter Book; returns its HTML folder."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if not jb:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    src = tmp / "book"
    shutil.copytree(book, src)
    proc = subprocess.run([jb, "build", str(src), "--path-output", str(src), "--keep-going"],
                          capture_output=True, text=True, timeout=180)
    html = src / "_build" / "html"
    assert (html / "index.html").exists(), \
        f"fixture book {book.name} did not build:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return html


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory, driver):
    html = build_fixture_book(FIXTURE_BOOK, tmp_path_factory.mktemp("minibook"))
    with serve(html) as base:
        report = crawl(driver, base)
    return report


@browser
def test_fixture_book_broken_link_is_caught(fixture_site):
    assert ("broken.html", "no_such_chapter.html") in fixture_site.broken_links
    assert ("broken.html", "good.html#no-such-heading") in fixture_site.broken_links


@browser
def test_fixture_book_missing_image_is_caught(fixture_site):
    assert [p for p, src in fixture_site.missing_images] == ["broken.html"]
    assert fixture_site.missing_images == [("broken.html", "_static/no_such_figure.png")]


@browser
def test_fixture_book_notebook_that_raised_is_caught(fixture_site):
    assert fixture_site.tracebacks == ["raised.html"]
    assert provenance_missing(fixture_site, ["raised", "good"]) == [
        "raised.html: no provenance box (div.cellbook-provenance)"]


@browser
def test_fixture_book_good_chapter_passes(fixture_site):
    # The control: the clean chapter shows its figure and is named in no problem.
    assert figures_missing(fixture_site, ["good"], 1) == []
    assert not [p for p in fixture_site.problems() if p.startswith("good.html")]
    assert unreached(fixture_site, ["index", "good", "raised", "broken"]) == []
    assert unreached(fixture_site, ["never_built"]) == [
        "never_built: page never_built.html not reached from the home page"]
    assert structure_missing(fixture_site, ["good"], required=("Question",)) == []
    assert structure_missing(fixture_site, ["raised"], required=("Question",)) == [
        "raised.html: no 'Question' on the page"]


# --------------------------------------------------------------------------------------------
# the lint fixture book: the linter names each problem of a doctored chapter and passes a clean one

DOCTORED = "notebooks/part1/doctored.html"
CLEAN = "notebooks/part1/clean.html"


@pytest.fixture(scope="module")
def lint_fixture_html(tmp_path_factory):
    return build_fixture_book(LINT_BOOK, tmp_path_factory.mktemp("lintbook"))


@pytest.fixture(scope="module")
def lint_fixture(lint_fixture_html, driver):
    with serve(lint_fixture_html) as base:
        return lint_site(driver, base, lint_fixture_html)


# What the linter must say about the doctored chapter, at every width (and the code budget at 1,400 px).
DOCTORED_PROBLEMS = {
    "wide table": r"table\.doctored-wide \"a rather long column name.*is \d+ px wide in a \d+ px column and does "
                  r"not scroll inside its own box",
    "page scrolls": r"the page scrolls sideways .*table\.doctored-wide",
    "nan": r"shows nan 'nan' in .*\"The control.s error rate was nan",
    "decimals": r"shows a number with more than 4 decimals '0\.1234567'",
    "overlap": r"text overlaps other text: .*\"This paragraph is where the next one"
               r".*p\.drawn-over \"A sentence drawn over",
    "spilled cell": r"text overlaps other text: .*table\.spills td \"a long label that spills over\""
                    r".*table\.spills td \"0\.500\"",
    "tiny figure": r"img \"figure [0-9a-f]+\.\.\.[0-9a-f]+\.png\".* shows text of 5\.0 px \(drawn at 5 px, shown at "
                   r"1\.00 scale\); the minimum is 9 px",
    "shrunk figure": r"img \"figure shrunk\.png\".* is shown at 0\.\d\d of its drawn width .*does not say its "
                     r"smallest text \(cellbook:min_text_px\)",
    "long cell": r"visible code cell of 20 lines \(at most 15\): .*div\.cell_input \"step_0 = run_step",
    "warning": r"shows a Python warning 'UserWarning:' in div\.output\.stderr",
    "local path": r"shows a local path '/work/' in div\.output\.stderr",
    "stderr": r"shows a stderr output block: .*div\.output\.stderr",
    "provenance": r"executed chapter without its provenance box \(div\.cellbook-provenance\)",
}


@browser
@pytest.mark.parametrize("width", LINT_WIDTHS)
def test_lint_fixture_doctored_page_names_each_problem(lint_fixture, width):
    problems = lint_fixture.pages[DOCTORED][width].problems
    assert all(p.startswith(f"{DOCTORED} @{width}px: ") for p in problems), problems
    expected = dict(DOCTORED_PROBLEMS)
    if width >= 1000:   # the 15 % budget is set for desktop widths
        expected["code budget"] = (r"visible code is \d+% of the page.s height \(\d+ of \d+ px in 2 cells\); "
                                   r"the budget is 15%")
    missed = [name for name, pattern in expected.items() if not any(re.search(pattern, p) for p in problems)]
    assert not missed, f"{DOCTORED} @{width}px: the linter did not name {missed}; it said:\n" + "\n".join(problems)
    unexplained = [p for p in problems if not any(re.search(pat, p) for pat in expected.values())]
    assert not unexplained, f"unexpected problems on {DOCTORED} @{width}px:\n" + "\n".join(unexplained)
    lint = lint_fixture.pages[DOCTORED][width]
    assert lint.min_figure_text_px == 5.0 and lint.min_figure_scale < 0.5 and lint.widest_px > 2 * lint.column_px


@browser
@pytest.mark.parametrize("width", LINT_WIDTHS)
def test_lint_fixture_clean_page_passes(lint_fixture, width):
    assert set(lint_fixture.pages) == {"index.html", CLEAN, DOCTORED}
    for page in ("index.html", CLEAN):
        assert lint_fixture.pages[page][width].problems == []
    clean = lint_fixture.pages[CLEAN][width]
    assert clean.min_figure_text_px == 11.1        # 8 pt at 100 dpi, shown 1:1 (from the PNG's chunk)
    assert clean.code_cells == 1                   # the 20-line cell folded behind "show code" is not counted
    assert 0 < clean.code_share < 0.15
    assert clean.widest_px > clean.column_px       # a wide table that scrolls inside its own box is fine
    assert lint_fixture.pages[CLEAN][width].column_px == (784 if width == 1400 else 368)


@browser
def test_lint_fixture_report_script(lint_fixture_html):
    proc = subprocess.run([sys.executable, str(CHECKOUT / "benchmarks" / "page_lint_report.py"),
                           str(lint_fixture_html), "--quiet"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {line.split("|")[0].strip(): line for line in proc.stdout.splitlines() if "|" in line}
    problems = {page: int(rows[page].split("|")[-1]) for page in (CLEAN, DOCTORED)}
    assert problems[CLEAN] == 0 and problems[DOCTORED] >= 2 * len(DOCTORED_PROBLEMS)
    assert "11.1" in rows[CLEAN] and "5.0" in rows[DOCTORED]


# --------------------------------------------------------------------------------------------
# the figures' PNG text chunk (no browser needed)

def test_png_text_chunks_reads_what_page_png_writes(tmp_path):
    import base64
    import io
    import zlib

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellbook import plots

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("t", fontsize=7.2)
    ax.tick_params(labelsize=9)
    png = plots.page_png(fig)
    plain = io.BytesIO()
    fig.savefig(plain, format="png")             # matplotlib's own PNG: no text-size chunk
    plt.close(fig)
    assert MIN_TEXT_KEY == plots.MIN_TEXT_KEY
    assert float(png_text_chunks(png)[MIN_TEXT_KEY]) == pytest.approx(10.0)   # 7.2 pt at 100 dpi
    # iTXt (compressed or not) and zTXt chunks are read too; a non-PNG has none
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    head, rest = png[:33], png[33:]
    doctored = (head + chunk(b"iTXt", b"a\0\0\0\0\0" + "ü".encode()) + chunk(b"iTXt", b"b\0\1\0\0\0"
                + zlib.compress(b"12.5")) + chunk(b"zTXt", b"c\0\0" + zlib.compress(b"z")) + rest)
    chunks = png_text_chunks(doctored)
    assert (chunks["a"], chunks["b"], chunks["c"]) == ("ü", "12.5", "z")
    assert png_text_chunks(b"GIF89a...") == {}
    # resolved from a served URL to the file under the HTML folder, or from a data: URL
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "f.png").write_bytes(png)
    base = "http://127.0.0.1:8000/"
    assert figure_min_text_px(base + "_images/f.png", base, tmp_path) == pytest.approx(10.0)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert figure_min_text_px(data_url, base, tmp_path) == pytest.approx(10.0)
    assert figure_min_text_px(base + "_images/missing.png", base, tmp_path) is None
    (tmp_path / "_images" / "plain.png").write_bytes(plain.getvalue())
    assert figure_min_text_px(base + "_images/plain.png", base, tmp_path) is None


def test_site_pages_skips_indexes_assets_and_redirects(tmp_path):
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    for page in ("book/intro.html", "notebooks/part1/a.html", "genindex.html", "search.html", "_static/x.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("<p>page</p>")
    assert site_pages(tmp_path) == ["book/intro.html", "notebooks/part1/a.html"]


# --------------------------------------------------------------------------------------------
# no browser needed: the skip messages and the server

def test_skip_reasons(tmp_path, monkeypatch):
    assert "make book" in book_missing_reason(tmp_path)
    (tmp_path / "index.html").write_text("<p>home</p>")
    assert book_missing_reason(tmp_path) is None
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert "Chromium not found" in chromium_missing_reason()
    monkeypatch.setenv("CHROMIUM", sys.executable)            # any executable will do here
    monkeypatch.setenv("CHROMEDRIVER", str(tmp_path / "no-such-driver"))
    assert "chromedriver not found" in chromium_missing_reason()


def test_serve_needs_a_built_site_and_serves_it(tmp_path):
    import urllib.request

    with pytest.raises(FileNotFoundError, match="make book"):
        with serve(tmp_path):
            pass
    (tmp_path / "index.html").write_text("<p>home</p>")
    with serve(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:") and base.endswith("/")
        assert urllib.request.urlopen(base + "index.html", timeout=10).read() == b"<p>home</p>"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "missing.html", timeout=10)


def test_toc_parts_groups_chapters_by_part(tmp_path):
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "I", "chapters": [{"file": "book/part1", "sections": [{"file": "notebooks/part1/01_a"}]},
                                      {"file": "book/exercises_part1"}]},
        {"caption": "II", "chapters": [{"file": "book/part2"}]},
        {"caption": "R", "chapters": [{"file": "notebooks/summary/01_results"}]}]}))
    groups = toc_parts(tmp_path)
    assert groups["part1"] == ["book/part1", "notebooks/part1/01_a", "book/exercises_part1"]
    assert groups["summary"] == ["notebooks/summary/01_results"]
    assert groups["part2"] == ["book/part2"]                     # a part with no chapters yet
    assert groups["other"] == ["book/intro"]
    assert executed(groups["part1"]) == ["notebooks/part1/01_a"]
    assert page_path_of("notebooks/part1/01_a") == "notebooks/part1/01_a.html"
