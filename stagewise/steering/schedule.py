"""When to up-weight, and how much: the window rules, the equal-extra-weight schedules and the effect statistics.

Two window rules, each a function of a curve over training steps, with no hand-set step:

- :func:`peak_window`: the contiguous steps around a curve's maximum where it stays at or above ``fraction`` of
  the way from its floor to its peak (the full width at half maximum for ``fraction`` = ½). The toy model's rule:
  the curve is the size of an item's influence on the other items, which peaks at the transitions.
- :func:`rise_window`: the steps over which a rising curve goes from ``low`` to ``high`` of the way from its
  plateau to its maximum (10 % → 90 % by default). :func:`induction_window` applies it to the induction score and
  to the induction tokens' self-influence −BIF(induction → induction) and takes the union of the two windows: the
  window opens at the first of the two onsets and closes when both curves have risen.

Schedules give the extra weight of every update step, ``extra[t]`` for the update from step t to t + 1:
:func:`window_schedule` spreads a total evenly over a window (integers that sum to exactly the total, or
floats); :func:`before_window` is the window of the same length that ends where a window begins (shorter when
training has not been running that long; the schedule then puts the same total in fewer steps).

:func:`condition_schedules` gives the three conditions' schedules at once; :func:`spread_steps` picks evenly
spaced checkpoints (where chapter 7 samples the BIF). :func:`paired_difference` summarizes per-seed differences
between two conditions: mean, standard error, Student-t and bootstrap confidence intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "before_window", "condition_schedules", "induction_window", "paired_difference", "peak_window",
           "rise_window", "spread_steps", "window_schedule"]


@dataclass(frozen=True)
class Window:
    """Steps [start, end) of training (start < end, both ≥ 0), in optimizer steps."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.end, int) and 0 <= self.start < self.end):
            raise ValueError(f"window ({self.start!r}, {self.end!r}) (accepted: integers 0 ≤ start < end)")

    @property
    def length(self) -> int:
        return self.end - self.start

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end}


def _curve(steps, values) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3:
        raise ValueError(f"steps and values: 1-d arrays of the same length ≥ 3 (got {x.shape} and {y.shape})")
    if np.any(np.diff(x) <= 0) or not np.isfinite(y).all():
        raise ValueError("steps must increase strictly and values must be finite")
    return x, y


def _crossing(x: np.ndarray, y: np.ndarray, k: int, level: float) -> float:
    """Where the segment from point k to k + 1 reaches ``level`` (linear interpolation)."""
    if y[k + 1] == y[k]:
        return float(x[k])
    return float(x[k] + (level - y[k]) / (y[k + 1] - y[k]) * (x[k + 1] - x[k]))


def peak_window(steps, values, fraction: float = 0.5) -> Window:
    """The window around the maximum of ``values`` (K,) where they are ≥ floor + fraction·(peak − floor).

    The floor is the smaller of the curve's minima before and after its peak (for a bump on a flat baseline: the
    baseline). Edges are interpolated linearly between checkpoints, then widened to whole steps.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction = {fraction!r} (accepted: a number in (0, 1))")
    x, y = _curve(steps, values)
    k = int(np.argmax(y))
    floor = min(y[: k + 1].min(), y[k:].min())
    if not y[k] > floor:
        raise ValueError("values: the curve is flat, it has no peak")
    level = floor + fraction * (y[k] - floor)
    below_left = np.flatnonzero(y[:k] < level)
    start = _crossing(x, y, int(below_left[-1]), level) if len(below_left) else x[0]
    below_right = np.flatnonzero(y[k:] < level)
    end = _crossing(x, y, k + int(below_right[0]) - 1, level) if len(below_right) else x[-1]
    return Window(int(math.floor(start)), max(int(math.ceil(end)), int(math.floor(start)) + 1))


def rise_window(steps, values, low: float = 0.1, high: float = 0.9) -> Window:
    """The steps over which ``values`` (K,) first rise from ``low`` to ``high`` of the way from plateau to maximum.

    The plateau is the minimum of the curve before its maximum. Both crossings are the first after the plateau's
    lowest point, interpolated linearly between checkpoints.
    """
    if not 0 < low < high < 1:
        raise ValueError(f"low = {low!r}, high = {high!r} (accepted: 0 < low < high < 1)")
    x, y = _curve(steps, values)
    top = int(np.argmax(y))
    bottom = int(np.argmin(y[: top + 1]))
    if not y[top] > y[bottom]:
        raise ValueError("values: the curve never rises")
    edges = []
    for fraction in (low, high):
        level = y[bottom] + fraction * (y[top] - y[bottom])
        k = bottom + int(np.argmax(y[bottom:] >= level))  # first point at or above the level
        edges.append(float(x[k]) if k == bottom else _crossing(x, y, k - 1, level))
    start = int(math.floor(edges[0]))
    return Window(start, max(int(math.ceil(edges[1])), start + 1))


def induction_window(score_steps, score, influence_steps, influence, low: float = 0.1,
                     high: float = 0.9) -> Window:
    """The window in which the induction circuit forms: the union of two :func:`rise_window` s.

    score: the best head's prefix-matching score at ``score_steps``; influence: the induction tokens'
    self-influence magnitude −BIF(induction → induction) (their loss' posterior variance) at ``influence_steps``.
    The window opens at the earlier of the two ``low`` crossings and closes at the later ``high`` crossing.
    """
    a = rise_window(score_steps, score, low, high)
    b = rise_window(influence_steps, influence, low, high)
    return Window(min(a.start, b.start), max(a.end, b.end))


def before_window(window: Window, earliest: int = 0) -> Window:
    """The window of the same length that ends where ``window`` starts, clipped to start at ``earliest`` or later."""
    start = max(earliest, window.start - window.length)
    if start >= window.start:
        raise ValueError(f"window {window.as_dict()} starts at or before earliest = {earliest}: there is no "
                         "'before' to up-weight in")
    return Window(start, window.start)


def window_schedule(steps: int, window: Window, total: float, integer: bool = True) -> np.ndarray:
    """Extra weight of every update step, (steps,): ``total`` spread evenly over ``window``, zero elsewhere.

    integer=True: whole extra sequences per step (their sum is exactly ``total``, which must be an integer);
    integer=False: the same rate total / window.length at every step of the window.
    """
    if not (isinstance(steps, int) and steps >= 1 and window.end <= steps):
        raise ValueError(f"steps = {steps!r}, window {window.as_dict()} (accepted: the window inside 0 … steps)")
    if not (math.isfinite(total) and total >= 0) or (integer and total != int(total)):
        raise ValueError(f"total = {total!r} (accepted: a finite number ≥ 0, an integer when integer=True)")
    out = np.zeros(steps, dtype=np.int64 if integer else np.float64)
    if integer:
        edges = np.round(np.linspace(0, int(total), window.length + 1)).astype(np.int64)
        out[window.start:window.end] = np.diff(edges)
    else:
        out[window.start:window.end] = total / window.length
    return out


def paired_difference(a, b, confidence: float = 0.95, resamples: int = 10000, seed: int = 0) -> dict:
    """Mean of a − b over paired seeds (a, b: (n,)) with its standard error and two confidence intervals.

    Returns {"mean", "stderr", "ci_low", "ci_high" (Student t, n − 1 degrees of freedom), "bootstrap_low",
    "bootstrap_high" (percentile bootstrap of the mean), "n", "per_seed"}. NaN pairs are dropped (and counted).
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"a and b: 1-d arrays of the same length (got {np.shape(a)} and {np.shape(b)})")
    kept = d[np.isfinite(d)]
    n = len(kept)
    out = {"n": n, "dropped": int(len(d) - n), "per_seed": d.tolist()}
    if n < 2:
        return {**out, **dict.fromkeys(("mean", "stderr", "ci_low", "ci_high", "bootstrap_low", "bootstrap_high"),
                                       float(kept.mean()) if n else float("nan"))}
    mean, stderr = float(kept.mean()), float(kept.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * stderr
    rng = np.random.default_rng(seed)
    means = kept[rng.integers(0, n, (resamples, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    return {**out, "mean": mean, "stderr": stderr, "ci_low": mean - half, "ci_high": mean + half,
            "bootstrap_low": float(np.quantile(means, tail)), "bootstrap_high": float(np.quantile(means, 1 - tail))}


def condition_schedules(steps: int, window: Window, before: Window, total: int) -> dict[str, np.ndarray]:
    """The three conditions' extra sequences per update step, {condition: (steps,) int64}, in the order of
    :data:`~stagewise.steering.CONDITIONS`: "none" (zeros), "inside" (``total`` spread over ``window``) and
    "before" (the same ``total`` over ``before``). Both schedules carry exactly ``total`` extra sequences."""
    schedules = {"none": np.zeros(steps, dtype=np.int64),
                 "inside": window_schedule(steps, window, total),
                 "before": window_schedule(steps, before, total)}
    assert schedules["inside"].sum() == schedules["before"].sum() == total
    return schedules


def spread_steps(steps, count: int) -> list[int]:
    """``count`` of ``steps`` (ascending) spread evenly over them, the first and the last included, as ints.

    The k-th of ``count`` is steps[round(k·(n − 1)/(count − 1))] (rounding half to even); a step is never taken
    twice, so fewer come back when ``count`` exceeds len(steps).
    """
    steps = [int(s) for s in steps]
    if not (isinstance(count, int) and count >= 1) or not steps:
        raise ValueError(f"count = {count!r}, {len(steps)} steps (accepted: an integer ≥ 1 and at least one step)")
    picked = np.unique(np.round(np.linspace(0, len(steps) - 1, count))).astype(int)
    return [steps[i] for i in picked]
