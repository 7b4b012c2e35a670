"""The class kit: `runs list|clean` and `collect`, on real runs of the fixture chapter."""

import json
from pathlib import Path

import pandas as pd
import pytest

from stagewise.__main__ import main
from stagewise.pipeline import run_notebook
from stagewise.pipeline.metrics import flatten
from stagewise.pipeline.runs import RunsError, clean_runs, collect, find_runs

FIXTURE = Path(__file__).parents[1] / "fixtures" / "fixture_chapter.md"


@pytest.fixture(scope="module")
def class_runs(tmp_path_factory):
    """Three students' runs of the fixture: two finished (nbeta 50 and 400), one failed."""
    runs_dir = tmp_path_factory.mktemp("runs")
    done = [run_notebook(FIXTURE, {"nbeta": nb, "profile": "quick"}, runs_dir=runs_dir) for nb in (50.0, 400.0)]
    with pytest.raises(Exception):
        run_notebook(FIXTURE, {"fail": True, "profile": "quick"}, runs_dir=runs_dir)
    return runs_dir, done


def test_flatten_names_every_value_by_its_key_path_and_drops_the_record():
    metrics = {"llc": {"a": {"rel_error": 0.1}, "b": [1, 2]}, "n": 3, "ok": True, "parameters": {"x": 1},
               "none": None, "empty": []}
    assert flatten(metrics) == {"llc.a.rel_error": 0.1, "llc.b.0": 1, "llc.b.1": 2, "n": 3, "ok": True, "none": None}


@pytest.mark.kernel
def test_runs_list_shows_every_run_with_its_status(class_runs, capsys):
    runs_dir, done = class_runs
    records = find_runs(runs_dir, "fixture_chapter")
    assert sorted(r.status for r in records) == ["failed", "ok", "ok"]
    assert [r.folder for r in find_runs(runs_dir, status="ok")] == done
    assert main(["runs", "list", "--runs-dir", str(runs_dir), "--status", "failed"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "failed" in out[0] and "fail=True" in out[0]


@pytest.mark.kernel
def test_collect_makes_one_table_and_figure(class_runs, tmp_path, capsys):
    runs_dir, done = class_runs
    code = main(["collect", str(runs_dir / "fixture_chapter"), "--plot", "draws:nbeta", "--out", str(tmp_path)])
    assert code == 0
    (folder,) = tmp_path.iterdir()
    table = pd.read_csv(folder / "runs.csv")
    assert sorted(table["param.nbeta"]) == [50.0, 400.0]  # failed run left out by default (--status ok)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in done]
    assert sorted(table["draws"]) == sorted(m["draws"] for m in metrics)
    assert (folder / "draws_vs_nbeta.png").stat().st_size > 10_000
    assert oct((folder / "runs.csv").stat().st_mode & 0o777) == "0o644"
    # every status, and a clear error for a metric that no run has, before anything is written
    written = collect(find_runs(runs_dir), tmp_path / "all")
    assert len(pd.read_csv(written["table"])) == 3
    with pytest.raises(RunsError, match="no metric 'llc'"):
        collect(find_runs(runs_dir), tmp_path / "none", plot="llc:nbeta")
    assert not (tmp_path / "none").exists()


@pytest.mark.kernel
def test_runs_clean_removes_only_named_run_folders(class_runs, tmp_path, capsys):
    runs_dir, done = class_runs
    (failed,) = [r.folder for r in find_runs(runs_dir, status="failed")]
    book = tmp_path / "book"
    book.mkdir()
    (book / "run.json").write_text("{}")  # looks like a run folder, but lies outside the runs folder
    for target in (book, runs_dir, runs_dir / "fixture_chapter", runs_dir / "missing"):
        with pytest.raises(RunsError):
            clean_runs([failed, target], runs_dir)
        assert failed.is_dir()  # nothing removed when any name is refused
    assert main(["runs", "clean", "--runs-dir", str(runs_dir), "--dry-run", str(failed)]) == 0
    assert failed.is_dir() and "would remove" in capsys.readouterr().out
    assert main(["runs", "clean", "--runs-dir", str(runs_dir)]) == 2  # nothing named: nothing removed
    assert main(["runs", "clean", "--runs-dir", str(runs_dir), str(failed)]) == 0
    assert not failed.exists() and all(d.is_dir() for d in done) and book.is_dir()
