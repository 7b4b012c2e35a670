"""stagewise.steering: the induction window, equal-extra-weight schedules, the toy onset theory, the steered LM loop."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from stagewise import toy
from stagewise.config import ConfigError
from stagewise.curves import Window, rise_window
from stagewise.steering import (
    SteeringConfig,
    equal_windows,
    induction_window,
    mode_onsets,
    mode_weights,
    paired_difference,
    predicted_onsets,
    steer,
    target_items,
    train_steered,
    verdict,
    window_schedule,
)

# ---------------------------------------------------------------------------------------------- window rules


def test_induction_window_is_the_union_of_the_two_rise_windows():
    steps = np.arange(0, 3001, 20)
    score = 0.1 + 0.5 / (1 + np.exp(-(steps - 1500) / 50))
    variance = 1e-4 + 3e-3 / (1 + np.exp(-(steps[::3] - 1300) / 80))  # the influence rises earlier, on its own grid
    window = induction_window(steps, score, steps[::3], variance)
    assert window.start == rise_window(steps[::3], variance).start < rise_window(steps, score).start
    assert window.end == max(rise_window(steps, score).end, rise_window(steps[::3], variance).end)


# ---------------------------------------------------------------------------------- equal extra weight


@pytest.mark.parametrize("window", [Window(300, 420), Window(50, 170)])  # the second is cut to 50 steps
def test_inside_and_before_schedules_carry_the_same_total_at_the_same_rate(window):
    inside, before = equal_windows(window)
    length = min(window.length, window.start)
    assert inside == Window(window.start, window.start + length)
    assert before == Window(window.start - length, window.start) and before.length == inside.length
    window = inside
    for integer, total in ((True, 250), (False, 37.5)):
        inside_s = window_schedule(1000, window, total, integer=integer)
        before_s = window_schedule(1000, before, total, integer=integer)
        assert inside_s.sum() == pytest.approx(total) and before_s.sum() == pytest.approx(total)
        assert np.flatnonzero(inside_s).min() >= window.start and np.flatnonzero(inside_s).max() < window.end
        assert np.flatnonzero(before_s).max() < window.start
        if integer:  # as even as whole sequences allow
            assert inside_s[window.start:window.end].max() - inside_s[window.start:window.end].min() <= 1
        else:  # the same dose rate in both windows
            assert inside_s[window.start] == pytest.approx(before_s[before.start])


def test_schedules_refuse_bad_input():
    with pytest.raises(ValueError, match="start < end"):
        Window(5, 5)
    with pytest.raises(ValueError, match="no 'before'"):
        equal_windows(Window(0, 10))
    with pytest.raises(ValueError, match="no 'before'"):
        equal_windows(Window(1, 10), earliest=1)
    with pytest.raises(ValueError, match="total"):
        window_schedule(100, Window(0, 10), 2.5)
    with pytest.raises(ValueError, match="inside"):
        window_schedule(100, Window(90, 110), 10)


def test_paired_difference_matches_the_student_t_interval():
    a = np.array([100.0, 112.0, 95.0, 130.0, 104.0])
    b = np.array([90.0, 100.0, 99.0, 110.0, 101.0])
    out = paired_difference(a, b, resamples=4000)
    d = a - b
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert out["mean"] == pytest.approx(d.mean())
    assert out["ci_low"] == pytest.approx(d.mean() - half) and out["ci_high"] == pytest.approx(d.mean() + half)
    assert d.min() <= out["bootstrap_low"] < out["mean"] < out["bootstrap_high"] <= d.max()
    with_nan = paired_difference(np.append(a, np.nan), np.append(b, 1.0))
    assert with_nan["n"] == 5 and with_nan["dropped"] == 1


def test_paired_difference_of_one_pair_has_no_interval():
    """One seed gives a difference but no spread: its error and intervals are NaN, so no verdict reads a
    zero-width interval as significant."""
    one = paired_difference([1400.0, np.nan], [1070.0, 900.0])
    assert one["n"] == 1 and one["mean"] == pytest.approx(330.0)
    assert all(math.isnan(one[k]) for k in ("stderr", "ci_low", "ci_high", "bootstrap_low", "bootstrap_high"))
    assert "no interval" in verdict(one)
    none = paired_difference([np.nan], [1.0])
    assert none["n"] == 0 and math.isnan(none["mean"])


# ------------------------------------------------------------------------------------ toy onset theory


def single_mode_data(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """n one-hot items with the same 3 features: Σ_yx = 1·1ᵀ/n has rank 1 (one mode, s = √(3/n))."""
    return torch.eye(n, dtype=torch.float64), torch.ones(n, 3, dtype=torch.float64)


def test_predicted_onset_of_constant_upweighting_is_saxes_formula():
    """β = 1 + ε on every item from step 0 scales s and c by 1 + ε: Saxe's t* at rate lr·(1 + ε)."""
    data = single_mode_data()
    lr, a0, eps = 0.05, 1e-5, 0.6
    t_star = float(toy.predicted_stage_steps(data, lr, a0)[0])
    saxe = float(toy.predicted_stage_steps(data, lr * (1 + eps), a0)[0])
    predicted = predicted_onsets([t_star], [1.0], np.full(2000, eps))[0]
    assert predicted == pytest.approx(saxe, rel=1e-9)
    assert predicted == pytest.approx(t_star / (1 + eps), rel=1e-9)
    # extra weight that ends before the onset advances it by exactly the weight delivered
    assert predicted_onsets([t_star], [1.0], window_schedule(2000, Window(10, 60), 30.0, integer=False))[0] == \
        pytest.approx(t_star - 30.0)


def test_single_mode_network_follows_the_predicted_onsets():
    """Gradient descent on one mode, every item up-weighted: the measured shifts are the predicted ones."""
    x, y = single_mode_data()
    data = toy.HierarchicalData(x, y, ("a", "b", "c", "d"), ("f0", "f1", "f2"), {"all": (0, 1, 2, 3)},
                                (((0, 1, 2, 3),),))
    result = steer(data, target_items(data, "all"), Window(40, 70), extra_weight=1.0, seeds=[0, 1],
                   num_steps=400, hidden_width=6, init_scale=1e-3)
    assert result.weights == pytest.approx([1.0])
    onset = result.onsets[0, :, 0]
    a0 = toy.effective_initial_strength(toy.init_params(toy.DLNConfig(widths=(4, 6, 3), init_scale=1e-3)), data)
    assert onset[0] == pytest.approx(float(toy.predicted_stage_steps(data, 0.05, a0)[0]), rel=0.05)
    assert (onset - 30 > 70).all()  # both windows end before the onset: each advances it by the whole 30 steps
    for c in (1, 2):
        assert result.predicted_shift[c, :, 0] == pytest.approx(30.0, abs=1e-6)
        assert result.shift[c, :, 0] == pytest.approx(30.0, abs=1.5)


def test_hierarchy_modes_on_the_upweighted_branch_move_as_predicted():
    data = toy.hierarchical_dataset()
    items = target_items(data, "animal")
    basis, weights = mode_weights(data, items)
    assert sorted(np.round(weights.numpy(), 6).tolist()) == [0, 0, 0, 0.5, 0.5, 1, 1, 1]
    assert torch.allclose(basis.u @ torch.diag(basis.s) @ basis.v.T, data.input_output_correlation(), atol=1e-12)
    result = steer(data, items, Window(300, 350), extra_weight=1.0, seeds=[0])
    exact = np.flatnonzero(np.isin(np.round(weights.numpy(), 6), (0.0, 1.0)))  # modes on or off the branch
    assert result.shift[1:, 0, exact] == pytest.approx(result.predicted_shift[1:, 0, exact], abs=3.0)
    assert np.abs(result.shift[0]).max() == 0  # "none" is the reference


def test_mode_onsets_reads_half_rise_steps():
    data = single_mode_data()
    basis = toy.mode_basis(data)
    run = toy.train(toy.init_params(toy.DLNConfig(widths=(4, 6, 3), init_scale=0.01)), data,
                    toy.TrainConfig(num_steps=400, checkpoint_every=1))
    onset = mode_onsets(run, basis)[0]
    strength = (basis.u.T @ toy.end_to_end(run.checkpoints) @ basis.v)[:, 0, 0].numpy()
    half = float(basis.s[0] / basis.c) / 2
    k = int(math.floor(onset))
    assert strength[k] <= half <= strength[k + 1]


def test_target_items_names_the_accepted_values():
    data = toy.hierarchical_dataset()
    assert target_items(data, "dog") == (0,) and target_items(data, "bird") == (2, 3)
    with pytest.raises(ValueError, match="accepted"):
        target_items(data, "fish")


# -------------------------------------------------------------------------------------- the steered LM loop


@pytest.fixture(scope="module")
def tiny_lm():
    from stagewise.lm import AttentionOnlyConfig

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 20, (40, 16), generator=generator)
    boost = torch.zeros(40, dtype=torch.bool)
    boost[:6] = True  # a small pool: extra draws are easy to tell apart
    probe = torch.randint(2, 20, (4, 4), generator=generator).repeat(1, 2)
    config = AttentionOnlyConfig(vocab_size=20, n_ctx=16, d_model=8, n_heads=2, n_layers=2)
    return config, ids, boost, probe


def test_upweighting_adds_exactly_the_scheduled_pool_sequences(tiny_lm):
    model_config, ids, boost, probe = tiny_lm
    config = SteeringConfig(steps=20, batch_size=4, eval_every=5, warmup=0)
    schedule = window_schedule(20, Window(8, 13), 12)
    plain = train_steered(model_config, ids, boost, np.zeros(20, dtype=int), config, probe, keep_batches=True)
    steered = train_steered(model_config, ids, boost, schedule, config, probe, keep_batches=True)
    assert np.array_equal(steered.extra, schedule) and steered.extra.sum() == 12
    assert np.array_equal(plain.base_batches, steered.base_batches)  # the same base data in both runs
    base_boost = boost[torch.as_tensor(plain.base_batches)].sum(1).numpy()
    assert np.array_equal(plain.boost_seen, base_boost)
    assert np.array_equal(steered.boost_seen - base_boost, schedule)  # every extra sequence is from the pool
    # same init and batches: identical until the first extra sequence, different from then on
    assert np.allclose(plain.train_loss[:8], steered.train_loss[:8], rtol=0, atol=1e-6)
    assert not np.allclose(plain.train_loss[8:], steered.train_loss[8:])
    assert steered.steps.tolist() == [0, 5, 10, 15, 20] and steered.prefix_matching.shape == (5, 2, 2)


def test_a_run_that_stops_at_a_level_is_the_full_run_up_to_there(tiny_lm):
    model_config, ids, boost, probe = tiny_lm
    config = SteeringConfig(steps=30, batch_size=4, eval_every=2, warmup=0, lr=0.05)
    full = train_steered(model_config, ids, boost, window_schedule(30, Window(4, 10), 12), config, probe)
    level = float(np.quantile(full.best[1:], 0.5))  # reached somewhere in the middle of the run
    stopped = train_steered(model_config, ids, boost, window_schedule(30, Window(4, 10), 12),
                            SteeringConfig(**{**config.__dict__, "stop_above": level}), probe)
    k = len(stopped.steps)
    assert 1 < k < len(full.steps) and stopped.best[-1] >= level > stopped.best[:-1].max()
    assert np.array_equal(stopped.steps, full.steps[:k]) and np.allclose(stopped.best, full.best[:k], atol=1e-6)
    assert len(stopped.train_loss) == stopped.steps[-1] and np.allclose(stopped.train_loss,
                                                                        full.train_loss[:stopped.steps[-1]])
    for threshold in (level, 0.5 * (level + full.best[0])):
        assert stopped.crossing(threshold) == pytest.approx(full.crossing(threshold))
    with pytest.raises(ConfigError, match="stop_above"):
        SteeringConfig(stop_above=1.5)


def test_steered_runs_are_cached_by_their_schedule(tiny_lm, tmp_path):
    model_config, ids, boost, probe = tiny_lm
    config = SteeringConfig(steps=6, batch_size=4, eval_every=3, warmup=0)
    first = train_steered(model_config, ids, boost, np.zeros(6, dtype=int), config, probe, cache_dir=tmp_path)
    again = train_steered(model_config, ids, boost, np.zeros(6, dtype=int), config, probe, cache_dir=tmp_path)
    other = train_steered(model_config, ids, boost, np.ones(6, dtype=int), config, probe, cache_dir=tmp_path)
    assert not first.cached and again.cached and not other.cached
    assert np.array_equal(first.best, again.best) and np.array_equal(first.train_loss, again.train_loss)


def test_steered_training_refuses_bad_input(tiny_lm):
    model_config, ids, boost, probe = tiny_lm
    with pytest.raises(ConfigError, match="steps = 0"):
        SteeringConfig(steps=0)
    config = SteeringConfig(steps=5, batch_size=2)
    with pytest.raises(ConfigError, match="extra"):
        train_steered(model_config, ids, boost, np.zeros(4, dtype=int), config, probe)
    with pytest.raises(ConfigError, match="boost"):
        train_steered(model_config, ids, torch.zeros(40, dtype=torch.bool), np.zeros(5, dtype=int), config, probe)


def test_saved_checkpoints_reopen_like_a_trained_run(tiny_lm, tmp_path):
    model_config, ids, boost, probe = tiny_lm
    config = SteeringConfig(steps=6, batch_size=4, eval_every=3, warmup=0)
    run = train_steered(model_config, ids, boost, np.zeros(6, dtype=int), config, probe, cache_dir=tmp_path,
                        save_steps=[3, 6])
    again = train_steered(model_config, ids, boost, np.zeros(6, dtype=int), config, probe, cache_dir=tmp_path,
                          save_steps=[3, 6])
    assert again.cached and again.checkpoint_steps == [3, 6] and again.path == run.path
    with torch.no_grad():  # the checkpoint at the last step is the model whose induction score was measured
        from stagewise.lm import induction_scores
        assert torch.allclose(induction_scores(again.load(6), sequences=probe).prefix_matching,
                              torch.as_tensor(run.prefix_matching[-1]), atol=1e-6)
    with pytest.raises(KeyError):
        again.load(4)
    with pytest.raises(ConfigError, match="save_steps"):
        train_steered(model_config, ids, boost, np.zeros(6, dtype=int), config, probe, save_steps=[3])
