"""stagewise.lm.verdicts on known answers: where chapter 6's verdicts are decided (the moments, the decisive
windows) and how many draws decide them (the plan from a pilot)."""

import math

import pytest

from stagewise.curves import WindowMean, budget_for_decline, change_between, min_detectable_decline
from stagewise.lm.verdicts import decisive_windows, moment_steps, plan_decisive, top_up_chains, with_moments

SAVED = [0, 1, 2, 4, 8, 280, 1834, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000, 7000, 8000, 9000,
         9500, 10000, 10500, 11000, 11500, 12000]


def test_moments_are_placed_by_the_formation_step():
    moments = moment_steps(SAVED, formation=4161, rise_start=3600.0)
    assert moments == {"before": 3500, "during": 4500, "after": 12000}
    assert moments["during"] >= 4161  # never a checkpoint before the formation step
    exact = moment_steps(SAVED, formation=4000, rise_start=3700.0)
    assert exact["during"] == 4000 and exact["before"] == 3500
    # a rise that starts after the formation step (a noisy score) still puts "before" before formation
    assert moment_steps(SAVED, formation=4161, rise_start=5000.0)["before"] == 4000
    none = moment_steps(SAVED, formation=None, rise_start=None)
    assert none == {"before": 1, "during": SAVED[1:][len(SAVED[1:]) // 2], "after": 12000}


def test_with_moments_replaces_the_nearest_spread_out_checkpoints():
    sampled = [280, 1834, 2500, 4000, 6000, 8000, 10000, 12000]
    out = with_moments(sampled, {"before": 3500, "during": 4500, "after": 12000})
    assert out == [280, 1834, 2500, 3500, 4500, 8000, 10000, 12000]  # 4000 → 3500, then 6000 → 4500
    assert len(out) == len(sampled)
    assert with_moments([10, 20], {"a": 11, "b": 12, "c": 13}) == [11, 12, 13]  # appended when none is free


def test_decisive_windows_around_the_pilot_peak_and_at_the_end():
    pilot_steps = [280, 1834, 2500, 3500, 4500, 6000, 7000, 8000, 9500, 10500, 12000]
    values = [4, 2, 2, 5, 15, 22, 29, 39, 50, 30, 33]  # peak at 9500
    peak, peak_window, late = decisive_windows(SAVED, pilot_steps, values, since=4161, width=3)
    assert peak == 9500 and peak_window == (9000, 9500, 10000) and late == (11000, 11500, 12000)
    # a pilot peak inside the late window: the peak window moves just before it
    values_late = [4, 2, 2, 5, 15, 22, 29, 39, 40, 45, 60]
    peak, peak_window, late = decisive_windows(SAVED, pilot_steps, values_late, since=4161, width=3)
    assert peak == 12000 and peak_window == (9500, 10000, 10500) and late == (11000, 11500, 12000)
    # the first-stage value before the formation step is never the peak
    early_high = [99] + values[1:]
    assert decisive_windows(SAVED, pilot_steps, early_high, since=4161, width=3)[0] == 9500
    # too few checkpoints for two windows of 20: half of the 13 from step 4161 on each (6)
    peak, peak_window, late = decisive_windows(SAVED, pilot_steps, values, since=4161, width=20)
    assert len(peak_window) == len(late) == 6 and late == tuple(SAVED[-6:]) and peak_window[-1] < late[0]
    assert decisive_windows([0, 1000, 2000], [1000, 2000], [1.0, 2.0], since=1000, width=2)[1:] == ((1000,),
                                                                                              (2000,))
    with pytest.raises(ValueError, match="two windows need at least 2"):
        decisive_windows(SAVED, pilot_steps, values, since=12000, width=3)


def test_plan_from_a_pilot_gives_the_budget_that_reaches_the_target():
    steps = [1000, 2000, 3000, 4000, 5000]
    values = [1e-4, 2e-3, 3e-3, 4e-3, 4e-3]
    errors = [5e-5, 2e-4, 6e-4, 4e-4, 4e-4]  # relative 0.5 (before `since`), 0.1, 0.2, 0.1, 0.1
    plan = plan_decisive(values, errors, steps, since=1500, pilot_chains=4, pilot_draws=150, chains=8,
                         width=3, target=0.3)
    assert plan.planning_stderr == pytest.approx(0.2)  # the noisiest from `since` on
    assert plan.pilot_relative_stderr == pytest.approx(0.2 * math.sqrt(2 / 3))
    assert plan.pilot_min_detectable == pytest.approx(min_detectable_decline(plan.pilot_relative_stderr))
    assert plan.needed == pytest.approx(budget_for_decline(0.3, plan.pilot_relative_stderr, 600))
    assert plan.chains == 8 and plan.draws == math.ceil(plan.needed / 8) and not plan.capped
    # at the planned budget the same checkpoints would detect a 30% decline in 80% of runs
    scaled = plan.pilot_relative_stderr * math.sqrt(600 / plan.budget)
    assert min_detectable_decline(scaled) <= 0.3 + 1e-9
    capped = plan_decisive(values, errors, steps, since=1500, pilot_chains=4, pilot_draws=150, chains=8,
                           cap=800)
    assert capped.capped and capped.budget == 800
    quiet = plan_decisive(values, [e / 10 for e in errors], steps, since=1500, pilot_chains=4, pilot_draws=150,
                          chains=8)
    assert quiet.budget >= 600 and quiet.needed < 600  # never below the pilot's budget
    with pytest.raises(ValueError, match="chains = 1"):
        plan_decisive(values, errors, steps, since=1500, pilot_chains=4, pilot_draws=150, chains=1)


def test_top_up_from_the_decisive_checkpoints_own_errors():
    peak, late = WindowMean((0, 2), (0, 1, 2), 5e-3, 5e-3 * 0.13), WindowMean((3, 5), (3, 4, 5), 5e-3, 5e-3 * 0.13)
    noisy = change_between(peak, late)  # s₀ = 0.13 · √2 ≈ 0.18: declines of about 45% detectable
    assert noisy.min_detectable > 0.3
    extra = top_up_chains(noisy, chains=8, draws=200, target=0.3)
    needed = budget_for_decline(0.3, noisy.relative_stderr, 1600) * 1.2
    assert extra == math.ceil(needed / 200) - 8
    # with the extra chains the same checkpoints reach the target (errors fall like 1/√budget), with the margin
    scaled = noisy.relative_stderr * math.sqrt(1600 / ((8 + extra) * 200))
    assert min_detectable_decline(scaled) < 0.3
    assert top_up_chains(noisy, chains=8, draws=200, target=0.3, cap=2400) == 4  # at most the cap in all
    assert top_up_chains(noisy, chains=8, draws=200, target=0.3, cap=1000) == 0
    quiet = change_between(WindowMean((0, 2), (0,), 5e-3, 1e-4), WindowMean((3, 5), (3,), 4e-3, 1e-4))
    assert top_up_chains(quiet, chains=8, draws=200, target=0.3) == 0  # already there
    # the rule reads the errors only: the same errors with another decline ask for the same chains (up to the
    # decline's own factor in the error, none here since both windows' relative errors are kept)
    lower = change_between(peak, WindowMean((3, 5), (3, 4, 5), 3e-3, 3e-3 * 0.13))
    assert top_up_chains(lower, chains=8, draws=200, target=0.3) == extra
    with pytest.raises(ValueError, match="margin"):
        top_up_chains(noisy, chains=8, draws=200, target=0.3, margin=0.5)
