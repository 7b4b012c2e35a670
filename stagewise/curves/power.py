"""Verdicts with their power: statistics over windows of checkpoints declared before the values are read, their
standard errors, the smallest effect a run can detect, and the sampling budget that detects a given one.

A *window* is a set of checkpoints (steps [start, end]); its statistic is the mean of the curve over them
(:class:`WindowMean`), whose standard error comes from the checkpoints' Monte Carlo errors (independent chains at
each checkpoint, so they add in quadrature). Two kinds of verdict:

- **a change between two windows**, relative: :func:`change_between` (and :func:`decline_between` on a curve)
  compares a late window with an early one as 1 − late/early (:class:`Decline`; negative: a rise). Its standard
  error comes by the delta method. The power calculation assumes what holds for a posterior variance or
  covariance estimated from draws: each window's error is proportional to its level (the relative error
  ≈ √(2/ESS) for a variance), so the decline's error at a true decline d is (1 − d)·s₀, with s₀ = √(r_e² + r_l²)
  the error when the windows are equal (r the windows' relative errors). A decline is *detected* when it exceeds
  z·s₀, z standard errors of "no decline"; the *smallest detectable decline* is the one detected in 80% of runs
  (:func:`min_detectable_decline`), and likewise for a rise.
- **a level against zero**, absolute: :meth:`WindowMean.above` / :meth:`WindowMean.below` (a BIF that harms /
  helps beyond z standard errors), with the smallest detectable level (z + 0.84)·s.e.

Errors fall like 1/√(chains × draws) at a checkpoint, so a pilot's errors size the budget that a verdict needs
(:func:`budget_for_decline`, :func:`scaled_budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .points import check_curve

__all__ = ["DECLINE_VERDICTS", "DIFFERENCE_VERDICTS", "POWER", "POWER_Z", "Decline", "WindowMean", "budget_for_decline",
           "change_between", "decline_between", "decline_power", "decline_verdict", "difference_verdict",
           "min_detectable_decline", "min_detectable_rise", "scaled_budget", "window_mean"]

#: The power asked of a detection: a true effect at the smallest detectable size is detected in 80% of runs.
POWER = 0.8
#: Its one-sided normal quantile: a true effect of (z + POWER_Z) standard errors is detected by a z-s.e. test in
#: 80% of runs.
POWER_Z = NormalDist().inv_cdf(POWER)


def _check_z(z: float) -> float:
    if not (isinstance(z, (int, float)) and not isinstance(z, bool) and z > 0 and math.isfinite(z)):
        raise ValueError(f"z = {z!r} (accepted: a positive number of standard errors, e.g. 2)")
    return float(z)


def _check_stderr(relative_stderr: float, name: str = "relative_stderr") -> float:
    if not (isinstance(relative_stderr, (int, float, np.floating)) and relative_stderr >= 0
            and math.isfinite(relative_stderr)):
        raise ValueError(f"{name} = {relative_stderr!r} (accepted: a finite number ≥ 0)")
    return float(relative_stderr)


# --------------------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class WindowMean:
    """The mean of a curve over the checkpoints of a window, with its standard error.

    window: (start, end) steps, both included; steps: the checkpoints inside; mean, stderr: the mean value and
    its s.e. √(Σ s_k²)/m over the m checkpoints (independent errors).
    """

    window: tuple[float, float]
    steps: tuple[float, ...]
    mean: float
    stderr: float

    @property
    def relative_stderr(self) -> float:
        """stderr / |mean| (infinite for a mean of 0)."""
        return self.stderr / abs(self.mean) if self.mean != 0 else math.inf

    def above(self, z: float = 2.0) -> bool:
        """Whether the mean is above 0 by more than z standard errors."""
        return bool(self.mean > _check_z(z) * self.stderr)

    def below(self, z: float = 2.0) -> bool:
        """Whether the mean is below 0 by more than z standard errors."""
        return bool(self.mean < -_check_z(z) * self.stderr)

    def min_detectable(self, z: float = 2.0) -> float:
        """The smallest |level| (either sign) that a z-s.e. test detects in 80% of runs: (z + 0.84)·stderr."""
        return float((_check_z(z) + POWER_Z) * self.stderr)

    def as_dict(self) -> dict:
        return {"window": list(self.window), "steps": list(self.steps), "mean": self.mean, "stderr": self.stderr}


def window_mean(steps, values, stderr, window: tuple[float, float], name: str = "window") -> WindowMean:
    """:class:`WindowMean` of ``values`` (K,) over the checkpoints at steps in [start, end]; ``stderr`` (K,) their
    Monte Carlo errors. Raises ValueError naming ``name`` when no checkpoint lies in the window."""
    if stderr is None:
        raise ValueError("stderr: needed (one per checkpoint) to say how large an effect this run can see")
    x, y, s = check_curve(steps, values, stderr=stderr, minimum=1)
    start, end = (float(window[0]), float(window[1]))
    inside = np.flatnonzero((x >= start) & (x <= end))
    if not len(inside):
        raise ValueError(f"{name} = ({start:g}, {end:g}): no checkpoint in it (steps {x[0]:g} … {x[-1]:g})")
    steps_in = tuple(int(v) if float(v).is_integer() else float(v) for v in x[inside])
    return WindowMean((start, end), steps_in, float(y[inside].mean()),
                      float(np.sqrt((s[inside] ** 2).sum()) / len(inside)))


# --------------------------------------------------------------------------------------------------------
# The smallest detectable change, and its power


def decline_power(decline: float, relative_stderr: float, z: float = 2.0) -> float:
    """The probability that a run whose windows give s₀ = ``relative_stderr`` detects a true ``decline`` (a
    fraction, < 1) at z standard errors.

    The test of "no decline" uses its error under no decline: it declares a decline when d̂ > z·s₀ (false alarms
    Φ(−z), 2.3% at z = 2). d̂ is about normal around d with s.d. (1 − d)·s₀ (errors proportional to the level),
    so the power is Φ((d − z·s₀)/((1 − d)·s₀)).
    """
    z, s = _check_z(z), _check_stderr(relative_stderr)
    if not decline < 1:
        raise ValueError(f"decline = {decline!r} (accepted: a fraction below 1)")
    if s == 0:
        return 1.0 if decline > 0 else 0.0
    return float(NormalDist().cdf((decline - z * s) / ((1 - decline) * s)))


def min_detectable_decline(relative_stderr: float, z: float = 2.0) -> float:
    """The true decline detected in 80% of runs (:func:`decline_power` = 0.8): (z + 0.84)·s₀/(1 + 0.84·s₀),
    a little below (z + 0.84)·s₀ since the error shrinks with the late window's level."""
    z, s = _check_z(z), _check_stderr(relative_stderr)
    return float((z + POWER_Z) * s / (1 + POWER_Z * s))


def min_detectable_rise(relative_stderr: float, z: float = 2.0) -> float:
    """The true relative rise (late/early − 1) detected in 80% of runs by the test û > z·s₀, where û has s.d.
    (1 + u)·s₀: (z + 0.84)·s₀/(1 − 0.84·s₀); infinite when 0.84·s₀ ≥ 1 (no rise is then reliably seen)."""
    z, s = _check_z(z), _check_stderr(relative_stderr)
    if POWER_Z * s >= 1:
        return math.inf
    return float((z + POWER_Z) * s / (1 - POWER_Z * s))


# --------------------------------------------------------------------------------------------------------
# A change between two windows


@dataclass(frozen=True)
class Decline:
    """A change between two declared windows of a curve, as a statistic with its error and its power.

    early, late:          the mean value over the checkpoints of each window (steps [start, end]), and their s.e.
    decline:              1 − late / early (0.3: the late window is 30% below the early one; negative: a rise).
    stderr:               its standard error by the delta method, √(s_l² + (late/early)²·s_e²)/|early|
                          = (1 − decline)·relative_stderr.
    relative_stderr:      s₀ = √(r_e² + r_l²) from the windows' relative errors r = s.e./|mean|: the decline's
                          standard error when the two windows are equal (a property of the sampling, not of the
                          effect).
    detected:             decline > z · relative_stderr: beyond z standard errors of "no decline" (one-sided:
                          only a fall counts; false alarms Φ(−z)).
    min_detectable:       the smallest true decline detected in 80% of runs (:func:`min_detectable_decline`); a
                          run with min_detectable above an effect could not reliably have seen it.
    rise_detected, min_detectable_rise: the same for a rise (−decline > z · relative_stderr;
                          :func:`min_detectable_rise`).
    """

    early_steps: tuple[float, float]
    late_steps: tuple[float, float]
    early: float
    early_stderr: float
    late: float
    late_stderr: float
    decline: float
    stderr: float
    relative_stderr: float
    z: float
    detected: bool
    min_detectable: float
    rise_detected: bool
    min_detectable_rise: float

    @property
    def upper(self) -> float:
        """The largest decline the data leave possible: decline + z·stderr."""
        return self.decline + self.z * self.stderr

    def verdict(self, target: float) -> str:
        """What the run says about a decline of ``target`` or more (:func:`decline_verdict`)."""
        return decline_verdict(self.decline, self.stderr, target, self.z)

    def power(self, decline: float) -> float:
        """The probability that a run with these errors detects a true ``decline`` (:func:`decline_power`)."""
        return decline_power(decline, self.relative_stderr, self.z)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def change_between(early: WindowMean, late: WindowMean, z: float = 2.0) -> Decline:
    """The :class:`Decline` from window ``early`` to window ``late`` (two :class:`WindowMean`, possibly from
    different sampling runs: their errors are independent)."""
    z = _check_z(z)
    if early.mean == 0:
        raise ValueError("the early window's mean is 0: a relative decline is undefined")
    ratio = late.mean / early.mean
    relative = math.hypot(early.relative_stderr, late.relative_stderr) if late.mean != 0 else \
        late.stderr / abs(early.mean)
    se = float(math.sqrt(late.stderr ** 2 + ratio ** 2 * early.stderr ** 2) / abs(early.mean))
    decline = float(1 - ratio)
    return Decline(early_steps=early.window, late_steps=late.window, early=early.mean,
                   early_stderr=early.stderr, late=late.mean, late_stderr=late.stderr, decline=decline, stderr=se,
                   relative_stderr=float(relative), z=z, detected=bool(decline > z * relative),
                   min_detectable=min_detectable_decline(relative, z), rise_detected=bool(-decline > z * relative),
                   min_detectable_rise=min_detectable_rise(relative, z))


#: The verdicts :func:`decline_verdict` returns, strongest evidence first.
DECLINE_VERDICTS = ("declines", "rises", "excluded", "not detected", "inconclusive")


def decline_verdict(decline: float, stderr: float, target: float, z: float = 2.0) -> str:
    """The verdict on a declared decline d̂ (1 − late/early) with its delta-method standard error ``stderr``, for
    a claimed decline of ``target`` (a fraction in (0, 1)); one rule for the chapter and the scorecard:

    - ``"declines"``: d̂ > z·s₀, beyond z standard errors of "no decline" (s₀ = stderr/(1 − d̂), the error the
      windows would have were they equal: :class:`Decline`);
    - ``"rises"``: −d̂ > z·s₀, the late window is higher;
    - ``"excluded"``: neither, and d̂ + z·stderr < target: a decline of ``target`` lies outside the data's
      z standard errors;
    - ``"not detected"``: neither, the run would see ``target`` in 80% of runs (its smallest detectable decline
      is at most ``target``), yet the estimate leaves ``target`` possible: the run has the power, the data
      neither show nor exclude the decline;
    - ``"inconclusive"``: the run could not reliably see a decline of ``target``.
    """
    z = _check_z(z)
    if not (0 < target < 1):
        raise ValueError(f"target = {target!r} (accepted: a fraction in (0, 1), e.g. 0.3 for a 30% decline)")
    if not decline < 1:
        raise ValueError(f"decline = {decline!r} (accepted: a fraction below 1)")
    relative = _check_stderr(stderr, "stderr") / (1 - decline)
    if decline > z * relative:
        return "declines"
    if -decline > z * relative:
        return "rises"
    if decline + z * stderr < target:
        return "excluded"
    if min_detectable_decline(relative, z) <= target:
        return "not detected"
    return "inconclusive"


#: The verdicts :func:`difference_verdict` returns, strongest evidence first.
DIFFERENCE_VERDICTS = ("shown", "opposite", "excluded", "inconclusive", "not detected")


def difference_verdict(low: float, high: float, detectable: float | None = None,
                       target: float | None = None) -> str:
    """The verdict on a difference that a claim says is negative (chapter 7: inside minus before, in steps), from
    its confidence interval [``low``, ``high``], the smallest difference the design detects with 80% power
    (``detectable``; None or NaN: not known) and the advantage it was sized for (``target`` > 0, or None); one
    rule for the chapter and the scorecard:

    - ``"shown"``: high < 0, the interval excludes zero on the claim's side;
    - ``"opposite"``: low > 0, it excludes zero on the other side;
    - ``"excluded"``: it contains zero and low > −target: an advantage of ``target`` is ruled out;
    - ``"inconclusive"``: it allows an advantage of ``target``, which the design could not reliably see
      (``detectable`` > ``target``);
    - ``"not detected"``: otherwise (the design could see ``target`` but the interval neither shows nor rules it
      out, or no target is given).
    """
    if high < 0:
        return "shown"
    if low > 0:
        return "opposite"
    if target is None:
        return "not detected"
    if low > -target:
        return "excluded"
    if detectable is not None and math.isfinite(detectable) and detectable > target:
        return "inconclusive"
    return "not detected"


def decline_between(steps, values, stderr, early: tuple[float, float], late: tuple[float, float],
                    z: float = 2.0) -> Decline:
    """How far ``values`` fall from the ``early`` window of steps [start, end] to the ``late`` one (both
    declared before the values are read, so no peak is picked from the noise): the means over each window's
    checkpoints, 1 − late/early with its delta-method standard error, whether it exceeds ``z`` of them, and
    the smallest decline the run could detect (:class:`Decline`). ``stderr``: the values' standard errors."""
    return change_between(window_mean(steps, values, stderr, early, "early"),
                          window_mean(steps, values, stderr, late, "late"), z)


# --------------------------------------------------------------------------------------------------------
# Budgets


def scaled_budget(budget: float, stderr: float, target: float) -> float:
    """The budget (chains × draws) at which an error of ``stderr`` at ``budget`` falls to ``target``: errors fall
    like 1/√budget, so budget·(stderr/target)²."""
    for name, value in (("budget", budget), ("stderr", stderr), ("target", target)):
        if not (isinstance(value, (int, float, np.floating, np.integer)) and value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} = {value!r} (accepted: a positive number)")
    return float(budget * (stderr / target) ** 2)


def budget_for_decline(target: float, relative_stderr: float, budget: float, z: float = 2.0) -> float:
    """The budget at which the smallest detectable decline is ``target`` (a fraction in (0, 1)), from a run
    (a pilot) whose windows gave s₀ = ``relative_stderr`` at ``budget`` chains × draws a checkpoint.

    Inverts :func:`min_detectable_decline` (increasing in s₀) for the s₀ that gives ``target``, then scales the
    budget by :func:`scaled_budget`.
    """
    z = _check_z(z)
    if not (isinstance(target, (int, float)) and 0 < target < 1):
        raise ValueError(f"target = {target!r} (accepted: a decline strictly between 0 and 1, e.g. 0.3)")
    low, high = 0.0, 1.0
    while min_detectable_decline(high, z) < target:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if min_detectable_decline(middle, z) < target else (low, middle)
    return scaled_budget(budget, _check_stderr(relative_stderr), (low + high) / 2)
