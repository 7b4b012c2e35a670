"""Every page of the quick book in headless Chromium, with the network blocked.

Runs after the quick book is built (``make test`` runs it as a second pytest invocation, after
``python -m stagewise book --profile quick``; the first one ignores this file). It needs Debian's
``chromium`` and the npm package ``playwright-core`` in ``.cache/npm/browser``, both installed by
``make browser-deps``; where they are missing the test is skipped with a message saying so. With
``STAGEWISE_BOOK_BUILT=1`` (set by ``make test``) a missing book is a failure, not a skip.

For every HTML page (tests/browser/check_pages.js does the browsing) it checks that no request left
the machine (all are aborted and counted), there are no console errors, every <img> loaded, every
maths element was rendered by the book's own MathJax (no raw TeX left), every internal link points
to an existing file and anchor, and each chapter offers its executed notebook for download. In the
chapters every figure has a caption and a real alt text (not a file path) and its text stays readable at
the column's width; no element runs past the content column, and no code line is longer than
``CODE_LINE_LIMIT`` characters. A screenshot of each page goes to ``build/quick/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "build" / "quick" / "_build" / "html"
SCREENSHOTS = ROOT / "build" / "quick" / "screenshots"
DRIVER = Path(__file__).parent / "browser" / "check_pages.js"
PLAYWRIGHT = Path(os.environ.get("STAGEWISE_CACHE", ROOT / ".cache")) / "npm" / "browser" / "node_modules" / "playwright-core"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NOT_PAGES = ("_static", "_sources", "_images")

pytestmark = pytest.mark.book

def _require_or_skip(missing: str, hint: str):
    pytest.skip(f"browser test skipped: {missing} ({hint})")


@pytest.fixture(scope="module")
def book_pages() -> list[str]:
    if not (HTML / "index.html").is_file():
        message = f"{HTML} has no index.html: build the quick book first (`python -m stagewise book --profile quick`)"
        if os.environ.get("STAGEWISE_BOOK_BUILT"):
            pytest.fail(message)
        _require_or_skip("the quick book is not built", message)
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if p.relative_to(HTML).parts[0] not in NOT_PAGES)


def _redirects(page: Path) -> bool:
    return re.search(r'<meta[^>]+http-equiv="?refresh', page.read_text(), re.IGNORECASE) is not None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def report(book_pages, tmp_path_factory) -> dict:
    node = shutil.which("node")
    if node is None:
        _require_or_skip("Node.js is not installed", "install nodejs and npm")
    if not Path(CHROMIUM).is_file():
        _require_or_skip(f"no Chromium at {CHROMIUM}", "`make browser-deps` installs Debian's chromium with apt-get")
    if not (PLAYWRIGHT / "package.json").is_file():
        _require_or_skip(f"playwright-core is not in {PLAYWRIGHT.parent}", "`make browser-deps` installs it with npm")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    work = tmp_path_factory.mktemp("browser")
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    config = {"playwright": str(PLAYWRIGHT), "chromium": CHROMIUM, "base": f"http://127.0.0.1:{server.server_port}/",
              "pages": book_pages, "redirects": [p for p in book_pages if _redirects(HTML / p)],
              "screenshots": str(SCREENSHOTS), "report": str(work / "report.json"),
              "machinePaths": _machine_paths()}
    (work / "config.json").write_text(json.dumps(config))
    try:
        done = subprocess.run([node, str(DRIVER), str(work / "config.json")], capture_output=True, text=True,
                              timeout=600)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, f"the browser driver failed:\n{done.stdout}\n{done.stderr}"
    result = json.loads((work / "report.json").read_text())
    result["base"] = config["base"]
    return result


def _machine_paths() -> list[str]:
    """Absolute paths of the machine that built the book (the repository, the environment, the home folder)."""
    from stagewise.pipeline.clean import machine_paths

    return [p for p in machine_paths(HTML) if p.count("/") >= 2 or p == os.path.expanduser("~")]


def _problems(report: dict, check) -> list[str]:
    found = []
    for page in report["pages"]:
        if "error" not in page:  # reported by test_every_page_was_opened
            found += [f"{page['page']}: {problem}" for problem in check(page)]
    return found


class _Resources(HTMLParser):
    """The URLs a page loads by itself: <script src>, <link href> (not rel=prev/next/...), <img src>, <iframe src>."""

    NAVIGATION = {"index", "search", "next", "prev", "canonical", "author", "license", "help", "alternate"}

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio") and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and not set((attrs.get("rel") or "").split()) <= self.NAVIGATION:
            self.urls.append(attrs["href"])


def test_no_page_names_an_external_resource(book_pages):
    """A static check, without a browser: nothing a page loads by itself is on the network."""
    external = []
    for page in book_pages:
        parser = _Resources()
        parser.feed((HTML / page).read_text())
        external += [f"{page}: {url}" for url in parser.urls if re.match(r"(https?:)?//", url)]
    assert not external
    mathjax = HTML / "_static" / "mathjax" / "tex-svg-full.js"
    assert mathjax.is_file() and mathjax.stat().st_size > 1_000_000  # the vendored MathJax, served locally


def test_mathjax_without_npm_says_what_to_install(tmp_path, monkeypatch):
    from stagewise.pipeline import book

    monkeypatch.setattr(book.shutil, "which", lambda name: None)
    with pytest.raises(book.BookError, match="npm is needed to install mathjax"):
        book.mathjax_script(tmp_path / "empty-cache")


def test_every_page_was_opened(report, book_pages):
    assert [p["page"] for p in report["pages"]] == book_pages
    assert not [f"{p['page']}: {p['error']}" for p in report["pages"] if "error" in p]
    assert "index.html" in book_pages and "rerun.html" in book_pages
    assert any(p.startswith("chapters/") for p in book_pages)
    for page in report["pages"]:
        assert Path(page["screenshot"]).is_file()


def test_no_request_leaves_the_machine(report):
    assert not _problems(report, lambda p: [f"blocked request to {url}" for url in p["blocked"]])


def test_no_console_errors_and_no_failed_local_requests(report):
    assert not _problems(report, lambda p: [f"console error: {m}" for m in p["consoleErrors"]]
                         + [f"page error: {m}" for m in p["pageErrors"]]
                         + [f"failed request: {m}" for m in p["failedRequests"]])


def test_every_image_loads(report):
    assert not _problems(report, lambda p: [f"image did not load: {i['src']}" for i in p["images"] if not i["ok"]])
    chapters = [p for p in report["pages"] if p["page"].startswith("chapters/")]
    assert all(p["images"] for p in chapters), "a chapter without figures: were its outputs lost?"


def test_maths_is_rendered_offline(report):
    def check(page):
        problems = [f"maths not rendered: {text!r}" for text in page["unrendered"]]
        problems += [f"raw TeX in the text: {text!r}" for text in page["rawTex"]]
        if page["mathElements"] and not page["mjxContainers"]:
            problems.append("maths on the page but no MathJax output")
        return problems

    assert not _problems(report, check)
    with_maths = [p for p in report["pages"] if p["mathElements"]]
    assert with_maths, "no page has maths: is dollarmath still enabled?"
    assert all(p["mathjaxLoaded"] for p in with_maths)


def _local_target(report: dict, href: str) -> tuple[str, str] | None:
    """(path relative to the html root, fragment) of a link into the book; None for other links."""
    if not href.startswith(report["base"]):
        return None
    parts = urlsplit(href)
    path = unquote(parts.path).lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, unquote(parts.fragment)


def test_every_internal_link_resolves(report):
    ids = {p["page"]: set(p["ids"]) for p in report["pages"]}

    def check(page):
        problems = []
        for link in page["links"]:
            target = _local_target(report, link["href"])
            if target is None:
                continue
            path, fragment = target
            if not (HTML / path).is_file():
                problems.append(f"link {link['raw']!r}: no file {path}")
            elif fragment and path in ids and fragment not in ids[path]:
                problems.append(f"link {link['raw']!r}: no anchor #{fragment} in {path}")
        return problems

    assert not _problems(report, check)
    assert sum(len(p["links"]) for p in report["pages"]) > 0


def test_chapters_offer_their_executed_notebook(report):
    def check(page):
        if not page["page"].startswith("chapters/"):
            return []
        notebooks = [href for href in page["downloads"] if href.endswith(".ipynb")]
        if not notebooks:
            return ["no .ipynb download button"]
        path, _ = _local_target(report, notebooks[0])
        notebook = json.loads((HTML / path).read_text())
        outputs = sum(len(cell.get("outputs", [])) for cell in notebook["cells"] if cell["cell_type"] == "code")
        return [] if outputs else [f"{path} has no outputs: not the executed notebook"]

    assert not _problems(report, check)


def test_launch_links_only_with_a_repository(report):
    """The quick book is built without a repository URL (the default): no launch or repository button points
    at a placeholder (tests/test_pipeline_clean.py checks the links when one is configured)."""
    from stagewise.pipeline.book import book_repository

    assert book_repository(ROOT / "book") == "" or os.environ.get("STAGEWISE_REPOSITORY")
    if os.environ.get("STAGEWISE_REPOSITORY"):
        pytest.skip("built for a configured repository")
    assert not _problems(report, lambda page: [f"launch link {h}" for h in page["launches"]])
    assert not _problems(report, lambda page: [f"repository link {link['href']}" for link in page["links"]
                                               if "github.com" in link["href"]])


def test_no_page_shows_a_path_of_the_build_machine(report):
    assert not _problems(report, lambda page: [f"shows {hit!r}" for hit in page["machinePathsShown"]])


# ---------------------------------------------------------------------------------------------- figures, overflow

#: The longest code line allowed in a chapter's code cells. The column shows about 77 characters of code at
#: the theme's 14 px monospace, so a longer line scrolls inside its cell; lines up to this limit are accepted
#: (the cell scrolls, nothing else on the page moves), longer ones fail.
CODE_LINE_LIMIT = 100
#: Smallest on-screen size (px) of 8 pt figure text: the image's pixels per point (its dpi / 72) times the
#: scale the page shows it at. 8 pt is the smallest text the book's figures use on purpose.
MIN_PX_FOR_8PT = 9.0
#: Overflows that cannot be avoided, as (page, start of the report line) → why.
ALLOWED_OVERFLOWS: dict[tuple[str, str], str] = {}


def _chapter_pages(report: dict) -> list[dict]:
    return [p for p in report["pages"] if p["page"].startswith("chapters/") and "error" not in p]


def _looks_like_a_path(alt: str, src: str) -> bool:
    """True for an alt text that is empty, a file name or path (Sphinx's default), or too short to describe."""
    name = src.rsplit("/", 1)[-1]
    return (alt.strip() == "" or name in alt or "_images/" in alt or re.search(r"(^|\s)\.{0,2}/\w", alt) is not None
            or re.search(r"\.(png|svg|jpe?g|gif)\b", alt) is not None or len(alt.split()) < 4)


def test_every_figure_has_a_caption_and_an_alt_text(report):
    problems = []
    for page in _chapter_pages(report):
        for figure in page["figures"]:
            if not figure["caption"]:
                problems.append(f"{page['page']}: {figure['src']} has no caption")
            if _looks_like_a_path(figure["alt"], figure["src"]):
                problems.append(f"{page['page']}: {figure['src']} has alt text {figure['alt']!r}, not a description")
    assert not problems, "\n".join(problems)
    assert sum(len(p["figures"]) for p in _chapter_pages(report)) > 0


def test_alt_text_check_recognizes_paths():
    assert _looks_like_a_path("../_images/abc.png", "../_images/abc.png")
    assert _looks_like_a_path("", "x.png") and _looks_like_a_path("free_energy.png", "../_images/free_energy.png")
    assert _looks_like_a_path("a figure", "x.png")  # too short to describe anything
    assert _looks_like_a_path("see figures/posterior_two_minima.png here", "../_images/x.png")
    assert not _looks_like_a_path("Four heat maps of the posterior density", "../_images/posterior.png")
    assert not _looks_like_a_path("points on a line of slope −3/4, far below d/2", "../_images/mass_ratio.png")


def _png_dpi(path: Path) -> float | None:
    from PIL import Image

    with Image.open(path) as image:
        dpi = image.info.get("dpi")
    return float(dpi[0]) if dpi else None


def test_figure_text_stays_readable_at_the_column_width(report):
    """A figure wider than the column is shrunk to fit: its 8 pt text must still be ≥ MIN_PX_FOR_8PT px."""
    problems = []
    for page in _chapter_pages(report):
        for figure in page["figures"]:
            if not figure.get("naturalWidth") or not figure.get("width"):
                continue  # test_every_image_loads reports images that did not load
            path = Path(os.path.normpath((HTML / page["page"]).parent / unquote(urlsplit(figure["src"]).path)))
            dpi = _png_dpi(path) if path.suffix == ".png" and path.is_file() else None
            if dpi is None:
                continue
            px_for_8pt = 8 / 72 * dpi * figure["width"] / figure["naturalWidth"]
            if px_for_8pt < MIN_PX_FOR_8PT:
                inches = figure["naturalWidth"] / dpi
                problems.append(f"{page['page']}: {figure['src']} is {inches:.1f} in wide at {dpi:.0f} dpi, shown "
                                f"{figure['width']:.0f} px wide: 8 pt text is {px_for_8pt:.1f} px")
    assert not problems, "\n".join(problems)


def test_nothing_runs_past_the_content_column(report):
    """With the book's own fonts, and again with wide system fonts in their place (as where they did not load):
    a layout that fits only with one machine's fonts fails here, not on a reader's machine."""
    problems = []
    for page in report["pages"]:
        if "error" in page:
            continue
        for rendering, lines in (("", page["overflows"]), ("with wide fonts: ", page["wideFonts"]["overflows"])):
            for line in lines:
                if not any(page["page"] == p and line.startswith(start) for p, start in ALLOWED_OVERFLOWS):
                    problems.append(f"{page['page']}: {rendering}{line}")
    assert not problems, "\n".join(problems)


def test_pages_use_the_books_own_fonts(report):
    """The text and code fonts come from the book (_static/fonts), not from the machine that shows it."""
    (static_css,) = [HTML / "_static" / "fonts.css"]
    assert static_css.is_file() and "Source Sans 3" in static_css.read_text()
    missing = [f"{page['page']}: loaded {page['fonts']}" for page in _chapter_pages(report)
               if not {"Source Sans 3", "Source Code Pro"} <= set(page["fonts"])]
    assert not missing, "\n".join(missing)


def test_code_lines_stay_within_the_line_limit(report):
    problems = [f"{page['page']}: a code line of {code['chars']} characters: {code['line']!r}"
                for page in report["pages"] if "error" not in page
                for code in page["codeOverflows"] + page["wideFonts"]["codeOverflows"]
                if code["chars"] > CODE_LINE_LIMIT]
    assert not problems, "\n".join(problems)


def test_no_page_shows_a_stray_return_value(book_pages):
    """A cell whose last line saves a figure must not print the returned path under the folded cell."""
    shown = [page for page in book_pages if "PosixPath(" in (HTML / page).read_text()]
    assert not shown, f"pages showing a PosixPath(...) output: {shown}"
