"""The book's "Rerunning the chapters" page, generated at build time from the chapters' parameters cells.

:func:`rerun_page` turns the parameters cell of every chapter of the table of contents (read with
:func:`~stagewise.pipeline.runner.parameter_table`) into a MyST page: one table per chapter (name, type,
default, meaning) and example ``make run`` / ``python -m stagewise run`` commands. The builder writes it
into the staged source tree as ``rerun.md`` (:data:`PAGE`), so the page can never drift from the notebooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .params import Parameter, default_value
from .profiles import available_profiles, profile_values
from .runner import load_notebook, parameter_table

__all__ = ["PAGE", "chapter_title", "example_parameters", "rerun_page", "write_rerun_page"]

#: The toc entry (and staged file stem) of the generated page.
PAGE = "rerun"

_SKIP_IN_EXAMPLE = {"profile", "seed"}
_MARKUP = set("\\`*_{}[]<>$|~")  # escaped in table text: Markdown emphasis, links, roles, maths, columns


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no column breaks, no accidental maths or roles)."""
    return "".join(f"\\{c}" if c in _MARKUP else c for c in text) or " "


def _code(text: str) -> str:
    """Inline code for a table cell: the text in backticks (a `|` is escaped, as tables require)."""
    text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def example_parameters(parameters: Iterable[Parameter]) -> list[tuple[str, str]]:
    """The ``-p name value`` pairs of a chapter's example command: the first numeric parameter other than
    ``profile``/``seed`` with a non-zero default, doubled; without one, ``seed 1``."""
    parameters = list(parameters)
    for parameter in parameters:
        value = default_value(parameter)
        if (parameter.name not in _SKIP_IN_EXAMPLE and parameter.type in ("int", "float") and value
                and isinstance(value, (int, float)) and not isinstance(value, bool)):
            return [(parameter.name, repr(value * 2))]
    return [("seed", "1")] if any(p.name == "seed" for p in parameters) else []


def chapter_title(nb, stem: str) -> str:
    """The notebook's first level-1 heading (its title in the book); ``stem`` when it has none."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return stem


def _chapter_section(entry: str, source: Path) -> list[str]:
    stem, nb = source.stem, load_notebook(source)
    rows = parameter_table(nb)
    pairs = example_parameters(rows)
    flags = " ".join(f"-p {name} {value}" for name, value in pairs)
    quick = profile_values(source, "quick") if "quick" in available_profiles(source.parent) else {}
    lines = [
        f"## {_cell(chapter_title(nb, stem))}",
        "",
        f"The chapter: {{doc}}`{entry}`; its source: `notebooks/{source.name}`. Parameters, in the order of",
        "its parameters cell:",
        "",
        "| name | type | default (full) | quick | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        shown = _code(repr(quick[row.name])) if row.name in quick else " "
        lines.append(f"| {_code(row.name)} | {_code(row.type)} | {_code(row.default)} | {shown} | "
                     f"{_cell(row.help)} |")
    lines += [
        "",
        "```bash",
        f'make run NB={stem} PROFILE=quick PARAMS="{flags}"',
        "# the same from the .venv (params: the values that will run):",
        f"python -m stagewise params {stem} --profile quick {flags}".rstrip(),
        f"python -m stagewise run {stem} --profile quick {flags}".rstrip(),
        "```",
        "",
    ]
    return lines


def rerun_page(chapters: Iterable[tuple[str, Path]]) -> str:
    """The page's MyST source for ``chapters``: (toc entry such as ``chapters/01_slt``, notebook source) pairs."""
    lines = [
        "# Rerunning the chapters",
        "",
        "Every chapter starts with a cell of parameters. This page is generated when the book is built, from",
        "those cells, so it always lists what the chapters accept. Rerun a chapter with other values from the",
        "repository's root; each run goes to a new folder `runs/<chapter>/<date-time>/` (the executed notebook,",
        "`metrics.json` and the figures) and never overwrites the book. `NB` is a chapter's name or number",
        "(`01`); a value after `-p` is read as an integer, a float, `True`/`False`/`None`, else a string.",
        "An unknown parameter, or a value of the wrong type or out of range, stops the run before any",
        "computation, with a message naming the accepted values. The tables show the book's values (the",
        "full profile); `PROFILE=quick` (`--profile quick`) starts from the smaller values of the quick column,",
        "which the tests use, read from `notebooks/profiles/quick/<chapter>.yaml` (a papermill `-f` file);",
        "leave it out for the book's settings. Values given with `-p` override the profile's.",
        "",
    ]
    for entry, source in chapters:
        lines += _chapter_section(entry, Path(source))
    return "\n".join(lines).rstrip() + "\n"


def write_rerun_page(path: str | Path, chapters: Iterable[tuple[str, Path]]) -> bool:
    """Write :func:`rerun_page` to ``path`` unless it already holds it; True when it was (re)written."""
    path, text = Path(path), rerun_page(chapters)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True
