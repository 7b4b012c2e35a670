"""Executed notebooks as a reader downloads them: no path of the build machine, and the student book's copy.

An output's text can hold absolute paths (``/home/…/.venv/lib/…``, in a warning). The book shows and offers for
download the staged copy of each executed notebook, which :func:`clean_notebook` rewrites in place; the run
folders of ``python -m stagewise run`` keep the full record. (The book hides stderr, progress bars and warnings,
by myst-nb's ``nb_output_stderr: remove`` in ``book/_config.yml``.)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stagewise.artifacts import write_json

__all__ = ["clean_notebook", "machine_paths", "scrub", "strip_solutions"]

#: A solution block of a chapter: ```{admonition} Solution … ``` (any fence length, closed by the same fence).
SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{admonition\}\s*Solution\b.*?^(?P=fence)[ \t]*$\n?", re.M | re.S)


def machine_paths(*extra: str | Path) -> list[str]:
    """Absolute paths of this machine that may appear in outputs, longest first (so the most specific wins):
    the working directory, the virtual environment, the interpreter's prefix, the home folder and ``extra``."""
    found = {str(Path(p).resolve()) for p in (Path.cwd(), sys.prefix, sys.base_prefix, *extra)}
    home = os.path.expanduser("~")
    if home not in ("/", "~"):
        found.add(home)
    return sorted((p for p in found if p not in ("/", "")), key=len, reverse=True)


def scrub(text: str, paths: Iterable[str]) -> str:
    """``text`` with each of ``paths`` (and what follows it) made relative: ``/work/x/.venv/lib`` → ``.venv/lib``."""
    for path in paths:
        text = text.replace(path + os.sep, "").replace(path, ".")
    return text


def _scrub_any(value: Any, paths: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, paths)
    if isinstance(value, list):
        return [_scrub_any(v, paths) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_any(v, paths) for k, v in value.items()}
    return value


def clean_notebook(path: str | Path, paths: Iterable[str] | None = None) -> bool:
    """Make machine paths relative in the text outputs and metadata of the notebook at ``path`` (images are left
    as they are). Rewrites the file atomically only when something changed; returns whether it did."""
    path = Path(path)
    paths = list(paths) if paths is not None else machine_paths()
    nb = json.loads(path.read_text())
    before = json.dumps(nb, sort_keys=True)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs") or []:
            if "text" in out:
                out["text"] = _scrub_any(out["text"], paths)
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in out.get("data", {}):
                    out["data"][mime] = _scrub_any(out["data"][mime], paths)
            if out.get("output_type") == "error":
                out["traceback"] = _scrub_any(out.get("traceback", []), paths)
    nb["metadata"] = _scrub_any(nb.get("metadata", {}), paths)
    for cell in nb.get("cells", []):  # papermill records the injected parameters and paths per cell too
        cell["metadata"] = _scrub_any(cell.get("metadata", {}), paths)
        if "injected-parameters" in cell["metadata"].get("tags", []):
            cell["source"] = _scrub_any(cell.get("source", ""), paths)
    if json.dumps(nb, sort_keys=True) == before:
        return False
    write_json(nb, path)
    return True


def strip_solutions(path: str | Path) -> int:
    """Remove every solution block from the markdown cells of the notebook at ``path`` (the student book);
    returns how many were removed. The exercises stay."""
    path = Path(path)
    nb = json.loads(path.read_text())
    removed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new, count = SOLUTION.subn("", text)
        if count:
            cell["source"], removed = new, removed + count
    if removed:
        write_json(nb, path)
    return removed
