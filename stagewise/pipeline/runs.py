"""The run folders that ``python -m stagewise run`` writes: list them, remove the ones a user names, and collect
many (a class's results, a sweep) into one table and figure.

A run folder is ``runs/<chapter>/<stamp>/`` holding ``run.json`` (status, parameters, times) and, when the
notebook got that far, ``metrics.json``. Nothing here removes anything the user did not name, nothing outside a
runs folder, and nothing that is not a run folder (no ``run.json``): the book's build folders are never touched.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.artifacts import read_json

from .metrics import flatten
from .runner import new_run_dir

__all__ = ["RunRecord", "RunsError", "clean_runs", "collect", "find_runs", "plot_runs", "run_table", "runs_under"]


class RunsError(ValueError):
    """A request about run folders that cannot be honoured (names the folder and why); nothing was changed."""


@dataclass(frozen=True)
class RunRecord:
    """One run folder and what its run.json and metrics.json say (``metrics`` is {} when there is none)."""

    folder: Path
    chapter: str
    status: str
    started: str
    seconds: float | None
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None


def _record(folder: Path) -> RunRecord:
    run = read_json(folder / "run.json", {})
    metrics = read_json(folder / "metrics.json", {})
    chapter = folder.parent.parent.name if folder.parent.name.startswith("sweep-") else folder.parent.name
    return RunRecord(folder=folder, chapter=chapter, status=str(run.get("status", "unknown")),
                     started=str(run.get("started", "")), seconds=run.get("seconds"),
                     parameters=dict(run.get("parameters") or {}), metrics=metrics, error=run.get("error"))


def is_run_folder(folder: Path) -> bool:
    return folder.is_dir() and (folder / "run.json").is_file()


def find_runs(runs_dir: str | Path = "runs", chapter: str | None = None,
              status: str | None = None) -> list[RunRecord]:
    """Every run folder under ``runs_dir`` (optionally of one chapter folder name or prefix, e.g. "01" or
    "01_slt", and with one status: ok, failed, interrupted, running), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    chapters = sorted(p for p in root.iterdir() if p.is_dir())
    if chapter is not None:
        chapters = [p for p in chapters if p.name == chapter or p.name.startswith(f"{chapter}_")]
    found = []
    for chapter_dir in chapters:
        for folder in sorted(chapter_dir.iterdir()):
            if is_run_folder(folder):
                found.append(_record(folder))
            elif folder.is_dir():  # a sweep folder holds run folders one level down
                found += [_record(f) for f in sorted(folder.iterdir()) if is_run_folder(f)]
    if status is not None:
        found = [r for r in found if r.status == status]
    return found


def runs_under(folder: str | Path) -> list[RunRecord]:
    """Every run folder at or below ``folder`` (a run folder, a chapter's, a sweep's, or a folder of copies)."""
    folder = Path(folder)
    return [_record(p.parent) for p in sorted(folder.rglob("run.json")) if p.is_file()]


def clean_runs(folders: Iterable[str | Path], runs_dir: str | Path = "runs", *, dry_run: bool = False) -> list[Path]:
    """Remove the run folders named in ``folders`` (each must be a run folder inside ``runs_dir``).

    Every name is checked before anything is removed: one that is outside ``runs_dir``, missing, or not a
    run folder (no run.json) raises :class:`RunsError` and nothing is deleted. Returns the folders removed
    (or that would be, with ``dry_run``).
    """
    root = Path(runs_dir).resolve()
    targets = []
    for name in folders:
        folder = Path(name).expanduser().resolve()
        if folder == root or root not in folder.parents:
            raise RunsError(f"{name}: not inside the runs folder {root}/; only run folders there are removed")
        if not is_run_folder(folder):
            raise RunsError(f"{name}: not a run folder (no run.json); nothing was removed")
        targets.append(folder)
    if not dry_run:
        for folder in targets:
            shutil.rmtree(folder)
    return targets


def run_table(records: Iterable[RunRecord]):
    """A pandas DataFrame, one row per run: chapter, folder, status, started, seconds, error, every parameter
    (as ``param.<name>``, from run.json) and every metric (by its key path, :func:`~.metrics.flatten`)."""
    import pandas as pd

    rows = []
    for r in records:
        row: dict[str, Any] = {"chapter": r.chapter, "folder": str(r.folder), "status": r.status,
                               "started": r.started, "seconds": r.seconds, "error": r.error}
        row.update({f"param.{k}": v for k, v in r.parameters.items()})
        row.update(flatten(r.metrics))
        rows.append(row)
    return pd.DataFrame(rows)


def collect(records: list[RunRecord], out_dir: str | Path, plot: str | None = None) -> dict[str, Path]:
    """Write the runs' table to a new folder ``out_dir/collect-<stamp>/`` as ``runs.csv`` (and a figure
    ``<metric>_vs_<param>.png`` of one metric against one parameter when ``plot="metric:param"``).

    ``param`` is a parameter name (with or without ``param.``); both must be columns of the table, else
    :class:`RunsError` before anything is written. Returns the paths written by name ("table", "figure").
    """
    if not records:
        raise RunsError("no run folders to collect")
    table = run_table(records)
    x = y = None
    if plot is not None:
        y, param = parse_plot(plot)
        x = param if param in table.columns else f"param.{param}"
        for column, what in ((x, "parameter"), (y, "metric")):
            if column not in table.columns:
                known = sorted(c for c in table.columns if (c.startswith("param.") if what == "parameter"
                                                             else not c.startswith("param.")))
                raise RunsError(f"plot: no {what} {column!r} in these runs; known: {', '.join(known)}")
    folder = new_run_dir(out_dir, prefix="collect-")
    written = {"table": folder / "runs.csv"}
    table.to_csv(written["table"], index=False)
    written["table"].chmod(0o644)
    if x is not None:
        written["figure"] = plot_runs(table, x, y, folder)
    return written


def parse_plot(plot: str) -> tuple[str, str]:
    """``--plot METRIC:PARAM`` as (metric key path, parameter name without ``param.``); raises :class:`RunsError`."""
    metric, sep, param = plot.partition(":")
    param = param.removeprefix("param.")
    if not (sep and metric and param):
        raise RunsError(f"plot: expected METRIC:PARAM (e.g. llc.normal_crossing.rel_error:nbeta), got {plot!r}")
    return metric, param


def free_stem(folder: Path, stem: str, suffixes: Iterable[str]) -> str:
    """``stem``, else ``stem-2``, ``stem-3``, ...: the first with no file ``folder/<name><suffix>`` yet."""
    for n in range(1, 10_000):
        name = stem if n == 1 else f"{stem}-{n}"
        if not any((folder / f"{name}{s}").exists() for s in suffixes):
            return name
    raise RunsError(f"no free file name for {stem} in {folder}")


def plot_runs(table, x: str, y: str, folder: Path) -> Path:
    """``<y>_vs_<x>.png`` in ``folder`` (under a free name: nothing is overwritten): ``y`` against ``x``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from stagewise.plotting import save, set_style

    set_style()
    done = table[table["status"] == "ok"].copy()
    done[y] = done[y].astype(float)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    numeric = done[x].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
    if numeric and done[x].nunique() > 1:
        sns.lineplot(data=done, x=x, y=y, marker="o", errorbar=("sd", 1), ax=ax, label="mean ± 1 sd over runs")
        sns.scatterplot(data=done, x=x, y=y, ax=ax, color="0.4", s=18, label="one run")
        if done[x].min() > 0 and done[x].max() / done[x].min() >= 100:
            ax.set_xscale("log")
    else:
        sns.stripplot(data=done, x=x, y=y, ax=ax, color="0.3")
    ax.set_xlabel(x.removeprefix("param."))
    ax.set_ylabel(y)
    ax.set_title(f"{len(done)} finished runs" + ("" if math.isclose(len(done), len(table)) else
                                                  f" ({len(table) - len(done)} not finished, left out)"))
    name = free_stem(folder, f"{y}_vs_{x.removeprefix('param.')}".replace("/", "_"), (".png",))
    path = save(fig, name, folder)
    plt.close(fig)
    return path
