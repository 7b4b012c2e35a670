"""stagewise.curves.power on known answers: a declared decline (or rise) between windows, its standard error,
its power and the budget that detects a given decline, checked on simulated curves and on simulated chains."""

import math

import numpy as np
import pytest
import torch

from stagewise.curves import (POWER_Z, WindowMean, budget_for_decline, change_between, decline_between,
                              decline_power, decline_verdict, difference_verdict, min_detectable_decline, min_detectable_rise, scaled_budget,
                              window_mean)
from stagewise.influence import bif, bif_stderr

STEPS = np.arange(0, 1000, 100.0)
EARLY, LATE = (0, 400), (500, 900)


def noisy_runs(truth, relative, runs, rng):
    """Curves drawn around ``truth`` with errors proportional to the level, each stated as that fraction of the
    estimate itself (as for a variance estimated from draws, whose error is estimated from the same draws)."""
    sigma = relative * truth
    out = []
    for _ in range(runs):
        y = truth + rng.normal(0, sigma)
        out.append((y, relative * np.abs(y)))
    return out


# ---- a known curve ----------------------------------------------------------------------------------------

def test_decline_between_declared_windows_on_a_known_curve():
    steps = np.arange(0, 1200, 100.0)
    values = np.where(steps < 600, 10.0, 7.0)  # a 30% fall between the halves
    stderr = np.full_like(values, 0.5)
    out = decline_between(steps, values, stderr, early=(0, 500), late=(600, 1100))
    assert out.early == 10.0 and out.late == 7.0 and out.decline == pytest.approx(0.3)
    se_a = se_b = 0.5 / np.sqrt(6)  # six checkpoints a window, independent errors
    assert out.early_stderr == pytest.approx(se_a) and out.late_stderr == pytest.approx(se_b)
    assert out.stderr == pytest.approx(np.sqrt(se_b**2 + 0.7**2 * se_a**2) / 10)
    s0 = math.hypot(se_a / 10, se_b / 7)  # the windows' relative errors
    assert out.relative_stderr == pytest.approx(s0)
    assert out.stderr == pytest.approx(0.7 * s0)  # (1 − decline)·s₀
    assert out.min_detectable == pytest.approx((2 + POWER_Z) * s0 / (1 + POWER_Z * s0))
    assert out.upper == pytest.approx(0.3 + 2 * out.stderr)
    assert out.detected and not out.rise_detected  # 0.3 is many standard errors here
    rising = decline_between(steps, values[::-1], stderr, early=(0, 500), late=(600, 1100))
    assert rising.decline == pytest.approx(1 - 10 / 7) and rising.rise_detected and not rising.detected
    with pytest.raises(ValueError, match="stderr: needed"):
        decline_between(steps, values, None, early=(0, 500), late=(600, 1100))
    with pytest.raises(ValueError, match="late = \\(2000, 3000\\): no checkpoint"):
        decline_between(steps, values, stderr, early=(0, 500), late=(2000, 3000))
    with pytest.raises(ValueError, match="z = -1"):
        decline_between(steps, values, stderr, early=(0, 500), late=(600, 1100), z=-1)


def test_window_mean_and_its_level_tests():
    w = window_mean(STEPS, np.arange(10.0), np.full(10, 2.0), (250, 550), "peak window")
    assert w.steps == (300, 400, 500) and w.mean == 4.0 and w.stderr == pytest.approx(2 / np.sqrt(3))
    assert w.relative_stderr == pytest.approx(w.stderr / 4)
    assert w.above() and not w.below() and not w.above(z=4)
    assert w.min_detectable() == pytest.approx((2 + POWER_Z) * w.stderr)
    assert w.as_dict()["steps"] == [300, 400, 500]
    with pytest.raises(ValueError, match="peak window = \\(1200, 1300\\)"):
        window_mean(STEPS, np.arange(10.0), np.full(10, 2.0), (1200, 1300), "peak window")
    # two windows from separate sampling runs combine like two windows of one curve
    a, b = WindowMean((0, 1), (0,), 10.0, 1.0), WindowMean((5, 6), (5,), 7.0, 0.5)
    out = change_between(a, b)
    assert out.decline == pytest.approx(0.3) and out.stderr == pytest.approx(math.hypot(0.5, 0.7 * 1.0) / 10)


def test_min_detectable_known_values():
    assert min_detectable_decline(0.0) == 0.0
    # small errors: about (z + 0.84)·s₀; larger ones: below it, since the error shrinks with the level
    assert min_detectable_decline(1e-4) == pytest.approx((2 + POWER_Z) * 1e-4, rel=1e-3)
    assert min_detectable_decline(0.1) == pytest.approx(0.2841621 / 1.0841621, abs=1e-6)
    assert decline_power(min_detectable_decline(0.1), 0.1) == pytest.approx(0.8)
    assert decline_power(0.0, 0.1) == pytest.approx(0.0227501, abs=1e-6)  # false alarms Φ(−2)
    assert min_detectable_rise(0.1) == pytest.approx(0.2841621 / (1 - 0.0841621), abs=1e-6)
    assert math.isinf(min_detectable_rise(1.5))
    with pytest.raises(ValueError, match="relative_stderr = -0.1"):
        min_detectable_decline(-0.1)
    with pytest.raises(ValueError, match="decline = 1.5"):
        decline_power(1.5, 0.1)


# ---- simulated curves -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_decline_power_coverage_and_false_alarms_on_simulated_curves():
    """5,000 noisy curves around known ones (errors proportional to the level): at the stated smallest
    detectable decline the test detects in about 80% of runs, the interval decline ± 2 s.e. holds the truth in
    about 95%, the stated s.e. is the estimates' spread, and flat curves give at most about 2.3% false declines."""
    rng = np.random.default_rng(0)
    relative = 0.15  # each checkpoint's relative error; five checkpoints a window
    flat = np.full(10, 5.0)
    reference = decline_between(STEPS, flat, relative * flat, early=EARLY, late=LATE)
    d = reference.min_detectable
    assert reference.relative_stderr == pytest.approx(relative * math.sqrt(2 / 5))
    truth = np.where(STEPS < 500, 5.0, 5.0 * (1 - d))
    runs = [decline_between(STEPS, y, s, early=EARLY, late=LATE) for y, s in noisy_runs(truth, relative, 5000, rng)]
    estimates = np.array([r.decline for r in runs])
    assert estimates.mean() == pytest.approx(d, abs=0.01)
    assert estimates.std() == pytest.approx(np.median([r.stderr for r in runs]), rel=0.06)
    power = np.mean([r.detected for r in runs])
    assert 0.77 <= power <= 0.83, power
    covered = np.mean([abs(r.decline - d) <= 2 * r.stderr for r in runs])
    assert 0.93 <= covered <= 0.97, covered
    assert np.std([r.min_detectable for r in runs]) < 0.06 * d  # the power: a property of the sampling
    null = [decline_between(STEPS, y, s, early=EARLY, late=LATE).detected
            for y, s in noisy_runs(flat, relative, 5000, rng)]
    # a one-sided 2-s.e. test: at most about Φ(−2) = 2.3% false declines (here 1.4%, exactly: P(L < (1 − 2s₀)E)
    # for the two windows' normal means; the ratio's skew makes the test a little conservative)
    assert 0.008 <= np.mean(null) <= 0.03


@pytest.mark.slow
def test_rise_power_on_simulated_curves():
    rng = np.random.default_rng(1)
    relative = 0.15
    flat = np.full(10, 2.0)
    u = decline_between(STEPS, flat, relative * flat, early=EARLY, late=LATE).min_detectable_rise
    truth = np.where(STEPS < 500, 2.0, 2.0 * (1 + u))
    runs = [decline_between(STEPS, y, s, early=EARLY, late=LATE) for y, s in noisy_runs(truth, relative, 4000, rng)]
    assert 0.77 <= np.mean([r.rise_detected for r in runs]) <= 0.83


@pytest.mark.slow
def test_level_detected_at_its_min_detectable_in_80_percent_of_runs():
    rng = np.random.default_rng(2)
    sigma = np.full(10, 0.3)
    level = window_mean(STEPS, np.zeros(10), sigma, LATE).min_detectable()
    hits = [window_mean(STEPS, level + rng.normal(0, sigma), sigma, LATE).above() for _ in range(4000)]
    assert 0.77 <= np.mean(hits) <= 0.83
    null = [window_mean(STEPS, rng.normal(0, sigma), sigma, LATE).above() for _ in range(4000)]
    assert 0.012 <= np.mean(null) <= 0.035


# ---- budgets from a pilot ---------------------------------------------------------------------------------

def test_scaled_budget_and_budget_for_decline_known_answers():
    assert scaled_budget(600, 0.2, 0.1) == pytest.approx(2400)  # half the error: four times the draws
    assert scaled_budget(600, 0.1, 0.2) == pytest.approx(150)
    n = budget_for_decline(0.3, 0.1, 600)
    assert min_detectable_decline(0.1 * math.sqrt(600 / n)) == pytest.approx(0.3, abs=1e-9)
    assert budget_for_decline(0.3, 0.2, 600) == pytest.approx(4 * n)
    with pytest.raises(ValueError, match="target = 1.2"):
        budget_for_decline(1.2, 0.1, 600)
    with pytest.raises(ValueError, match="budget = 0"):
        scaled_budget(0, 0.1, 0.1)


def ar1_chains(variance, phi, chains, draws, generator):
    """(chains, draws, 1) stationary AR(1) draws of a loss with the given variance and lag-1 correlation."""
    x = torch.empty(chains, draws, 1, dtype=torch.float64)
    x[:, 0] = torch.randn(chains, 1, generator=generator, dtype=torch.float64)
    noise = torch.randn(chains, draws, 1, generator=generator, dtype=torch.float64) * math.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x * math.sqrt(variance)


def simulated_self_influence(variances, phi, chains, draws, generator):
    """−BIF(g → g) (the variance of a class-mean loss) at each checkpoint, with its ESS-based s.e."""
    values, errors = [], []
    for v in variances:
        x = ar1_chains(v, phi, chains, draws, generator)
        values.append(-float(bif(x)[0, 0]))
        errors.append(float(bif_stderr(x)[0, 0]))
    return np.array(values), np.array(errors)


@pytest.mark.slow
def test_pilot_sizes_the_budget_that_detects_a_30_percent_decline():
    """Chains of autocorrelated draws (AR(1), φ = 0.6) of a class-mean loss whose variance falls by 30% from an
    early to a late window of three checkpoints. The pilot's estimates spread as the analytic relative error
    √(2(1 + φ²)/((1 − φ²)·N)) says, and its ESS-based errors state that spread; the budget computed from one
    pilot gives a smallest detectable decline of about 0.3, and at that budget a true 30% decline is detected in
    about 80% of runs."""
    generator = torch.Generator().manual_seed(0)
    phi, chains, pilot_draws = 0.6, 4, 40
    steps = np.arange(6) * 500.0
    early, late = (0, 1000), (1500, 2500)
    truth = np.array([1.0, 1.0, 1.0, 0.7, 0.7, 0.7]) * 4e-3
    pilot = [simulated_self_influence(truth, phi, chains, pilot_draws, generator) for _ in range(200)]
    analytic = math.sqrt(2 * (1 + phi**2) / ((1 - phi**2) * chains * pilot_draws))
    spread = np.array([v for v, _ in pilot]).std(0) / truth  # the estimates' actual relative spread
    assert spread.mean() == pytest.approx(analytic, rel=0.1)
    stated = np.array([e / v for v, e in pilot]).mean(0)  # the ESS-based relative errors (short chains: a bit low)
    assert stated.mean() == pytest.approx(spread.mean(), rel=0.15)

    one = decline_between(steps, *pilot[0], early=early, late=late)
    assert one.min_detectable > 0.3  # the pilot alone could not reliably see a 30% decline
    budget = budget_for_decline(0.3, one.relative_stderr, chains * pilot_draws)
    draws = math.ceil(budget / chains)
    assert draws > pilot_draws
    runs = [decline_between(steps, *simulated_self_influence(truth, phi, chains, draws, generator),
                            early=early, late=late) for _ in range(600)]
    assert np.median([r.min_detectable for r in runs]) == pytest.approx(0.3, abs=0.04)
    power = np.mean([r.detected for r in runs])
    assert 0.72 <= power <= 0.92, power  # 80% up to the pilot's own error and 600 runs' binomial spread


@pytest.mark.parametrize(("decline", "stderr", "expected"), [
    (0.45, 0.10, "declines"),  # 0.45 > 2 x 0.10 / 0.55 = 0.364
    (0.20, 0.09, "not detected"),  # 0.20 < 2 x 0.09 / 0.8 = 0.225; upper 0.38; s0 = 0.1125 sees 29% <= 30%
    (0.16, 0.07, "not detected"),  # 0.16 < 2 x 0.0833; upper 0.30 is not below 0.3; the run sees 22%
    (0.05, 0.10, "excluded"),  # upper 0.25 < 0.3
    (-0.30, 0.10, "rises"),  # 0.30 > 2 x 0.10 / 1.30
    (0.05, 0.20, "inconclusive"),  # s0 = 0.21 sees only 0.55: a 30% decline was out of reach
])
def test_decline_verdict_known_cases(decline, stderr, expected):
    assert decline_verdict(decline, stderr, 0.3) == expected


def test_decline_verdict_reads_a_decline_as_change_between_does():
    # d = 0.3, stderr = hypot(0.5, 0.7)/10: s0 = stderr / 0.7 and "detected" iff d > 2 s0
    out = change_between(WindowMean((0, 1), (0,), 10.0, 1.0), WindowMean((5, 6), (5,), 7.0, 0.5))
    assert out.relative_stderr == pytest.approx(out.stderr / (1 - out.decline))
    assert (out.verdict(0.3) == "declines") == out.detected
    assert out.verdict(0.3) == decline_verdict(out.decline, out.stderr, 0.3)
    with pytest.raises(ValueError, match="target = 30"):
        decline_verdict(0.1, 0.05, 30)
    with pytest.raises(ValueError, match="decline = 1.2"):
        decline_verdict(1.2, 0.05, 0.3)


@pytest.mark.parametrize(("low", "high", "detectable", "target", "expected"), [
    (-200.0, -40.0, 417.0, 322.0, "shown"),  # the interval below zero: the claim holds
    (40.0, 900.0, 417.0, 322.0, "opposite"),
    (-100.0, 254.0, 417.0, 322.0, "excluded"),  # an advantage of 322 lies below the interval
    (-337.0, 254.0, 417.0, 322.0, "inconclusive"),  # 322 allowed, and the design sees only 417
    (-337.0, 254.0, 300.0, 322.0, "not detected"),  # 322 allowed, though the design could see it
    (-337.0, 254.0, float("nan"), 322.0, "not detected"),  # the power is not known
    (-337.0, 254.0, 417.0, None, "not detected"),  # no target to weigh the power against
])
def test_difference_verdict_known_cases(low, high, detectable, target, expected):
    assert difference_verdict(low, high, detectable, target) == expected
