"""The built book in a real browser: every page loads without console errors (also late,
asynchronous ones), no image is broken, every chapter shows the figures of its notebook, and the
pages read like a paper (no regression-check dump, code folded, tables within their column, headers
in words, the introduction opening with this build's findings). The
book is assembled from the committed smoke-profile chapters (tests/notebooks/) in a temporary
folder, served on 127.0.0.1 and opened in headless Chromium (Debian packages chromium and
chromium-driver, installed here where missing; under CI a missing browser is a failure, not a skip).

To check a book you built (for example the default profile's), point the tests at its HTML:
``VITPHASE_BOOK_HTML=_build/html .venv/bin/python -m pytest tests/test_book_browser.py``."""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from docutils.nodes import make_id

from vitphase_lib.pipeline import CHECK_MARK, CODE_IS_CONTENT, build_html

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)  # a laptop screen: the book's sidebars and its column of text as a reader sees them
SETTLE_SECONDS = 1.5  # after document.readyState == 'complete', how long late console errors may take
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
REMOVED = {"remove-cell", "remove_cell", "remove-output", "remove_output"}
FIGURE_DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{figure\}.*\n((?:[ \t]*:[\w-]+:.*\n)*)", re.MULTILINE)


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "false", "0")


def _ensure_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        reason = "no apt-get" if shutil.which("apt-get") is None else "not running as root"
        message = (f"headless Chromium is missing ({', '.join(missing)}) and cannot be installed "
                   f"here ({reason}; needs apt-get as root): install the Debian packages with "
                   "`sudo apt-get install chromium chromium-driver`")
        if _under_ci():
            pytest.fail(f"CI={os.environ['CI']}: {message}", pytrace=False)
        pytest.skip(message)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    if os.environ.get("VITPHASE_BOOK_HTML"):
        html = Path(os.environ["VITPHASE_BOOK_HTML"]).resolve()
        if not (html / "index.html").is_file():
            raise FileNotFoundError(f"VITPHASE_BOOK_HTML={html} holds no built book (no index.html)")
        return html
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    chapters = root / "book" / "chapters"
    chapters.mkdir()
    for notebook in sorted((REPO / "tests" / "notebooks").glob("*.ipynb")):
        shutil.copy(notebook, chapters / notebook.name)
    return build_html(root)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _pages(built_book: Path) -> list[str]:
    return sorted(str(p.relative_to(built_book)) for p in built_book.rglob("*.html")
                  if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))


def _toc_documents() -> list[str]:
    """Every document of _toc.yml (root, chapters, parts, sections), without file extension."""
    documents = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    documents.append(re.sub(r"\.(ipynb|md|rst)$", "", str(node[key])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((REPO / "_toc.yml").read_text()))
    return documents


def _notebook_of(built_book: Path, document: str) -> Path | None:
    """The notebook a page was built from: Sphinx's copy in _sources/, else the book's root (the
    folder holding _build/html); None when the document is no notebook (or its source is gone)."""
    for folder in (built_book / "_sources", built_book.parent.parent):
        if (folder / f"{document}.ipynb").is_file():
            return folder / f"{document}.ipynb"
    return None


def _notebook_figures(notebook: Path) -> tuple[int, list[str]]:
    """(number of figure images, figure labels) of a notebook: image outputs and ``{figure}``
    directives of the cells Jupyter Book keeps, and the MyST labels (``mystnb.figure.name`` cell
    metadata or ``:name:`` of a figure directive)."""
    figures, labels = 0, []
    for cell in json.loads(notebook.read_text())["cells"]:
        if REMOVED & set(cell.get("metadata", {}).get("tags", [])):
            continue
        if cell["cell_type"] == "code":
            figures += sum(1 for output in cell.get("outputs", [])
                           if any(kind in output.get("data", {}) for kind in IMAGE_TYPES))
            name = cell["metadata"].get("mystnb", {}).get("figure", {}).get("name")
            if name:
                labels.append(name)
        elif cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for directive in FIGURE_DIRECTIVE.finditer(source if source.endswith("\n") else source + "\n"):
                figures += 1
                labels += re.findall(r":name:\s*(\S+)", directive.group(2))
    return figures, labels


def _chapters(built_book: Path, pages: list[str]) -> dict[str, tuple[int, list[str]]]:
    """Chapter page (the HTML of a notebook listed in _toc.yml) -> its notebook's figures."""
    chapters = {}
    for document in _toc_documents():
        notebook = _notebook_of(built_book, document)
        if notebook is not None:
            page = f"{document}.html"
            assert page in pages, f"{page}: chapter of _toc.yml ({notebook}) not in the built book"
            chapters[page] = _notebook_figures(notebook)
    return chapters


def _console_errors(browser, server: str) -> list[dict]:
    """SEVERE console entries of the open page, read once the document is complete and then for
    SETTLE_SECONDS more, so late asynchronous errors (MathJax, deferred scripts) are caught too.
    Not counted: the 404 of the /favicon.ico Chromium asks for by itself when a page names no icon
    (Jupyter Book's one-line redirect index.html); a missing icon a page does name still counts."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 30).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete")
    entries, deadline = [], time.monotonic() + SETTLE_SECONDS
    while True:
        entries += browser.get_log("browser")
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    return [entry for entry in entries if entry["level"] == "SEVERE"
            and not entry["message"].startswith(f"{server}/favicon.ico ")]


IMAGES_JS = """return Array.from(document.images).map(i => {
  const figure = i.closest('figure, div.figure');
  return [i.getAttribute('src'), i.complete, i.naturalWidth, figure ? figure.id : ''];
});"""
FIGURE_JS = """const figure = document.getElementById(arguments[0]);
if (!figure) return null;
return Array.from(figure.querySelectorAll('img')).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"""


def test_math_is_rendered_offline(built_book, server, browser):
    browser.get(f"{server}/book/methods.html")
    rendered = browser.execute_script(
        "return new Promise(r => setTimeout(() => r(document.querySelectorAll('mjx-container').length), 1500));")
    assert rendered > 10


# Per table of the article: [its id or caption, its width, its container's width, its right edge,
# the article's right edge]. The container is the box the table sits in (the theme's scrollable
# wrapper, else its parent): a table wider than that scrolls or spills instead of fitting.
TABLES_JS = """const article = document.querySelector('article.bd-article') || document.body;
const right = article.getBoundingClientRect().right;
return Array.from(article.querySelectorAll('table')).map(t => {
  const box = t.closest('.pst-scrollable-table-container') || t.parentElement;
  const caption = t.querySelector('caption');
  return [t.id || (caption ? caption.textContent.trim().slice(0, 60) : ''),
          t.getBoundingClientRect().width, box.clientWidth, t.getBoundingClientRect().right, right];
});"""
HEADERS_JS = """return Array.from(document.querySelectorAll('article.bd-article table th'))
  .map(th => th.textContent.trim());"""
# code inputs a reader sees without a click: not inside a closed fold (a <details> element; its
# content keeps a layout box in Chromium, so visibility is read from the fold, not the box)
SHOWN_CODE_JS = """return Array.from(document.querySelectorAll('.cell_input'))
  .filter(c => !c.closest('details:not([open])'))
  .map(c => c.textContent.trim().slice(0, 60));"""


@pytest.fixture(scope="module")
def visits(built_book, server, browser) -> dict[str, dict]:
    """Every page opened once, and what the tests below read of it: console errors, images, the
    figures its notebook names, tables' widths, table headers, code shown unfolded and whether it
    shows a regression-check cell."""
    pages = _pages(built_book)
    chapters = _chapters(built_book, pages)
    seen = {}
    for page in pages:
        browser.get(f"{server}/{page}")
        labels = chapters.get(page, (0, []))[1]
        seen[page] = {
            "errors": _console_errors(browser, server),  # waits until the page is complete
            "images": browser.execute_script(IMAGES_JS),
            "figures": {label: browser.execute_script(FIGURE_JS, make_id(label)) for label in labels},
            "check_mark": CHECK_MARK in browser.execute_script("return document.body.innerHTML"),
            "tables": browser.execute_script(TABLES_JS),
            "headers": browser.execute_script(HEADERS_JS),
            "shown_code": browser.execute_script(SHOWN_CODE_JS)}
    return seen


def test_every_page_loads_without_console_errors_and_all_images_load(built_book, visits):
    pages = _pages(built_book)
    assert len(pages) >= 10  # intro, methods and the eight chapters
    chapters = _chapters(built_book, pages)
    assert len(chapters) >= 8, f"chapters found: {sorted(chapters)}"
    assert sum(len(labels) for _, labels in chapters.values()) >= 7  # F1-F6 and the training curves
    problems = []
    for page in pages:
        seen = visits[page]
        if seen["errors"]:
            problems.append(f"{page}: console errors {seen['errors']}")
        broken = [f"{src} (figure {figure})" if figure else src
                  for src, complete, width, figure in seen["images"] if complete and width == 0]
        if broken:
            problems.append(f"{page}: broken images {broken}")
        if page not in chapters:
            continue
        figures, labels = chapters[page]
        loaded = [src for src, complete, width, _ in seen["images"] if "_images/" in src and width > 0]
        if figures and not loaded:
            problems.append(f"{page}: its notebook has {figures} figure(s) but no figure image loaded")
        for label in labels:
            shown = seen["figures"][label]
            if shown is None:
                problems.append(f"{page}: figure {label} is missing (no element #{make_id(label)})")
            elif not any(width > 0 for _, _, width in shown):
                problems.append(f"{page}: figure {label} has no loaded image: {shown}")
    assert not problems, "\n".join(problems)


def test_pages_read_like_a_paper(visits):
    """No page shows a regression-check cell (its raw dump is for nbval, not the reader), no table
    is wider than its column at a laptop's window size, table headers are words (no snake_case
    identifier), and chapters show no code unfolded, except the how-to pages whose code is their
    content (pipeline.CODE_IS_CONTENT)."""
    problems = []
    for page, seen in visits.items():
        if seen["check_mark"]:
            problems.append(f"{page}: shows {CHECK_MARK}")
        for label, width, box, right, article_right in seen["tables"]:
            if width > box + 1 or right > article_right + 1:
                problems.append(f"{page}: table {label!r} is {width:.0f}px wide in a {box:.0f}px "
                                f"column (right edge {right:.0f}, article's {article_right:.0f})")
        snake = [h for h in seen["headers"] if re.search(r"[a-z]_[a-z]", h)]
        if snake:
            problems.append(f"{page}: table headers not in words: {snake}")
        if Path(page).stem not in CODE_IS_CONTENT and seen["shown_code"]:
            problems.append(f"{page}: {len(seen['shown_code'])} code cell(s) shown unfolded, "
                            f"e.g. {seen['shown_code'][0]!r}")
    assert not problems, "\n".join(problems)


def test_introduction_opens_with_this_builds_findings(built_book, server, browser):
    """The root page shows the verdict table and the similarity figure before the method."""
    browser.get(f"{server}/index.html")
    _console_errors(browser, server)
    order = browser.execute_script("""
      const at = id => { const e = document.getElementById(id); return e ? e.getBoundingClientRect().top : null; };
      return [at('tab-glance'), at('fig-glance'), at('the-claims-under-test')];""")
    assert None not in order, f"verdict table, key figure, claims section: {order}"
    assert order[0] < order[2] and order[1] < order[2], order
    verdicts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#tab-glance tbody tr')).length")
    assert verdicts >= 5  # one row per claim check
