"""Every sweep command that the README and the book print, run as printed through the command line, with each
run's notebook replaced by the metrics the quick book's run of that chapter wrote: the sweep's table must hold
those metrics for every combination, with seconds, folder and attempts, and its ``--plot`` figure must be drawn.
Every column the surrounding text tells the reader to read (``param.seed``, ``status``, a metric) must be in the
table. (The sweep machinery itself, with a profile, a kill and a resume, runs for real in tests/pipeline/test_sweep.py.)

Marked ``book``: it needs the quick book's metrics (``make test`` builds the quick book first)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "build" / "quick" / "chapters"
SOURCES = [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.md")), *sorted((ROOT / "book").glob("*.md"))]

pytestmark = pytest.mark.book

COMMAND = re.compile(r"python -m stagewise sweep ([^`\n#]*)|make sweep NB=(\S+)(?: PROFILE=(\S+))? PARAMS=\"([^\"]*)\"")
COLUMN = re.compile(r"`((?:param\.)?[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)`")


def printed_commands() -> list[tuple[str, list[str], set[str]]]:
    """(where, argv after ``python -m stagewise``, columns the paragraph names) of every complete command."""
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for match in COMMAND.finditer(text):
            if match.group(1) is not None:
                words = shlex.split(match.group(1).replace("…", " … "))
            else:
                words = [match.group(2), *(["--profile", match.group(3)] if match.group(3) else []),
                         *shlex.split(match.group(4))]
            if "…" in words or "--resume" in words:
                continue  # a placeholder (`sweep 01 … --scheduler`), or a resume of a folder named for show
            start = text.rfind("\n\n", 0, match.start()) + 2
            end = text.find("\n\n", match.end())
            paragraph = text[start:end if end >= 0 else len(text)]
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{source.relative_to(ROOT)}:{line}", ["sweep", *words], set(COLUMN.findall(paragraph))))
    return found


def test_the_book_and_readme_print_sweep_commands():
    where = {w.split(":")[0] for w, _, _ in printed_commands()}
    assert "README.md" in where and any(w.startswith("notebooks/") for w in where)


@pytest.fixture(scope="module")
def inproc_scheduler():
    """A Dask cluster in this process (threads), so that the stand-in for a notebook's execution reaches it."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as local, \
            Client(local) as client:
        yield client.scheduler.address


@pytest.mark.parametrize("where, argv, columns", printed_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_printed_sweep_command_gives_a_table_with_its_metrics_and_plot(where, argv, columns, inproc_scheduler,
                                                                          tmp_path, monkeypatch, capsys):
    from stagewise.__main__ import main
    from stagewise.pipeline import runner

    if not QUICK.is_dir():
        if os.environ.get("STAGEWISE_BOOK_BUILT"):
            pytest.fail(f"{QUICK} is missing: the quick book was not built")
        pytest.skip("the quick book is not built (`python -m stagewise book --profile quick`)")

    def execute(source, output, cwd, parameters=None, **kwargs):  # the chapter's quick metrics, as its run wrote
        metrics = QUICK / Path(source).stem / "metrics.json"
        assert metrics.is_file(), f"{where}: the quick book has no metrics for {Path(source).stem}"
        shutil.copyfile(metrics, Path(cwd) / "metrics.json")
        Path(output).write_text("{}")
        return 0.01

    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.chdir(ROOT)  # the commands name chapters as the README's reader does, from the repository
    code = main([*argv, "--scheduler", inproc_scheduler, "--runs-dir", str(tmp_path)])
    assert code == 0, f"{where}: {capsys.readouterr().err}"
    (folder,) = tmp_path.glob("*/sweep-*")
    table = pd.read_csv(folder / "sweep.csv")
    quick = json.loads((QUICK / folder.parent.name / "metrics.json").read_text())
    metric_columns = [k for k, v in quick.items() if isinstance(v, (int, float)) and k not in ("seed",)]
    assert set(table["status"]) == {"ok"} and (table["attempts"] == 1).all()
    assert table["seconds"].notna().all() and (table["seconds"] >= 0).all()
    assert table["folder"].notna().all() and len(table) >= 2
    assert metric_columns and set(metric_columns) <= set(table.columns), f"{where}: metrics missing"
    missing = {c for c in columns if (c.startswith("param.") or c in quick or c in ("status", "error"))
               and c not in table.columns}
    assert not missing, f"{where}: the text names {missing}, which the table lacks"
    if "--plot" in argv:
        metric, param = argv[argv.index("--plot") + 1].split(":")
        assert (folder / f"{metric}_vs_{param}.png").stat().st_size > 0
