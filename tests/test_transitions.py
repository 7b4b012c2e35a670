"""Transition detection against synthetic curves whose change points are known."""

import numpy as np
import pytest

from stagewise import transitions as tr

CENTRES = [280.0, 400.0, 570.0, 950.0]
WIDTHS = [15.0, 20.0, 25.0, 40.0]
DROPS = [1.0, 0.5, 0.3, 0.15]


def sigmoid_loss(t, noise=0.0, seed=0):
    """A loss falling in four logistic steps; each drop is steepest exactly at its centre."""
    t = np.asarray(t, dtype=float)
    loss = 2.0 - sum(h / (1 + np.exp(-(t - c) / w)) for c, w, h in zip(CENTRES, WIDTHS, DROPS))
    return loss + noise * np.random.default_rng(seed).standard_normal(t.shape)


def test_rate_rule_finds_every_drop_of_a_per_step_loss():
    t = np.arange(1601)
    found = tr.rate_transitions(t, sigmoid_loss(t, noise=1e-5), smooth=5, min_prominence=0.02)
    assert len(found) == 4
    np.testing.assert_allclose(found, CENTRES, atol=3)  # stated tolerance: 3 steps on the per-step grid


def test_rate_rule_on_a_coarse_grid_locates_between_checkpoints():
    t = np.arange(0, 1601, 25.0)
    found = tr.rate_transitions(t, sigmoid_loss(t), min_prominence=0.02)
    assert len(found) == 4
    # a quarter of the grid spacing: the parabola through the rate's peak and its neighbours refines the grid
    np.testing.assert_allclose(found, CENTRES, atol=25 / 4)


def test_rate_rule_directions():
    t = np.arange(0, 1601, 10.0)
    rising = -sigmoid_loss(t)
    np.testing.assert_allclose(tr.rate_transitions(t, rising, direction="up", min_prominence=0.02), CENTRES, atol=3)
    assert len(tr.rate_transitions(t, rising, direction="down", min_prominence=0.02)) == 0
    bump = 1 / (1 + np.exp(-(t - 400) / 30)) - 1 / (1 + np.exp(-(t - 900) / 30))  # up at 400, down at 900
    np.testing.assert_allclose(tr.rate_transitions(t, bump, direction="up"), [400], atol=1)
    np.testing.assert_allclose(tr.rate_transitions(t, bump, direction="down"), [900], atol=1)
    np.testing.assert_allclose(tr.rate_transitions(t, bump, direction="both"), [400, 900], atol=1)


def test_prominence_drops_small_wiggles():
    t = np.arange(0, 1601, 5.0)
    wiggly = sigmoid_loss(t) + 1e-4 * np.sin(t / 7.0)
    assert len(tr.rate_transitions(t, wiggly, smooth=15, min_prominence=0.02)) == 4
    # with no threshold the wiggles are peaks too
    assert len(tr.rate_transitions(t, wiggly, min_prominence=0.0)) > 4


def test_change_points_of_a_noisy_staircase():
    steps = np.arange(0, 1601, 50.0)
    true_changes = [275.0, 575.0, 975.0]  # halfway between checkpoints, where the rule reports a change
    levels = np.select([steps < 275, steps < 575, steps < 975], [0.0, 3.0, 9.0], 14.0)
    for seed in range(5):
        noisy = levels + 0.3 * np.random.default_rng(seed).standard_normal(steps.shape)
        np.testing.assert_array_equal(tr.change_points(steps, noisy, noise=0.3), true_changes)


def test_change_points_with_the_noise_estimated_from_the_curve():
    # σ from 32 differences is rough (0.18–0.53 for σ = 0.3 over seeds 0–9); from 160 it is within about 15%
    steps = np.arange(0, 1601, 10.0)
    levels = np.select([steps < 275, steps < 575, steps < 975], [0.0, 3.0, 9.0], 14.0)
    for seed in range(5):
        noisy = levels + 0.3 * np.random.default_rng(seed).standard_normal(steps.shape)
        np.testing.assert_array_equal(tr.change_points(steps, noisy), [275.0, 575.0, 975.0])


def test_change_points_on_pure_noise_are_rare():
    steps = np.arange(0, 1601, 50.0)
    false = [len(tr.change_points(steps, np.random.default_rng(seed).standard_normal(steps.shape), noise=1.0))
             for seed in range(40)]
    # penalty 3·ln 33 = 10.5 per change: a Bonferroni bound puts P(any change) near 33·P(χ²₁ > 10.5) ≈ 4%
    assert sum(f > 0 for f in false) <= 5


def test_change_points_respects_min_size_and_penalty():
    steps = np.arange(20.0)
    spike = np.zeros(20)
    spike[10] = 50.0
    np.testing.assert_array_equal(tr.change_points(steps, spike, noise=1.0, min_size=1), [9.5, 10.5])
    wide = tr.change_points(steps, spike, noise=1.0, min_size=3)  # the spike's segment takes 3 points now
    assert len(wide) == 2 and wide[1] - wide[0] == 3
    step = np.r_[np.zeros(10), np.ones(10)]
    assert len(tr.change_points(steps, step, noise=0.1, penalty=1e6)) == 0
    np.testing.assert_array_equal(tr.change_points(steps, step, noise=0.1), [9.5])


def test_robust_noise_ignores_a_few_jumps():
    y = 0.5 * np.random.default_rng(1).standard_normal(400)
    y[100:] += 20.0
    y[300:] -= 40.0
    assert tr.robust_noise(y) == pytest.approx(0.5, rel=0.15)


def test_influence_peaks_of_gaussian_bumps():
    steps = np.arange(0, 1601, 25.0)
    bumps = sum(a * np.exp(-0.5 * ((steps - c) / 60) ** 2) for c, a in [(450, 1.0), (800, 0.6)])
    values = np.zeros((len(steps), 3, 3))
    values[:, 0, 1] = values[:, 1, 0] = bumps
    values[:, 0, 0] = 5.0  # the diagonal is not influence between two samples: ignored
    activity = tr.influence_activity(values)
    np.testing.assert_allclose(activity, np.abs(bumps) * np.sqrt(2 / 6))
    np.testing.assert_allclose(tr.peak_transitions(steps, activity), [450, 800], atol=2)


def test_match_transitions_is_one_to_one_with_the_most_matches():
    errors = tr.match_transitions([300, 395, 1300], [284, 393, 568, 943], tolerance=100)
    assert errors == [16.0, 2.0, None, None]
    assert tr.match_transitions([330], [284, 393], tolerance=100) == [46.0, None]  # one detection, one match
    # nearest-first would pair 339 with 393 (54 steps) and leave 284 unmatched; two matches are possible
    assert tr.match_transitions([339, 451], [284, 393], tolerance=100) == [55.0, 58.0]
    assert tr.match_transitions([], [284], tolerance=100) == [None]


def test_no_transition_at_the_ends_of_the_grid():
    t = np.arange(0, 1001, 50.0)
    falling_from_the_start = np.exp(-t / 100)  # steepest at step 0: no interior peak of the rate
    assert len(tr.rate_transitions(t, falling_from_the_start)) == 0
    assert len(tr.peak_transitions(t, t)) == 0  # largest at the last checkpoint


@pytest.mark.parametrize("call, message", [
    (lambda: tr.rate_transitions([0, 2, 1], [1, 2, 3]), "steps"),
    (lambda: tr.rate_transitions([0, 1, 2], [1, 2]), "same length"),
    (lambda: tr.rate_transitions([0, 1, 2], [1, np.nan, 3]), "finite"),
    (lambda: tr.rate_transitions([0, 1, 2], [1, 2, 3], direction="sideways"), "direction"),
    (lambda: tr.rate_transitions([0, 1, 2], [1, 2, 3], min_prominence=1.5), "min_prominence"),
    (lambda: tr.rate_transitions([0, 1, 2], [1, 2, 3], smooth=-1), "smooth"),
    (lambda: tr.change_points([0, 1, 2], [1, 2, 3], min_size=0), "min_size"),
    (lambda: tr.change_points([0, 1, 2], [1, 2, 3], noise=[1, 1]), "noise"),
    (lambda: tr.change_points([0, 1, 2], [1, 2, 3], noise=0.0), "noise"),
    (lambda: tr.change_points([0, 1, 2], [1, 2, 3], penalty=-1), "penalty"),
    (lambda: tr.match_transitions([1], [2], tolerance=0), "tolerance"),
    (lambda: tr.influence_activity(np.zeros((3, 2, 3))), "values"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ chapter 8's settings


def test_detect_signals_finds_the_known_changes_of_every_record():
    t = np.arange(1601)
    loss = sigmoid_loss(t, noise=1e-5)
    bif_steps = np.arange(0, 1601, 50.0)
    bumps = sum(a * np.exp(-0.5 * ((bif_steps - c) / 60) ** 2) for c, a in [(340, 1.0), (690, 0.5)])
    values = np.zeros((len(bif_steps), 2, 2))
    values[:, 0, 1] = values[:, 1, 0] = -bumps
    llc_steps = np.arange(0, 1601, 50.0)
    # an LLC staircase: two sharp rises, at 575 and 975 (halfway between checkpoints), with estimation noise
    llc = sum(h / (1 + np.exp(-(llc_steps - c) / 5)) for c, h in [(575, 6.0), (975, 5.0)])
    llc = llc + 0.05 * np.random.default_rng(0).standard_normal(llc.shape)
    found = tr.detect_signals(loss, bif=(bif_steps, values), llc=(llc_steps, llc))
    assert list(found) == ["loss", "bif", "llc", "llc_change_points"]
    np.testing.assert_allclose(found["loss"], CENTRES, atol=3)
    np.testing.assert_allclose(found["bif"], [340, 690], atol=3)
    np.testing.assert_allclose(found["llc"], [575, 975], atol=3)
    assert found["llc_change_points"] == [575.0, 975.0]  # halfway between the checkpoints around each rise
    assert all(v == round(v, 1) for f in found.values() for v in f)
    assert list(tr.detect_signals(loss)) == ["loss"]  # only the records that are given


def test_detection_summary_counts_matches_and_false_positives():
    summary = tr.detection_summary([100.0, 210.0, 500.0], [105.0, 200.0, 300.0], tolerance=50)
    assert summary == {"per_stage": [-5.0, 10.0, None], "matched": 2, "max_abs": 10.0, "unmatched_detections": 1}
    none = tr.detection_summary([900.0], [105.0], tolerance=50)
    assert none == {"per_stage": [None], "matched": 0, "max_abs": None, "unmatched_detections": 1}
