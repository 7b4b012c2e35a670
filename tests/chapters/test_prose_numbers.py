"""Every number in a chapter's prose comes from the run.

A chapter's prose (its Markdown, figure captions and alt texts) may show a number only through the run:
``{glue:text}`name` `` of a value the chapter glued (formatted by :func:`stagewise.plotting.prose_number`),
or a sentence a code cell prints. A numeric literal typed into the prose drifts from the run (a profile
changes it, a rerun moves it), so this test finds them and fails, naming the line.

Not counted as a typed number (each with its reason):

- mathematics (``$…$``, ``$$…$$``, ``{math}``), code (code cells, fences, inline code), roles
  (``{glue:…}``, ``{cite:…}``, ``{ref}``…), link targets, HTML comments, the front matter and directive
  options other than ``:alt:``: not prose, or produced by the run;
- references to the book's own parts: chapter, section, figure, table, exercise, session, part, step (as in
  "step 2 of the recipe"), § and equation numbers, and numbered-list markers and heading numbers;
- years and arXiv identifiers in citations;
- fractions such as 1/6 (exact values of the theory; better written as mathematics);
- the phrases of ``ALLOWED`` below, each with its reason (a fact of the method or a design constant, never
  a measured or a profile-dependent value), and those of a chapter in ``notebooks/prose_numbers.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
ALLOW_FILE = ROOT / "notebooks" / "prose_numbers.yaml"

#: Book-wide phrases whose numbers are constants of the method or of the book's conventions.
ALLOWED = {
    "95%": "the confidence level of every interval in the book (a design constant)",
    "2 s.e.": "the book's detection rule: an effect counts when it exceeds two standard errors",
    "±2": "the book's band of two standard errors",
    "± 2": "the book's band of two standard errors",
    "1.96": "the normal quantile of a 95% interval",
}

REFERENCE = re.compile(
    r"(?:chapters?|sections?|§|figures?|fig\.|tables?|exercises?|sessions?|parts?|equations?|eq\.|steps?\s+(?=\d+\s+of\b)|"
    r"appendix|question|item|lines?)\s*\d+(?:\.\d+)*(?:\s*(?:,|and|or|to|–|-|…)\s*\d+(?:\.\d+)*)*",
    re.IGNORECASE,
)
YEAR = re.compile(r"(?<![\d,.])(?:19|20)\d\d[a-z]?(?![\d,.]*\d)")
ARXIV = re.compile(r"\b\d{4}\.\d{4,5}(?:v\d+)?\b")
FRACTION = re.compile(r"(?<![\d.,])\d+/\d+(?![\d.,]*\d)")
NUMBER = re.compile(r"(?<![\w.\-−])[−-]?\d[\d,]*(?:\.\d+)?(?:×10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)?%?")


def allowed_phrases(stem: str) -> dict[str, str]:
    phrases = dict(ALLOWED)
    if ALLOW_FILE.exists():
        for entry in (yaml.safe_load(ALLOW_FILE.read_text()) or {}).get(stem, []) or []:
            phrases[entry["text"]] = entry["why"]
    return phrases


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The chapter's prose, line by line (1-based line numbers of the source), everything that is not prose
    blanked out: front matter, code cells and fences (but a figure's caption and ``:alt:`` stay), math,
    inline code, roles, link targets, HTML comments."""
    lines = text.split("\n")
    out: list[tuple[int, str]] = []
    in_front = lines[:1] == ["---"]
    fence: str | None = None  # the fence of the block we are in
    prose_block = False  # a directive whose body is prose (figure caption, admonitions)
    in_math = False
    in_comment = False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if in_front:
            if number > 1 and stripped == "---":
                in_front = False
            continue
        if fence is not None:
            if stripped.startswith(fence) and stripped.strip("`~") == "":
                fence = None
                prose_block = False
                continue
            if not prose_block:
                continue
            if stripped.startswith(":") and not stripped.startswith(":alt:"):
                continue  # a directive option (:name:, :width:, :tags: ...)
            if stripped.startswith(":alt:"):
                line = stripped[len(":alt:"):]
        else:
            opening = re.match(r"^\s*(`{3,}|~{3,})\s*(\{[\w:-]+\})?\s*(.*)$", line)
            if opening:
                fence = opening.group(1)
                directive = (opening.group(2) or "").strip("{}")
                prose_block = directive in {"figure", "note", "admonition", "tip", "warning", "important", "hint",
                                            "seealso", "caution", "attention", "margin", "sidebar", "dropdown",
                                            "epigraph", "glossary", "table", "list-table"}
                continue
        if stripped.startswith("$$"):
            if not (stripped.endswith("$$") and len(stripped) > 2):
                in_math = not in_math
            continue
        if in_math:
            continue
        if in_comment or "<!--" in line:
            start = line.find("<!--") if not in_comment else 0
            end = line.find("-->", start)
            if end < 0:
                in_comment = True
                line = line[:start] if start >= 0 else ""
            else:
                in_comment = False
                line = line[:start] + line[end + 3:] if start >= 0 else line[end + 3:]
        if stripped.startswith("+++") or stripped.startswith("(") and stripped.endswith(")="):
            continue  # jupytext cell marker, a MyST target
        out.append((number, line))
    return out


def scrub(line: str) -> str:
    """Blank out what is not prose within a line: math, inline code, roles with their content, link
    targets, list markers and heading numbers."""
    line = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", line)  # roles: {glue:text}`x`, {cite:p}`k`, {math}`...`
    line = re.sub(r"`[^`]*`", " ", line)
    line = re.sub(r"\$[^$]*\$", " ", line)
    line = re.sub(r"\]\([^)]*\)", "]", line)  # link targets
    line = re.sub(r"<[^>]+>", " ", line)  # HTML tags and autolinks
    line = re.sub(r"^\s*#+\s*\d+(?:\.\d+)*\.?", " ", line)  # heading numbers
    line = re.sub(r"^\s*\d+[.)]\s", " ", line)  # numbered-list markers
    return line


def typed_numbers(text: str, phrases: dict[str, str]) -> list[tuple[int, str, str]]:
    """(line, literal, the line) for every typed number of the prose ``text``."""
    found = []
    for number, line in prose_lines(text):
        prose = scrub(line)
        for phrase in sorted(phrases, key=len, reverse=True):
            prose = prose.replace(phrase, " ")
        prose = REFERENCE.sub(" ", prose)
        prose = ARXIV.sub(" ", prose)
        prose = FRACTION.sub(" ", prose)
        prose = YEAR.sub(" ", prose)
        for match in NUMBER.finditer(prose):
            found.append((number, match.group(0), line.strip()))
    return found


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_prose_numbers_come_from_the_run(chapter):
    phrases = allowed_phrases(chapter.stem)
    text = chapter.read_text()
    stale = [phrase for phrase in phrases if phrase not in ALLOWED and phrase not in text]
    assert not stale, f"{ALLOW_FILE.name}: {chapter.stem} allows {stale}, which the chapter no longer contains"
    found = typed_numbers(text, phrases)
    report = "\n".join(f"  {chapter.name}:{line}: {literal!r} in: {context[:110]}" for line, literal, context in found)
    assert not found, (
        f"{len(found)} number(s) typed into the prose of {chapter.name}; glue them from the run "
        f"(stagewise.plotting.glue_text + {{glue:text}}`name`) or, for a constant of the method, add the "
        f"phrase to {ALLOW_FILE.relative_to(ROOT)} with its reason:\n{report}"
    )


# ---------------------------------------------------------------------------- the scanner on known text

SAMPLE = """---
jupytext: {}
---

# 1. A title with three words

Section 2 says the run took {glue:text}`seconds` seconds, where $\\lambda = 1/4$ and `n = 100` in code.
The formation step is 3,976 and the error 6.3%; see chapter 6 and figures 2 and 3 (Lee et al., 2025; arXiv
2510.12071). We use a 95% interval.

```{code-cell} ipython3
steps = 4000
```

```{figure} a/b.png
:alt: A plot of 400 pairs.
:name: fig-1

The caption of 20 samples.
```

$$
x = 12
$$

1. A list item with 7 apples.
<!-- a comment with 99 -->
"""


def test_scanner_finds_typed_numbers_and_only_them():
    found = typed_numbers(SAMPLE, dict(ALLOWED))
    assert [literal for _, literal, _ in found] == ["3,976", "6.3%", "400", "20", "7"]
    lines = SAMPLE.split("\n")
    assert all(literal in lines[line - 1] for line, literal, _ in found)


def test_allowed_phrase_removes_only_its_own_number():
    found = typed_numbers("A model of 2 layers and 3 heads.\n", {"2 layers": "the architecture"})
    assert [literal for _, literal, _ in found] == ["3"]
