"""The documentation site: ``mkdocs build --strict`` passes (every page, link, image and API-reference
docstring), and three built pages render in headless Chromium (Playwright driving Debian's
``chromium``): the navigation lists the sections and leads to another page, code blocks are
highlighted, images load. Screenshots go to ``tests/docs/screenshots/`` (ignored by git)."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built by ``mkdocs build --strict`` (any warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout[-3000:]}\n{build.stderr[-5000:]}"
    return out


def test_strict_build_writes_every_page_and_the_api_reference(site):
    for page in ["index.html", "getting-started/index.html", "coming-from-keras/index.html",
                 "coming-from-pytorch/index.html", "tutorials/building-blocks/index.html", "experiments/index.html",
                 "api/models/index.html", "api/layers/index.html", "api/rl/index.html"]:
        assert (site / page).is_file(), page
    models = (site / "api/models/index.html").read_text()
    # mkdocstrings rendered the docstrings: the class, a method's Args, and an example as code
    assert 'id="deepzen.training.model.Model"' in models and 'id="deepzen.training.model.Model.fit"' in models
    assert "nb_epoch" in models and "Examples" in models
    # the experiments' plots were copied beside the pages that show them
    assert (site / "experiments/optimizers.png").stat().st_size > 10_000


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def heading(page) -> str:
    """The page's title without the permalink mark the table of contents adds."""
    return page.locator("article h1").inner_text().replace("\u00b6", "").strip()


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on loopback (directory URLs need a server's index.html lookup)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(chromium_executable):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, base: str, path: str):
    """The page at ``base + path``; also the requests that left the server and the responses >= 400."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside, failed = [], []
    page.on("request", lambda request: None if request.url.startswith(base) else outside.append(request.url))
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.goto(base + path, wait_until="networkidle")
    return page, outside, failed


def check_navigation(page) -> None:
    nav = page.locator("nav.md-nav--primary")
    for section in ["Getting started", "Coming from Keras", "Tutorials", "API reference"]:
        assert nav.get_by_text(section, exact=True).count() >= 1, section
    assert page.locator("nav.md-nav--primary a.md-nav__link[href]").count() >= 20


def check_code_blocks(page, minimum: int) -> None:
    blocks = page.locator("div.highlight pre code")
    assert blocks.count() >= minimum
    first = blocks.first
    assert first.is_visible() and first.bounding_box()["height"] > 20
    # Pygments highlighting: keywords and names are spans with classes
    assert page.locator("div.highlight pre code span.kn, div.highlight pre code span.k").count() > 0


def check_images(page, minimum: int) -> None:
    images = page.locator("article img")
    assert images.count() >= minimum
    sizes = images.evaluate_all("images => images.map(i => [i.complete, i.naturalWidth, i.getAttribute('src')])")
    broken = [src for complete, width, src in sizes if not complete or width == 0]
    assert broken == []
    assert all(width > 200 for _, width, _ in sizes)


def test_three_pages_render_in_headless_chromium(served, browser):
    SCREENSHOTS.mkdir(exist_ok=True)

    # 1. Getting started: navigation, code blocks, and the navigation leads to another page
    page, outside, failed = open_page(browser, served, "/getting-started/")
    assert heading(page) == "Getting started"
    check_navigation(page)
    check_code_blocks(page, minimum=4)
    assert "nb_epoch=2000" in page.locator("article").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "getting-started.png"), full_page=True)
    page.locator("nav.md-nav--primary a.md-nav__link", has_text="Coming from PyTorch").first.click()
    page.wait_for_load_state("networkidle")
    assert page.url.rstrip("/").endswith("/coming-from-pytorch")
    assert heading(page) == "Coming from PyTorch"
    assert outside == [] and failed == []
    page.close()

    # 2. A tutorial with the experiments' plots
    page, outside, failed = open_page(browser, served, "/tutorials/building-blocks/")
    check_navigation(page)
    check_code_blocks(page, minimum=6)
    check_images(page, minimum=5)
    page.screenshot(path=str(SCREENSHOTS / "building-blocks.png"), full_page=True)
    assert outside == [] and failed == []
    page.close()

    # 3. The API reference generated from the docstrings
    page, outside, failed = open_page(browser, served, "/api/models/")
    check_navigation(page)
    assert page.locator("[id='deepzen.training.model.Model.fit']").count() == 1
    assert page.locator("article").get_by_text("Args", exact=False).count() > 0
    check_code_blocks(page, minimum=1)   # the docstrings' examples, highlighted
    page.screenshot(path=str(SCREENSHOTS / "api-models.png"), full_page=False)
    assert outside == [] and failed == []
    page.close()

    for name in ["getting-started.png", "building-blocks.png", "api-models.png"]:
        assert (SCREENSHOTS / name).stat().st_size > 10_000
