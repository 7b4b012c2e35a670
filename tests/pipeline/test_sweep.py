"""Sweeps and the book's chapters on Dask distributed: a LocalCluster of 2 worker processes, the fixture chapter.

The fixture (profile "quick") draws 20 normals with numpy's default_rng(seed) and divides them by sqrt(nbeta):
its metrics are recomputed here exactly, so each row of a sweep's table is checked against a known answer.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagewise.__main__ import main
from stagewise.pipeline import ParameterError
from stagewise.pipeline.dask_cluster import NotebookJob, cluster, execute_notebooks, resolve_workers, thread_env
from stagewise.pipeline.runner import load_notebook
from stagewise.pipeline.sweep import SweepError, check_grid, combinations, parse_grid, run_sweep, sweep_table

FIXTURE = (Path(__file__).parents[1] / "fixtures" / "fixture_chapter.md").resolve()


def expected_metrics(seed: int, nbeta: float) -> dict:
    x = np.random.default_rng(seed).normal(size=20) / np.sqrt(nbeta)
    return {"mean": float(np.mean(x)), "std": float(x.std()), "draws": 20}


class NoCluster:
    """A client that fails the test if a task is submitted."""

    def submit(self, *args, **kwargs):
        raise AssertionError("a task was submitted")


# ------------------------------------------------------------------------------ before any task (no cluster)


def test_grid_values_seeds_and_the_cartesian_product():
    grid = parse_grid([("nbeta", "50,200"), ("fail", "False"), ("profile", "quick")])
    assert grid == {"nbeta": [50, 200], "fail": [False], "profile": ["quick"]}
    checked = check_grid(load_notebook(FIXTURE), FIXTURE, grid, seeds=3)
    assert checked["nbeta"] == [50.0, 200.0] and all(isinstance(v, float) for v in checked["nbeta"])
    assert checked["seed"] == [0, 1, 2]
    product = combinations(checked)
    assert len(product) == 6 and product[0] == {"nbeta": 50.0, "fail": False, "profile": "quick", "seed": 0}
    assert [c["seed"] for c in product] == [0, 1, 2, 0, 1, 2]  # the last parameter varies fastest
    assert len({json.dumps(c, sort_keys=True) for c in product}) == 6


def test_the_chapters_rules_are_its_validation_cells_run_before_any_task():
    fixture = load_notebook(FIXTURE)
    assert check_grid(fixture, FIXTURE, {"nbeta": [1e-3], "draws": [2]}) == {"nbeta": [1e-3], "draws": [2]}
    for bad in ({"nbeta": [0.0]}, {"draws": [1]}):
        with pytest.raises(ParameterError, match="out of range"):
            check_grid(fixture, FIXTURE, bad)
    path = Path(__file__).parents[2] / "notebooks" / "01_slt.md"
    chapter_1 = load_notebook(path)
    assert check_grid(chapter_1, path, {"num_draws": [10**6]}) == {"num_draws": [10**6]}  # 10**6 evaluated
    with pytest.raises(ParameterError, match="'num_draws' = 1000001 is out of range"):
        check_grid(chapter_1, path, {"num_draws": [10**6 + 1]})
    # a cross-parameter check in the cell's own code runs too (chapter 5: rho_min < rho_max)
    path = Path(__file__).parents[2] / "notebooks" / "05_phases.md"
    with pytest.raises(ParameterError, match="rho_min < rho_max"):
        check_grid(load_notebook(path), path, {"rho_min": [0.9], "rho_max": [0.1]})


@pytest.mark.parametrize("pairs, seeds, named", [
    ([("nbeta", "50,-2")], None, "'nbeta' = -2.0 is out of range"),
    ([("draws", "10,abc")], None, "'draws' = 'abc' has the wrong type"),
    ([("nbeta", "50"), ("draws", "10,1")], None, "'draws' = 1 is out of range"),
    ([("profile", "quick,fast")], None, "'profile' = 'fast'"),
    ([("nbta", "50")], None, "unknown parameter 'nbta'"),
    ([("nbeta", "50,50.0")], None, "lists the value 50.0 twice"),
    ([("seed", "0,1")], 2, "either as -p seed"),
    ([("nbeta", "50")], 0, "seeds = 0"),
])
def test_a_bad_value_in_any_list_fails_before_any_task_naming_it(tmp_path, pairs, seeds, named):
    with pytest.raises(ParameterError, match=named.replace("(", r"\(")):
        run_sweep(FIXTURE, parse_grid(pairs), seeds=seeds, runs_dir=tmp_path, client=NoCluster())
    assert not any(tmp_path.iterdir())  # no sweep folder either


def test_bad_requests_fail_on_the_command_line_before_any_task(tmp_path, capsys):
    runs = str(tmp_path)
    assert main(["sweep", str(FIXTURE), "-p", "nbeta", "1,-2", "-p", "draws", "10,x", "--runs-dir", runs]) == 2
    error = capsys.readouterr().err
    assert "'nbeta' = -2.0 is out of range" in error and "'draws' = 'x' has the wrong type" in error
    assert main(["sweep", str(FIXTURE), "-p", "nbeta", "1,", "--runs-dir", runs]) == 2
    assert "an empty value" in capsys.readouterr().err
    assert main(["sweep", str(FIXTURE), "-p", "nbeta", "1,2", "--plot", "mean:draws", "--runs-dir", runs]) == 2
    assert "'draws' is not swept" in capsys.readouterr().err
    assert main(["sweep", str(FIXTURE), "-p", "nbeta", "1", "--workers", "0", "--runs-dir", runs]) == 2
    assert "workers = 0" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path), "--runs-dir", runs]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SweepError, match="retries"):
        run_sweep(FIXTURE, {"nbeta": [1]}, runs_dir=tmp_path, retries=-1, client=NoCluster())


def test_workers_and_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("BOOK_WORKERS", "1")
    assert resolve_workers(None) == 1 and resolve_workers(3) == 3
    monkeypatch.setenv("BOOK_WORKERS", "two")
    with pytest.raises(ValueError, match="BOOK_WORKERS='two'"):
        resolve_workers(None)
    assert all(int(v) >= 1 for v in thread_env(64).values())
    assert set(thread_env(1)) >= {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}


# ------------------------------------------------------------------------------------------ on a cluster


@pytest.fixture(scope="module")
def client():
    with cluster(workers=2, retries=2, log=lambda *a, **k: None) as client:
        client.wait_for_workers(2, timeout=120)
        yield client


@pytest.fixture(scope="module")
def swept(client, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    grid = parse_grid([("nbeta", "50,200"), ("fail", "False,True"), ("profile", "quick")])
    result = run_sweep(FIXTURE, grid, runs_dir=runs, client=client, plot="mean:nbeta", log=lambda *a, **k: None)
    return runs, result


@pytest.mark.slow
def test_a_sweep_makes_one_table_with_a_failed_row_among_finished_ones(swept):
    runs, result = swept
    folder = result.folder
    assert folder.parent == (runs / "fixture_chapter").resolve() and folder.name.startswith("sweep-")
    table = result.table
    assert list(table["index"]) == [0, 1, 2, 3] and result.ran == 4
    assert list(table["param.nbeta"]) == [50.0, 50.0, 200.0, 200.0]
    assert list(table["param.fail"]) == [False, True, False, True]
    for _, row in table.iterrows():
        assert row["attempts"] == 1 and row["worker"].startswith("tcp://") and row["seconds"] > 0
        assert row["chapter"] == "fixture_chapter" and Path(row["folder"]).parent == folder
        if row["param.fail"]:
            assert row["status"] == "failed" and row["error"] == "RuntimeError: the fixture was asked to fail"
        else:
            assert row["status"] == "ok" and pd.isna(row["error"])
            known = expected_metrics(0, row["param.nbeta"])
            assert row["mean"] == pytest.approx(known["mean"], rel=1e-12)
            assert row["std"] == pytest.approx(known["std"], rel=1e-12) and row["draws"] == 20
    assert len({row["folder"] for _, row in table.iterrows()}) == 4  # one run folder per combination
    csv, parquet = pd.read_csv(result.written["csv"]), pd.read_parquet(result.written["parquet"])
    assert result.written["csv"] == folder / "sweep.csv" and result.written["parquet"] == folder / "sweep.parquet"
    for saved in (csv, parquet):
        assert list(saved["status"]) == ["ok", "failed", "ok", "failed"]
        assert np.allclose(saved["mean"].dropna(), table["mean"].dropna(), rtol=1e-12)
    assert result.written["figure"] == folder / "mean_vs_nbeta.png" and result.written["figure"].stat().st_size > 0
    assert not list(folder.parent.glob(".*.links"))  # the run-folder link is gone after the sweep
    lines = (folder / "tasks.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == [0, 1, 2, 3]


@pytest.mark.slow
def test_resume_runs_only_what_did_not_finish_and_overwrites_nothing(swept, client, capsys):
    runs, result = swept
    folder = result.folder
    # an interrupted run of combination 2: what `run` records after Ctrl-C (the sweep's table still shows it ok)
    interrupted = Path(result.table.loc[2, "folder"])
    record = json.loads((interrupted / "run.json").read_text())
    (interrupted / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    # through the command line and a running scheduler (the test cluster's, given by its address)
    code = main(["sweep", "--resume", str(folder), "--scheduler", client.scheduler.address])
    assert code == 1  # the failed rows stay failed: they finished, so they are not run again
    out = capsys.readouterr().out
    assert "3 of 4 combinations already finished" in out
    tasks = folder / "tasks.jsonl"  # appended to, never rewritten
    assert tasks.read_bytes().startswith(before.pop(tasks)) and len(tasks.read_text().splitlines()) == 5
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing overwritten
    new_runs = [p for p in folder.iterdir() if p.is_dir() and p != interrupted and str(p) not in
                set(result.table["folder"])]
    assert len(new_runs) == 1
    again = sweep_table(folder)
    assert list(again["status"]) == ["ok", "failed", "ok", "failed"]
    assert again.loc[2, "folder"] == str(new_runs[0]) and again.loc[2, "attempts"] == 2
    assert again.loc[2, "mean"] == pytest.approx(expected_metrics(0, 200.0)["mean"], rel=1e-12)
    assert (folder / "sweep-2.csv").is_file() and (folder / "sweep-2.parquet").is_file()
    assert (folder / "mean_vs_nbeta.png").read_bytes() == before[folder / "mean_vs_nbeta.png"]


@pytest.mark.slow
def test_a_worker_killed_mid_run_has_its_run_retried_and_the_sweep_completes(client, tmp_path):
    grid = {"nbeta": [10.0], "seed": [3], "profile": ["quick"]}
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_sweep(
        FIXTURE, grid, runs_dir=tmp_path, client=client, retries=2, log=lambda *a, **k: None)))
    thread.start()
    killed, deadline = None, time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        started = [p for p in tmp_path.glob("fixture_chapter/sweep-*/*/run.json")
                   if json.loads(p.read_text() or "{}").get("status") == "running"]
        busy = [worker for worker, keys in client.processing().items() if keys]
        if started and busy:  # the run has begun on that worker: kill its process
            killed = busy[0]
            os.kill(client.run(os.getpid, workers=[killed])[killed], signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=180)
    assert killed is not None, "the run finished before the worker could be killed"
    result = outcome["result"]
    (row,) = result.table.to_dict("records")
    assert row["status"] == "ok" and row["attempts"] == 2 and row["worker"] != killed
    assert row["mean"] == pytest.approx(expected_metrics(3, 10.0)["mean"], rel=1e-12)
    statuses = sorted(json.loads(p.read_text())["status"] for p in result.folder.glob("*/run.json"))
    assert statuses == ["ok", "running"]  # the killed attempt's folder is kept as it was left
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker


@pytest.mark.slow
def test_chapters_as_dask_tasks_match_a_serial_execution(client, tmp_path):
    def job(root: Path, **parameters) -> NotebookJob:
        return NotebookJob(FIXTURE, root / "a.ipynb", root / "a", {"profile": "quick", "seed": 1, **parameters})

    serial, failed = execute_notebooks([job(tmp_path / "serial")], 1, log=lambda *a, **k: None)
    assert not failed and [stem for stem, _ in serial] == ["fixture_chapter"]
    jobs = [job(tmp_path / "parallel"), job(tmp_path / "failing", fail=True)]
    parallel, failed = execute_notebooks(jobs, 2, client=client, log=lambda *a, **k: None)
    assert [stem for stem, _ in parallel] == ["fixture_chapter"]  # every job ran although one failed
    assert [(f.ename, f.evalue, f.output) for f in failed] == [
        ("RuntimeError", "the fixture was asked to fail", tmp_path / "failing" / "a.ipynb")]
    metrics = [json.loads((tmp_path / mode / "a" / "metrics.json").read_text()) for mode in ("serial", "parallel")]
    assert metrics[0] == metrics[1] and metrics[0]["mean"] == pytest.approx(expected_metrics(1, 100.0)["mean"])
    cells = [[(c["cell_type"], c["source"], c.get("outputs")) for c in
              json.loads((tmp_path / mode / "a.ipynb").read_text())["cells"]] for mode in ("serial", "parallel")]
    assert cells[0] == cells[1]  # the same outputs, figures included (only papermill's timing metadata differs)
    stamps = [json.loads((tmp_path / mode / "a.stamp.json").read_text()) for mode in ("serial", "parallel")]
    assert stamps[0]["key"] == stamps[1]["key"]  # cached as the serial build caches


@pytest.mark.slow
def test_a_page_waits_for_the_study_it_reads_even_on_one_worker(tmp_path, monkeypatch):
    """The study's runs, the task that writes its results and the page that reads them are sibling tasks of one
    cluster: on a single worker the page runs after the study (no task waits on another inside a worker), and a
    chapter runs beside them (the thread gives up after 240 s)."""
    import shutil

    from stagewise.pipeline.studies import plan_study

    notebooks = tmp_path / "notebooks"
    shutil.copytree(FIXTURE.parent, notebooks)
    monkeypatch.setenv("STAGEWISE_STUDIES", str(tmp_path / "studies"))  # the book build's studies folder
    plan = plan_study("fixture_study", notebooks_dir=notebooks, root=tmp_path)
    assert plan.folder == tmp_path / "studies" / "fixture_study" and len(plan.todo) == 4
    page = NotebookJob(notebooks / "fixture_study_page.md", tmp_path / "page.ipynb", tmp_path / "page", {},
                       (plan.key,), ("fixture_study",))
    chapter = NotebookJob(FIXTURE, tmp_path / "chapter.ipynb", tmp_path / "chapter", {"profile": "quick", "seed": 4})
    outcome = {}
    with cluster(workers=1, retries=0, log=lambda *a, **k: None) as one:
        one.wait_for_workers(1, timeout=120)
        thread = threading.Thread(target=lambda: outcome.update(done=execute_notebooks(
            [page, chapter], 1, client=one, studies=[plan], log=lambda *a, **k: None)), daemon=True)
        thread.start()
        thread.join(timeout=240)
        assert not thread.is_alive(), "the page and the study deadlocked on the one worker"
    executed, failed = outcome["done"]
    assert not failed and [stem for stem, _ in executed] == ["fixture_study_page", "fixture_chapter"]
    chapter_metrics = json.loads((tmp_path / "chapter" / "metrics.json").read_text())
    assert chapter_metrics["mean"] == pytest.approx(expected_metrics(4, 100.0)["mean"], rel=1e-12)
    metrics = json.loads((tmp_path / "page" / "metrics.json").read_text())
    assert metrics["status"] == ["ok"] * 4 and metrics["command"] == "python -m stagewise study fixture_study"
    assert metrics["means"] == pytest.approx([expected_metrics(seed, nbeta)["mean"] for nbeta, seed in
                                              zip(metrics["nbeta"], metrics["seeds"])], rel=1e-12)
    assert metrics["nbeta"] == [50.0, 50.0, 200.0, 200.0] and metrics["seeds"] == [0, 1, 0, 1]
    assert metrics["malloc_trim"] is None  # Dask's setting for its workers (a kernel inheriting it ran 2.3x slower)
    assert plan_study("fixture_study", notebooks_dir=notebooks, root=tmp_path).cached


# ------------------------------------------------------------------------------------------ with a profile


@pytest.mark.slow
def test_a_sweep_with_a_profile_has_every_runs_metrics_seconds_folder_and_attempts(client, tmp_path, capsys):
    """``--profile quick``: each run.json also records the profile's values (profile: quick), which are not
    swept; the table still matches every run to its combination."""
    code = main(["sweep", str(FIXTURE), "--profile", "quick", "-p", "seed", "0,1", "--plot", "mean:seed",
                 "--scheduler", client.scheduler.address, "--runs-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    (folder,) = (tmp_path / "fixture_chapter").glob("sweep-*")
    table = pd.read_csv(folder / "sweep.csv")
    assert list(table["param.seed"]) == [0, 1] and list(table["status"]) == ["ok", "ok"]
    assert list(table["attempts"]) == [1, 1] and (table["seconds"] > 0).all()
    assert all(Path(f).parent == folder.resolve() for f in table["folder"])
    for _, row in table.iterrows():
        known = expected_metrics(int(row["param.seed"]), 100.0)  # the quick profile's 20 draws
        assert row["mean"] == pytest.approx(known["mean"], rel=1e-12) and row["draws"] == 20
    assert (folder / "mean_vs_seed.png").stat().st_size > 0
    run = json.loads((Path(table["folder"][0]) / "run.json").read_text())
    assert run["parameters"] == {"profile": "quick", "seed": 0} and run["profile"] == "quick"


@pytest.mark.slow
def test_a_killed_sweep_with_a_profile_resumes_without_rerunning_what_finished(client, tmp_path, capsys):
    """The sweep's own process (and its local cluster) killed after its first finished run; ``--resume`` on
    another cluster runs only the combinations without a finished run, and the table has all four."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "stagewise", "sweep", str(FIXTURE), "--profile", "quick", "-p", "seed",
               "0,1,2,3", "--workers", "1", "--runs-dir", str(tmp_path)]
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, folder = time.monotonic() + 180, None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            tasks = list(tmp_path.glob("fixture_chapter/sweep-*/tasks.jsonl"))
            if tasks and tasks[0].read_text().strip():
                folder = tasks[0].parent
                break
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert folder is not None, "no run finished before the sweep was to be killed"
    finished = {json.loads(p.read_text())["parameters"]["seed"]: p.parent
                for p in folder.glob("*/run.json") if json.loads(p.read_text())["status"] == "ok"}
    assert 1 <= len(finished) < 4
    before = {p: p.read_bytes() for d in finished.values() for p in d.rglob("*") if p.is_file()}

    code = main(["sweep", "--resume", str(folder), "--scheduler", client.scheduler.address])
    assert code == 0, capsys.readouterr().err
    assert f"{len(finished)} of 4 combinations already finished" in capsys.readouterr().out
    assert all(p.read_bytes() == data for p, data in before.items())  # the finished runs were not touched
    table = sweep_table(folder)
    assert list(table["status"]) == ["ok"] * 4 and list(table["param.seed"]) == [0, 1, 2, 3]
    for _, row in table.iterrows():
        seed = int(row["param.seed"])
        if seed in finished:  # not run again: its one attempt is the run from before the kill
            assert row["attempts"] == 1 and Path(row["folder"]) == finished[seed].resolve()
        assert row["mean"] == pytest.approx(expected_metrics(seed, 100.0)["mean"], rel=1e-12)
        assert row["seconds"] > 0
