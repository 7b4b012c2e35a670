"""Running a chapter notebook: jupytext source -> papermill -> executed .ipynb, metrics.json and figures.

The notebook runs with its working directory set to its output folder, so the ``metrics.json`` and figure files
it writes land next to the executed notebook. Executions for the book are cached: a stamp next to the executed
notebook records a hash of the source, the parameters and the package code (:func:`cache_key`); when it
matches, the notebook is not executed again.
"""

from __future__ import annotations

import ast
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stagewise.artifacts import cache_key as artifact_key
from stagewise.artifacts import read_json, source_hash, to_json, write_json
from .params import Parameter, ParameterError
from .profiles import DEFAULT_PROFILE, resolve_values

__all__ = ["NotebookError", "NotebookFailed", "RunInterrupted", "cache_key", "cached_seconds", "check_many", "execute",
           "execute_cached", "load_notebook", "new_run_dir", "package_hash", "parameter_table", "resolve_notebook",
           "run_notebook", "stamp_path"]

NOTEBOOK_SUFFIXES = (".md", ".ipynb", ".py")
KERNEL_NAME = "python3"
# Quiet the kernel's own start-up log (e.g. its TCP transport warning); cell errors still come back.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class NotebookError(Exception):
    """A notebook cannot be found or read (a usage error, reported before any execution)."""


class RunInterrupted(SystemExit):
    """Ctrl-C (SIGINT) stopped :func:`run_notebook`; its run.json records "interrupted".

    A SystemExit with status 130 (128 + SIGINT, what shells report for Ctrl-C): left uncaught, the interpreter
    exits with that status and prints no traceback (the runner prints the one-line message).
    """

    def __init__(self, folder: Path):
        super().__init__(130)
        self.folder = Path(folder)

    def __str__(self) -> str:
        return f"interrupted: the partial run is in {self.folder}/ (run.json: status interrupted)"


@dataclass
class NotebookFailed(Exception):
    """A cell raised while the notebook ran; the partially executed notebook is at ``output``."""

    notebook: Path
    output: Path
    ename: str
    evalue: str
    execution_count: int | None = None

    def __str__(self) -> str:
        cell = f" in cell [{self.execution_count}]" if self.execution_count is not None else ""
        return (f"{self.notebook} failed{cell}: {self.ename}: {self.evalue}\n"
                f"  partially executed notebook: {self.output}")


# ---------------------------------------------------------------------------------------- sources


def resolve_notebook(spec: str | Path, notebooks_dir: str | Path = "notebooks") -> Path:
    """The notebook named by ``spec``: a path, a stem (``01_slt``) or a number prefix (``01``)."""
    path = Path(spec)
    if path.is_file():
        return path
    folder = Path(notebooks_dir)
    if (folder / path).is_file():
        return folder / path
    available = sorted(p for p in folder.glob("*") if p.suffix in NOTEBOOK_SUFFIXES) if folder.is_dir() else []
    exact = [p for p in available if p.stem == str(spec)]
    matches = exact or [p for p in available if p.stem.startswith(f"{spec}_")]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(p.stem for p in available) or "none"
    if not matches:
        raise NotebookError(f"no notebook {str(spec)!r} in {folder}/ (available: {names})")
    raise NotebookError(f"{str(spec)!r} names several notebooks: {', '.join(str(p) for p in matches)}")


def load_notebook(path: str | Path):
    """The notebook at ``path`` (jupytext MyST ``.md``, ``.py`` or ``.ipynb``) as an nbformat node."""
    import jupytext

    nb = jupytext.read(str(path))
    nb.metadata.setdefault("kernelspec", {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"})
    return nb


def parameter_table(notebook) -> list[Parameter]:
    """(name, type, default, help) of each parameter of ``notebook`` (a path or a notebook node), in order, as
    papermill's own inspection (``papermill.inspect_notebook``) reads its parameters cell (that there is exactly
    one is checked with the values, :func:`stagewise.pipeline.precheck.first_cells`)."""
    import nbformat
    import papermill

    nb = load_notebook(notebook) if isinstance(notebook, (str, Path)) else notebook
    with tempfile.TemporaryDirectory(prefix="stagewise-inspect-") as scratch:
        path = Path(scratch) / "notebook.ipynb"
        nbformat.write(nb, str(path))
        found = papermill.inspect_notebook(str(path))
    rows = []
    for p in found.values():
        default = p["default"]
        if default[:1] in "[({":  # a container papermill joined from several lines: shown as Python writes it
            try:
                default = ast.unparse(ast.parse(default, mode="eval").body)
            except SyntaxError:
                pass
        rows.append(Parameter(p["name"], p["inferred_type_name"], default, p["help"]))
    return rows


def check_many(jobs: list[tuple[Any, Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each ``(notebook node, path, values)``: the values papermill will inject (a profile's merged with ``-p``)
    checked before a kernel starts by the notebook's own parameters and validation cells
    (:mod:`stagewise.pipeline.precheck`), all in one checking process, and converted (``300`` -> ``300.0`` for a
    float). Raises :class:`ParameterError` listing the problems of them all, in the notebooks' own words (each
    once, prefixed with its notebook when the jobs are of several notebooks)."""
    from .precheck import check_values

    results = check_values([(nb, values) for nb, _, values in jobs])
    several = len({str(path) for _, path, _ in jobs}) > 1
    problems: list[str] = []
    for (_, path, _), result in zip(jobs, results):
        for problem in result.problems:
            problem = f"{Path(path).stem}: {problem}" if several else problem
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise ParameterError(problems)
    return [{k: result.values[k] for k in values} for (_, _, values), result in zip(jobs, results)]


def package_hash() -> str:
    """Hash of the source of every module of the stagewise package (:func:`stagewise.artifacts.source_hash`)."""
    return source_hash()


def cache_key(source: str | Path, parameters: dict[str, Any], *data: Any) -> str:
    """Hash of what an execution's outputs depend on: notebook source, parameters, package code and ``data``
    (e.g. the results of the studies a page reads)."""
    return artifact_key(parameters, Path(source), *data, code=package_hash())


# -------------------------------------------------------------------------------------- execution


def execute(source: str | Path, output: str | Path, cwd: str | Path, parameters: dict[str, Any] | None = None,
            *, progress: bool = False) -> float:
    """Execute notebook ``source`` with ``parameters`` in ``cwd``; write the executed notebook to ``output``.

    Returns the wall time in seconds. Raises :class:`NotebookFailed` (with the failing cell's
    exception name and message) when a cell raises; the partial notebook is still written.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, given, cwd = Path(source), Path(output), Path(cwd).resolve()
    output = given.resolve()
    nb = load_notebook(source)
    cwd.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        # The kernel starts in ``cwd`` (nbclient's resources path); papermill's own ``cwd=`` would change this
        # process's directory for the whole run.
        papermill.execute_notebook(nb, str(output), parameters=parameters or {}, kernel_name=KERNEL_NAME,
                                   resources={"metadata": {"path": str(cwd)}}, progress_bar=progress,
                                   extra_arguments=KERNEL_ARGUMENTS,
                                   # killed, not asked to shut down: a kernel asked while a cell still runs
                                   # (Ctrl-C) prints a ZMQ traceback as its sockets close under the reply
                                   shutdown_kernel="immediate")
    except PapermillExecutionError as error:
        raise NotebookFailed(source, given, error.ename, error.evalue, error.exec_count) from None
    return time.perf_counter() - start


def stamp_path(output: Path) -> Path:
    """The stamp beside an executed notebook: ``01_slt.ipynb`` -> ``01_slt.stamp.json`` (:func:`execute_cached`)."""
    return output.with_name(output.stem + ".stamp.json")


def cached_seconds(source: str | Path, output: str | Path, parameters: dict[str, Any] | None = None,
                   data: tuple = ()) -> float | None:
    """Seconds the cached execution took when ``output`` is up to date (see :func:`execute_cached`), else None."""
    output = Path(output)
    recorded = read_json(stamp_path(output))
    if not (output.is_file() and isinstance(recorded, dict)):
        return None
    if recorded.get("key") != cache_key(source, parameters or {}, *data):
        return None
    return float(recorded.get("seconds", 0.0))


def execute_cached(source: str | Path, output: str | Path, cwd: str | Path,
                   parameters: dict[str, Any] | None = None, *, data: tuple = (),
                   progress: bool = False) -> tuple[bool, float]:
    """:func:`execute`, skipped when the stamp next to ``output`` matches :func:`cache_key` (of the source,
    ``parameters`` and ``data``).

    Returns (executed, seconds): seconds of this execution, or of the cached one. Before
    executing, ``cwd`` is emptied so no stale figure survives.
    """
    source, output, cwd = Path(source), Path(output), Path(cwd)
    parameters = parameters or {}
    seconds = cached_seconds(source, output, parameters, data)
    if seconds is not None:
        return False, seconds
    stamp = stamp_path(output)
    key = cache_key(source, parameters, *data)
    stamp.unlink(missing_ok=True)
    if cwd.exists():
        shutil.rmtree(cwd)
    seconds = execute(source, output, cwd, parameters, progress=progress)
    write_json({"key": key, "source": str(source), "parameters": parameters, "seconds": round(seconds, 3)}, stamp)
    return True, seconds


def new_run_dir(parent: str | Path, now: datetime | None = None, prefix: str = "") -> Path:
    """A new, empty folder ``parent/<prefix><timestamp>[-n]``; an existing folder is never reused."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = prefix + (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {parent}")


def absolute_paths(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters named ``*_file`` or ``*_dir`` that give an existing relative path, made absolute.

    A notebook runs in its own output folder, so a path the user typed relative to where they stand would
    otherwise point nowhere.
    """
    return {k: str(Path(v).expanduser().resolve()) if isinstance(v, str) and v and k.endswith(("_file", "_dir"))
            and Path(v).expanduser().exists() else v for k, v in parameters.items()}


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


@contextmanager
def _sigint_held():
    """Ignore a further Ctrl-C while the final record is written (a second press must not leave it "running")."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_notebook(spec: str | Path, values: dict[str, Any], *, runs_dir: str | Path = "runs",
                 notebooks_dir: str | Path = "notebooks", progress: bool | None = None, log=None,
                 parent: str | Path | None = None, profile: str = DEFAULT_PROFILE) -> Path:
    """Run one notebook with new parameters into a new folder ``runs/<stem>/<timestamp>/``.

    ``profile`` (``full``: the parameters cell's own values) supplies the values of its parameter file
    (:mod:`stagewise.pipeline.profiles`); ``values`` override them. Unknown names, wrong types and values out
    of the validation cell's ranges fail with :class:`ParameterError` before a kernel starts.
    The folder holds the executed notebook, what the notebook wrote (metrics.json, figures) and
    ``run.json`` (notebook, parameters, command, started, status, finished, seconds). Its status is
    "running" while the notebook runs, then "ok"; "failed" with the ``error`` (and :class:`NotebookFailed`
    or the error is raised); or "interrupted" after Ctrl-C (one line printed, :class:`RunInterrupted`
    raised: exit status 130). Returns the folder.
    """
    path = resolve_notebook(spec, notebooks_dir)
    nb = load_notebook(path)
    given, _ = resolve_values(path, profile, values)
    parameters = absolute_paths(check_many([(nb, path, given)])[0])
    # a sweep puts its runs in its own folder (``parent``); a single run goes to runs/<stem>/
    folder = new_run_dir(Path(parent) if parent is not None else Path(runs_dir) / path.stem)
    overrides = {k: v for k, v in parameters.items() if k in values}
    record = {"notebook": str(path), "profile": profile, "parameters": to_json(parameters), "started": _now(),
              "status": "running",
              "command": shlex.join(["python", "-m", "stagewise", "run", str(path),
                                     *(["--profile", profile] if profile != DEFAULT_PROFILE else []),
                                     *[a for k, v in overrides.items() for a in ("-p", k, str(v))]])}
    write_json(record, folder / "run.json")
    if progress is None:
        progress = sys.stderr.isatty()
    if log is not None:
        shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items()) or "default parameters"
        label = f" (profile {profile})" if profile != DEFAULT_PROFILE else ""
        log(f"running {path}{label} with {shown} in {folder}/ ...", flush=True)
    start = time.perf_counter()

    def finish(status: str, **extra: Any) -> None:
        with _sigint_held():
            write_json({**record, "status": status, "finished": _now(),
                        "seconds": round(time.perf_counter() - start, 3), **extra}, folder / "run.json")

    def interrupted() -> RunInterrupted:
        finish("interrupted")
        stop = RunInterrupted(folder)
        print(stop, file=sys.stderr, flush=True)
        return stop

    try:
        execute(path, folder / f"{path.stem}.ipynb", folder, parameters, progress=progress)
    except NotebookFailed as failure:
        if failure.ename == "KeyboardInterrupt":  # the kernel itself was interrupted
            raise interrupted() from None
        finish("failed", error=f"{failure.ename}: {failure.evalue}", cell=failure.execution_count)
        raise
    except KeyboardInterrupt:
        raise interrupted() from None
    except BaseException as error:
        finish("failed", error=f"{type(error).__name__}: {error}")
        raise
    finish("ok")
    return folder
