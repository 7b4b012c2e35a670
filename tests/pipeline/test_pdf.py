"""The printable PDF (stagewise/pipeline/pdf.py) on a small book: Sphinx's one-page HTML printed by headless
Chromium, offline."""

from __future__ import annotations

import re
import shutil

import pytest

from stagewise.pipeline import pdf

pytestmark = pytest.mark.slow

CONFIG = """title: A small book
execute:
  execute_notebooks: "off"
only_build_toc_files: true
"""
TOC = """format: jb-book
root: intro
chapters:
  - file: second
"""


def _pages(path) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


def test_a_staged_book_prints_to_one_pdf(tmp_path):
    try:
        pdf.find_chromium()
    except pdf.PdfError as error:
        pytest.skip(str(error))
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "_config.yml").write_text(CONFIG)
    (stage / "_toc.yml").write_text(TOC)
    (stage / "intro.md").write_text("# Intro\n\nThe first page.\n")
    long_line = "x = " + " + ".join(f"w{i}" for i in range(60))
    (stage / "second.md").write_text("# Second\n\n" + "\n\n".join(f"Paragraph {i}. " + "text " * 80
                                                                   for i in range(30))
                                     + f"\n\n```python\n{long_line}\n```\n")
    out = tmp_path / "out" / "book.pdf"
    assert pdf.build_pdf(stage, out, log=lambda *_: None) == out
    assert out.read_bytes().startswith(b"%PDF")
    assert _pages(out) >= 3  # both pages, the second spanning more than one sheet
    assert not list(out.parent.glob("*.partial"))


def test_missing_stage_and_missing_chromium_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(pdf.PdfError, match="build the book first"):
        pdf.build_pdf(tmp_path / "nothing", tmp_path / "book.pdf")
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(pdf.PdfError, match="CHROMIUM=.*is not a file"):
        pdf.find_chromium()
    monkeypatch.delenv("CHROMIUM")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pdf.PdfError, match="make browser-deps"):
        pdf.find_chromium()
