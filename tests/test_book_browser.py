"""The built book in a real browser: every page loads without console errors and every figure
image has loaded. The book is assembled from the committed smoke-profile chapters
(tests/notebooks/) in a temporary folder, served on 127.0.0.1 and opened in headless Chromium
(Debian packages chromium and chromium-driver, installed here where missing).

To check a book you built (for example the default profile's), point the tests at its HTML:
``VITPHASE_BOOK_HTML=_build/html .venv/bin/python -m pytest tests/test_book_browser.py``."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from vitphase_lib.pipeline import build_html

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _ensure_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("headless Chromium is missing and cannot be installed here (needs apt-get as "
                    "root): sudo apt-get install chromium chromium-driver")
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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _pages(built_book: Path) -> list[str]:
    return sorted(str(p.relative_to(built_book)) for p in built_book.rglob("*.html")
                  if "_static" not in p.parts and p.name not in ("genindex.html", "search.html"))


def test_every_page_loads_without_console_errors_and_all_images_load(built_book, server, browser):
    pages = _pages(built_book)
    assert len(pages) >= 10  # intro, methods and the eight chapters
    figures_seen = 0
    for page in pages:
        browser.get(f"{server}/{page}")
        browser.execute_script("return document.readyState")
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, f"{page}: console errors {errors}"
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth]);")
        broken = [src for src, complete, width in images if not complete or width == 0]
        assert not broken, f"{page}: images that did not load: {broken}"
        figures_seen += sum(1 for src, *_ in images if "_images" in src)
    assert figures_seen >= 7  # F1-F6 and the training curves


def test_math_is_rendered_offline(built_book, server, browser):
    browser.get(f"{server}/book/methods.html")
    rendered = browser.execute_script(
        "return new Promise(r => setTimeout(() => r(document.querySelectorAll('mjx-container').length), 1500));")
    assert rendered > 10
