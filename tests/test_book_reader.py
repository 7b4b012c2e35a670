"""What the built book gives a reader beyond its pages (book/_ext/stagewise_reader.py): each chapter's
results to download from its page, and search results with snippets in a book opened from disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "quick"
HTML = BUILD / "_build" / "html"
PLAYWRIGHT = Path(os.environ.get("STAGEWISE_CACHE", ROOT / ".cache")) / "npm" / "browser" / "node_modules" / "playwright-core"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def html() -> Path:
    if not (HTML / "index.html").is_file():
        message = f"{HTML} has no index.html: build the quick book first (`python -m stagewise book --profile quick`)"
        if os.environ.get("STAGEWISE_BOOK_BUILT"):
            pytest.fail(message)
        pytest.skip(message)
    return HTML


class _Downloads(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inside, self.links = False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id") == "results-of-this-chapter":
            self.inside = True
        elif tag == "a" and self.inside and "download" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "section":
            self.inside = False


def test_every_chapter_offers_its_metrics_and_tables_from_its_page(html):
    chapters = sorted(p for p in (BUILD / "chapters").iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    assert chapters
    for folder in chapters:
        page = html / "chapters" / f"{folder.name}.html"
        if not page.is_file():
            continue  # a chapter run but not in the table of contents
        parser = _Downloads()
        parser.feed(page.read_text())
        expected = {f"{folder.name}/metrics.json"} | {p.relative_to(folder.parent).as_posix() for p in folder.rglob("*.csv")}
        assert set(parser.links) == expected, f"{page.name}: download links {parser.links}, expected {sorted(expected)}"
        for link in parser.links:
            served, built = html / "chapters" / link, folder.parent / link
            assert served.read_bytes() == built.read_bytes(), f"{page.name}: {link} differs from the build's file"
        assert json.loads((html / "chapters" / folder.name / "metrics.json").read_text())


def test_search_shows_snippets_when_the_book_is_opened_from_disk(html):
    node = shutil.which("node")
    if node is None or not Path(CHROMIUM).is_file() or not (PLAYWRIGHT / "package.json").is_file():
        pytest.skip("node, Chromium or playwright-core missing (`make browser-deps` installs them)")
    done = subprocess.run([node, str(ROOT / "tests" / "reader" / "search_snippets.js"), str(PLAYWRIGHT), CHROMIUM,
                           (html / "search.html").as_uri(), "induction"], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["external"] == [] and report["errors"] == []
    hits = report["hits"]
    assert len(hits) >= 3, hits
    with_snippet = [hit for hit in hits if "induction" in hit["snippet"].lower()]
    assert len(with_snippet) == len(hits), [hit for hit in hits if hit not in with_snippet]
    assert any(hit["link"].startswith("chapters/06_token_influence.html") for hit in hits)
