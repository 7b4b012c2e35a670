"""Running notebooks: the fixture chapter through jupytext, papermill and a real kernel."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagewise import artifacts
from stagewise.__main__ import main
from stagewise.pipeline import NotebookError, NotebookFailed, parameter_table, resolve_notebook, run_notebook
from stagewise.pipeline.runner import RunInterrupted, cache_key, execute_cached, load_notebook, new_run_dir

FIXTURES = Path(__file__).parents[1] / "fixtures"
FIXTURE = FIXTURES / "fixture_chapter.md"


def test_resolve_notebook_by_path_stem_and_number(tmp_path):
    for name in ("01_slt.md", "02_bif.md", "10_lm.md"):
        (tmp_path / name).write_text("")
    assert resolve_notebook("01", tmp_path) == tmp_path / "01_slt.md"
    assert resolve_notebook("02_bif", tmp_path) == tmp_path / "02_bif.md"
    assert resolve_notebook(tmp_path / "10_lm.md") == tmp_path / "10_lm.md"
    with pytest.raises(NotebookError, match="available: 01_slt, 02_bif, 10_lm"):
        resolve_notebook("03", tmp_path)


def test_new_run_dir_never_reuses_a_folder(tmp_path):
    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_parameter_table_reads_the_parameters_cell():
    rows = parameter_table(FIXTURE)
    assert [r.name for r in rows] == ["profile", "seed", "nbeta", "draws", "fail"]
    assert tuple(rows[2]) == ("nbeta", "float", "100.0", "inverse temperature of the tempered posterior")


def test_papermill_help_notebook_lists_type_default_and_help(tmp_path):
    import jupytext

    ipynb = tmp_path / "fixture.ipynb"
    jupytext.write(load_notebook(FIXTURE), str(ipynb))
    papermill = Path(sys.executable).with_name("papermill")
    out = subprocess.run([str(papermill), "--help-notebook", str(ipynb)], capture_output=True, text=True,
                         check=True).stdout
    for row in parameter_table(FIXTURE):
        assert f"{row.name}: {row.type} (default {row.default})" in out
        assert row.help in out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the fixture with the same parameters, and the runs folder."""
    runs_dir = tmp_path_factory.mktemp("runs")
    first = run_notebook(FIXTURE, {"nbeta": 300, "profile": "quick"}, runs_dir=runs_dir, progress=False)
    second = run_notebook(FIXTURE, {"nbeta": 300, "profile": "quick"}, runs_dir=runs_dir, progress=False)
    return runs_dir, first, second


@pytest.mark.slow
def test_run_writes_notebook_metrics_and_figures(runs):
    runs_dir, folder, _ = runs
    assert folder.parent == runs_dir / "fixture_chapter"
    assert {p.name for p in folder.iterdir()} >= {"fixture_chapter.ipynb", "metrics.json", "histogram.png",
                                                  "run.json"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["parameters"] == {"profile": "quick", "seed": 0, "nbeta": 300.0, "draws": 200, "fail": False}
    assert metrics["seed"] == 0
    assert metrics["draws"] == 20 and len(metrics["first"]) == 3
    assert set(metrics["versions"]) >= {"python", "torch", "numpy", "stagewise", "platform"}
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "ok" and run["parameters"] == {"nbeta": 300.0, "profile": "quick"}
    assert run["finished"] >= run["started"] and run["seconds"] > 0
    assert os.stat(folder / "run.json").st_mode & 0o777 == 0o644
    assert os.stat(folder / "metrics.json").st_mode & 0o777 == 0o644
    executed = json.loads((folder / "fixture_chapter.ipynb").read_text())
    assert any(o.get("output_type") == "display_data" for c in executed["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_second_run_gets_a_new_folder(runs):
    _, first, second = runs
    assert first != second and first.parent == second.parent
    assert (first / "metrics.json").read_text() == (second / "metrics.json").read_text()


def test_unknown_name_and_wrong_type_fail_before_a_kernel_starts(tmp_path, capsys):
    code = main(["run", str(FIXTURE), "-p", "bogus", "1", "-p", "seed", "True", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown parameter 'bogus' (accepted parameters: draws, fail, nbeta, profile, seed)" in err
    assert "parameter 'seed' = True has the wrong type: expected int, got bool" in err
    assert not any(tmp_path.iterdir())  # no run folder: nothing started


def test_out_of_range_fails_with_the_validation_cells_rule_before_a_kernel_starts(tmp_path, capsys):
    code = main(["run", str(FIXTURE), "-p", "nbeta", "-5", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: parameter 'nbeta' = -5.0 is out of range (accepted: a finite number > 0)\n"
    assert not any(tmp_path.iterdir())  # no run folder: nothing started


def test_profile_values_are_checked_and_overridden_by_p(tmp_path, capsys):
    assert main(["params", str(FIXTURE), "--profile", "quick", "-p", "nbeta", "300"]) == 0
    out = capsys.readouterr().out
    assert "profile quick" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["profile"][2:4] == ["'quick'", "profile"] and rows["nbeta"][2:4] == ["300.0", "-p"]
    assert rows["seed"][2:4] == ["0", "default"]
    assert main(["params", str(FIXTURE), "--profile", "slow"]) == 2
    assert "profile = 'slow' (accepted: 'full' or 'quick'" in capsys.readouterr().err
    assert main(["params", str(FIXTURE), "-p", "draws", "1"]) == 2  # the validation cell's rule: draws >= 2
    assert "parameter 'draws' = 1 is out of range (accepted: an integer ≥ 2)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cross_parameter_check_fails_before_compute_with_exit_2(tmp_path, capsys):
    # a check written as code in the validation cell runs with its rules before any kernel starts
    notebook, source = tmp_path / "fixture_chapter.md", FIXTURE.read_text()
    rules_end = "fail=OneOf(True, False))\n"
    assert source.count(rules_end) == 1
    notebook.write_text(source.replace(rules_end, rules_end + "if nbeta > 1000:\n    from stagewise.pipeline import "
                                       "ParameterError\n    raise ParameterError('nbeta = 2000.0 (accepted: at most "
                                       "1000)')\n"))
    code = main(["run", str(notebook), "-p", "nbeta", "2000", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "nbeta = 2000.0 (accepted: at most 1000)" in err, err
    assert not (tmp_path / "runs").exists()  # refused before a run folder or a kernel: nothing computed
    assert main(["run", str(notebook), "-p", "nbeta", "900", "--runs-dir", str(tmp_path / "runs")]) == 0


@pytest.mark.slow
def test_failing_cell_is_reported_and_partial_notebook_kept(tmp_path, capsys):
    code = main(["run", str(FIXTURE), "-p", "fail", "True", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "RuntimeError: the fixture was asked to fail" in err
    (folder,) = (tmp_path / "fixture_chapter").iterdir()
    assert (folder / "compute_started").exists() and (folder / "fixture_chapter.ipynb").is_file()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "RuntimeError: the fixture was asked to fail"
    assert run["cell"] is not None and "finished" in run


def test_notebook_stamp_key_covers_source_parameters_and_package_code(tmp_path, monkeypatch):
    package = tmp_path / "stagewise"  # a stand-in for the package's source (the real tree is never edited)
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 1\n")
    (package / "notes.txt").write_text("not code")
    monkeypatch.setattr(artifacts, "PACKAGE_DIR", package)
    artifacts.source_hash.cache_clear()
    source = tmp_path / "chapter.md"
    shutil.copy(FIXTURE, source)
    try:
        before = cache_key(source, {"profile": "quick"})
        (package / "notes.txt").write_text("changed")
        artifacts.source_hash.cache_clear()
        assert cache_key(source, {"profile": "quick"}) == before
        assert cache_key(source, {"profile": "full"}) != before
        (package / "sub" / "b.py").write_text("y = 2\n")
        artifacts.source_hash.cache_clear()
        assert cache_key(source, {"profile": "quick"}) != before
    finally:
        artifacts.source_hash.cache_clear()


def test_stamp_key_covers_what_a_page_reads(tmp_path):
    """A page that reads a study: its key covers the study's key (in the book) or its committed files."""
    page, results = tmp_path / "10_page.md", tmp_path / "results.csv"
    shutil.copy(FIXTURE, page)
    results.write_text("x\n1\n")
    before = cache_key(page, {}, results)
    assert cache_key(page, {}, results) == before and cache_key(page, {}) != before
    results.write_text("x\n2\n")
    assert cache_key(page, {}, results) != before  # the study's results changed
    assert cache_key(page, {}, "key-a") != cache_key(page, {}, "key-b")  # an in-book study's key


def _fake_execute(error):
    def execute(source, output, cwd, parameters=None, *, progress=False):
        Path(cwd, "partial.png").write_bytes(b"")
        raise error

    return execute


def test_an_interrupted_run_is_recorded_and_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("stagewise.pipeline.runner.execute", _fake_execute(KeyboardInterrupt()))
    with pytest.raises(SystemExit) as stop:
        main(["run", str(FIXTURE), "-p", "seed", "3", "--runs-dir", str(tmp_path)])
    assert isinstance(stop.value, RunInterrupted) and stop.value.code == 130
    (folder,) = (tmp_path / "fixture_chapter").iterdir()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted" and run["finished"] >= run["started"] and "error" not in run
    assert run["parameters"] == {"seed": 3}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted: the partial run is in {folder}/ (run.json: status interrupted)"]
    # the kernel itself interrupted (its cell raised KeyboardInterrupt): the same record
    failure = NotebookFailed(FIXTURE, folder / "x.ipynb", "KeyboardInterrupt", "", 3)
    monkeypatch.setattr("stagewise.pipeline.runner.execute", _fake_execute(failure))
    with pytest.raises(RunInterrupted):
        run_notebook(FIXTURE, {}, runs_dir=tmp_path)
    newest = max((tmp_path / "fixture_chapter").iterdir())
    assert newest != folder and json.loads((newest / "run.json").read_text())["status"] == "interrupted"


def test_other_failures_are_recorded_as_failed_with_the_error(tmp_path, monkeypatch):
    monkeypatch.setattr("stagewise.pipeline.runner.execute", _fake_execute(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        run_notebook(FIXTURE, {}, runs_dir=tmp_path)
    (folder,) = (tmp_path / "fixture_chapter").iterdir()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "OSError: disk full" and "finished" in run


SLOW_CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

```{code-cell} ipython3
:tags: [parameters]

profile: str = "full"  # "full" or "quick"
```

```{code-cell} ipython3
import time
from pathlib import Path

Path("cell_started").touch()
time.sleep(120)
```
"""


@pytest.mark.slow
def test_ctrl_c_during_a_cell_records_interrupted_and_exits_130(tmp_path):
    """SIGINT to `python -m stagewise run` while a cell runs: run.json says interrupted, one line, status 130."""
    chapter = tmp_path / "slow_chapter.md"
    chapter.write_text(SLOW_CHAPTER)
    runs = tmp_path / "runs"
    # a child started from a non-interactive shell may inherit SIGINT ignored; Ctrl-C in a terminal is not
    child = subprocess.Popen([sys.executable, "-m", "stagewise", "run", str(chapter), "--runs-dir", str(runs)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not list(runs.glob("slow_chapter/*/cell_started")):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    (folder,) = (runs / "slow_chapter").iterdir()
    assert child.returncode == 130, err
    assert err.strip().splitlines() == [f"interrupted: the partial run is in {folder}/ (run.json: status interrupted)"]
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted" and run["finished"] >= run["started"]
    assert os.stat(folder / "run.json").st_mode & 0o777 == 0o644
    assert (folder / "slow_chapter.ipynb").is_file()  # the partial notebook is kept


@pytest.mark.slow
def test_execution_is_cached_until_source_or_parameters_change(tmp_path, monkeypatch):
    monkeypatch.setattr("stagewise.pipeline.runner.package_hash", lambda: "fixed")
    source = tmp_path / "chapter.md"
    shutil.copy(FIXTURE, source)
    out, cwd = tmp_path / "out" / "chapter.ipynb", tmp_path / "out" / "chapter"
    quick = {"profile": "quick"}
    assert execute_cached(source, out, cwd, quick)[0] is True
    assert execute_cached(source, out, cwd, quick)[0] is False
    assert execute_cached(source, out, cwd, {"profile": "quick", "seed": 1})[0] is True
    source.write_text(source.read_text() + "\nOne more sentence.\n")
    assert execute_cached(source, out, cwd, {"profile": "quick", "seed": 1})[0] is True
    assert execute_cached(source, out, cwd, {"profile": "quick", "seed": 1})[0] is False


@pytest.mark.slow
def test_failed_execution_leaves_no_stamp(tmp_path):
    out = tmp_path / "chapter.ipynb"
    with pytest.raises(NotebookFailed) as info:
        execute_cached(FIXTURE, out, tmp_path / "chapter", {"nbeta": -1.0})
    assert info.value.ename == "ParameterError"
    assert out.is_file() and not (tmp_path / "chapter.stamp.json").exists()


def test_cli_takes_parameter_values_verbatim(monkeypatch):
    seen = {}

    def fake_run(spec, values, **kwargs):
        seen.update(values)
        return Path("runs/x/y")

    monkeypatch.setattr("stagewise.pipeline.run_notebook", fake_run)
    assert main(["run", "01", "-p", "lr", "-1e-3", "-p", "nbeta", "300", "-p", "name", "two words",
                 "-p", "flag", "False"]) == 0
    assert seen == {"lr": -1e-3, "nbeta": 300, "name": "two words", "flag": False}


@pytest.mark.slow
def test_kernel_runs_this_interpreter(tmp_path):
    import nbformat

    from stagewise.pipeline.runner import execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
    source = tmp_path / "which.ipynb"
    nbformat.write(nb, source)
    execute(source, tmp_path / "out.ipynb", tmp_path / "cwd")
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable
