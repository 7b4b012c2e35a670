"""The headline numbers of the README and the landing page, taken from the chapters' metrics.json, never typed.

``book/numbers.yml`` names each number once: the chapter, the metrics key path (:mod:`~.metrics`) and a format.
The book builder hands the numbers of the build it just ran to the landing page as MyST substitutions
(``{{ name }}``), so the page cannot disagree with its own chapters. The README's block between ``<!-- numbers:start -->`` and ``<!-- numbers:end -->`` is rendered from ``book/numbers.json``, a
snapshot of a full build (``python -m stagewise numbers --update`` writes both after ``make book``); a test
fails when the README differs from the snapshot, and ``make book`` reports any number of its own build that
differs from the snapshot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from stagewise.artifacts import read_json, write_bytes, write_json
from .metrics import lookup

__all__ = ["NumbersError", "START", "END", "check_readme", "load_spec", "measure", "readme_block", "update_readme"]

START, END = "<!-- numbers:start -->", "<!-- numbers:end -->"
SPEC_FILE, SNAPSHOT_FILE = "numbers.yml", "numbers.json"


class NumbersError(ValueError):
    """A headline number cannot be read: the chapter, the key and what is there are named."""


def load_spec(book_dir: str | Path = "book") -> dict[str, dict[str, str]]:
    """``book/numbers.yml``: {name: {chapter, key, format, label}}, checked."""
    spec = yaml.safe_load((Path(book_dir) / SPEC_FILE).read_text()) or {}
    for name, entry in spec.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise NumbersError(f"{SPEC_FILE}: {name!r} is not a valid substitution name (a-z, 0-9, _)")
        missing = {"chapter", "key", "format", "label"} - set(entry)
        if missing:
            raise NumbersError(f"{SPEC_FILE}: {name} lacks {sorted(missing)}")
    return spec


NOT_MEASURED = "not measured"


def measure(spec: dict[str, dict[str, str]], chapters_dir: str | Path, *,
            allow_missing: bool = False) -> dict[str, str]:
    """Each number of ``spec``, formatted, from ``chapters_dir/<chapter>/metrics.json`` (a build's chapters).

    ``allow_missing``: a chapter without a metrics.json gives "not measured" instead of an error (a partial
    build: the README then says so rather than keeping an older number)."""
    chapters_dir = Path(chapters_dir)
    cache: dict[str, Any] = {}
    numbers = {}
    for name, entry in spec.items():
        chapter = entry["chapter"]
        if chapter not in cache:
            path = chapters_dir / chapter / "metrics.json"
            try:
                cache[chapter] = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                if not allow_missing:
                    raise NumbersError(f"{name}: cannot read {path} ({error})") from None
                cache[chapter] = None
        if cache[chapter] is None:
            numbers[name] = NOT_MEASURED
            continue
        found = lookup(cache[chapter], entry["key"])
        if len(found) != 1:
            raise NumbersError(f"{name}: {chapter}/metrics.json has no {entry['key']!r}")
        value = found[0][1]
        if value is None:  # e.g. a transition the quick profile never reaches
            numbers[name] = "not reached"
            continue
        try:
            numbers[name] = entry["format"].format(value)
        except (ValueError, TypeError) as error:
            raise NumbersError(f"{name}: cannot format {value!r} with {entry['format']!r} ({error})") from None
    return numbers


def readme_block(spec: dict[str, dict[str, str]], numbers: dict[str, str], measured: str) -> str:
    """The README's block: one table row per number, with its chapter and key, between the markers."""
    lines = [START, "",
             f"Measured by a full `make book` ({measured}); rendered from `book/numbers.json` by "
             "`python -m stagewise numbers --update`, never typed.", "",
             "| number | value | chapter, metrics key |", "| --- | --- | --- |"]
    for name, entry in spec.items():
        lines.append(f"| {entry['label']} | {numbers[name]} | {entry['chapter']}, `{entry['key']}` |")
    return "\n".join(lines + ["", END])


def _snapshot(book_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((book_dir / SNAPSHOT_FILE).read_text())
    except (OSError, ValueError):
        raise NumbersError(f"no {book_dir / SNAPSHOT_FILE}: run `make book`, then "
                           "`python -m stagewise numbers --update`") from None


def _current_block(readme: str) -> str | None:
    match = re.search(re.escape(START) + r".*?" + re.escape(END), readme, re.S)
    return match[0] if match else None


def check_readme(readme_path: str | Path = "README.md", book_dir: str | Path = "book") -> list[str]:
    """Differences between the README's numbers block and the snapshot (empty when they agree)."""
    book_dir = Path(book_dir)
    snapshot = _snapshot(book_dir)
    spec = load_spec(book_dir)
    problems = [f"{name}: in numbers.yml but not in numbers.json" for name in spec if name not in snapshot["numbers"]]
    if problems:
        return problems
    want = readme_block(spec, snapshot["numbers"], snapshot["measured"])
    have = _current_block(Path(readme_path).read_text())
    if have is None:
        return [f"README has no {START} … {END} block"]
    return [] if have == want else ["README's numbers block differs from book/numbers.json: run "
                                    "`python -m stagewise numbers --update`"]


def update_readme(chapters_dir: str | Path, measured: str, readme_path: str | Path = "README.md",
                  book_dir: str | Path = "book", *, allow_missing: bool = False) -> dict[str, str]:
    """Measure the numbers of a (full) build, write them to ``book/numbers.json`` and the README's block."""
    book_dir, readme_path = Path(book_dir), Path(readme_path)
    spec = load_spec(book_dir)
    numbers = measure(spec, chapters_dir, allow_missing=allow_missing)
    write_json({"measured": measured, "numbers": numbers, "seconds": _chapter_seconds(chapters_dir)},
               book_dir / SNAPSHOT_FILE)
    readme = readme_path.read_text()
    block = readme_block(spec, numbers, measured)
    current = _current_block(readme)
    if current is None:
        raise NumbersError(f"README has no {START} … {END} block to fill")
    write_bytes(readme.replace(current, block).encode(), readme_path)
    return numbers


def _chapter_seconds(chapters_dir: str | Path) -> dict[str, float]:
    """{stem: seconds} of each chapter's last execution in ``chapters_dir`` (its ``<stem>.stamp.json``)."""
    stamps = {p.name.removesuffix(".stamp.json"): read_json(p, {}) for p in Path(chapters_dir).glob("*.stamp.json")}
    return {stem: round(float(stamp["seconds"]), 1) for stem, stamp in sorted(stamps.items())
            if isinstance(stamp, dict) and isinstance(stamp.get("seconds"), (int, float))}


def snapshot_seconds(book_dir: str | Path = "book") -> dict[str, float]:
    """{stem: seconds} each chapter took in the full build of the committed snapshot (book/numbers.json), or {}:
    the parallel build starts the longest chapters first even on a fresh clone, with no build of its own yet."""
    seconds = read_json(Path(book_dir) / SNAPSHOT_FILE, {}).get("seconds")
    return {k: float(v) for k, v in seconds.items() if isinstance(v, (int, float))} if isinstance(seconds, dict) else {}


def drift(numbers: dict[str, str], book_dir: str | Path = "book") -> list[str]:
    """Numbers of a build that differ from the committed snapshot, as "name: build X, snapshot Y"."""
    try:
        snapshot = _snapshot(Path(book_dir))["numbers"]
    except NumbersError as error:
        return [str(error)]
    return [f"{name}: this build {value}, book/numbers.json {snapshot.get(name)}"
            for name, value in numbers.items() if snapshot.get(name) != value]
