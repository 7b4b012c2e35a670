"""The built books' pages as text, without a browser: no page of the quick or the full book shows a path of the
machine that built it. Marked ``book``: ``make test`` runs it after building the quick book; the full book's
pages (``book/_build/html``, made by ``make book``) are checked whenever they exist."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOKS = {"quick": ROOT / "build" / "quick" / "_build" / "html", "full": ROOT / "book" / "_build" / "html"}
NOT_PAGES = ("_static", "_sources", "_images")

pytestmark = pytest.mark.book

#: An absolute path under a folder where machines keep homes, clones and temporary files (not a URL's path:
#: no letter, digit, dot, colon or slash right before it).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:home|root|tmp|work|Users|var/folders|private|mnt|opt|srv|builds?)"
                           r"/[\w.+-]+")


class _Text(HTMLParser):
    """The text a reader sees (and can copy): everything but <script> and <style>."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return "".join(parser.parts)


def machine_path_hits(text: str, paths: list[str]) -> list[str]:
    """Snippets of ``text`` around each path of this machine or absolute path under a machine folder."""
    hits = []
    for path in paths:
        hits += [text[max(0, m.start() - 30):m.end() + 30] for m in re.finditer(re.escape(path), text)]
    hits += [text[max(0, m.start() - 30):m.end() + 30] for m in ABSOLUTE_PATH.finditer(text)]
    return [" ".join(hit.split()) for hit in hits]


def _this_machine() -> list[str]:
    from stagewise.pipeline.clean import machine_paths

    return [p for p in machine_paths(ROOT) if p.count("/") >= 2 or p == os.path.expanduser("~")]


def test_the_path_check_finds_machine_paths_and_spares_urls_and_relative_paths():
    text = ("results in /tmp/tmpab12/main/benchmarks/results and /home/ana/stagewise; see "
            "https://example.org/home/page, benchmarks/results and ./runs/01_slt")
    hits = machine_path_hits(text, ["/srv/clone"])
    assert len(hits) == 2 and "/tmp/tmpab12" in hits[0] and "/home/ana" in hits[1]
    assert machine_path_hits("a clone in /srv/clone/x", ["/srv/clone"])
    assert page_text_of("<p>a</p><script>var p = '/home/x/y';</script><p>b</p>") == "ab"


def page_text_of(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


@pytest.mark.parametrize("profile", sorted(BOOKS))
def test_no_page_shows_a_path_of_the_build_machine(profile):
    html = BOOKS[profile]
    if not (html / "index.html").is_file():
        if profile == "quick" and os.environ.get("STAGEWISE_BOOK_BUILT"):
            pytest.fail(f"{html} has no index.html: the quick book was not built")
        pytest.skip(f"the {profile} book is not built ({html})")
    paths = _this_machine()
    problems = []
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] in NOT_PAGES:
            continue
        problems += [f"{page.relative_to(html)}: {hit}" for hit in machine_path_hits(page_text(page), paths)]
    assert not problems, "\n".join(problems)
