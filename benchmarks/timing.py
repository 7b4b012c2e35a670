"""Timing shared by the in-process benchmarks: alternate the programs, compare by the median of per-pair ratios.

On a shared machine the available CPU drifts over minutes; running the programs in turn puts each pair under
nearly the same load, and the median of the pair ratios drops the pairs a burst of load hit on one side only.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

from stagewise.artifacts import write_json

RESULTS = Path(__file__).parent / "results"


def alternate(programs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each program over ``repeats`` rounds, the programs run in turn within each round."""
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(repeats):
        for name, program in programs.items():
            start = time.perf_counter()
            program()
            times[name].append(time.perf_counter() - start)
    return times


def pair_ratios(slow: list[float], fast: list[float]) -> tuple[float, list[float]]:
    """(median, all) of the per-round ratios slow / fast: the speedup of ``fast``."""
    ratios = [s / f for s, f in zip(slow, fast)]
    return statistics.median(ratios), ratios


def write_result(name: str, result: dict) -> Path:
    """Write ``results/<name>`` (JSON, atomically) and return its path."""
    return write_json(result, RESULTS / name)
