"""Building the book: staging, cached execution, strict Jupyter Book build (on the fixture chapter)."""

import shutil
from pathlib import Path

import pytest
import yaml

from stagewise.pipeline.book import BookError, build_book, toc_files

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_toc_files_in_reading_order():
    toc = {"format": "jb-book", "root": "intro",
           "parts": [{"caption": "Chapters", "chapters": [{"file": "chapters/01_a", "sections": [{"file": "s"}]},
                                                          {"file": "chapters/02_b"}]}]}
    assert toc_files(toc) == ["intro", "chapters/01_a", "s", "chapters/02_b"]


def test_repository_toc_has_intro_and_chapters():
    entries = toc_files(yaml.safe_load((ROOT / "book" / "_toc.yml").read_text()))
    assert entries[0] == "intro" and "chapters/01_slt" in entries


@pytest.fixture
def book(tmp_path):
    """The repository's book sources with the fixture as the only chapter."""
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build"))
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    # the book's own pages cite its real chapters: keep only the back matter, and a plain landing page
    back = [{**part, "chapters": [c for c in part["chapters"] if not c["file"].startswith("chapters/")]}
            for part in toc["parts"][-1:]]  # the back matter (the appendices), without its notebook pages
    toc["parts"] = [{"caption": "Chapters", "chapters": [{"file": "chapters/fixture_chapter"}]}, *back]
    (book / "intro.md").write_text("# The fixture book\n\nOne chapter, {doc}`chapters/fixture_chapter`.\n")
    (book / "_toc.yml").write_text(yaml.safe_dump(toc))
    return book


@pytest.mark.slow
def test_quick_book_builds_strictly_then_is_cached(book, tmp_path, monkeypatch):
    # a fixed package hash: edits to the package while the test runs must not defeat the cache
    monkeypatch.setattr("stagewise.pipeline.runner.package_hash", lambda: "fixed")
    stage, log = tmp_path / "stage", []
    result = build_book("quick", book_dir=book, notebooks_dir=FIXTURES, stage=stage, log=lambda *a, **k: log.append(a[0]))
    assert result.html == stage / "_build" / "html"
    assert [name for name, _ in result.executed] == ["fixture_chapter"]
    assert (stage / "chapters" / "fixture_chapter" / "metrics.json").is_file()
    assert (stage / "chapters" / "fixture_chapter" / "histogram.png").is_file()
    page = (result.html / "chapters" / "fixture_chapter.html").read_text()
    assert "<img" in page and "A fixture chapter" in page
    assert (result.html / "index.html").is_file() and (result.html / "references.html").is_file()
    assert not (book / "_build").exists()  # the quick book never writes into the book sources

    log.clear()
    again = build_book("quick", book_dir=book, notebooks_dir=FIXTURES, stage=stage, log=lambda *a, **k: log.append(a[0]))
    assert again.executed == [] and [name for name, _ in again.cached] == ["fixture_chapter"]
    assert any(line.startswith("html: up to date") for line in log)
    assert again.seconds < 30  # no kernel, no Sphinx (about a second when the machine is idle)


@pytest.mark.slow
def test_a_sphinx_warning_fails_the_build(book, tmp_path):
    with (book / "intro.md").open("a") as f:
        f.write("\nSee {ref}`no-such-label`.\n")
    with pytest.raises(BookError, match="strict Jupyter Book build failed"):
        build_book("quick", book_dir=book, notebooks_dir=FIXTURES, stage=tmp_path / "stage", log=lambda *a, **k: None)
    assert not (tmp_path / "stage" / "_build" / ".stagewise-html.json").exists()


def test_unknown_profile_is_refused(book):
    with pytest.raises(BookError, match="unknown profile"):
        build_book("medium", book_dir=book, notebooks_dir=FIXTURES)


def test_staging_copies_sources_and_drops_removed_ones(tmp_path):
    from stagewise.pipeline.book import _stage_sources

    book, stage = tmp_path / "book", tmp_path / "stage"
    (book / "_build").mkdir(parents=True)
    (book / "_build" / "junk.html").write_text("x")
    (book / "intro.md").write_text("# Intro\n")
    (book / "old.md").write_text("# Old\n")
    _stage_sources(book, stage)
    assert (stage / "intro.md").read_text() == "# Intro\n" and (stage / "old.md").is_file()
    assert not (stage / "_build").exists()
    (book / "old.md").unlink()
    (stage / "chapters").mkdir()
    (stage / "chapters" / "01.ipynb").write_text("{}")  # generated files are kept
    _stage_sources(book, stage)
    assert not (stage / "old.md").exists() and (stage / "chapters" / "01.ipynb").is_file()


@pytest.mark.slow
def test_student_book_has_no_solutions(book, tmp_path, monkeypatch):
    monkeypatch.setattr("stagewise.pipeline.runner.package_hash", lambda: "fixed")
    stage, log = tmp_path / "stage", []
    result = build_book("quick", book_dir=book, notebooks_dir=FIXTURES, stage=stage, student=True,
                        log=lambda *a, **k: log.append(a[0]))
    assert result.html == tmp_path / "stage-student" / "_build" / "html"
    page = (result.html / "chapters" / "fixture_chapter.html").read_text()
    assert "Exercise 1: more draws" in page and "Solution" not in page and "fill the bins" not in page
    assert "<img" in page  # the executed outputs are there
    assert "student book: 1 solution block(s) removed" in log
    teacher = (stage / "chapters" / "fixture_chapter.ipynb").read_text()
    assert "fill the bins" in teacher  # the normal staged book keeps its solutions
