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
from .runner import declared_parameters
from .runs import RunsError

__all__ = ["SweepError", "check_grid", "combination_key", "combinations", "parse_grid"]

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


def check_grid(nb, path: Path, grid: dict[str, list], seeds: int | None = None,
               base: dict[str, Any] | None = None) -> dict[str, list]:
    """Every combination of ``grid`` checked as its run will check it: ``base`` (the profile's values) merged
    with the combination, by the notebook's own parameters and validation cells (names, types, ranges and the
    cell's cross-parameter checks; :mod:`stagewise.pipeline.precheck`), all in one checking process. Returns
    the grid with its values converted (``100`` -> ``100.0`` for a float). ``seeds`` adds ``seed`` = 0 ..
    seeds-1. Raises :class:`ParameterError` listing every bad value, before anything runs."""
    from .precheck import check_values

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
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise ParameterError(f"{count} combinations: at most {MAX_COMBINATIONS} in one sweep")
    product = combinations(grid)
    results = check_values([(nb, {**(base or {}), **combination}) for combination in product])
    problems: list[str] = []
    for result in results:
        problems += [p for p in result.problems if p not in problems]
    if problems:
        raise ParameterError(problems)
    checked: dict[str, list] = {name: [] for name in grid}
    for name, values in grid.items():
        for value in values:
            index = next(i for i, c in enumerate(product) if c[name] is value)
            new = results[index].values[name]
            if any(type(v) is type(new) and v == new for v in checked[name]):
                problems.append(f"parameter {name!r} lists the value {new!r} twice")
            else:
                checked[name].append(new)
    if problems:
        raise ParameterError(problems)
    return checked


def combinations(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``, the last parameter varying fastest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def combination_key(parameters: dict[str, Any]) -> str:
    """A combination as canonical JSON text: how a run folder's run.json parameters are matched to it."""
    return json.dumps(to_json(parameters), sort_keys=True)
