"""A notebook's parameters checked once, before any compute, by the notebook's own cells.

What a kernel runs first is the parameters cell, papermill's injected assignments (the profile's values and
``-p``) and the validation cell right after them (``params = validate_parameters(globals(), ...)`` and any
cross-parameter checks). :func:`check_values` runs exactly that, as a small Python file per set of values, in a
fresh Python process (``python -m stagewise.pipeline.precheck``; each file in a fresh namespace), so a bad value
is refused with the notebook's own message before a kernel starts or a sweep submits a task, and the rules live
in the notebook alone. A notebook without a validation cell has its names and types checked. The machine is not
checked there: ``check_device`` leaves that to the kernel (a run meant for a GPU cluster is not refused on a
laptop), as the environment variable ``STAGEWISE_PRECHECK`` tells it.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagewise.artifacts import to_json

__all__ = ["PRECHECK_ENV", "Checked", "PrecheckFailed", "check_values", "first_cells"]

#: Set in the checking process: the validation cell runs there, the machine is checked in the kernel.
PRECHECK_ENV = "STAGEWISE_PRECHECK"


class PrecheckFailed(RuntimeError):
    """The checking process itself failed (a broken environment, not a bad value): its error output is shown."""


@dataclass(frozen=True)
class Checked:
    """One set of values as the notebook's first cells took it: the converted values of every declared
    parameter (``300`` -> ``300.0`` for a float), or the problems they found."""

    values: dict[str, Any] | None
    problems: list[str]


def first_cells(nb) -> tuple[str, str]:
    """(parameters cell, validation cell) sources of notebook node ``nb``: the cell tagged ``parameters`` and the
    code cell right after it when that cell calls ``validate_parameters(`` ("" otherwise: nothing else is run)."""
    from .params import ParameterError

    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ParameterError(f"a notebook needs exactly one cell tagged 'parameters' (found {len(tagged)})")
    following = code[tagged[0] + 1].source if tagged[0] + 1 < len(code) else ""
    return code[tagged[0]].source, following if "validate_parameters(" in following else ""


def check_values(jobs: Sequence[tuple[Any, Mapping[str, Any]]], *, cwd: str | Path | None = None) -> list[Checked]:
    """Each ``(notebook node, values)`` of ``jobs`` checked by the notebook's first cells (module docstring), all
    in one Python process. The values are what papermill would inject (a profile's merged with ``-p``)."""
    from papermill.translators import PythonTranslator

    if not jobs:
        return []
    with tempfile.TemporaryDirectory(prefix="stagewise-precheck-") as scratch:
        files = []
        for n, (nb, values) in enumerate(jobs):
            parameters_cell, validation_cell = first_cells(nb)
            injected = PythonTranslator.codify(dict(values)) if values else ""
            files.append(Path(scratch) / f"check_{n:05d}.py")
            files[-1].write_text(f"{parameters_cell}\n\n{injected}\n\n{validation_cell}\n", encoding="utf-8")
        report = Path(scratch) / "report.json"
        env = {**os.environ, PRECHECK_ENV: "1", "MPLBACKEND": "Agg"}
        done = subprocess.run([sys.executable, "-m", "stagewise.pipeline.precheck", str(report), *map(str, files)],
                              capture_output=True, text=True, env=env, cwd=cwd)
        try:
            results = json.loads(report.read_text())
        except (OSError, ValueError):
            results = None
    if done.returncode != 0 or not isinstance(results, list) or len(results) != len(files):
        raise PrecheckFailed("the parameter check could not run (python -m stagewise.pipeline.precheck, exit "
                             f"{done.returncode}):\n{done.stderr.strip()[-2000:]}")
    return [Checked(values=r["values"], problems=r["problems"]) for r in results]


# ------------------------------------------------------------------------------------- the checking process


def _check_file(path: str) -> dict[str, Any]:
    from stagewise.config import ConfigError

    from .params import Parameters, checked_namespace

    try:
        namespace = runpy.run_path(path, run_name="__stagewise_precheck__")
        params = namespace.get("params")
        if not isinstance(params, Parameters):  # no validation cell: the declared names and types
            params = checked_namespace(namespace, {})
    except ConfigError as error:  # ParameterError is one: every problem found, in the notebook's words
        return {"values": None, "problems": list(getattr(error, "problems", None) or [str(error)])}
    except Exception as error:  # a cross-parameter check of the cell that raised something else
        return {"values": None, "problems": [f"{type(error).__name__}: {error}"]}
    return {"values": to_json(dict(params)), "problems": []}


def main(report: str, files: Sequence[str]) -> int:
    """Check each file, then write the results as one JSON list to ``report`` (the cells may print)."""
    os.environ[PRECHECK_ENV] = "1"
    Path(report).write_text(json.dumps([_check_file(path) for path in files]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
