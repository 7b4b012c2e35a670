"""When to up-weight, and how much: the window rules, the equal-extra-weight schedules and the effect statistics.

The windows are read off curves over training steps by the rules of :mod:`stagewise.curves`, with no hand-set
step: the toy model's is :func:`~stagewise.curves.peak_window` of the size of an item's influence on the other
items, which peaks at the transitions; the language model's is :func:`induction_window`, which applies
:func:`~stagewise.curves.rise_window` to the induction score and to the induction tokens' self-influence
−BIF(induction → induction) and takes the union of the two windows: the window opens at the first of the two
onsets and closes when both curves have risen.

Schedules give the extra weight of every update step, ``extra[t]`` for the update from step t to t + 1:
:func:`window_schedule` spreads a total evenly over a window (integers that sum to exactly the total, or
floats); :func:`equal_windows` gives a window and the window of the same length that ends where it begins, both cut to
the steps available before it when training has not been running that long, so that "inside" and "before" carry
the same extra data at the same rate.

:func:`condition_schedules` gives the three conditions' schedules at once; :func:`spread_steps` picks evenly
spaced checkpoints (where chapter 7 samples the BIF). :func:`paired_difference` summarizes per-seed differences
between two conditions: mean, standard error, Student-t and bootstrap confidence intervals.
"""

from __future__ import annotations

import math

import numpy as np

from ..curves import Window, rise_window

__all__ = ["condition_schedules", "equal_windows", "induction_window", "paired_difference", "spread_steps",
           "window_schedule"]


def induction_window(score_steps, score, influence_steps, influence, low: float = 0.1,
                     high: float = 0.9) -> Window:
    """The window in which the induction circuit forms: the union of two :func:`~stagewise.curves.rise_window` s.

    score: the best head's prefix-matching score at ``score_steps``; influence: the induction tokens'
    self-influence magnitude −BIF(induction → induction) (their loss' posterior variance) at ``influence_steps``.
    The window opens at the earlier of the two ``low`` crossings and closes at the later ``high`` crossing.
    """
    a = rise_window(score_steps, score, low, high)
    b = rise_window(influence_steps, influence, low, high)
    return Window(min(a.start, b.start), max(a.end, b.end))


def equal_windows(window: Window, earliest: int = 0) -> tuple[Window, Window]:
    """("inside", "before"): ``window`` and the window of the same length that ends where it starts, both cut to
    the length L = min(window.length, window.start − earliest) when "before" would otherwise start before
    ``earliest``. Equal lengths carry the same extra data at the same rate, so the two conditions differ only in
    when it arrives."""
    length = min(window.length, window.start - earliest)
    if length < 1:
        raise ValueError(f"window {window.as_dict()} starts at or before earliest = {earliest}: there is no "
                         "'before' to up-weight in")
    return Window(window.start, window.start + length), Window(window.start - length, window.start)


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
    "bootstrap_high" (percentile bootstrap of the mean), "n", "per_seed"}. NaN pairs are dropped (and counted); with
    fewer than two pairs left the error and the intervals are NaN.
    """
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"a and b: 1-d arrays of the same length (got {np.shape(a)} and {np.shape(b)})")
    kept = d[np.isfinite(d)]
    n = len(kept)
    out = {"n": n, "dropped": int(len(d) - n), "per_seed": d.tolist()}
    if n < 2:  # one pair has a mean but no spread: no error, no interval
        return {**out, "mean": float(kept.mean()) if n else float("nan"),
                **dict.fromkeys(("stderr", "ci_low", "ci_high", "bootstrap_low", "bootstrap_high"), float("nan"))}
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
