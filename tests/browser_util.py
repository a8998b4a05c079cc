"""Check a built HTML book the way a reader meets it: served on localhost, opened in headless Chromium.

Used by ``tests/test_browser.py`` both on the real book (``book/_build/html``) and on a small
fixture book that contains a broken link, a missing image and a notebook that raised, so the
same code is shown to catch those.

    with serve(html_dir) as base_url, chromium(tmp_dir) as driver:
        report = crawl(driver, base_url)
        report.problems()          # ["book/x.html: broken internal link -> missing.html", ...]
"""
from __future__ import annotations

import contextlib
import functools
import http.server
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
      complete: i.complete, w: i.naturalWidth, inContent: main.contains(i) && !i.closest('.navbar, nav, header, footer, .bd-sidebar-primary, .bd-header'),
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
