"""Parameter sweeps: every combination of some parameter values, one notebook run each, as Dask tasks.

    python -m stagewise sweep 01 -p nbeta 100,300 -p step_size 1e-4,1e-3 --seeds 3 --plot llc_max_rel_error:nbeta

A sweep folder (``runs/<chapter>/sweep-<stamp>/``, or a study's ``runs/``) holds:

    sweep.json                 the notebook, profile, the values of each parameter and every combination
    <stamp>[-n]/               one run folder per run (run_notebook's: run.json, metrics.json, figures)
    tasks.jsonl                one line per finished task: combination, status, worker, error (append only)
    sweep.csv, sweep.parquet   one row per combination: its parameters, status, seconds, worker, attempts,
                               error, folder and every metric (:func:`stagewise.pipeline.metrics.flatten`)
    <metric>_vs_<param>.png    with --plot metric:param

Every combination is checked before any task starts, as its run will check it (the profile's values and the
combination, by the notebook's own first cells: :mod:`stagewise.pipeline.precheck`). A run whose notebook fails
is a row with status "failed" and the error. A run whose worker dies is started again by Dask on a live worker;
``resume`` runs only the combinations without a finished (ok or failed) run. Nothing is overwritten: a resumed
sweep that finds tables writes ``sweep-2.csv`` and so on.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stagewise.artifacts import read_json, to_json, write_bytes, write_json
from .dask_cluster import check_workers, cluster, worker_name
from .params import ParameterError, parse_value
from .profiles import DEFAULT_PROFILE, profile_values
from .runner import absolute_paths, check_many, load_notebook, new_run_dir, parameter_table, resolve_notebook
from .runs import RunsError, free_stem, parse_plot, plot_runs, run_table, runs_under

__all__ = ["SweepError", "SweepInterrupted", "SweepResult", "check_grid", "combinations", "create", "parse_grid",
           "pending", "record", "run_sweep", "submit", "sweep_table"]

SWEEP_FILE, TASKS_FILE = "sweep.json", "tasks.jsonl"
FINISHED = ("ok", "failed")  # a run that got to its end; "running" (a dead worker's) and "interrupted" did not
MAX_COMBINATIONS = 10_000


class SweepError(RunsError):
    """A sweep that cannot be started or resumed as asked (names what and why); no task was started."""


class SweepInterrupted(SystemExit):
    """Ctrl-C stopped the sweep (exit status 130); finished runs are kept and ``--resume`` continues it."""

    def __init__(self, folder: Path):
        super().__init__(130)
        self.folder = folder

    def __str__(self) -> str:
        return f"interrupted: continue with `python -m stagewise sweep --resume {self.folder}`"


class TaskError(RuntimeError):
    """A run that failed outside its notebook's cells (the kernel died, a disk error): Dask retries it."""


@dataclass
class SweepResult:
    folder: Path
    table: Any  # pandas.DataFrame, one row per combination
    written: dict[str, Path]
    ran: int  # runs started by this call (resumed combinations not counted)


# ------------------------------------------------------------------------------------------ the values


def parse_grid(pairs: Iterable[Sequence[str]]) -> dict[str, list]:
    """``[("nbeta", "100,300")]`` -> ``{"nbeta": [100, 300]}``; each value read as ``-p`` reads it."""
    grid: dict[str, list] = {}
    for name, text in pairs:
        if name in grid:
            raise SweepError(f"parameter {name!r} is given twice: list all its values once, -p {name} v1,v2,...")
        items = [item.strip() for item in str(text).split(",")]
        if not all(items):
            raise SweepError(f"-p {name} {text!r}: an empty value; expected values separated by commas, v1,v2,...")
        grid[name] = [parse_value(item) for item in items]
    return grid


def combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``, the last parameter varying fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _key(parameters: dict[str, Any], names=None) -> str:
    """A combination as canonical JSON text, of the swept ``names`` alone: a run's run.json also records what the
    profile gave it, the same for every run of the sweep, which must not stop it from matching its combination."""
    names = parameters if names is None else names
    return json.dumps(to_json({name: parameters.get(name) for name in names}), sort_keys=True)


def check_grid(nb, path: Path, grid: dict[str, list], seeds: int | None = None,
               base: dict[str, Any] | None = None) -> dict[str, list]:
    """Every combination of ``grid`` checked as its run will check it: ``base`` (the profile's values) merged
    with the combination, by the notebook's own first cells, all in one checking process. Returns the grid with
    its values converted (``100`` -> ``100.0`` for a float); ``seeds`` adds ``seed`` = 0 .. seeds-1. Raises
    :class:`ParameterError` listing every bad value, before anything runs."""
    grid = dict(grid)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ParameterError(f"seeds = {seeds!r}: expected an integer >= 1 (the runs get seed = 0 .. seeds-1)")
        if "seed" not in {p.name for p in parameter_table(nb)}:
            raise ParameterError(f"--seeds: {path} has no parameter 'seed'")
        if "seed" in grid:
            raise ParameterError("give the seeds either as -p seed ... or as --seeds, not both")
        grid["seed"] = list(range(seeds))
    if not grid:
        raise ParameterError("nothing to sweep: give at least one -p NAME v1,v2,... (or --seeds)")
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_COMBINATIONS:
        raise ParameterError(f"{count} combinations: at most {MAX_COMBINATIONS} in one sweep")
    product = combinations(grid)
    results = check_many([(nb, path, {**(base or {}), **combination}) for combination in product])
    problems: list[str] = []
    checked: dict[str, list] = {name: [] for name in grid}
    for name, values in grid.items():
        for value in values:
            new = results[next(i for i, c in enumerate(product) if c[name] is value)][name]
            if any(type(v) is type(new) and v == new for v in checked[name]):
                problems.append(f"parameter {name!r} lists the value {new!r} twice")
            checked[name].append(new)
    if problems:
        raise ParameterError(problems)
    return checked


# ------------------------------------------------------------------------------------------ the tasks


def run_task(index: int, notebook: str, values: dict[str, Any], sweep_folder: str,
             profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """One run on a worker: :func:`run_notebook` of ``notebook`` with ``values`` into a new run folder inside the
    sweep folder. A failing cell is a "failed" result; any other error raises :class:`TaskError`."""
    from .runner import NotebookFailed, RunInterrupted, run_notebook

    start = time.perf_counter()
    result = {"index": index, "parameters": values, "worker": worker_name()}
    try:
        folder = run_notebook(notebook, values, parent=sweep_folder, progress=False, profile=profile)
        result.update(status="ok", error=None, folder=str(Path(folder).resolve()))
    except NotebookFailed as failure:
        result.update(status="failed", error=f"{failure.ename}: {failure.evalue}",
                      folder=str(Path(failure.output).parent.resolve()))
    except RunInterrupted as stop:  # the kernel was interrupted (SIGINT sent to it): run.json says so
        result.update(status="interrupted", error="KeyboardInterrupt", folder=str(stop.folder.resolve()))
    except Exception as error:  # the kernel died or would not start: worth another try (Dask's retries)
        raise TaskError(f"{type(error).__name__}: {error}") from None
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def create(folder: Path, path: Path, grid: dict[str, list], profile: str, retries: int, command: str) -> None:
    """Write the sweep's ``sweep.json`` into ``folder`` (made if missing): its notebook, grid and combinations."""
    write_json({"notebook": str(path), "profile": profile, "grid": grid, "retries": retries, "command": command,
                "combinations": [to_json(absolute_paths(c)) for c in combinations(grid)],
                "started": datetime.now().isoformat(timespec="seconds")}, Path(folder) / SWEEP_FILE)


def pending(folder: Path) -> list[int]:
    """The combinations of the sweep in ``folder`` that have no finished run, by index."""
    spec = read_json(Path(folder) / SWEEP_FILE)
    done = {_key(r.parameters, spec["grid"]) for r in runs_under(folder) if r.status in FINISHED}
    return [i for i, c in enumerate(spec["combinations"]) if _key(c, spec["grid"]) not in done]


def submit(client, folder: Path, indices: Sequence[int]) -> dict:
    """One Dask task per combination of ``indices`` of the sweep in ``folder``: {future: index}."""
    spec, folder = read_json(Path(folder) / SWEEP_FILE), Path(folder).resolve()
    stem = Path(spec["notebook"]).stem
    return {client.submit(run_task, i, spec["notebook"], spec["combinations"][i], str(folder), spec["profile"],
                          pure=False, retries=spec["retries"], key=f"{stem}-{i:04d}-{uuid.uuid4().hex[:8]}"): i
            for i in indices}


def record(folder: Path, result: dict[str, Any]) -> None:
    """Append one finished task's ``result`` to the sweep's ``tasks.jsonl``."""
    with (Path(folder) / TASKS_FILE).open("a") as out:
        out.write(json.dumps(to_json(result), sort_keys=True) + "\n")


def _tasks(folder: Path) -> list[dict[str, Any]]:
    try:
        lines = (folder / TASKS_FILE).read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a crash
            continue
    return records


# ------------------------------------------------------------------------------------------ the table


def sweep_table(folder: str | Path):
    """One row per combination of the sweep in ``folder``: ``index``, ``param.<name>``, status, seconds, worker,
    attempts (run folders made for it), error, folder and every metric. The run shown is the latest ok one, else
    the latest finished, else the latest; a combination without a run folder has the task's status ("killed":
    its workers kept dying; "error": it failed outside the notebook) or "not run"."""
    import pandas as pd

    folder = Path(folder)
    spec = read_json(folder / SWEEP_FILE) or {}
    names = list(spec.get("grid", {}))
    attempts: dict[str, list] = {}
    for run in runs_under(folder):
        attempts.setdefault(_key(run.parameters, names), []).append(run)
    tasks = _tasks(folder)
    workers = {t["folder"]: t.get("worker") for t in tasks if t.get("folder")}
    last_task = {t["index"]: t for t in tasks}
    rows = []
    for index, combination in enumerate(spec.get("combinations", [])):
        runs = sorted(attempts.get(_key(combination, names), []), key=lambda r: (r.started, r.folder.name))
        if runs:
            shown = ([r for r in runs if r.status == "ok"] or [r for r in runs if r.status in FINISHED] or runs)[-1]
            row = run_table([shown]).to_dict("records")[0]
            row["worker"] = workers.get(str(shown.folder.resolve()))
        else:
            task = last_task.get(index, {})
            row = {"status": task.get("status", "not run"), "error": task.get("error"), "worker": task.get("worker")}
            row.update({f"param.{k}": v for k, v in combination.items()})
        # the chapter, not the sweep folder that RunRecord.chapter (the run folder's parent) names
        row.update(index=index, attempts=len(runs), chapter=Path(spec.get("notebook", "")).stem)
        rows.append(row)
    table = pd.DataFrame(rows)
    first = ["index", *[f"param.{k}" for k in names], "status", "seconds", "worker", "attempts", "error",
             "folder", "started", "chapter"]
    first = [c for c in first if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _parquet_bytes(table) -> bytes:
    """Parquet of ``table``; an object column mixing kinds of values (e.g. numbers and strings) is written as text."""
    frame = table.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column].dropna()}
            if len(kinds) > 1 and not kinds <= {int, float}:
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _write_outputs(folder: Path, table, plot: tuple[str, str] | None) -> dict[str, Path]:
    stem = free_stem(folder, "sweep", (".csv", ".parquet"))
    written = {"csv": write_bytes(table.to_csv(index=False).encode(), folder / f"{stem}.csv"),
               "parquet": write_bytes(_parquet_bytes(table), folder / f"{stem}.parquet")}
    if plot is not None:
        metric, param = plot
        if metric not in table.columns:
            known = sorted(c for c in table.columns if not c.startswith("param.") and c not in (
                "index", "attempts", "seconds", "status", "worker", "error", "folder", "started", "chapter"))
            raise SweepError(f"plot: no metric {metric!r} in these runs (known: {', '.join(known) or 'none'}); "
                             f"the tables were written: {written['csv']}")
        written["figure"] = plot_runs(table, f"param.{param}", metric, folder)
    return written


# ------------------------------------------------------------------------------------------ the sweep


def _plot_spec(plot: str | None, grid: dict[str, list]) -> tuple[str, str] | None:
    if plot is None:
        return None
    metric, param = parse_plot(plot)
    if param not in grid:
        raise SweepError(f"plot: parameter {param!r} is not swept (swept: {', '.join(grid)})")
    return metric, param


def run_sweep(notebook: str | Path | None = None, grid: dict[str, list] | None = None, *, seeds: int | None = None,
              runs_dir: str | Path = "runs", notebooks_dir: str | Path = "notebooks", workers: int | None = None,
              scheduler: str | None = None, client=None, retries: int = 2, plot: str | None = None,
              resume: str | Path | None = None, progress: bool | None = None, log=print,
              profile: str = DEFAULT_PROFILE) -> SweepResult:
    """Run every combination of ``grid`` (name -> values; with ``seeds``, also seed = 0 .. seeds-1) of
    ``notebook``, each as one Dask task, into a new sweep folder; or, with ``resume``, the combinations of
    that sweep folder that have no finished run. Tasks go to ``client``, else to the scheduler at
    ``scheduler``, else to a new LocalCluster of ``workers`` processes (default one per core). ``retries``:
    further tries of a task whose worker died or which failed outside its notebook. ``plot="metric:param"``
    draws a figure. Every run starts from ``profile``'s values (a resumed sweep keeps its own). Raises
    :class:`ParameterError` / :class:`SweepError` before any task starts."""
    if resume is not None:
        folder = Path(resume)
        spec = read_json(folder / SWEEP_FILE)
        if not isinstance(spec, dict):
            raise SweepError(f"--resume {resume}: not a sweep folder (no readable {SWEEP_FILE})")
        path, profile = Path(spec["notebook"]), spec.get("profile", DEFAULT_PROFILE)
        nb, base = load_notebook(path), profile_values(path, profile)
        recorded = check_grid(nb, path, spec["grid"], base=base)  # the notebook may have changed since
        if grid or seeds is not None:
            asked = check_grid(nb, path, grid or {}, seeds, base=base)
            if _key(asked) != _key(recorded):
                raise SweepError(f"--resume {resume}: these values differ from the sweep's ({_key(recorded)}); "
                                 "drop -p and --seeds to resume it as it was")
        grid = recorded
    else:
        if notebook is None:
            raise SweepError("name a notebook to sweep (or --resume a sweep folder)")
        path = resolve_notebook(notebook, notebooks_dir).resolve()
        grid = check_grid(load_notebook(path), path, grid or {}, seeds, base=profile_values(path, profile))
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SweepError(f"retries = {retries!r}: expected an integer >= 0")
    if client is None:
        check_workers(workers, scheduler)
    plot_spec = _plot_spec(plot, grid)
    if resume is None:
        folder = new_run_dir(Path(runs_dir) / path.stem, prefix="sweep-")
        command = " ".join(["python", "-m", "stagewise", "sweep", str(path),
                            *(["--profile", profile] if profile != DEFAULT_PROFILE else []),
                            *[f"-p {k} {','.join(map(str, v))}" for k, v in grid.items()]])
        create(folder, path, grid, profile, retries, command)
    indices = pending(folder)
    total = len(read_json(folder / SWEEP_FILE)["combinations"])
    if resume is not None:
        log(f"resuming {folder}/: {total - len(indices)} of {total} combinations already finished")
    folder = folder.resolve()
    log(f"sweep of {path.name}: {len(indices)} run(s) to go, "
        + " x ".join(f"{k} ({len(v)})" for k, v in grid.items()) + f" -> {folder}/", flush=True)
    if indices:
        _execute(folder, indices, client, workers, scheduler, retries, progress, log)
    table = sweep_table(folder)
    written = _write_outputs(folder, table, plot_spec)
    counts = table["status"].value_counts().to_dict()
    log("sweep: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + " -> "
        + ", ".join(str(p) for p in written.values()))
    return SweepResult(folder=folder, table=table, written=written, ran=len(indices))


def _execute(folder: Path, indices, client, workers, scheduler, retries, progress, log) -> None:
    from contextlib import nullcontext

    from distributed import as_completed
    from tqdm.auto import tqdm

    combinations_ = read_json(folder / SWEEP_FILE)["combinations"]
    progress = sys.stderr.isatty() if progress is None else progress
    engine = nullcontext(client) if client is not None else cluster(workers, scheduler, retries=retries, log=log)
    futures, not_ok, interrupted = {}, 0, False
    with engine as client, tqdm(total=len(indices), desc="runs finished", unit="run", disable=not progress) as bar:
        try:
            futures = submit(client, folder, indices)
            for future in as_completed(futures):
                i = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # KilledWorker after `retries` dead workers, or TaskError
                    status = "killed" if type(error).__name__ == "KilledWorker" else "error"
                    result = {"index": i, "parameters": combinations_[i], "status": status, "folder": None,
                              "error": f"{type(error).__name__}: {error}", "worker": None}
                record(folder, result)
                bar.update(1)
                if result["status"] != "ok":
                    not_ok += 1
                    bar.set_postfix_str(f"not ok: {not_ok}", refresh=False)
                    log(f"run {i} ({', '.join(f'{k}={v!r}' for k, v in combinations_[i].items())}): "
                        f"{result['status']}: {result['error']}", flush=True)
        except KeyboardInterrupt:
            # Queued runs are dropped. A local cluster is closed on the way out: its workers die and their
            # kernels (in sessions of their own, so Ctrl-C never reached them) follow; those runs' run.json
            # stays "running" and --resume runs them again. A remote worker finishes the run it has begun.
            interrupted = True
            client.cancel(list(futures))
    if interrupted:
        stop = SweepInterrupted(folder)
        print(stop, file=sys.stderr, flush=True)
        raise stop
