"""Chapter 7's language-model experiment: every condition's schedule trained for every seed.

:func:`train_conditions` runs :func:`~stagewise.steering.train_steered` once per (condition, seed) from one
base :class:`~stagewise.steering.SteeringConfig` whose seed it replaces, so that a seed's runs share their
initialization and base batches (the paired design) and differ only in their extra sequences. Runs already
trained (the one that found the window) are passed in and reused, not trained again. Each condition may draw its
extra sequences from its own pool (``pools``: the BIF's most helpful sequences, a hand-chosen class, random ones),
fixed or drawn per seed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import PretrainedConfig

from .lm import SteeredRun, SteeringConfig, train_steered

__all__ = ["train_conditions"]


def train_conditions(model_config: PretrainedConfig, train_ids: torch.Tensor, boost: torch.Tensor,
                     schedules: dict[str, np.ndarray], config: SteeringConfig, seeds, probe: torch.Tensor, *,
                     cache_dir: str | Path | None = None,
                     done: dict[tuple[str, int], SteeredRun] | None = None,
                     pools: dict[str, torch.Tensor | Callable[[int], torch.Tensor]] | None = None,
                     ) -> dict[str, list[SteeredRun]]:
    """{condition: [run of each seed, in the order of ``seeds``]} for every schedule of ``schedules``.

    schedules: {condition: (config.steps,) extra sequences per step} (e.g.
    :func:`~stagewise.steering.condition_schedules`). config: the settings of every run; its ``seed`` is
    replaced by each of ``seeds``. done: {(condition, seed): run} already trained, returned as they are (their
    settings are the caller's to keep consistent). pools: {condition: the (n,) bool pool its extra sequences
    come from, or a function of the seed that returns it}; a condition not named draws from ``boost``. The other
    arguments are :func:`train_steered`'s.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    done = dict(done or {})
    runs: dict[str, list[SteeredRun]] = {c: [] for c in schedules}
    for seed in seeds:
        for condition, extra in schedules.items():
            run = done.get((condition, seed))
            if run is None:
                pool = (pools or {}).get(condition, boost)
                pool = pool(seed) if callable(pool) else pool
                run = train_steered(model_config, train_ids, pool, extra, replace(config, seed=seed), probe,
                                    cache_dir=cache_dir)
            runs[condition].append(run)
    return runs
