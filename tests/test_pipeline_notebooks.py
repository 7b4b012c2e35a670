"""Static checks of every chapter in the book's toc: what the pipeline needs from a notebook."""

import ast
from pathlib import Path

import pytest
import yaml

from stagewise.pipeline import resolve_notebook
from stagewise.pipeline.book import toc_files
from stagewise.pipeline.params import parse_parameters_cell
from stagewise.pipeline.runner import load_notebook, default_value

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
CHAPTERS = [entry for entry in toc_files(TOC) if not any((ROOT / "book" / f"{entry}{s}").is_file()
                                                          for s in (".md", ".ipynb", ".rst"))]
NOTEBOOKS = [*CHAPTERS, str(Path(__file__).parent / "fixtures" / "fixture_chapter.md")]


def _cells(entry):
    path = resolve_notebook(entry if entry.endswith(".md") else Path(entry).name, ROOT / "notebooks")
    return load_notebook(path).cells


@pytest.mark.parametrize("entry", NOTEBOOKS)
def test_parameters_cell_then_validation_cell(entry):
    from papermill.translators import PythonTranslator

    cells = _cells(entry)
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a chapter needs exactly one cell tagged 'parameters'"
    cell = cells[tagged[0]]
    declared = parse_parameters_cell(cell.source)
    names = [p.name for p in declared]
    assert "profile" in names and default_value(declared[names.index("profile")]) == "full"
    assert all(p.help for p in declared), "every parameter needs a `# help` comment on its line"
    # papermill reads the cell with a regex; it must see the same parameters (e.g. no '=' in comments)
    assert [p.name for p in PythonTranslator.inspect(cell)] == names

    following = next(c for c in cells[tagged[0] + 1:] if c.cell_type == "code")
    calls = [n for n in ast.walk(ast.parse(following.source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "validate_parameters"]
    assert calls, "the cell after the parameters cell must call validate_parameters(globals(), ...)"
    assert sorted(k.arg for k in calls[0].keywords) == sorted(names), "one rule per declared parameter"
