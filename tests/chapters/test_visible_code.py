"""A chapter shows the idea, a short call, the figure and what it shows: the code a reader sees unfolded stays
short. Plumbing (the parameters, validation, imports, metrics) is folded (``hide-input``) or removed
(``remove-input``/``remove-cell``) and figures are drawn by the package's figure modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
FOLDED = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
#: the book-wide budget of code lines a reader sees unfolded (issue 22: "at most ~900")
BOOK_BUDGET = 900
#: one chapter's share: no chapter may take a third of the book's budget
CHAPTER_BUDGET = 150

CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def visible_code_lines(text: str) -> int:
    """Non-blank code lines of the code cells that are not folded or removed (``:tags:`` of the cell)."""
    total = 0
    for cell in CELL.finditer(text):
        body = cell.group(1)
        lines = body.split("\n")
        tags: set[str] = set()
        start = 0
        if lines and lines[0].startswith(":tags:"):
            tags = set(re.findall(r"[\w-]+", lines[0][len(":tags:"):]))
            start = 1
        elif lines and lines[0] == "---":  # options as a YAML block
            end = lines.index("---", 1)
            tags = set(re.findall(r"[\w-]+", " ".join(lines[1:end]).split("tags:", 1)[-1]))
            start = end + 1
        if tags & FOLDED:
            continue
        total += sum(1 for line in lines[start:] if line.strip() and not line.startswith(":"))
    return total


def test_the_scanner_counts_only_unfolded_code():
    text = ("```{code-cell} ipython3\n:tags: [parameters, hide-input]\nseed = 0\n```\n\n"
            "```{code-cell} ipython3\nx = 1\n\ny = 2\n```\n\n"
            "```{code-cell} ipython3\n:tags: [remove-cell]\nimport os\n```\n")
    assert visible_code_lines(text) == 2


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_a_chapter_shows_little_code(chapter):
    lines = visible_code_lines(chapter.read_text())
    assert lines <= CHAPTER_BUDGET, f"{chapter.name}: {lines} unfolded code lines (budget {CHAPTER_BUDGET})"


def test_the_book_shows_little_code():
    counts = {path.stem: visible_code_lines(path.read_text()) for path in CHAPTERS}
    assert sum(counts.values()) <= BOOK_BUDGET, f"{sum(counts.values())} unfolded code lines: {counts}"
