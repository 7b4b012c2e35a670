"""How many seeds an intervention needs, and what a run of a given size could have seen.

Chapter 7 compares conditions seed by seed (paired runs: the same initialization and base batches), so its test
is the paired t-test on the per-seed differences d_s, s = 1 … n, with standard deviation σ. For a true mean
difference δ the statistic t = mean(d)·√n / sd(d) follows a noncentral t distribution with n − 1 degrees of
freedom and noncentrality δ·√n/σ, so the two-sided test at level α rejects with probability

    power(δ, σ, n) = P(T > t_{1−α/2}) + P(T < −t_{1−α/2}),   T ~ t'(n − 1, δ√n/σ).

:func:`paired_power` evaluates it; :func:`seeds_for_power` is the smallest n whose power reaches the goal (the
sample size of G*Power's "means: difference between two dependent means": δ/σ = 0.5 needs 34 pairs, 0.8 needs
15, at α = 0.05 and 80 % power); :func:`min_detectable_effect` inverts it for |δ| at a given n: the smallest
effect the run would have detected with that power, the number a negative verdict must state.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["min_detectable_effect", "paired_power", "seeds_for_power"]


def _check(sd: float, alpha: float, power: float | None = None) -> None:
    if not (isinstance(sd, (int, float, np.floating)) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd = {sd!r} (accepted: a finite standard deviation > 0 of the per-seed differences, "
                         "e.g. from a pilot)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha = {alpha!r} (accepted: a level in (0, 1), e.g. 0.05)")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"power = {power!r} (accepted: a probability in (alpha, 1), e.g. 0.8)")


def paired_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Probability that a two-sided paired t-test at level ``alpha`` over ``n`` seeds detects a true mean
    difference ``effect`` when the per-seed differences have standard deviation ``sd`` (same units)."""
    from scipy import stats

    _check(sd, alpha)
    if not (isinstance(n, (int, np.integer)) and n >= 2):
        raise ValueError(f"n = {n!r} (accepted: an integer ≥ 2, the number of paired seeds)")
    df, shift = n - 1, abs(float(effect)) * math.sqrt(n) / sd
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_for_power(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05,
                    max_seeds: int = 100_000) -> int:
    """The smallest number of paired seeds (≥ 2) at which :func:`paired_power` reaches ``power``.

    effect: the mean difference to detect (its sign does not matter); sd: the per-seed standard deviation of the
    differences (a pilot's). ValueError when even ``max_seeds`` would not do (an effect of 0, say).
    """
    _check(sd, alpha, power)
    if not (math.isfinite(effect) and effect != 0):
        raise ValueError(f"effect = {effect!r} (accepted: a finite nonzero difference to detect)")
    # the normal approximation n ≈ ((z_{1-α/2} + z_power)·σ/δ)² is a lower bound; step up from it
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    n = max(2, int((z * sd / abs(effect)) ** 2))
    while paired_power(effect, sd, n, alpha) < power:
        n += 1
        if n > max_seeds:
            raise ValueError(f"effect = {effect!r}, sd = {sd!r}: more than max_seeds = {max_seeds} seeds needed")
    return n


def min_detectable_effect(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest |mean difference| that ``n`` paired seeds with per-seed standard deviation ``sd`` detect with
    probability ``power`` (two-sided paired t-test at level ``alpha``); same units as ``sd``."""
    from scipy import optimize

    _check(sd, alpha, power)
    if not (isinstance(n, (int, np.integer)) and n >= 2):
        raise ValueError(f"n = {n!r} (accepted: an integer ≥ 2, the number of paired seeds)")
    high = sd
    while paired_power(high, sd, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, high, xtol=1e-9 * sd))
