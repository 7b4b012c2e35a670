"""Chapter 6's verdicts with power: where the induction influence is decided, and how many draws decide it.

The verdict on a decline after the induction head forms compares two windows of checkpoints, declared before the
values that decide it are drawn: a **peak window** around the pilot's peak and a **late window** at the end of
training (:func:`decisive_windows`). A pilot run (the chapter's BIF at its sampled checkpoints) locates the peak
and measures how noisy one checkpoint's value is; since errors fall like 1/√(chains × draws), the pilot's errors
give the budget at which a decline of a given size would be detected (:func:`plan_decisive`,
:class:`DecisivePlan`). Fresh chains (another seed) then sample only the decisive checkpoints at that budget, so
the pilot's noise, which chose the peak, does not enter the statistic. A pilot's errors can understate those of
heavy-tailed draws (a few draws far out, rarely seen in a short run), so the decisive checkpoints' own errors
decide whether more chains are needed (:func:`top_up_chains`: an internal pilot, sized on the errors alone, never
on the effect).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from stagewise.curves import Decline, budget_for_decline, min_detectable_decline

__all__ = ["DecisivePlan", "decisive_windows", "moment_steps", "plan_decisive", "top_up_chains", "with_moments"]


def decisive_windows(saved_steps: Sequence[int], pilot_steps: Sequence[int], pilot_values: Sequence[float],
                     since: float, width: int = 3) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """(pilot peak step, peak window, late window): windows of ``width`` saved checkpoints each.

    The pilot's peak is its largest value at a sampled step ≥ ``since`` (the formation step). The late window is
    the last ``width`` saved checkpoints; the peak window the ``width`` saved checkpoints centred on the peak,
    moved earlier when it would reach into the late window (a curve that peaks at the end gets the checkpoints
    just before the late window: its "decline" then measures whether it still rises). With fewer than
    2·width saved checkpoints from ``since`` on, both windows shrink to half of them.
    """
    saved = sorted(int(s) for s in saved_steps)
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width = {width!r} (accepted: an integer ≥ 1, checkpoints per window)")
    x, y = np.asarray(pilot_steps, dtype=float), np.asarray(pilot_values, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or not len(x):
        raise ValueError(f"pilot_steps and pilot_values: 1-d, the same length ≥ 1 (got {x.shape} and {y.shape})")
    usable = [s for s in saved if s >= since]
    if len(usable) < 2:
        raise ValueError(f"{len(usable)} saved checkpoint(s) from step {since:g} on: two windows need at least 2 "
                         "(save more checkpoints)")
    width = min(width, len(usable) // 2)  # fewer saved checkpoints than two full windows: narrower ones
    after = np.flatnonzero(x >= since)
    keep = after if len(after) else np.arange(len(x))
    peak = int(x[keep[np.nanargmax(y[keep])]])
    late = tuple(saved[-width:])
    candidates = [s for s in usable if s < late[0]]
    nearest = int(np.argmin([abs(s - peak) for s in candidates]))
    start = min(max(nearest - (width - 1) // 2, 0), len(candidates) - width)
    return peak, tuple(candidates[start:start + width]), late


def moment_steps(saved_steps: Sequence[int], formation: int | None, rise_start: float | None
                 ) -> dict[str, int]:
    """The checkpoints shown as "before", "during" and "after" the induction head forms, placed by the
    measured formation step: before, the last saved checkpoint at or before the rise starts (``rise_start``,
    where the best head's score has risen a tenth of the way); during, the first saved checkpoint at or after
    the formation step (never one before it); after, the last checkpoint. Without a formation step (no head
    formed): the first, middle and last saved checkpoints after step 0."""
    saved = sorted(int(s) for s in saved_steps)
    if formation is None or formation > saved[-1]:
        inner = [s for s in saved if s > 0] or saved
        return {"before": inner[0], "during": inner[len(inner) // 2], "after": saved[-1]}
    start = formation if rise_start is None else min(rise_start, formation)
    before = [s for s in saved if 0 < s <= start] or saved[:1]
    during = next(s for s in saved if s >= formation)
    return {"before": before[-1], "during": during, "after": saved[-1]}


def with_moments(sampled: Sequence[int], moments: dict[str, int]) -> list[int]:
    """``sampled`` steps with each moment's step put in place of the nearest sampled step that is not itself a
    moment (appended when none is left), sorted: the same number of checkpoints, the moments among them."""
    steps = [int(s) for s in sampled]
    fixed = {int(s) for s in moments.values()}
    for step in sorted(fixed):
        if step in steps:
            continue
        free = [i for i, s in enumerate(steps) if s not in fixed]
        if free:
            steps[min(free, key=lambda i: (abs(steps[i] - step), i))] = step
        else:
            steps.append(step)
    return sorted(set(steps))


@dataclass(frozen=True)
class DecisivePlan:
    """The budget of the decisive checkpoints, computed from a pilot.

    pilot_budget:         chains × draws a checkpoint in the pilot.
    planning_stderr:      the relative error of one checkpoint planned for: the largest relative error (s.e. /
                          value) among the pilot's checkpoints from the formation step on (every decisive
                          checkpoint assumed as noisy as the pilot's noisiest).
    width:                checkpoints per window.
    pilot_relative_stderr: s₀ = planning_stderr · √(2 / width), the decline's relative error at the pilot's
                          budget, and pilot_min_detectable the smallest decline it would detect.
    target:               the decline to detect in 80% of runs (0.3: 30%).
    needed:               the budget (chains × draws a checkpoint) at which the smallest detectable decline is
                          ``target`` (:func:`stagewise.curves.budget_for_decline`).
    chains, draws:        the budget sampled: at least the pilot's and the needed budget, at most ``cap``;
                          capped: whether the cap cut it.
    """

    pilot_budget: int
    planning_stderr: float
    width: int
    pilot_relative_stderr: float
    pilot_min_detectable: float
    target: float
    needed: float
    chains: int
    draws: int
    capped: bool

    @property
    def budget(self) -> int:
        return self.chains * self.draws

    def as_dict(self) -> dict:
        return {**asdict(self), "budget": self.budget}


def plan_decisive(pilot_values: Sequence[float], pilot_stderr: Sequence[float], pilot_steps: Sequence[int],
                  since: float, *, pilot_chains: int, pilot_draws: int, chains: int, width: int = 3,
                  target: float = 0.3, cap: int | None = None, z: float = 2.0) -> DecisivePlan:
    """The :class:`DecisivePlan` from a pilot's values and errors (sampled steps ≥ ``since`` count), for
    windows of ``width`` checkpoints sampled with ``chains`` chains each."""
    if not (isinstance(chains, int) and chains >= 2):
        raise ValueError(f"chains = {chains!r} (accepted: an integer ≥ 2)")
    if cap is not None and not (isinstance(cap, int) and cap >= 4 * chains):
        raise ValueError(f"cap = {cap!r} (accepted: None or an integer ≥ 4 · chains = {4 * chains})")
    x = np.asarray(pilot_steps, dtype=float)
    v, s = np.abs(np.asarray(pilot_values, dtype=float)), np.asarray(pilot_stderr, dtype=float)
    keep = (x >= since) & np.isfinite(s) & (v > 0)
    if not keep.any():
        raise ValueError(f"no pilot checkpoint with a finite error and a nonzero value from step {since:g} on")
    planning = float(np.max(s[keep] / v[keep]))
    relative = planning * math.sqrt(2 / width)
    pilot_budget = pilot_chains * pilot_draws
    needed = budget_for_decline(target, relative, pilot_budget, z) if relative > 0 else 0.0
    budget = max(needed, pilot_budget)
    capped = cap is not None and budget > cap
    budget = min(budget, cap) if cap is not None else budget
    draws = max(4, math.ceil(budget / chains))
    return DecisivePlan(pilot_budget=pilot_budget, planning_stderr=planning, width=width,
                        pilot_relative_stderr=relative,
                        pilot_min_detectable=min_detectable_decline(relative, z), target=float(target),
                        needed=float(needed), chains=chains, draws=draws, capped=bool(capped))


def top_up_chains(decline: Decline, chains: int, draws: int, *, target: float, cap: int | None = None,
                  margin: float = 1.2) -> int:
    """The chains of ``draws`` draws to add at the decisive checkpoints so that the smallest detectable decline
    reaches ``target``, from the errors those checkpoints measured with ``chains`` × ``draws`` (``decline``: their
    :class:`~stagewise.curves.Decline`); 0 when it is already reached or the budget is at ``cap``.

    The budget is :func:`stagewise.curves.budget_for_decline` of the measured relative error times ``margin`` (the
    measured error is itself an estimate), at most ``cap`` chains × draws a checkpoint in all. It depends on the
    errors only, not on the decline measured, so looking does not bias the test.
    """
    for name, value in (("chains", chains), ("draws", draws)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} = {value!r} (accepted: an integer ≥ 1)")
    if not margin >= 1:
        raise ValueError(f"margin = {margin!r} (accepted: a number ≥ 1)")
    if decline.min_detectable <= target or not math.isfinite(decline.relative_stderr):
        return 0
    budget = budget_for_decline(target, decline.relative_stderr, chains * draws, decline.z) * margin
    if cap is not None:
        budget = min(budget, cap)
    return max(0, math.ceil(budget / draws) - chains)
