"""Check a built HTML book the way a reader meets it: served on localhost, opened in headless Chromium.

Used by ``tests/test_browser.py`` both on the real book (``book/_build/html``) and on a small
fixture book that contains a broken link, a missing image and a notebook that raised, so the
same code is shown to catch those.

    with serve(html_dir) as base_url, chromium(tmp_dir) as driver:
        report = crawl(driver, base_url)
        report.problems()          # ["book/x.html: broken internal link -> missing.html", ...]

The page linter (``lint_site``, issue 22 item 7) opens every page at 1,400 and 400 px (one page load and
one script per page and width; the figures' PNG text chunks are read here in Python) and names, per
page, width and element: tables / code / outputs wider than the column that do not scroll in their own
box, a page that scrolls sideways, text over text, figure text under 9 px, visible code over budget,
what a reader must not see (warnings, tracebacks, stderr, nan, >4 decimals, local paths), and a part's
chapter without its Question / Take-aways / provenance box.

    with serve(html_dir) as base_url, chromium() as driver:
        lint = lint_site(driver, base_url, html_dir)
        lint.problems()            # ["notebooks/part1/03_table1.html @400px: table ... does not scroll ...", ...]
        lint.table()               # code share, figure text, widest element / column per page and width
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import math
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# What a notebook that raised looks like on a page built by myst-nb (Jupyter Book 1.x): the
# error output is a div with class "traceback" (highlight-ipythontb); the text is IPython's
# "Traceback (most recent call last)" header. Either is a failure.
TRACEBACK_TEXT = "Traceback (most recent call last)"
TRACEBACK_SELECTOR = "div.output.traceback, div.highlight-ipythontb, div.output.error"
PROVENANCE_SELECTOR = "div.cellbook-provenance"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1366,900", "--hide-scrollbars")
# Folders of a Sphinx build that hold assets, not pages to crawl.
NOT_PAGES = ("_static/", "_sources/", "_images/", "_downloads/")

# Gathered in one round trip per page.
_PAGE_JS = r"""
const main = document.querySelector('main, article, div.bd-article, div[role=main]') || document.body;
const sel = arguments[0];
return {
  url: location.href,
  title: document.title,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href)
         .concat(Array.from(document.querySelectorAll('link[rel=stylesheet][href], script[src]'))
                 .map(e => e.href || e.src)),
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, alt: i.alt || '',
      complete: i.complete, w: i.naturalWidth,
      inContent: main.contains(i) && !i.closest('.navbar, nav, header, footer, .bd-sidebar-primary, .bd-header'),
      figure: !!i.closest('div.cell_output, figure')})),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id)
       .concat(Array.from(document.querySelectorAll('a[name]')).map(e => e.name)),
  tracebackNodes: document.querySelectorAll(sel.tb).length,
  provenance: document.querySelectorAll(sel.prov).length,
  dropdowns: Array.from(document.querySelectorAll('.admonition.dropdown, details.sd-dropdown')).map(d => {
      const body = Array.from(d.children).filter(c => !c.classList.contains('admonition-title')
          && !['BUTTON', 'SUMMARY'].includes(c.tagName));
      return {title: (d.querySelector('.admonition-title, summary') || {}).innerText || '',
              hidden: body.length > 0 && body.every(c => c.offsetHeight === 0
                  || ['hidden', 'collapse'].includes(getComputedStyle(c).visibility))};
  }),
  text: document.body ? document.body.innerText : '',
  articleText: (document.querySelector('article.bd-article, article, div[role=main]') || main).innerText
};
"""


@dataclass
class Page:
    """What a reader's browser found on one page."""
    path: str                      # relative to the site root, e.g. "book/intro.html"
    title: str = ""
    links: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    traceback_nodes: int = 0
    traceback_text: bool = False
    provenance: int = 0
    text: str = ""                 # the page's visible text (innerText)
    article_text: str = ""         # the visible text of the article alone (no navigation)
    dropdowns: list[dict] = field(default_factory=list)   # toggles: {title, hidden} (hidden = folded)

    @property
    def content_figures(self) -> list[dict]:
        """Images in the page body that are notebook output / figures (not logos or icons)."""
        return [i for i in self.images if i["inContent"] and i["figure"]]


@dataclass
class SiteReport:
    base_url: str
    pages: dict[str, Page] = field(default_factory=dict)
    broken_links: list[tuple[str, str]] = field(default_factory=list)     # (page, target)
    missing_images: list[tuple[str, str]] = field(default_factory=list)   # (page, src)
    tracebacks: list[str] = field(default_factory=list)                   # pages

    def problems(self) -> list[str]:
        out = [f"{p}: broken internal link -> {t}" for p, t in self.broken_links]
        out += [f"{p}: image did not load -> {s}" for p, s in self.missing_images]
        out += [f"{p}: shows a Python traceback (a notebook raised)" for p in self.tracebacks]
        return out

    def page(self, path: str) -> Page:
        if path not in self.pages:
            raise KeyError(f"page {path!r} was not reached from the home page; crawled: {sorted(self.pages)}")
        return self.pages[path]


# --------------------------------------------------------------------------------------------
# the server and the browser

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client closing early is not an error here
        pass


@contextlib.contextmanager
def serve(directory: str | Path):
    """Serve ``directory`` on a free localhost port in a thread; yields the base URL (ends in /)."""
    directory = Path(directory)
    if not (directory / "index.html").exists():
        raise FileNotFoundError(f"no index.html in {directory}: build the book first (make book)")
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def find_chromium() -> tuple[str | None, str | None]:
    """Paths of the Chromium binary and chromedriver (env CHROMIUM / CHROMEDRIVER, else PATH)."""
    def usable(path):
        return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None

    binary = (usable(os.environ["CHROMIUM"]) if os.environ.get("CHROMIUM") else next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None))
    driver = (usable(os.environ["CHROMEDRIVER"]) if os.environ.get("CHROMEDRIVER")
              else shutil.which("chromedriver"))
    return binary, driver


def chromium_missing_reason() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    binary, driver = find_chromium()
    if not binary:
        return "Chromium not found (apt-get install chromium chromium-driver, or set CHROMIUM=/path)"
    if not driver:
        return "chromedriver not found (apt-get install chromium-driver, or set CHROMEDRIVER=/path)"
    return None


@contextlib.contextmanager
def chromium(profile_dir: str | Path | None = None):
    """A headless Chromium (selenium) with a fresh user-data dir; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = chromium_missing_reason()
    if reason:
        raise RuntimeError(reason)
    binary, driver_path = find_chromium()
    with contextlib.ExitStack() as stack:
        if profile_dir is None:
            profile_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cellbook-chromium-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = binary
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={profile_dir}")
        from selenium.common.exceptions import WebDriverException

        try:
            driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
        except WebDriverException as err:
            raise RuntimeError(f"Chromium ({binary}) with chromedriver ({driver_path}) did not start: "
                               f"{str(err).strip().splitlines()[0] if str(err).strip() else err!r}") from None
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


# --------------------------------------------------------------------------------------------
# crawling and checking

def _site_path(url: str, base_url: str) -> str | None:
    """Path of ``url`` relative to the site root, or None for external / non-http links."""
    parts = urllib.parse.urlsplit(url)
    base = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or parts.netloc != base.netloc:
        return None
    path = urllib.parse.unquote(parts.path)
    if path.startswith(base.path):
        path = path[len(base.path):]
    # (a path outside the served tree stays absolute and will 404)
    return path + (f"#{parts.fragment}" if parts.fragment else "")


def _is_page(path: str) -> bool:
    return (path == "" or path.endswith(".html") or path.endswith("/")) and not path.startswith(NOT_PAGES)


def _url_ok(url: str, cache: dict) -> bool:
    if url not in cache:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=20) as resp:
                cache[url] = 200 <= resp.status < 400
        except (urllib.error.URLError, OSError):
            cache[url] = False
    return cache[url]


_REFRESH = re.compile(r"""<meta[^>]+http-equiv=["']?refresh["']?[^>]*content=["']?\s*\d+\s*;\s*url=([^"'>]+)""",
                      re.IGNORECASE)


def _meta_refresh(url: str) -> str | None:
    """The target of a ``<meta http-equiv="Refresh">`` redirect page (Sphinx's index.html), or None."""
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            head = resp.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None
    m = _REFRESH.search(head)
    return urllib.parse.urljoin(url, m.group(1).strip()) if m else None


def crawl(driver, base_url: str, start: str = "index.html", max_pages: int = 500,
          check_fragments: bool = True) -> SiteReport:
    """Visit every page reachable from ``start`` through internal links, and check each one.

    Checks: every internal link resolves (HTTP 200, and ``#fragment`` names an element id on
    the target page when that page is a crawled HTML page), every ``<img>`` loaded
    (``complete`` and ``naturalWidth > 0``), no page shows a Python traceback.
    """
    report = SiteReport(base_url=base_url)
    queue, seen = [start], {start}
    http_ok: dict = {}
    fragment_links: list[tuple[str, str, str]] = []   # (page, target path, fragment)
    while queue:
        path = queue.pop(0)
        if len(report.pages) >= max_pages:
            raise RuntimeError(f"more than {max_pages} pages under {base_url}: is the crawl escaping the book?")
        url = urllib.parse.urljoin(base_url, path)
        if not _url_ok(url, http_ok):
            continue  # reported as a broken link by the page that linked here
        redirect = _meta_refresh(url) if path.endswith(".html") or path == "" else None
        if redirect:
            target = _site_path(redirect, base_url)
            if target is None or not _url_ok(redirect, http_ok):
                report.broken_links.append((path, redirect))
            elif target.split("#")[0] not in seen:
                seen.add(target.split("#")[0])
                queue.append(target.split("#")[0])
            continue
        driver.get(url)
        info = driver.execute_script(_PAGE_JS, {"tb": TRACEBACK_SELECTOR, "prov": PROVENANCE_SELECTOR})
        # Follow redirects (index.html -> book/intro.html) under the path the browser landed on.
        landed = _site_path(info["url"], base_url) or path
        landed = landed.split("#")[0]
        page = Page(path=landed, title=info["title"], links=info["links"], images=info["images"],
                    ids=set(info["ids"]), traceback_nodes=info["tracebackNodes"],
                    traceback_text=TRACEBACK_TEXT in info["text"], provenance=info["provenance"],
                    text=info["text"], article_text=info["articleText"], dropdowns=info["dropdowns"])
        if landed != path:
            seen.add(landed)
            if landed in report.pages:
                continue
        report.pages[landed] = page
        if page.traceback_nodes or page.traceback_text:
            report.tracebacks.append(landed)
        for img in page.images:
            if not img["complete"] or not img["w"]:
                # one retry through HTTP: a slow image is not a missing one
                if not (img["src"].startswith("data:") or _url_ok(img["src"], http_ok)) or not img["w"]:
                    report.missing_images.append((landed, _site_path(img["src"], base_url) or img["src"]))
        for link in page.links:
            target = _site_path(link, base_url)
            if target is None:
                continue
            target_path, _, fragment = target.partition("#")
            target_url = urllib.parse.urljoin(base_url, target_path)
            if not _url_ok(target_url, http_ok):
                report.broken_links.append((landed, target))
                continue
            if fragment and check_fragments:
                fragment_links.append((landed, target_path or landed, fragment))
            if _is_page(target_path) and target_path not in seen:
                seen.add(target_path)
                queue.append(target_path)
    for page_path, target_path, fragment in fragment_links:
        target = report.pages.get(target_path) or report.pages.get(target_path + "index.html")
        if target is not None and urllib.parse.unquote(fragment) not in target.ids:
            report.broken_links.append((page_path, f"{target_path}#{fragment}"))
    report.broken_links = sorted(set(report.broken_links))
    report.missing_images = sorted(set(report.missing_images))
    return report


def screenshot(driver, url: str, out: str | Path, full_page: bool = True, max_height: int = 6000) -> Path:
    """Save a PNG of ``url`` (the whole page up to ``max_height`` px when ``full_page``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1366, 900)
    driver.get(url)
    if full_page:
        height = driver.execute_script("return Math.max(document.body.scrollHeight, "
                                       "document.documentElement.scrollHeight)")
        driver.set_window_size(1366, int(min(max(900, height), max_height)))
    driver.save_screenshot(str(out))
    driver.set_window_size(1366, 900)
    return out


# --------------------------------------------------------------------------------------------
# checks on a crawled site, shared by the real book's test and the fixture book's test

def page_path_of(toc_file: str) -> str:
    """Site path of a ``_toc.yml`` file entry: ``notebooks/part1/01_data`` -> ``notebooks/part1/01_data.html``."""
    return toc_file.removesuffix(".md").removesuffix(".ipynb") + ".html"


def unreached(report: SiteReport, toc_files: list[str]) -> list[str]:
    """Table-of-contents entries whose page a reader cannot reach from the home page."""
    return [f"{f}: page {page_path_of(f)} not reached from the home page"
            for f in toc_files if page_path_of(f) not in report.pages]


def provenance_missing(report: SiteReport, toc_files: list[str]) -> list[str]:
    """Executed chapters whose page lacks the provenance box (``div.cellbook-provenance``)."""
    out = []
    for f in toc_files:
        page = report.pages.get(page_path_of(f))
        if page is not None and not page.provenance:
            out.append(f"{page.path}: no provenance box ({PROVENANCE_SELECTOR})")
    return out


def figures_missing(report: SiteReport, toc_files: list[str], min_figures: int = 1) -> list[str]:
    """Pages (of ``toc_files``) that show fewer than ``min_figures`` loaded figures in their body."""
    out = []
    for f in toc_files:
        page = report.pages.get(page_path_of(f))
        if page is None:
            out.append(f"{page_path_of(f)}: not reached")
            continue
        loaded = [i for i in page.content_figures if i["complete"] and i["w"] > 0]
        if len(loaded) < min_figures:
            out.append(f"{page.path}: {len(loaded)} figure(s) shown, expected at least {min_figures}")
    return out


def structure_missing(report: SiteReport, toc_files: list[str],
                      required=("Question", "Paper section", "Data", "Take-aways")) -> list[str]:
    """Chapter pages whose visible text lacks one of the chapter-template labels.

    A chapter opens with **Question**, **Paper section**, **Data** and ends with **Take-aways**
    (CONTRIBUTING.md); a reader who does not see them on the page has a chapter without them.
    """
    out = []
    for f in toc_files:
        page = report.pages.get(page_path_of(f))
        if page is None:
            continue
        # Labels match as written (case-sensitive), except take-aways / Takeaways / Take-Aways.
        text = page.article_text or page.text
        lowered = text.lower().replace("takeaway", "take-away")
        missing = [r for r in required
                   if not (r.lower() in lowered if r.lower().startswith("take-away") else r in text)]
        if missing:
            out.append(f"{page.path}: no {', '.join(repr(m) for m in missing)} on the page")
    return out


# --------------------------------------------------------------------------------------------
# the page linter: every page at a desktop and a phone width, checked the way a reader sees it
#
#     with serve(html_dir) as base_url, chromium() as driver:
#         lint = lint_site(driver, base_url, html_dir)     # every page at 1400 and 400 px
#         lint.problems()    # ["notebooks/part1/03_table1.html @400px: table.dataframe ... does not scroll ...", ...]
#         lint.figures()     # {page: {"1400": {"code_share": 0.12, "min_figure_text_px": 9.7, ...}}}

LINT_WIDTHS = (1400, 400)
LINT_HEIGHT = 900
MIN_FIGURE_TEXT_PX = 9.0        # displayed figure text (plots.MIN_FONT_PT at the column's 100 dpi is 9.7 px)
MIN_FIGURE_SCALE = 0.9          # a figure without a text-size chunk may not be shown smaller than this
CODE_BUDGET = 0.15              # visible code over the article's height, executed chapters
CODE_BUDGET_MIN_WIDTH = 1000    # the budget is set for desktop widths (1,400 px); at 400 px it is only reported
MAX_CODE_LINES = 15             # lines of one visible code cell
MIN_TEXT_KEY = "cellbook:min_text_px"   # = cellbook.plots.MIN_TEXT_KEY (not imported: this file needs no cellbook)
ARTICLE_SELECTOR = "article.bd-article, article, div[role=main], main"
# Text-bearing leaf blocks whose boxes must not overlap each other.
TEXT_BLOCKS = "p, li, td, th, h1, h2, h3, h4, h5, h6, figcaption, dt, dd, .admonition-title, summary"
# Elements that must fit their column or scroll inside their own box.
WIDE_ELEMENTS = "table, pre, div.highlight, div.cell_output .output, div.cell_output > *, figure"
CODE_INPUT = "div.cell_input"
# What a reader must never see (item 5 of issue 22): JS regexes (the browser searches visible text nodes).
FORBIDDEN = (
    ("a Python warning", r"\b\w*Warning:"),
    ("a traceback", r"Traceback \(most recent call last\)"),
    ("nan", r"\b(?:nan|NaN|NAN)\b"),
    # a number with more than 4 decimals; not the tail of a version, DOI or arXiv id ("arXiv:1712.02034")
    ("a number with more than 4 decimals", r"(?<![\w.:/])\d+\.\d{5,}(?![\w/])"),
    ("a local path", r"/tmp/|/work/|/home/|/root/|\.venv/|site-packages"),
)
# Pages of executed chapters (visible-code budget) and of the parts' chapters (Question / Take-aways / provenance).
EXECUTED_PAGE = re.compile(r"^notebooks/")
PART_CHAPTER_PAGE = re.compile(r"^notebooks/part[^/]*/")
# Not reader pages: Sphinx's generated indexes.
NOT_LINTED = ("genindex.html", "search.html", "py-modindex.html")

_LINT_JS = (r"""
const cfg = arguments[0];
const art = cfg.article.split(',').map(s => document.querySelector(s.trim())).find(Boolean) || document.body;
const W = window.innerWidth, tol = cfg.tol;
const styleCache = new Map();
const style = e => { let s = styleCache.get(e); if (!s) { s = getComputedStyle(e); styleCache.set(e, s); } return s; };
const visible = e => e.getClientRects().length > 0 && e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true,
    opacityProperty: true, visibilityProperty: true, contentVisibilityAuto: true});
const squash = t => (t || '').replace(/\s+/g, ' ').trim();
const words = e => {
  const t = squash(e.innerText || e.textContent); return t.length > 48 ? t.slice(0, 45) + '...' : t;
};
const SKIP_CLASS = /^(docutils|container|notranslate|highlight-[\w-]+|cell|tag_[\w-]+)$/;
function cssPath(el) {   // up to 3 levels; a table's rows and sections are skipped ("table.x td")
  let path = '', sep = '';
  let n = 0;
  for (let e = el; e && e !== art && e !== document.body && n < 3; e = e.parentElement) {
    if (e !== el && ['TBODY', 'THEAD', 'TFOOT', 'TR'].includes(e.tagName)) { sep = ' '; continue; }
    let s = e.tagName.toLowerCase();
    const cls = Array.from(e.classList).filter(c => !SKIP_CLASS.test(c)).slice(0, 2);
    if (e.id && n === 0) s += '#' + e.id;
    else if (cls.length) s += '.' + cls.join('.');
    path = s + (path ? (sep || ' > ') + path : '');
    sep = '';
    n += 1;
  }
  return path;
}
function section(el) {
  const sec = el.closest('section');
  const h = sec && sec.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
  return h ? squash(h.innerText).replace(/#$/, '').slice(0, 40) : '';
}
const imgName = img => { const f = (img.getAttribute('src') || '').split('/').pop();
  return `figure ${f.length > 26 ? f.slice(0, 12) + '...' + f.slice(-10) : f}`; };
function label(el, text) {
  const w = text === undefined ? (el.tagName === 'IMG' ? imgName(el) : words(el)) : text;
  const s = section(el);
  return cssPath(el) + (w ? ` "${w}"` : '') + (s ? ` (section "${s}")` : '');
}
// The column: the article's content box.
const ar = art.getBoundingClientRect(), as = style(art);
const colLeft = ar.left + parseFloat(as.borderLeftWidth) + parseFloat(as.paddingLeft);
const colW = art.clientWidth - parseFloat(as.paddingLeft) - parseFloat(as.paddingRight);
const colRight = colLeft + colW;
const scrolls = e => ['auto', 'scroll'].includes(style(e).overflowX);
const clips = e => style(e).overflowX !== 'visible' || style(e).overflowY !== 'visible';
const out = {url: location.href, width: W, column: Math.round(colW),
             pageScrollWidth: document.scrollingElement.scrollWidth,
             wide: [], pageWide: [], overlaps: [], figures: [], code: [], forbidden: [], stderr: [], tracebacks: 0};

// 1. Wide elements: wider than the column, and no box of their own (or an ancestor inside the column) scrolls them.
let widest = {px: 0, label: ''};
const failing = [];
for (const el of art.querySelectorAll(cfg.wide)) {
  if (!visible(el)) continue;
  const px = Math.max(el.scrollWidth, el.getBoundingClientRect().width);
  if (px > widest.px) widest = {px: Math.round(px), label: label(el)};
  if (px <= colW + tol) continue;
  let ok = false;
  for (let e = el; e && e !== art; e = e.parentElement) {
    const r = e.getBoundingClientRect();
    if (scrolls(e) && e.clientWidth <= colW + tol &&
        r.left >= colLeft - tol && r.right <= colRight + tol) { ok = true; break; }
  }
  if (!ok) failing.push([el, Math.round(px)]);
}
// name the innermost failing element (a table, not also the output box around it)
for (const [el, px] of failing) {
  if (failing.some(([o]) => o !== el && el.contains(o))) continue;
  out.wide.push({label: label(el), px});
}
out.widest = widest;
// the page itself must not scroll sideways: name the outermost elements that reach past the window
if (out.pageScrollWidth > W + 1) {
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right <= W + 1 || r.width === 0 || !visible(el)) continue;
    const p = el.parentElement;
    if (p && p !== document.body && p.getBoundingClientRect().right > W + 1) continue;
    let clipped = false;
    for (let e = p; e && e !== document.body; e = e.parentElement) if (clips(e)) { clipped = true; break; }
    if (!clipped) out.pageWide.push({label: label(el), right: Math.round(r.right)});
    if (out.pageWide.length >= 3) break;
  }
}

// 2. Text over text: leaf text blocks whose text lines overlap another block's text lines.
function clipRect(el, r) {
  let [l, t, rr, b] = [r.left, r.top, r.right, r.bottom];
  for (let e = el.parentElement; e && e !== document.documentElement; e = e.parentElement) {
    if (!clips(e)) continue;
    const q = e.getBoundingClientRect();
    l = Math.max(l, q.left); t = Math.max(t, q.top); rr = Math.min(rr, q.right); b = Math.min(b, q.bottom);
  }
  return (rr - l > 0 && b - t > 0) ? {l, t, r: rr, b} : null;
}
// Each block's text lines (the range's client rects, clipped by scrolling ancestors): text that spills
// out of its cell or paragraph counts where it is drawn, not where its box is.
const blocks = [];
for (const el of art.querySelectorAll(cfg.text)) {
  if (el.querySelector(cfg.text) || !squash(el.innerText) || !visible(el)) continue;
  const range = document.createRange();
  range.selectNodeContents(el);
  const lines = Array.from(range.getClientRects()).filter(r => r.width > 0 && r.height > 0)
      .map(r => clipRect(el, r)).filter(Boolean);
  if (!lines.length) continue;
  const box = {l: Math.min(...lines.map(r => r.l)), t: Math.min(...lines.map(r => r.t)),
               r: Math.max(...lines.map(r => r.r)), b: Math.max(...lines.map(r => r.b))};
  blocks.push({el, box, lines});
}
blocks.sort((a, b) => a.box.t - b.box.t);
const hit = (a, b) => Math.min(a.r, b.r) - Math.max(a.l, b.l) > tol && Math.min(a.b, b.b) - Math.max(a.t, b.t) > tol;
for (let i = 0; i < blocks.length && out.overlaps.length < 20; i++) {
  const a = blocks[i];
  for (let j = i + 1; j < blocks.length && blocks[j].box.t < a.box.b - tol; j++) {
    const b = blocks[j];
    if (hit(a.box, b.box) && a.lines.some(x => b.lines.some(y => hit(x, y)))) {
      out.overlaps.push({a: label(a.el), b: label(b.el)});
    }
  }
}

// 3. Figures: displayed against natural width (the text size comes from the PNG, read in Python).
for (const img of art.querySelectorAll('div.cell_output img, figure img')) {
  if (!visible(img)) continue;
  out.figures.push({src: img.currentSrc || img.src, shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
                    complete: img.complete, label: label(img)});
}

// 4. Visible code: the cells' height against the article's, and each cell's lines.
for (const el of art.querySelectorAll(cfg.code)) {
  // (a folded cell's input keeps an offsetHeight in Chromium's closed <details>: checkVisibility tells)
  if (el.offsetHeight <= 0 || !visible(el)) continue;
  const pre = el.querySelector('pre') || el;
  const text = (pre.innerText || pre.textContent || '').replace(/\n+$/, '');
  out.code.push({h: el.offsetHeight, lines: text ? text.split('\n').length : 0, label: label(el, words(pre))});
}
out.articleHeight = art.getBoundingClientRect().height;

// 5. What a reader must not see: visible text outside code inputs and folded <details>.
const pats = cfg.forbidden.map(([name, src]) => [name, new RegExp(src, 'g')]);
const walker = document.createTreeWalker(art, NodeFilter.SHOW_TEXT);
// named by the table, code block, paragraph or output box that holds the text (one message for a whole table)
const holder = 'table, pre, p, li, dt, dd, h1, h2, h3, h4, h5, h6, figcaption, summary, div.output, """
    r"""div.cellbook-provenance, div.admonition';
const parentOk = new Map();
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const p = node.parentElement;
  if (!p || !node.data.trim()) continue;
  // left out: code inputs, code the page's author wrote (commands on a teaching page, `np.nan` in prose),
  // scripts, MathJax's hidden copy, and whatever a closed <details> or a hidden toggle folds away
  if (!parentOk.has(p)) parentOk.set(p, !p.closest(cfg.code + ', script, style, noscript, template, mjx-assistive-mml')
      && !(p.closest('pre, code, kbd, samp') && !p.closest('div.cell_output')) && visible(p));
  if (!parentOk.get(p)) continue;
  for (const [name, re] of pats) {
    re.lastIndex = 0;
    const m = node.data.match(re);
    if (m) out.forbidden.push({kind: name, match: m[0], label: label(p.closest(holder) || p)});
  }
}
for (const el of art.querySelectorAll('div.output.stderr')) if (visible(el)) out.stderr.push(label(el));
out.tracebacks = Array.from(art.querySelectorAll(cfg.traceback)).filter(visible).length;

// 6. The chapter template.
const text = art.innerText || '';
out.question = /Question/.test(text);
out.takeaways = /take-?aways?/i.test(text);
out.provenance = Array.from(art.querySelectorAll(cfg.provenance)).filter(visible).length;
out.imagesPending = Array.from(art.querySelectorAll('img')).filter(i => !i.complete).length;
return out;
""")


@dataclass
class PageLint:
    """One page at one window width: what is wrong with it, and its figures for the closing note."""
    path: str
    width: int
    problems: list[str] = field(default_factory=list)       # messages naming the page and the element
    column_px: int = 0                                      # the article column's width
    widest_px: int = 0                                      # the widest table / code block / output on the page
    widest: str = ""                                        # ... which one
    page_scroll_px: int = 0                                 # document.scrollingElement.scrollWidth
    code_share: float | None = None                         # visible code height / article height
    code_cells: int = 0                                     # visible code cells
    max_code_lines: int = 0
    min_figure_text_px: float | None = None                 # smallest displayed figure text (figures with the chunk)
    min_figure_scale: float | None = None                   # smallest displayed / natural width of a figure
    figures: int = 0
    seconds: float = 0.0

    def figures_dict(self) -> dict:
        return {"column_px": self.column_px, "widest_px": self.widest_px, "widest": self.widest,
                "page_scroll_px": self.page_scroll_px,
                "code_share": None if self.code_share is None else round(self.code_share, 4),
                "code_cells": self.code_cells, "max_code_lines": self.max_code_lines,
                "min_figure_text_px": self.min_figure_text_px, "min_figure_scale": self.min_figure_scale,
                "figures": self.figures, "problems": self.problems}


@dataclass
class LintReport:
    base_url: str
    widths: tuple[int, ...] = LINT_WIDTHS
    pages: dict[str, dict[int, PageLint]] = field(default_factory=dict)   # path -> width -> lint
    seconds: float = 0.0

    def problems(self) -> list[str]:
        return [m for by_width in self.pages.values() for lint in by_width.values() for m in lint.problems]

    def page_problems(self, path: str) -> list[str]:
        return [m for lint in self.pages[path].values() for m in lint.problems]

    def figures(self) -> dict:
        """``{page: {"1400": {...figures...}, "400": {...}}}`` (JSON-ready)."""
        return {p: {str(w): lint.figures_dict() for w, lint in sorted(by_w.items(), reverse=True)}
                for p, by_w in sorted(self.pages.items())}

    def to_json(self) -> dict:
        return {"widths": list(self.widths), "seconds": round(self.seconds, 1), "pages": self.figures(),
                "problems": self.problems(),
                "limits": {"min_figure_text_px": MIN_FIGURE_TEXT_PX, "min_figure_scale": MIN_FIGURE_SCALE,
                           "code_budget": CODE_BUDGET, "max_code_lines": MAX_CODE_LINES}}

    def table(self) -> str:
        """One line per page: at each width the visible code share, the smallest displayed figure text (px,
        from the figures' PNG chunks), the smallest figure scale (displayed / drawn width) and the widest
        table / code block / output against the column; then the number of problems."""
        def pct(x):
            return "-" if x is None else f"{100 * x:.0f}%"

        def num(x, fmt):
            return "-" if x is None else format(x, fmt)

        ws = sorted(self.widths, reverse=True)
        cols = (("code", 5), ("fig px", 6), ("scale", 5), ("widest/col", 10))
        name_w = max([len("page")] + [len(p) for p in self.pages])
        top = " " * name_w + "".join(f" | {f'at {w} px':^{sum(c[1] for c in cols) + len(cols) - 1}}" for w in ws)
        head = f"{'page':<{name_w}}" + "".join(" | " + " ".join(f"{c:>{n}}" for c, n in cols) for _ in ws)
        head += " | problems"
        rows = [top, head, "-" * len(head)]
        for path, by_w in sorted(self.pages.items()):
            row = f"{path:<{name_w}}"
            for w in ws:
                lint = by_w.get(w)
                cells = ("", "", "", "") if lint is None else (
                    pct(lint.code_share), num(lint.min_figure_text_px, ".1f"), num(lint.min_figure_scale, ".2f"),
                    f"{lint.widest_px}/{lint.column_px}")
                row += " | " + " ".join(f"{v:>{n}}" for v, (_, n) in zip(cells, cols))
            row += f" | {sum(len(lint.problems) for lint in by_w.values()):>8}"
            rows.append(row)
        rows.append(f"{len(self.pages)} pages x {len(ws)} widths, {len(self.problems())} problems, "
                    f"{self.seconds:.0f} s")
        return "\n".join(rows)


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file's bytes; {} for anything that is not a PNG."""
    import struct
    import zlib

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return {}
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                key, _, value = body.partition(b"\0")
                out[key.decode("latin-1")] = value.decode("latin-1")
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
            elif kind == b"IEND":
                break
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue
    return out


def figure_min_text_px(src: str, base_url: str, html_dir: str | Path, cache: dict | None = None) -> float | None:
    """``cellbook:min_text_px`` of the image at ``src`` (a URL under ``base_url``, or a data: URL), read from
    the file under ``html_dir``. None: no such chunk (or not a PNG); ``float('nan')``: a figure without text."""
    import base64

    cache = {} if cache is None else cache
    if src not in cache:
        data = b""
        if src.startswith("data:image/png;base64,"):
            data = base64.b64decode(src.split(",", 1)[1])
        else:
            rel = _site_path(src, base_url)
            if rel is not None:
                path = Path(html_dir) / rel.split("#")[0].split("?")[0]
                if path.is_file():
                    data = path.read_bytes()
        value = png_text_chunks(data).get(MIN_TEXT_KEY) if data else None
        if value is None:
            cache[src] = None
        else:
            try:
                cache[src] = float(value) if value.strip() else float("nan")
            except ValueError:
                cache[src] = None
    return cache[src]


def site_pages(html_dir: str | Path) -> list[str]:
    """Every reader page of a built book: its HTML files, less Sphinx's indexes, asset folders and
    redirect stubs (the ``index.html`` that sends readers to the root page)."""
    html_dir = Path(html_dir)
    pages = []
    for f in sorted(html_dir.rglob("*.html")):
        rel = f.relative_to(html_dir).as_posix()
        if rel.startswith(NOT_PAGES) or rel.split("/")[0].startswith("_") or rel in NOT_LINTED:
            continue
        if _REFRESH.search(f.read_text(encoding="utf-8", errors="replace")[:4096]):
            continue
        pages.append(rel)
    return pages


def set_viewport(driver, width: int, height: int = LINT_HEIGHT) -> None:
    """Give the page a ``width`` x ``height`` viewport (CSS px), as a phone or desktop window would;
    persists across page loads until :func:`reset_viewport`."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": int(width), "height": int(height), "deviceScaleFactor": 1, "mobile": False})


def reset_viewport(driver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def lint_page(driver, base_url: str, path: str, width: int, html_dir: str | Path,
              png_cache: dict | None = None, tol: float = 3.0) -> PageLint:
    """Open ``path`` (the viewport must already be ``width`` wide: :func:`set_viewport`) and check it."""
    import time

    t0 = time.perf_counter()
    driver.get(urllib.parse.urljoin(base_url, path))
    cfg = {"article": ARTICLE_SELECTOR, "text": TEXT_BLOCKS, "wide": WIDE_ELEMENTS, "code": CODE_INPUT,
           "forbidden": [list(f) for f in FORBIDDEN], "traceback": TRACEBACK_SELECTOR,
           "provenance": PROVENANCE_SELECTOR, "tol": tol}
    info = driver.execute_script(_LINT_JS, cfg)
    for _ in range(20):   # a figure still loading is measured once it has loaded (rare on localhost)
        if not info["imagesPending"]:
            break
        time.sleep(0.25)
        info = driver.execute_script(_LINT_JS, cfg)
    lint = PageLint(path=path, width=width, column_px=info["column"], widest_px=info["widest"]["px"],
                    widest=info["widest"]["label"], page_scroll_px=info["pageScrollWidth"])
    at = f"{path} @{width}px"
    col = info["column"]
    msgs = lint.problems
    if info["width"] != width:
        msgs.append(f"{at}: the window is {info['width']} px wide, not {width} px (viewport not set)")
    # 1. wide elements and a page that scrolls sideways
    for w in info["wide"]:
        msgs.append(f"{at}: {w['label']} is {w['px']} px wide in a {col} px column and does not scroll "
                    "inside its own box")
    if info["pageScrollWidth"] > info["width"] + 1:
        culprits = "; ".join(f"{c['label']} reaches x={c['right']}" for c in info["pageWide"]) or "?"
        msgs.append(f"{at}: the page scrolls sideways ({info['pageScrollWidth']} px content in a "
                    f"{info['width']} px window): {culprits}")
    # 2. overlapping text
    for o in info["overlaps"]:
        msgs.append(f"{at}: text overlaps other text: {o['a']} and {o['b']}")
    # 3. figures: smallest displayed text (from the PNG's chunk) or, without one, the displayed scale
    png_cache = {} if png_cache is None else png_cache
    text_px, scales = [], []
    for fig in info["figures"]:
        if not fig["natural"]:
            continue   # did not load: the crawl reports missing images
        scale = fig["shown"] / fig["natural"]
        scales.append(scale)
        small = figure_min_text_px(fig["src"], base_url, html_dir, png_cache)
        if small is None:
            if scale < MIN_FIGURE_SCALE - 1e-3:
                msgs.append(f"{at}: {fig['label']} is shown at {scale:.2f} of its drawn width "
                            f"({fig['shown']:.0f} of {fig['natural']} px) and its PNG does not say its "
                            f"smallest text ({MIN_TEXT_KEY}): below {MIN_FIGURE_SCALE} its text is too small")
        elif not math.isnan(small):   # (NaN: a figure without text)
            shown = small * scale
            text_px.append(shown)
            if shown < MIN_FIGURE_TEXT_PX - 0.05:
                msgs.append(f"{at}: {fig['label']} shows text of {shown:.1f} px (drawn at {small:g} px, "
                            f"shown at {scale:.2f} scale); the minimum is {MIN_FIGURE_TEXT_PX:g} px")
    lint.figures = len(scales)
    lint.min_figure_text_px = round(min(text_px), 1) if text_px else None
    lint.min_figure_scale = round(min(scales), 2) if scales else None
    # 4. visible code (executed chapters)
    if EXECUTED_PAGE.match(path):
        code_h = sum(c["h"] for c in info["code"])
        lint.code_share = code_h / info["articleHeight"] if info["articleHeight"] else 0.0
        lint.code_cells = len(info["code"])
        lint.max_code_lines = max([c["lines"] for c in info["code"]], default=0)
        if width >= CODE_BUDGET_MIN_WIDTH and lint.code_share > CODE_BUDGET:
            msgs.append(f"{at}: visible code is {100 * lint.code_share:.0f}% of the page's height "
                        f"({code_h:.0f} of {info['articleHeight']:.0f} px in {len(info['code'])} cells); "
                        f"the budget is {100 * CODE_BUDGET:.0f}%")
        for c in info["code"]:
            if c["lines"] > MAX_CODE_LINES:
                msgs.append(f"{at}: visible code cell of {c['lines']} lines (at most {MAX_CODE_LINES}): {c['label']}")
    # 5. forbidden strings, stderr blocks and tracebacks (one message per kind and element)
    seen: dict[tuple[str, str], list[str]] = {}
    for f in info["forbidden"]:
        seen.setdefault((f["kind"], f["label"]), []).append(f["match"])
    for (kind, where), found in seen.items():
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        msgs.append(f"{at}: shows {kind} {found[0]!r}{more} in {where}")
    for where in info["stderr"]:
        msgs.append(f"{at}: shows a stderr output block: {where}")
    if info["tracebacks"] and not any(f["kind"] == "a traceback" for f in info["forbidden"]):
        msgs.append(f"{at}: shows a Python traceback ({info['tracebacks']} traceback block(s))")
    # 6. the chapter template
    if PART_CHAPTER_PAGE.match(path):
        missing = [name for name, ok in (("'Question'", info["question"]), ("'Take-aways'", info["takeaways"]),
                                         (f"provenance box ({PROVENANCE_SELECTOR})", info["provenance"])) if not ok]
        if missing:
            msgs.append(f"{at}: executed chapter without its {', '.join(missing)}")
    lint.seconds = time.perf_counter() - t0
    return lint


def lint_site(driver, base_url: str, html_dir: str | Path, pages: list[str] | None = None,
              widths: tuple[int, ...] = LINT_WIDTHS) -> LintReport:
    """Lint every page (default: :func:`site_pages` of ``html_dir``) at each window width: one page load
    and one script per page and width, plus reading the figures' PNG chunks here."""
    import time

    t0 = time.perf_counter()
    report = LintReport(base_url=base_url, widths=tuple(widths))
    pages = site_pages(html_dir) if pages is None else list(pages)
    cache: dict = {}
    try:
        for width in widths:
            set_viewport(driver, width)
            for path in pages:
                report.pages.setdefault(path, {})[width] = lint_page(driver, base_url, path, width, html_dir, cache)
    finally:
        reset_viewport(driver)
    report.seconds = time.perf_counter() - t0
    return report



if __name__ == "__main__":  # python tests/browser_util.py [book/_build/html]: check a built site by hand
    import sys

    site = Path(sys.argv[1] if len(sys.argv) > 1 else "book/_build/html")
    reason = chromium_missing_reason()
    if reason:
        sys.exit(f"cannot check {site}: {reason}")
    with serve(site) as base_url, chromium() as drv:
        rep = crawl(drv, base_url)
    for p, pg in sorted(rep.pages.items()):
        print(f"{p}: {len(pg.content_figures)} figure(s){', provenance box' if pg.provenance else ''}")
    print("\n".join(rep.problems()) or f"{len(rep.pages)} pages, no broken link, missing image or traceback")
    sys.exit(1 if rep.problems() else 0)
