"""A run's values checked by the notebook's own first cells in a fresh Python process (stagewise.pipeline.precheck):
the parameters cell, papermill's injected values, the validation cell; nothing after it."""

from pathlib import Path

import jupytext
import pytest

from stagewise.pipeline.precheck import check_values, first_cells
from stagewise.pipeline.runner import load_notebook

FIXTURE = Path(__file__).parents[1] / "fixtures" / "fixture_chapter.md"
ROOT = Path(__file__).resolve().parents[2]


def test_values_are_converted_and_problems_are_the_cells_own_words():
    nb = load_notebook(FIXTURE)
    good, bad, unknown = check_values([(nb, {"nbeta": 300, "profile": "quick"}), (nb, {"nbeta": -1, "draws": 1}),
                                       (nb, {"nbta": 3})])
    assert good.problems == [] and good.values["nbeta"] == 300.0 and isinstance(good.values["nbeta"], float)
    assert good.values["profile"] == "quick" and good.values["draws"] == 200  # every declared value comes back
    assert bad.values is None and any("'nbeta' = -1.0 is out of range" in p for p in bad.problems)
    assert any("'draws' = 1 is out of range" in p for p in bad.problems)
    assert any("unknown parameter 'nbta'" in p and "did you mean 'nbeta'" in p for p in unknown.problems)


def test_only_a_validation_cell_runs_never_the_compute_after_it(tmp_path, monkeypatch):
    source = FIXTURE.read_text()
    # the fixture without its validation cell: the cell after the parameters cell is compute, and must not run
    start = source.index("```{code-cell} ipython3\nfrom stagewise.pipeline import Interval")
    end = source.index("```\n", start + 10) + 4
    path = tmp_path / "no_validation.md"
    path.write_text(source[:start] + source[end:])
    nb = jupytext.read(str(path))
    assert first_cells(nb)[1] == ""
    monkeypatch.chdir(tmp_path)
    checked, wrong = check_values([(nb, {"nbeta": 5}), (nb, {"seed": "zero"})])
    assert checked.values["nbeta"] == 5.0 and not (tmp_path / "compute_started").exists()
    assert wrong.values is None and "'seed' = 'zero' has the wrong type" in wrong.problems[0]


def test_the_machine_is_not_checked_only_the_device_names_form():
    """A run meant for a GPU is prepared on a machine without one: check_device is the kernel's."""
    path = ROOT / "notebooks" / "02_bif.md"
    nb = load_notebook(path)
    cuda, wrong = check_values([(nb, {"device": "cuda:3"}), (nb, {"device": "gpu"})])
    assert cuda.problems == [] and cuda.values["device"] == "cuda:3"
    assert "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'" in wrong.problems[0]
