"""The values of a sweep: ``-p name v1,v2,...`` lists, checked against the notebook before anything runs, and
their cartesian product (see :mod:`stagewise.pipeline.sweep`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stagewise.artifacts import to_json
from .params import ParameterError, parse_value
from .runner import check_run_parameters, declared_parameters
from .runner import notebook_rules as chapter_rules
from .runs import RunsError

__all__ = ["SweepError", "chapter_rules", "check_grid", "combination_key", "combinations", "parse_grid"]

MAX_COMBINATIONS = 10_000


class SweepError(RunsError):
    """A sweep that cannot be started or resumed as asked (names what and why); no task was started."""





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


def check_grid(nb, path: Path, grid: dict[str, list], seeds: int | None = None) -> dict[str, list]:
    """Every value of ``grid`` checked against the notebook (names, types, the chapter's ranges) and converted
    (``100`` -> ``100.0`` for a float). ``seeds`` adds ``seed`` = 0 .. seeds-1. Raises :class:`ParameterError`
    listing every bad value, before anything runs."""
    declared = {p.name for p in declared_parameters(nb, path)}
    grid = dict(grid)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ParameterError(f"seeds = {seeds!r}: expected an integer >= 1 (the runs get seed = 0 .. seeds-1)")
        if "seed" not in declared:
            raise ParameterError(f"--seeds: {path} has no parameter 'seed'")
        if "seed" in grid:
            raise ParameterError("give the seeds either as -p seed ... or as --seeds, not both")
        grid["seed"] = list(range(seeds))
    if not grid:
        raise ParameterError("nothing to sweep: give at least one -p NAME v1,v2,... (or --seeds)")
    problems: list[str] = []
    checked: dict[str, list] = {}
    for name, values in grid.items():
        checked[name] = []
        for value in values:
            try:
                new = check_run_parameters(nb, path, {name: value})[name]  # names, types, the chapter's ranges
            except ParameterError as error:
                problems += [p for p in error.problems if p not in problems]
                continue
            if any(type(v) is type(new) and v == new for v in checked[name]):
                problems.append(f"parameter {name!r} lists the value {new!r} twice")
            else:
                checked[name].append(new)
    if problems:
        raise ParameterError(problems)
    count = 1
    for values in checked.values():
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise ParameterError(f"{count} combinations: at most {MAX_COMBINATIONS} in one sweep")
    return checked


def combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``, the last parameter varying fastest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def combination_key(parameters: dict[str, Any]) -> str:
    """A combination as canonical JSON text: how a run folder's run.json parameters are matched to it."""
    return json.dumps(to_json(parameters), sort_keys=True)
