"""The generated "Rerunning the chapters" page follows the chapters' parameters cells."""

import shutil
from pathlib import Path

import yaml

from stagewise.pipeline.book import toc_files
from stagewise.pipeline.rerun import PAGE, example_parameters, rerun_page, write_rerun_page
from stagewise.pipeline.runner import parameter_table

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parents[1] / "fixtures" / "fixture_chapter.md"


def _table_rows(page: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith("| `")]


def test_page_lists_every_parameter_with_type_default_and_meaning():
    page = rerun_page([("chapters/fixture_chapter", FIXTURE)])
    rows = _table_rows(page)
    assert [row.split("|")[1].strip() for row in rows] == [f"`{p.name}`" for p in parameter_table(FIXTURE)]
    assert "| `nbeta` | `float` | `100.0` |   | inverse temperature of the tempered posterior |" in rows
    assert any(row.startswith("| `profile` | `str` | `\"full\"` | `'quick'` |") for row in rows)  # the quick column
    assert "## A fixture chapter\n" in page and "{doc}`chapters/fixture_chapter`" in page
    assert 'make run NB=fixture_chapter PROFILE=quick PARAMS="-p nbeta 200.0"' in page
    assert "python -m stagewise run fixture_chapter --profile quick -p nbeta 200.0" in page
    assert "python -m stagewise params fixture_chapter --profile quick -p nbeta 200.0" in page


def test_table_changes_when_the_parameters_cell_changes(tmp_path):
    notebook = tmp_path / "fixture_chapter.md"
    shutil.copy(FIXTURE, notebook)
    page_file = tmp_path / "stage" / f"{PAGE}.md"
    assert write_rerun_page(page_file, [("chapters/fixture_chapter", notebook)])
    before = page_file.read_text()
    assert not write_rerun_page(page_file, [("chapters/fixture_chapter", notebook)])  # unchanged: not rewritten

    source = notebook.read_text()
    old = "nbeta: float = 100.0  # inverse temperature of the tempered posterior\n"
    assert old in source
    notebook.write_text(source.replace(old, "nbeta: float = 50.0  # inverse temperature nβ | of the posterior\n"
                                            "width: int = 3  # hidden units of the $2$-layer net\n"))
    assert write_rerun_page(page_file, [("chapters/fixture_chapter", notebook)])
    after = page_file.read_text()
    assert after != before
    rows = _table_rows(after)
    assert "| `nbeta` | `float` | `50.0` |   | inverse temperature nβ \\| of the posterior |" in rows
    assert "| `width` | `int` | `3` |   | hidden units of the \\$2\\$-layer net |" in rows  # no stray maths
    assert "| `nbeta` | `float` | `100.0` |   | inverse temperature of the tempered posterior |" not in rows
    assert "--profile quick -p nbeta 100.0" in after  # the example doubles the new default


def test_example_parameters_fall_back_to_seed():
    from stagewise.pipeline.params import Parameter

    rows = [Parameter("profile", "str", '"full"', ""), Parameter("seed", "int", "0", ""),
            Parameter("mode", "str", '"a"', ""), Parameter("n", "int", "0", "")]
    assert example_parameters(rows) == [("seed", "1")]


def test_repository_toc_includes_the_generated_page_which_is_not_authored():
    entries = toc_files(yaml.safe_load((ROOT / "book" / "_toc.yml").read_text()))
    assert PAGE in entries
    assert not any((ROOT / "book" / f"{PAGE}{suffix}").exists() for suffix in (".md", ".ipynb", ".rst"))


def test_page_covers_every_chapter_of_the_repository():
    entries = toc_files(yaml.safe_load((ROOT / "book" / "_toc.yml").read_text()))
    chapters = [(e, ROOT / "notebooks" / f"{Path(e).name}.md") for e in entries if e.startswith("chapters/")]
    page = rerun_page(chapters)
    for entry, source in chapters:
        assert f"{{doc}}`{entry}`" in page
        assert f"make run NB={source.stem} " in page
