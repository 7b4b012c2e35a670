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
``CODE_LINE_LIMIT`` characters. Pages are opened in a 1280 × 800 window (a laptop's): there no code block
scrolls sideways or wraps; laid out for print on A4, no code is cut off and the sidebars are not printed.
Token views (:mod:`stagewise.tokenview`) answer a hover, a click, the checkpoint selector and the keyboard
with the chosen token's class and BIFs: on a fixture page with two views (which needs no book) and on the
book's pages that have one (chapter 6). A screenshot of each page goes to ``build/quick/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
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


def _browser_or_skip() -> str:
    """Node.js's path, once Chromium and playwright-core are known to be there; a skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        _require_or_skip("Node.js is not installed", "install nodejs and npm")
    if not Path(CHROMIUM).is_file():
        _require_or_skip(f"no Chromium at {CHROMIUM}", "`make browser-deps` installs Debian's chromium with apt-get")
    if not (PLAYWRIGHT / "package.json").is_file():
        _require_or_skip(f"playwright-core is not in {PLAYWRIGHT.parent}", "`make browser-deps` installs it with npm")
    return node


def _browse(root: Path, pages: list[str], work: Path, screenshots: Path, **extra) -> dict:
    """tests/browser/check_pages.js's report on ``pages`` (paths under ``root``, served on 127.0.0.1)."""
    node = _browser_or_skip()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {"playwright": str(PLAYWRIGHT), "chromium": CHROMIUM, "base": f"http://127.0.0.1:{server.server_port}/",
              "pages": pages, "redirects": [p for p in pages if _redirects(root / p)],
              "screenshots": str(screenshots), "report": str(work / "report.json"), **extra}
    (work / "config.json").write_text(json.dumps(config))
    try:
        done = subprocess.run([node, str(DRIVER), str(work / "config.json")], capture_output=True, text=True,
                              timeout=900, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, f"the browser driver failed:\n{done.stdout}\n{done.stderr}"
    result = json.loads((work / "report.json").read_text())
    result["base"] = config["base"]
    return result


@pytest.fixture(scope="module")
def report(book_pages, tmp_path_factory) -> dict:
    _browser_or_skip()
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    return _browse(HTML, book_pages, tmp_path_factory.mktemp("browser"), SCREENSHOTS, machinePaths=_machine_paths())


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
    at a placeholder (tests/pipeline/test_clean.py checks the links when one is configured)."""
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


def test_code_fits_a_1280_px_window(report):
    """In a 1280 × 800 window (the driver's) no code block needs sideways scrolling, with the book's fonts or wide
    ones, folded cells included (as the reader who opens one sees it); with the book's fonts no line of one wraps
    either: the code font shrinks with the column until a line of CODE_LINE_LIMIT characters fits
    (book/_static/stagewise.css), and only narrower windows wrap."""
    scrolling = [f"{page['page']}: {rendering}a {'folded ' if code['folded'] else ''}code cell scrolls "
                 f"{code['px']} px sideways (longest line {code['chars']} characters: {code['line']!r})"
                 for page in report["pages"] if "error" not in page
                 for rendering, codes in (("", page["codeOverflows"]), ("with wide fonts: ",
                                                                         page["wideFonts"]["codeOverflows"]))
                 for code in codes]
    assert not scrolling, "\n".join(scrolling)
    wrapped = [f"{page['page']}: lines wrap in {stats['wrapped']} of {stats['blocks']} code blocks and "
               f"{stats['wrappedFolded']} of {stats['folded']} folded ones"
               for page in report["pages"] if "error" not in page
               for stats in [page["codeStats"]] if stats["wrapped"] or stats["wrappedFolded"]]
    assert not wrapped, "\n".join(wrapped)
    assert sum(p["codeStats"]["cells"] for p in _chapter_pages(report)) > 0  # code cells were found and measured


def test_printed_pages_wrap_code_and_leave_out_the_sidebars(report):
    """Laid out for print on A4 (print to PDF): no code block or other element is cut at the paper's edge, and the
    sidebars, header and footer are not printed."""
    problems = []
    for page in report["pages"]:
        if "error" in page:
            continue
        printed = page["print"]
        problems += [f"{page['page']}: printed, a code block is cut {code['px']} px short: {code['line']!r}"
                     for code in printed["codeOverflows"]]
        problems += [f"{page['page']}: printed, {line}" for line in printed["overflows"]]
        problems += [f"{page['page']}: printed, {part} shows" for part in printed["shown"]]
    assert not problems, "\n".join(problems)
    assert sum(p["print"]["codeStats"]["cells"] for p in _chapter_pages(report)) > 0


# ---------------------------------------------------------------------------------------------------- token views

_SUPERSCRIPT = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def _shown_number(text: str) -> float:
    """A number as the token view writes it (−0.00248, 3.54×10⁻⁵) as a float."""
    match = re.fullmatch(r"\s*([−-]?\d+(?:\.\d+)?)(?:×10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+))?\s*", text)
    assert match, f"not a number as the token view writes one: {text!r}"
    value = float(match.group(1).replace("−", "-"))
    return value * 10 ** int(match.group(2).translate(_SUPERSCRIPT)) if match.group(2) else value


def _as_shown(value: float) -> str:
    """``value`` as the token view writes a number far from 1 (for the test of the checks below)."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return (mantissa + "×10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
            ).replace("-", "−")


def test_shown_numbers_are_read_back():
    assert _shown_number(_as_shown(-8.77e-5)) == pytest.approx(-8.77e-5)
    assert _shown_number("−0.00248") == -0.00248 and _shown_number("3.54×10⁻⁵") == pytest.approx(3.54e-5)
    assert _shown_number("0") == 0 and _shown_number("1.20×10⁶") == 1.2e6
    with pytest.raises(AssertionError):
        _shown_number("−0.0024 nats")


def _view_data(page_html: str, view_id: str) -> dict:
    """The data a token view embeds (its JSON), found in the page's HTML by the view's id."""
    match = re.search(rf'id="{re.escape(view_id)}">.*?<script type="application/json" class="tv-data">(.*?)</script>',
                      page_html, re.DOTALL)
    assert match, f"no data for token view {view_id}"
    return json.loads(match.group(1))


def _close(shown: str, value: float) -> bool:
    return math.isclose(_shown_number(shown), value, rel_tol=6e-3, abs_tol=1e-300)


def _view_state_problems(state: dict, data: dict, checkpoint: int, index: int, what: str) -> list[str]:
    """What is wrong with a token view showing token ``index`` at checkpoint ``checkpoint`` (the driver's record)."""
    t = len(data["tokens"])
    rows = data["matrices"][checkpoint]  # a symmetric matrix is stored as its lower triangle
    matrix = [[rows[s][j] if not data["symmetric"][checkpoint] or j <= s else rows[j][s] for j in range(t)]
              for s in range(t)]
    problems = []
    if state["checkpoint"] != checkpoint or state["label"] != data["labels"][checkpoint]:
        problems.append(f"shows checkpoint {state['label']!r}, expected {data['labels'][checkpoint]!r}")
    if state["current"] != [index]:
        problems.append(f"marks tokens {state['current']} as chosen, expected [{index}]")
    if state["visible"] != t or state["coloured"] != t - 1:
        problems.append(f"{state['visible']} tokens visible and {state['coloured']} coloured, expected {t} and {t - 1}")
    if state["classText"] != (data["classes"][index] or "none"):
        problems.append(f"class {state['classText']!r}, expected {data['classes'][index]!r}")
    if f"#{index} " not in state["detail"] or data["tokens"][index] not in state["detail"]:
        problems.append(f"the detail panel does not name token #{index} {data['tokens'][index]!r}")
    own = (state["self"] or "").split("): ", 1)[-1].split(" ", 1)[0]
    if not own or not _close(own, matrix[index][index]):
        problems.append(f"own BIF shown as {state['self']!r}, expected {matrix[index][index]}")
    others = [j for j in range(t) if j != index]
    on = {j: matrix[index][j] for j in others}  # BIF(index → j)
    by = {j: matrix[j][index] for j in others}  # BIF(j → index)
    tables = state["tables"]
    if data["symmetric"][checkpoint]:
        expected = [sorted(v for v in on.values() if v < 0)[:5], sorted((v for v in on.values() if v > 0),
                                                                       reverse=True)[:5]]
        directions = [on, on]
    else:
        def strongest(values):
            return (sorted(v for v in values.values() if v < 0)[:5]
                    + sorted((v for v in values.values() if v > 0), reverse=True)[:5])
        expected, directions = [strongest(on), strongest(by)], [on, by]
    if len(tables) != 2:
        return problems + [f"{len(tables)} lists of strongest influences, expected 2"]
    for table, want, direction in zip(tables, expected, directions):
        shown = [(j, _shown_number(v)) for j, v in table["rows"]]
        if [j for j, _ in shown if j == index or j not in direction]:
            problems.append(f"list {table['caption']!r} names the chosen token or no token")
            continue
        if not all(_close(v, direction[j]) for j, v in table["rows"]):
            problems.append(f"list {table['caption']!r} shows {table['rows']}, not the BIFs of those tokens")
        if not all(math.isclose(a, b, rel_tol=6e-3) for a, (_, b) in zip(want, shown)) or len(want) != len(shown):
            problems.append(f"list {table['caption']!r} shows {[v for _, v in shown]}, expected the strongest {want}")
    return [f"{what}: {p}" for p in problems]


def _token_view_problems(view: dict, data: dict) -> list[str]:
    """Everything the driver saw a token view do, against the data it embeds."""
    t, start, last = len(data["tokens"]), data["initial"], len(data["labels"]) - 1
    problems = []
    if view["tokens"] != t:
        problems.append(f"{view['tokens']} tokens shown, the data has {t}")
    before = view["before"]
    if before["current"] or before["pressed"] or before["coloured"] or before["visible"] != t:
        problems.append(f"before any action: {before['visible']} of {t} tokens visible, {before['coloured']} "
                        f"coloured, chosen {before['current']}, kept {before['pressed']}")
    problems += _view_state_problems(view["hover"], data, start, view["hovered"], "hovered")
    problems += _view_state_problems(view["click"], data, start, view["clicked"], "clicked, pointer away")
    if view["click"]["pressed"] != [view["clicked"]]:
        problems.append(f"clicked token {view['clicked']}: kept {view['click']['pressed']}")
    shown = start
    if "checkpoint" in view:
        shown = last
        problems += _view_state_problems(view["checkpoint"], data, last, view["clicked"], "checkpoint changed")
    elif last > 0:
        problems.append("the checkpoint selector was not exercised")
    keyed = min(1, t - 1)
    problems += _view_state_problems(view["keyboard"], data, shown, keyed, "arrow key from token 0")
    if view["keyboard"]["focused"] != keyed or view["keyboard"]["pressed"] != [view["clicked"]]:
        problems.append(f"arrow key: focus on {view['keyboard']['focused']}, kept {view['keyboard']['pressed']}")
    if view["enter"]["pressed"] != [keyed]:
        problems.append(f"Enter on token {keyed}: kept {view['enter']['pressed']}")
    if view["after"]["pressed"]:
        problems.append(f"Escape: still kept {view['after']['pressed']}")
    ignore = ("focused",)
    if {k: v for k, v in view["final"].items() if k not in ignore} != {k: v for k, v in view["after"].items()
                                                                        if k not in ignore}:
        problems.append("changed while another view on the page was used")
    return problems


def _fixture_views():
    from stagewise.tokenview import token_view

    rng = np.random.default_rng(7)
    tokens = ["␣Once", "␣upon", "␣a", "␣time", "(", "␣the", "␣cat", ")", "⏎", "␣Once", "␣upon", "␣a"]
    classes = ["word_start", "word_start", "word_start", "word_start", "left_delimiter", "word_start",
               "word_start", "right_delimiter", "formatting", ["word_start", "induction"],
               ["word_start", "induction"], ["word_start", "induction"]]
    symmetric = {f"step {step:,}": -np.cov(rng.normal(size=(200, len(tokens))).T) * 1e-3 * (1 + k)
                 for k, step in enumerate((100, 1200, 4000))}
    asymmetric = {f"step {step:,}": rng.normal(size=(5, 5)) * 1e-4 for step in (50, 500)}
    first = token_view(tokens, classes, symmetric, title="Fixture: one query sequence", emphasize="induction")
    second = token_view(list("abcde"), ["x", "y", "x", "y", "x"], asymmetric, title="Fixture: not symmetric",
                        initial="step 500")
    return first, second


def test_token_views_work_in_the_browser(tmp_path):
    """Two token views on one fixture page, in the browser test's Chromium with the network blocked: each renders,
    answers a hover, a click, the checkpoint selector and the keyboard with the chosen token's class and BIFs,
    leaves the other alone, and the page loads nothing but itself."""
    first, second = _fixture_views()
    site = tmp_path / "site"
    site.mkdir()
    page_html = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Token views</title></head>"
                 f"<body><article><h1>Token views</h1>\n{first.html}\n<p>Between the views.</p>\n{second.html}"
                 "</article></body></html>\n")
    (site / "tokenview.html").write_text(page_html, encoding="utf-8")
    result = _browse(site, ["tokenview.html"], tmp_path, tmp_path / "screenshots")
    (page,) = result["pages"]
    assert "error" not in page, page.get("error")
    assert not page["blocked"] and not page["failedRequests"]
    assert not page["consoleErrors"] and not page["pageErrors"], page["consoleErrors"] + page["pageErrors"]
    assert page["requests"] == [result["base"] + "tokenview.html"]  # nothing but the page itself
    assert [view["id"] for view in page["tokenViews"]] == [first.id, second.id]
    for view in page["tokenViews"]:
        data = _view_data(page_html, view["id"])
        problems = _token_view_problems(view, data)
        assert not problems, "\n".join(problems)
    symmetric, asymmetric = page["tokenViews"]
    assert "symmetric here" in symmetric["hover"]["tables"][0]["caption"]
    assert "BIF(s → #" in asymmetric["hover"]["tables"][1]["caption"]  # "on" and "from" apart when they differ
    assert not page["overflows"] and not page["print"]["overflows"]


def test_token_view_check_catches_a_wrong_view(tmp_path):
    """The checks above fail on a view that shows the wrong class, value or checkpoint (made by editing a record
    of a working view, so this needs no browser)."""
    first, _ = _fixture_views()
    data = _view_data(first.html, first.id)
    t, i = len(data["tokens"]), 3
    rows = data["matrices"][0]  # symmetric: the lower triangle
    row = [rows[i][j] if j <= i else rows[j][i] for j in range(t)]
    state = {"checkpoint": 0, "label": data["labels"][0], "current": [i], "visible": t, "coloured": t - 1,
             "classText": data["classes"][i], "detail": f"Token #{i} {data['tokens'][i]} at x",
             "self": f"Own BIF(#{i} → #{i}): {_as_shown(row[i])} nats²",
             "tables": [{"caption": "helps", "rows": []}, {"caption": "harms", "rows": []}]}
    negative = sorted((v, j) for j, v in enumerate(row) if j != i and v < 0)[:5]
    positive = sorted(((v, j) for j, v in enumerate(row) if j != i and v > 0), reverse=True)[:5]
    state["tables"][0]["rows"] = [[j, _as_shown(v)] for v, j in negative]
    state["tables"][1]["rows"] = [[j, _as_shown(v)] for v, j in positive]
    assert _view_state_problems(state, data, 0, i, "x") == []
    for key, wrong in (("classText", "induction"), ("label", data["labels"][1]), ("coloured", 0),
                       ("self", "Own BIF(#3 → #3): 1.00 nats²"), ("current", [4])):
        assert _view_state_problems(state | {key: wrong}, data, 0, i, "x"), key
    swapped = [dict(state["tables"][0], rows=state["tables"][0]["rows"][::-1]), state["tables"][1]]
    assert _view_state_problems(state | {"tables": swapped}, data, 0, i, "x")  # not the strongest first
    if len(negative) > 1:
        shorter = [dict(state["tables"][0], rows=state["tables"][0]["rows"][1:]), state["tables"][1]]
        assert _view_state_problems(state | {"tables": shorter}, data, 0, i, "x")  # the strongest left out


def test_token_views_on_the_book_pages_respond(report):
    """The token views of the built book (chapter 6's, once its cell calls stagewise.tokenview.token_view) respond
    like the fixture's; skipped while no page has one and chapter 6's source does not call it."""
    with_views = [page for page in report["pages"] if page.get("tokenViews")]
    source = ROOT / "notebooks" / "06_token_influence.md"
    if not with_views:
        if source.is_file() and "token_view(" in source.read_text():
            pytest.fail("notebooks/06_token_influence.md calls token_view, but no page of the book has a token view")
        pytest.skip("no page of the book has a token view yet (chapter 6 does not call token_view)")
    problems = []
    for page in with_views:
        page_html = (HTML / page["page"]).read_text()
        for view in page["tokenViews"]:
            problems += [f"{page['page']} {view['id']}: {p}"
                         for p in _token_view_problems(view, _view_data(page_html, view["id"]))]
    assert not problems, "\n".join(problems)


def test_no_page_shows_a_stray_return_value(book_pages):
    """A cell whose last line saves a figure must not print the returned path under the folded cell."""
    shown = [page for page in book_pages if "PosixPath(" in (HTML / page).read_text()]
    assert not shown, f"pages showing a PosixPath(...) output: {shown}"
