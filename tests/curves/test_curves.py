"""stagewise.curves on curves with known answers: crossings, sign changes and flips with their standard errors,
peaks and declines, windows, transitions and change points."""

import math

import numpy as np
import pytest

from stagewise import curves

STEPS = np.arange(0, 101, 10.0)
CENTRES = [280.0, 400.0, 570.0, 950.0]
WIDTHS = [15.0, 20.0, 25.0, 40.0]
DROPS = [1.0, 0.5, 0.3, 0.15]


# ---- crossings -------------------------------------------------------------------------------------------

def test_first_crossing_interpolates_a_known_line():
    curve = STEPS / 100  # reaches 0.55 at step 55 exactly
    assert curves.first_crossing(STEPS, curve, 0.55) == pytest.approx(55.0)
    assert curves.first_crossing(STEPS, curve, 0.0) == 0.0  # already there at the first step
    assert math.isnan(curves.first_crossing(STEPS, curve, 1.5))  # never reached


def test_first_crossing_of_a_sigmoid_is_its_midpoint():
    steps = np.linspace(0, 1000, 401)
    curve = 1 / (1 + np.exp(-(steps - 437.0) / 30))
    assert curves.first_crossing(steps, curve, 0.5) == pytest.approx(437.0, abs=0.1)


def test_sign_flip_step_of_a_known_curve():
    # negative dip, then a zero crossing at step 45 exactly (linear between 40 and 50), then a positive peak
    curve = np.array([0, -1, -2, -3, -1, 1, 2, 3, 2, 1, 0], dtype=float)
    assert curves.sign_flip_step(STEPS, curve) == pytest.approx(45.0)
    assert curves.sign_flip_step(STEPS, np.abs(curve)) is None  # never negative
    assert curves.sign_flip_step(STEPS, -np.abs(curve)) is None  # never positive


def test_sign_flip_step_of_a_sine_is_its_root():
    steps = np.linspace(0, 2 * np.pi, 301)
    assert curves.sign_flip_step(steps, -np.sin(steps)) == pytest.approx(np.pi, abs=1e-3)


def test_sign_flip_step_counts_only_a_dip_and_a_peak_beyond_their_noise():
    curve = np.array([0, -1, -2, -3, -1, 1, 2, 3, 2, 1, 0], dtype=float)
    assert curves.sign_flip_step(STEPS, curve, stderr=np.full(11, 1.0)) == pytest.approx(45.0)
    assert curves.sign_flip_step(STEPS, curve, stderr=np.full(11, 2.0)) is None  # −3 and 3 within 2 · 2 s.e.
    # an early wiggle around zero is a sign change but not the flip from the negative phase to the peak
    wiggle = np.array([0.1, -0.1, -2, -3, -1, 1, 2, 3, 2, 1, 0], dtype=float)
    assert curves.sign_change_step(STEPS, wiggle) == pytest.approx(5.0)
    assert curves.sign_flip_step(STEPS, wiggle) == pytest.approx(45.0)


def test_first_crossing_reads_many_curves_at_once():
    steps = np.arange(0, 101, 10.0)
    lines = np.stack([steps / 100, steps / 50, np.zeros_like(steps)], axis=1)  # (K, 3)
    out = curves.first_crossing(steps, lines, [0.55, 0.55, 0.5])
    np.testing.assert_allclose(out[:2], [55.0, 27.5])
    assert math.isnan(out[2])
    np.testing.assert_allclose(curves.first_crossing(steps, lines[:, :2], 0.3), [30.0, 15.0])  # one level for all
    for k in range(2):
        assert curves.first_crossing(steps, lines[:, k], [0.55, 0.55][k]) == out[k]


def test_loss_transitions_is_the_rate_rule_on_a_per_step_loss():
    t = np.arange(0, 1201, 1.0)
    loss = 2.0 - sum(d / (1 + np.exp(-(t - c) / w)) for c, w, d in zip(CENTRES, WIDTHS, DROPS))
    found = curves.loss_transitions(loss)
    np.testing.assert_array_equal(found, curves.rate_transitions(t, loss, **curves.LOSS_RULE))
    np.testing.assert_allclose(found, CENTRES, atol=2)


def test_sign_change_step_in_either_direction():
    assert curves.sign_change_step(STEPS, 0.3 - STEPS / 100) == pytest.approx(30.0)
    assert curves.sign_change_step(STEPS, STEPS / 100 - 0.62) == pytest.approx(62.0)
    assert curves.sign_change_step(STEPS, 1 + STEPS) is None


def test_curves_are_checked():
    with pytest.raises(ValueError, match="same length"):
        curves.first_crossing(STEPS, STEPS[:-1], 0.5)
    with pytest.raises(ValueError, match="steps must increase"):
        curves.sign_change_step(STEPS[::-1], STEPS)


def test_sign_change_step_interpolates_the_zero():
    steps = [0, 100, 200, 300, 400]
    assert curves.sign_change_step(steps, [-3, -2, -1, 1, 2]) == 250.0  # the line from -1 at 200 to 1 at 300
    assert curves.sign_change_step(steps, [-3, -2, -1, 3, 2]) == 225.0  # from -1 to 3: a quarter of the way
    assert curves.sign_change_step(steps, [-3, -2, 0, 1, 2]) == 200.0  # exactly zero at a checkpoint
    assert curves.sign_change_step(steps, [2, 1, -1, -2, -3]) == 150.0  # either direction
    assert curves.sign_change_step(steps, [-3, -2, -1, -1, -2]) is None  # never
    assert curves.sign_change_step(steps, [-3, -1, 1, -2, 5]) == 150.0  # the first flip


def test_sign_change_step_ignores_values_within_noise_of_zero():
    steps = [0, 100, 200, 300, 400]
    values = [-3, -2, 0.5, -2, -3]  # a blip within 2 s.e.: no flip
    assert curves.sign_change_step(steps, values, stderr=[0.5] * 5) is None
    assert curves.sign_change_step(steps, values) == 180.0  # counted when no stderr is given
    # a noisy positive value, then a signed one: the zero is between the last not-yet-positive checkpoint and the next
    assert curves.sign_change_step(steps, [-3, -2, 0.5, -1, 4], stderr=[0.5] * 5) == 320.0
    with pytest.raises(ValueError, match="steps must increase"):
        curves.sign_change_step([0, 0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        curves.sign_change_step([0, 1], [1, 2, 3])


def test_peak_and_decline_known_answers():
    steps = [0, 1000, 2000, 3000, 4000]
    out = curves.peak_and_decline(steps, [0.0, 1.0, 4.0, 3.0, 2.0], stderr=[0.1] * 5)
    assert out == {"peak_step": 2000, "peak": 4.0, "last": 2.0, "decline": 0.5, "declined": True}
    rising = curves.peak_and_decline(steps, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert rising["peak_step"] == 4000 and rising["decline"] == 0.0 and not rising["declined"]
    noisy = curves.peak_and_decline(steps, [0.0, 1.0, 4.0, 3.9, 3.8], stderr=[0.1] * 5)  # 0.2 < 2 · 0.14
    assert noisy["peak_step"] == 2000 and not noisy["declined"]
    early = curves.peak_and_decline(steps, [9.0, 1.0, 4.0, 3.0, 2.0], since=1000)  # the first stage left out
    assert early["peak_step"] == 2000
    with pytest.raises(ValueError, match="since"):
        curves.peak_and_decline(steps, [0.0, 1.0, 4.0, 3.0, 2.0], since=5000)


def test_half_rise_step_interpolates_the_half_way_point_of_a_rise():
    steps = np.arange(0, 1001, 50)
    values = 0.05 + 0.6 / (1 + np.exp(-(steps - 600) / 40))  # logistic rise centred at 600
    assert curves.half_rise_step(steps, values) == pytest.approx(600, abs=3)
    assert curves.half_rise_step(steps, np.full(len(steps), 0.2)) is None  # no rise
    with pytest.raises(ValueError, match="same length"):
        curves.half_rise_step([0, 1], [0.1])


def test_first_crossing_of_an_induction_score_interpolates_and_says_never():
    assert curves.first_crossing([0, 10, 20], [0.0, 0.2, 0.6], 0.4) == pytest.approx(15.0)
    assert math.isnan(curves.first_crossing([0, 10, 20], [0.0, 0.2, 0.3], 0.4))


# ---- windows ---------------------------------------------------------------------------------------------

def test_peak_window_is_the_full_width_at_half_maximum_of_a_bump():
    steps = np.arange(0, 2001, 5)
    centre, sigma = 800.0, 60.0
    bump = 0.2 + 3.0 * np.exp(-0.5 * ((steps - centre) / sigma) ** 2)
    window = curves.peak_window(steps, bump)
    half_width = sigma * math.sqrt(2 * math.log(2))  # 70.6
    assert abs(window.start - (centre - half_width)) <= 1.5
    assert abs(window.end - (centre + half_width)) <= 1.5
    wider = curves.peak_window(steps, bump, fraction=0.25)  # a lower level gives a wider window
    assert wider.start < window.start and wider.end > window.end


def test_rise_window_of_a_logistic_is_centre_plus_minus_width_ln9():
    steps = np.arange(0, 4001, 10)
    centre, width = 2500.0, 120.0
    curve = 0.05 + 0.6 / (1 + np.exp(-(steps - centre) / width))
    window = curves.rise_window(steps, curve)
    assert abs(window.start - (centre - width * math.log(9))) <= 2
    assert abs(window.end - (centre + width * math.log(9))) <= 2


def test_window_rules_refuse_flat_curves_and_bad_levels():
    steps = np.arange(10)
    with pytest.raises(ValueError, match="never rises"):
        curves.rise_window(steps, np.ones(10))
    with pytest.raises(ValueError, match="no peak"):
        curves.peak_window(steps, np.ones(10))
    with pytest.raises(ValueError, match="low"):
        curves.rise_window(steps, steps, low=0.9, high=0.1)
    with pytest.raises(ValueError, match="increase"):
        curves.rise_window(steps[::-1], steps)


# ---- transitions -----------------------------------------------------------------------------------------

def sigmoid_loss(t, noise=0.0, seed=0):
    """A loss falling in four logistic steps; each drop is steepest exactly at its centre."""
    t = np.asarray(t, dtype=float)
    loss = 2.0 - sum(h / (1 + np.exp(-(t - c) / w)) for c, w, h in zip(CENTRES, WIDTHS, DROPS))
    return loss + noise * np.random.default_rng(seed).standard_normal(t.shape)


def test_rate_rule_finds_every_drop_of_a_per_step_loss():
    t = np.arange(1601)
    found = curves.rate_transitions(t, sigmoid_loss(t, noise=1e-5), smooth=5, min_prominence=0.02)
    assert len(found) == 4
    np.testing.assert_allclose(found, CENTRES, atol=3)  # stated tolerance: 3 steps on the per-step grid


def test_rate_rule_on_a_coarse_grid_locates_between_checkpoints():
    t = np.arange(0, 1601, 25.0)
    found = curves.rate_transitions(t, sigmoid_loss(t), min_prominence=0.02)
    assert len(found) == 4
    # a quarter of the grid spacing: the parabola through the rate's peak and its neighbours refines the grid
    np.testing.assert_allclose(found, CENTRES, atol=25 / 4)


def test_rate_rule_directions():
    t = np.arange(0, 1601, 10.0)
    rising = -sigmoid_loss(t)
    np.testing.assert_allclose(curves.rate_transitions(t, rising, direction="up", min_prominence=0.02), CENTRES, atol=3)
    assert len(curves.rate_transitions(t, rising, direction="down", min_prominence=0.02)) == 0
    bump = 1 / (1 + np.exp(-(t - 400) / 30)) - 1 / (1 + np.exp(-(t - 900) / 30))  # up at 400, down at 900
    np.testing.assert_allclose(curves.rate_transitions(t, bump, direction="up"), [400], atol=1)
    np.testing.assert_allclose(curves.rate_transitions(t, bump, direction="down"), [900], atol=1)
    np.testing.assert_allclose(curves.rate_transitions(t, bump, direction="both"), [400, 900], atol=1)


def test_prominence_drops_small_wiggles():
    t = np.arange(0, 1601, 5.0)
    wiggly = sigmoid_loss(t) + 1e-4 * np.sin(t / 7.0)
    assert len(curves.rate_transitions(t, wiggly, smooth=15, min_prominence=0.02)) == 4
    # with no threshold the wiggles are peaks too
    assert len(curves.rate_transitions(t, wiggly, min_prominence=0.0)) > 4


def test_change_points_of_a_noisy_staircase():
    steps = np.arange(0, 1601, 50.0)
    true_changes = [275.0, 575.0, 975.0]  # halfway between checkpoints, where the rule reports a change
    levels = np.select([steps < 275, steps < 575, steps < 975], [0.0, 3.0, 9.0], 14.0)
    for seed in range(5):
        noisy = levels + 0.3 * np.random.default_rng(seed).standard_normal(steps.shape)
        np.testing.assert_array_equal(curves.change_points(steps, noisy, noise=0.3), true_changes)


def test_change_points_with_the_noise_estimated_from_the_curve():
    # σ from 32 differences is rough (0.18–0.53 for σ = 0.3 over seeds 0–9); from 160 it is within about 15%
    steps = np.arange(0, 1601, 10.0)
    levels = np.select([steps < 275, steps < 575, steps < 975], [0.0, 3.0, 9.0], 14.0)
    for seed in range(5):
        noisy = levels + 0.3 * np.random.default_rng(seed).standard_normal(steps.shape)
        np.testing.assert_array_equal(curves.change_points(steps, noisy), [275.0, 575.0, 975.0])


def test_change_points_on_pure_noise_are_rare():
    steps = np.arange(0, 1601, 50.0)
    false = [len(curves.change_points(steps, np.random.default_rng(seed).standard_normal(steps.shape), noise=1.0))
             for seed in range(40)]
    # penalty 3·ln 33 = 10.5 per change: a Bonferroni bound puts P(any change) near 33·P(χ²₁ > 10.5) ≈ 4%
    assert sum(f > 0 for f in false) <= 5


def test_change_points_respects_min_size_and_penalty():
    steps = np.arange(20.0)
    spike = np.zeros(20)
    spike[10] = 50.0
    np.testing.assert_array_equal(curves.change_points(steps, spike, noise=1.0, min_size=1), [9.5, 10.5])
    wide = curves.change_points(steps, spike, noise=1.0, min_size=3)  # the spike's segment takes 3 points now
    assert len(wide) == 2 and wide[1] - wide[0] == 3
    step = np.r_[np.zeros(10), np.ones(10)]
    assert len(curves.change_points(steps, step, noise=0.1, penalty=1e6)) == 0
    np.testing.assert_array_equal(curves.change_points(steps, step, noise=0.1), [9.5])


def test_robust_noise_ignores_a_few_jumps():
    y = 0.5 * np.random.default_rng(1).standard_normal(400)
    y[100:] += 20.0
    y[300:] -= 40.0
    assert curves.robust_noise(y) == pytest.approx(0.5, rel=0.15)


def test_influence_peaks_of_gaussian_bumps():
    steps = np.arange(0, 1601, 25.0)
    bumps = sum(a * np.exp(-0.5 * ((steps - c) / 60) ** 2) for c, a in [(450, 1.0), (800, 0.6)])
    values = np.zeros((len(steps), 3, 3))
    values[:, 0, 1] = values[:, 1, 0] = bumps
    values[:, 0, 0] = 5.0  # the diagonal is not influence between two samples: ignored
    activity = curves.influence_activity(values)
    np.testing.assert_allclose(activity, np.abs(bumps) * np.sqrt(2 / 6))
    np.testing.assert_allclose(curves.peak_transitions(steps, activity), [450, 800], atol=2)


def test_match_transitions_is_one_to_one_with_the_most_matches():
    errors = curves.match_transitions([300, 395, 1300], [284, 393, 568, 943], tolerance=100)
    assert errors == [16.0, 2.0, None, None]
    assert curves.match_transitions([330], [284, 393], tolerance=100) == [46.0, None]  # one detection, one match
    # nearest-first would pair 339 with 393 (54 steps) and leave 284 unmatched; two matches are possible
    assert curves.match_transitions([339, 451], [284, 393], tolerance=100) == [55.0, 58.0]
    assert curves.match_transitions([], [284], tolerance=100) == [None]


def test_no_transition_at_the_ends_of_the_grid():
    t = np.arange(0, 1001, 50.0)
    falling_from_the_start = np.exp(-t / 100)  # steepest at step 0: no interior peak of the rate
    assert len(curves.rate_transitions(t, falling_from_the_start)) == 0
    assert len(curves.peak_transitions(t, t)) == 0  # largest at the last checkpoint


@pytest.mark.parametrize("call, message", [
    (lambda: curves.rate_transitions([0, 2, 1], [1, 2, 3]), "steps"),
    (lambda: curves.rate_transitions([0, 1, 2], [1, 2]), "same length"),
    (lambda: curves.rate_transitions([0, 1, 2], [1, np.nan, 3]), "finite"),
    (lambda: curves.rate_transitions([0, 1, 2], [1, 2, 3], direction="sideways"), "direction"),
    (lambda: curves.rate_transitions([0, 1, 2], [1, 2, 3], min_prominence=1.5), "min_prominence"),
    (lambda: curves.rate_transitions([0, 1, 2], [1, 2, 3], smooth=-1), "smooth"),
    (lambda: curves.change_points([0, 1, 2], [1, 2, 3], min_size=0), "min_size"),
    (lambda: curves.change_points([0, 1, 2], [1, 2, 3], noise=[1, 1]), "noise"),
    (lambda: curves.change_points([0, 1, 2], [1, 2, 3], noise=0.0), "noise"),
    (lambda: curves.change_points([0, 1, 2], [1, 2, 3], penalty=-1), "penalty"),
    (lambda: curves.match_transitions([1], [2], tolerance=0), "tolerance"),
    (lambda: curves.influence_activity(np.zeros((3, 2, 3))), "values"),
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
    found = curves.detect_signals(loss, bif=(bif_steps, values), llc=(llc_steps, llc))
    assert list(found) == ["loss", "bif", "llc", "llc_change_points"]
    np.testing.assert_allclose(found["loss"], CENTRES, atol=3)
    np.testing.assert_allclose(found["bif"], [340, 690], atol=3)
    np.testing.assert_allclose(found["llc"], [575, 975], atol=3)
    assert found["llc_change_points"] == [575.0, 975.0]  # halfway between the checkpoints around each rise
    assert all(v == round(v, 1) for f in found.values() for v in f)
    assert list(curves.detect_signals(loss)) == ["loss"]  # only the records that are given


def test_detection_summary_counts_matches_and_false_positives():
    summary = curves.detection_summary([100.0, 210.0, 500.0], [105.0, 200.0, 300.0], tolerance=50)
    assert summary == {"per_stage": [-5.0, 10.0, None], "matched": 2, "max_abs": 10.0, "unmatched_detections": 1}
    none = curves.detection_summary([900.0], [105.0], tolerance=50)
    assert none == {"per_stage": [None], "matched": 0, "max_abs": None, "unmatched_detections": 1}
