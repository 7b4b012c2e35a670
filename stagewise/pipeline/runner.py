"""Running a chapter notebook: jupytext source -> papermill -> executed .ipynb, metrics.json and figures.

The notebook runs with its working directory set to its output folder, so the ``metrics.json`` and
figure files it writes land next to the executed notebook. Executions for the book are cached: a
stamp next to the executed notebook records a hash of the source, the parameters and the package
code (:func:`cache_key`); when it matches, the notebook is not executed again.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .metrics import to_json, write_json_atomic
from .params import Parameter, ParameterError, check_parameters, parse_parameters_cell

__all__ = [
    "NotebookError",
    "NotebookFailed",
    "cache_key",
    "cached_seconds",
    "check_run_parameters",
    "execute",
    "declared_parameters",
    "execute_cached",
    "load_notebook",
    "new_run_dir",
    "package_hash",
    "parameter_table",
    "resolve_notebook",
    "run_notebook",
]

NOTEBOOK_SUFFIXES = (".md", ".ipynb", ".py")
KERNEL_NAME = "python3"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Quiet the kernel's own start-up log (e.g. its TCP transport warning); cell errors still come back.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class NotebookError(Exception):
    """A notebook cannot be found or read (a usage error, reported before any execution)."""


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


def _parameters_cell(nb, path: Path):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        found = "no cell" if not cells else f"{len(cells)} cells"
        raise NotebookError(f"{path}: {found} tagged 'parameters' (a chapter needs exactly one)")
    return cells[0]


def parameter_table(notebook_path: str | Path) -> list[Parameter]:
    """(name, type, default, help) rows of the notebook's parameters cell, in order."""
    path = Path(notebook_path)
    return declared_parameters(load_notebook(path), path)


def declared_parameters(nb, path: Path) -> list[Parameter]:
    """The parameters declared in notebook node `nb` (read from `path`)."""
    return parse_parameters_cell(_parameters_cell(nb, path).source)


def check_run_parameters(nb, path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked for unknown names and types against the parameters cell, converted.

    Ranges are left to the notebook's own ``validate_parameters`` cell, which runs before compute.
    """
    declared = {p.name: p.type for p in declared_parameters(nb, path)}
    converted, problems = check_parameters(declared, values)
    if problems:
        raise ParameterError(problems)
    return converted


def package_hash() -> str:
    """sha256 over the source of every module of the stagewise package."""
    digest = hashlib.sha256()
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(file.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(source: str | Path, parameters: dict[str, Any]) -> str:
    """Hash of what an execution's outputs depend on: notebook source, parameters, package code."""
    digest = hashlib.sha256()
    digest.update(Path(source).read_bytes() + b"\0")
    digest.update(json.dumps(to_json(parameters), sort_keys=True).encode() + b"\0")
    digest.update(package_hash().encode())
    return digest.hexdigest()


# -------------------------------------------------------------------------------------- execution


def execute(source: str | Path, output: str | Path, cwd: str | Path, parameters: dict[str, Any] | None = None,
            *, progress: bool = False) -> float:
    """Execute notebook ``source`` with ``parameters`` in ``cwd``; write the executed notebook to ``output``.

    Returns the wall time in seconds. Raises :class:`NotebookFailed` (with the failing cell's
    exception name and message) when a cell raises; the partial notebook is still written.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output, cwd = Path(source), Path(output), Path(cwd)
    nb = load_notebook(source)
    cwd.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(nb, str(output), parameters=parameters or {}, kernel_name=KERNEL_NAME,
                                   cwd=str(cwd), progress_bar=progress, extra_arguments=KERNEL_ARGUMENTS)
    except PapermillExecutionError as error:
        raise NotebookFailed(source, output, error.ename, error.evalue, error.exec_count) from None
    return time.perf_counter() - start


def _stamp_path(output: Path) -> Path:
    return output.with_name(output.stem + ".stamp.json")


def cached_seconds(source: str | Path, output: str | Path, parameters: dict[str, Any] | None = None) -> float | None:
    """Seconds the cached execution took when ``output`` is up to date (see :func:`execute_cached`), else None."""
    output = Path(output)
    stamp = _stamp_path(output)
    if not (output.is_file() and stamp.is_file()):
        return None
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        return None
    if recorded.get("key") != cache_key(source, parameters or {}):
        return None
    return float(recorded.get("seconds", 0.0))


def execute_cached(source: str | Path, output: str | Path, cwd: str | Path,
                   parameters: dict[str, Any] | None = None, *, progress: bool = False) -> tuple[bool, float]:
    """:func:`execute`, skipped when the stamp next to ``output`` matches :func:`cache_key`.

    Returns (executed, seconds): seconds of this execution, or of the cached one. Before
    executing, ``cwd`` is emptied so no stale figure survives.
    """
    source, output, cwd = Path(source), Path(output), Path(cwd)
    parameters = parameters or {}
    seconds = cached_seconds(source, output, parameters)
    if seconds is not None:
        return False, seconds
    stamp = _stamp_path(output)
    key = cache_key(source, parameters)
    stamp.unlink(missing_ok=True)
    if cwd.exists():
        shutil.rmtree(cwd)
    seconds = execute(source, output, cwd, parameters, progress=progress)
    write_json_atomic({"key": key, "source": str(source), "parameters": to_json(parameters),
                       "seconds": round(seconds, 3)}, stamp)
    return True, seconds


def new_run_dir(parent: str | Path, now: datetime | None = None) -> Path:
    """A new, empty folder ``parent/<timestamp>[-n]``; an existing folder is never reused."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {parent}")


def default_value(parameter: Parameter) -> Any:
    """A parameter's default as a Python value (its source text when not a literal)."""
    try:
        return ast.literal_eval(parameter.default)
    except ValueError:
        return parameter.default


def absolute_paths(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters named ``*_file`` or ``*_dir`` that give an existing relative path, made absolute.

    A notebook runs in its own output folder, so a path the user typed relative to where they stand would
    otherwise point nowhere.
    """
    return {k: str(Path(v).expanduser().resolve()) if isinstance(v, str) and v and k.endswith(("_file", "_dir"))
            and Path(v).expanduser().exists() else v for k, v in parameters.items()}


def run_notebook(spec: str | Path, values: dict[str, Any], *, runs_dir: str | Path = "runs",
                 notebooks_dir: str | Path = "notebooks", progress: bool | None = None, log=None) -> Path:
    """Run one notebook with new parameters into a new folder ``runs/<stem>/<timestamp>/``.

    Unknown names and wrong types fail with :class:`ParameterError` before a kernel starts.
    The folder holds the executed notebook, what the notebook wrote (metrics.json, figures) and
    ``run.json`` (notebook, parameters, status, seconds). Returns the folder.
    """
    path = resolve_notebook(spec, notebooks_dir)
    nb = load_notebook(path)
    parameters = absolute_paths(check_run_parameters(nb, path, values))
    folder = new_run_dir(Path(runs_dir) / path.stem)
    record = {"notebook": str(path), "parameters": to_json(parameters),
              "started": datetime.now().isoformat(timespec="seconds"), "status": "running",
              "command": shlex.join(["python", "-m", "stagewise", "run", str(path),
                                     *[a for k, v in parameters.items() for a in ("-p", k, str(v))]])}
    write_json_atomic(record, folder / "run.json")
    if progress is None:
        progress = sys.stderr.isatty()
    if log is not None:
        given = ", ".join(f"{k}={v!r}" for k, v in parameters.items()) or "default parameters"
        log(f"running {path} with {given} in {folder}/ ...", flush=True)
    try:
        seconds = execute(path, folder / f"{path.stem}.ipynb", folder, parameters, progress=progress)
    except NotebookFailed as failure:
        write_json_atomic({**record, "status": f"failed: {failure.ename}: {failure.evalue}"}, folder / "run.json")
        raise
    write_json_atomic({**record, "status": "ok", "seconds": round(seconds, 3)}, folder / "run.json")
    return folder
