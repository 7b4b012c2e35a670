"""Studies: declared in studies.yaml, run by the sweep engine as cached build steps, read by pages with
stagewise.artifacts.load_study. The fixture chapter (profile quick) draws 20 normals with numpy's
default_rng(seed) divided by sqrt(nbeta): every row of a study's table is checked against that known answer."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stagewise.artifacts import load_study
from stagewise.pipeline import ParameterError
from stagewise.pipeline.studies import StudyError, load_studies, plan_study, run_study

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def expected_mean(seed: int, nbeta: float) -> float:
    return float(np.mean(np.random.default_rng(seed).normal(size=20) / np.sqrt(nbeta)))


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    """A notebooks folder holding the fixture chapter, its quick profile and the fixture studies; no book build
    is running (no $STAGEWISE_STUDIES)."""
    monkeypatch.delenv("STAGEWISE_STUDIES", raising=False)
    folder = tmp_path / "notebooks"
    shutil.copytree(FIXTURES, folder)
    return folder


def test_studies_are_declared_with_a_grid_seeds_and_per_profile_overrides(notebooks):
    (study,) = load_studies(notebooks).values()
    assert study.name == "fixture_study" and study.chapter == "fixture_chapter" and study.in_book
    assert study.sweep("quick") == ({"nbeta": [50.0, 200.0]}, 2)
    assert study.sweep("full") == ({"nbeta": [400.0]}, 1)
    assert study.pages == ("fixture_study_page",)


@pytest.mark.parametrize("entry, message", [
    ({"grid": {"nbeta": [1.0]}}, "at least `chapter`"),
    ({"chapter": "fixture_chapter", "grid": {"nbeta": 1.0}}, "non-empty list"),
    ({"chapter": "fixture_chapter", "grid": {"nbeta": [1.0]}, "sweeps": 2}, r"unknown field\(s\) \['sweeps'\]"),
])
def test_a_malformed_study_is_refused_naming_the_field(notebooks, entry, message):
    (notebooks / "studies.yaml").write_text(yaml.safe_dump({"bad": entry}))
    with pytest.raises(StudyError, match=message):
        load_studies(notebooks)


def test_an_unknown_study_or_a_bad_value_fails_before_anything_runs(notebooks, tmp_path):
    with pytest.raises(StudyError, match="no study 'nope'.*studies: fixture_study"):
        plan_study("nope", notebooks_dir=notebooks, root=tmp_path)
    spec = yaml.safe_load((notebooks / "studies.yaml").read_text())
    spec["fixture_study"]["grid"]["nbeta"] = [50.0, -1.0]
    (notebooks / "studies.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ParameterError, match="'nbeta' = -1.0 is out of range"):
        plan_study("fixture_study", notebooks_dir=notebooks, root=tmp_path)
    assert not (tmp_path / "build").exists()


def test_the_study_command_names_a_bad_study(notebooks, capsys):
    from stagewise.__main__ import main

    assert main(["--notebooks-dir", str(notebooks), "study", "nope"]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_the_repositorys_studies_parse_and_name_real_chapters_and_pages():
    studies = load_studies(ROOT / "notebooks")
    stems = {p.stem for p in (ROOT / "notebooks").glob("*.md")}
    assert {"robustness_loo", "robustness_llc"} <= set(studies)
    for study in studies.values():
        assert any(stem == study.chapter or stem.startswith(f"{study.chapter}_") for stem in stems), study.name
        assert set(study.pages) <= stems and study.description, study.name


@pytest.mark.slow
@pytest.mark.kernel
def test_a_study_writes_tidy_results_is_cached_and_resumes(notebooks, tmp_path):
    root = tmp_path  # the repository: notebooks/ (the fixture), build/
    done = run_study("fixture_study", notebooks_dir=notebooks, root=root, workers=2, log=lambda *a, **k: None)
    folder = root / "build" / "quick" / "studies" / "fixture_study"
    table = pd.read_csv(folder / "results.csv")
    assert list(table.columns[:6]) == ["nbeta", "seed", "status", "error", "seconds", "attempts"]
    assert list(table["nbeta"]) == [50.0, 50.0, 200.0, 200.0] and list(table["seed"]) == [0, 1, 0, 1]
    assert set(table["status"]) == {"ok"} and (table["attempts"] == 1).all() and (table["seconds"] > 0).all()
    for row in table.itertuples():
        assert row.mean == pytest.approx(expected_mean(row.seed, row.nbeta), rel=1e-12)
    assert {"first.0", "first.2", "draws", "std"} <= set(table.columns)  # every metric by its key path
    assert not [c for c in table.columns if c.startswith("param.") or c in ("folder", "worker", "index")]
    record = json.loads((folder / "study.json").read_text())
    assert record == done and record["command"] == "python -m stagewise study fixture_study"
    assert record["grid"] == {"nbeta": [50.0, 200.0], "seed": [0, 1]} and record["seeds"] == 2
    assert record["profile"] == "quick" and record["parameters"] == {"profile": "quick"}
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert set(record["machine"]) == {"platform", "cpu_count", "torch", "device"}
    assert record["machine"]["device"] == "cpu" and record["runs"] == 4 and record["statuses"] == {"ok": 4}
    assert record["seconds"] > 0 and record["start"] <= record["end"]
    assert load_study("fixture_study", "quick", root=root)[1] == record

    # unchanged: not run again
    assert plan_study("fixture_study", notebooks_dir=notebooks, root=root).cached
    # interrupted after two runs: the results are gone, two of the four run folders too; it resumes
    runs = sorted((folder / "runs").glob("*/run.json"))
    for run in runs[:2]:
        shutil.rmtree(run.parent)
    kept = {p: p.read_bytes() for run in runs[2:] for p in run.parent.rglob("*") if p.is_file()}
    (folder / "results.csv").unlink()
    plan = plan_study("fixture_study", notebooks_dir=notebooks, root=root)
    assert not plan.cached and len(plan.todo) == 2
    resumed = plan.run()  # in this process, one run after another (the serial book build's way)
    assert resumed["runs"] == 4 and resumed["statuses"] == {"ok": 4}
    assert len(list((folder / "runs").glob("*/run.json"))) == 4
    assert all(p.read_bytes() == data for p, data in kept.items())  # the finished runs were not touched
    assert pd.read_csv(folder / "results.csv")["mean"].tolist() == pytest.approx(table["mean"].tolist(), rel=1e-12)
    # another grid: run afresh
    spec = yaml.safe_load((notebooks / "studies.yaml").read_text())
    spec["fixture_study"]["seeds"] = 1
    (notebooks / "studies.yaml").write_text(yaml.safe_dump(spec))
    plan = plan_study("fixture_study", notebooks_dir=notebooks, root=root)
    assert not plan.cached and len(plan.todo) == 2 and not (folder / "results.csv").exists()
