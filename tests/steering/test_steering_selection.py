"""stagewise.steering: data chosen by the BIF (selection), the toy pools experiment, power and the verdict's words."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from stagewise import steering, toy
from stagewise.curves import Window

# ------------------------------------------------------------------------------------------ choosing the data


def test_most_helpful_takes_the_most_negative_bif_first():
    bif = np.array([0.3, -0.5, 0.0, -0.2, -0.5, 0.1])  # samples 1 and 4 tie: the lower index comes first
    assert steering.most_helpful(bif, 3).tolist() == [1, 4, 3]
    assert steering.most_helpful(bif, 1).tolist() == [1]
    assert sorted(steering.most_helpful(bif, 6).tolist()) == list(range(6))


def test_most_helpful_refuses_bad_input():
    with pytest.raises(ValueError, match="count = 0"):
        steering.most_helpful([0.1, -0.1], 0)
    with pytest.raises(ValueError, match="count = 3"):
        steering.most_helpful([0.1, -0.1], 3)
    with pytest.raises(ValueError, match="NaN or infinite value.*sample 1"):
        steering.most_helpful([0.1, float("nan")], 1)
    with pytest.raises(ValueError, match="shape"):
        steering.most_helpful(np.zeros((2, 2)), 1)


def test_selection_pools_have_equal_sizes_and_the_known_members():
    rng = np.random.default_rng(1)
    n, count = 200, 20
    bif = rng.normal(0.0, 1.0, n)
    helpful = rng.choice(n, count, replace=False)
    bif[helpful] = -10.0 - rng.random(count)  # a constructed BIF whose most helpful samples are known
    in_class = np.zeros(n, dtype=bool)
    in_class[100:] = True
    pools = steering.selection_pools(bif, in_class, count, seed=3)
    assert list(pools) == list(steering.SELECTIONS)
    assert {len(p) for p in pools.values()} == {count}
    assert set(pools["bif"]) == set(helpful)
    assert in_class[pools["class"]].all() and len(set(pools["class"])) == count
    assert len(set(pools["random"])) == count and pools["random"].max() < n
    again = steering.selection_pools(bif, in_class, count, seed=3)
    assert all(np.array_equal(pools[k], again[k]) for k in pools)  # reproducible
    other = steering.selection_pools(bif, in_class, count, seed=4)
    assert not np.array_equal(pools["random"], other["random"]) and np.array_equal(pools["bif"], other["bif"])
    mask = steering.pool_mask(pools["bif"], n)
    assert mask.dtype == torch.bool and int(mask.sum()) == count and bool(mask[torch.as_tensor(helpful)].all())


def test_selection_pools_refuse_bad_input():
    with pytest.raises(ValueError, match="class_mask"):
        steering.selection_pools(np.zeros(4), np.ones(3, dtype=bool), 2)
    with pytest.raises(ValueError, match="class's 1 members"):
        steering.selection_pools(np.zeros(4), np.array([True, False, False, False]), 2)
    with pytest.raises(ValueError, match="indices"):
        steering.pool_mask([5], 4)


def test_the_most_helpful_items_of_the_toy_model_are_the_branch_its_theory_names():
    """Saxe's mode dynamics give the influence of every item on every other in closed form
    (:func:`stagewise.toy.analytic_influence`): at the step where the animal branch's influence peaks, each animal
    helps the animals' mean loss and each plant harms it, by the symmetry of the tree, so the four most helpful
    items are the animals."""
    data = toy.hierarchical_dataset()
    animals = steering.target_items(data, "animal")
    a0 = toy.effective_initial_strength(toy.init_params(toy.DLNConfig(seed=0)), data)
    exact = toy.analytic_influence(data, [299], 0.05, a0, query=list(animals))[0].mean(dim=1).numpy()
    assert (exact[list(animals)] < 0).all() and (exact[4:] > 0).all()
    assert sorted(steering.most_helpful(exact, 4).tolist()) == list(animals)


@pytest.mark.slow
def test_the_bif_picks_the_branch_that_helps_the_query_in_the_toy_model():
    """The sampled BIF at that step agrees: the animals' mean BIF on the animals is negative and the plants' positive,
    each beyond 2 standard errors (the book's rule), and the four most helpful items are the animals."""
    data = toy.hierarchical_dataset()
    animals = steering.target_items(data, "animal")
    values, errors = steering.item_bif(data, animals, 299, seed=0, config=toy.PLAIN_SGLD)
    helps, harms = values[:4].mean(), values[4:].mean()
    assert helps + 2 * np.sqrt((errors[:4] ** 2).sum()) / 4 < 0 < harms - 2 * np.sqrt((errors[4:] ** 2).sum()) / 4
    assert sorted(steering.most_helpful(values, 4).tolist()) == list(animals)


def test_sequence_bif_of_a_copy_of_the_query_is_minus_its_variance(tmp_path):
    """A candidate identical to the (single, fully masked) query has the query's loss at every draw, so its BIF is
    −Var(query) = −query_variance exactly; every value is −Cov with the query, checked on the recorded draws."""
    from stagewise.lm import AttentionOnlyConfig
    from stagewise.sampling import SGLDConfig
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 20, (24, 12), generator=generator)
    model = AutoModelForCausalLM.from_config(AttentionOnlyConfig(vocab_size=20, n_ctx=12, d_model=8, n_heads=2,
                                                                 n_layers=1))
    query = ids[:1]
    candidates = torch.cat([ids[:6], query])  # the last candidate is the query itself (and so is the first)
    config = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=2, num_draws=20, num_burnin=5,
                        batch_size=4, seed=0)
    everything = torch.ones_like(query, dtype=torch.bool)
    result = steering.sequence_bif(model, ids, query, everything, config, candidates=candidates,
                                   cache_dir=tmp_path)
    assert result.values.shape == (7,) and result.stderr.shape == (7,) and result.draws == 40
    assert result.values[-1] == pytest.approx(-result.query_variance, rel=1e-6)
    assert result.values[0] == pytest.approx(result.values[-1], rel=1e-6)
    assert result.query_variance > 0 and np.isfinite(result.values).all()
    assert -1 <= result.reliability <= 1  # two chains: one in each half
    again = steering.sequence_bif(model, ids, query, everything, config, candidates=candidates, cache_dir=tmp_path)
    assert np.array_equal(again.values, result.values) and again.seconds == result.seconds  # from the cache
    assert len(list(tmp_path.glob("sequence-bif-*.json"))) == 1
    masked = torch.zeros_like(query, dtype=torch.bool)
    with pytest.raises(ValueError, match="query_mask"):
        steering.sequence_bif(model, ids, query, masked, config)


# ------------------------------------------------------------------------------------------ the toy pools


def test_toy_pools_move_the_branch_mode_by_its_share_of_the_extra_weight():
    """Up-weighting the four animals moves the mammal/bird mode (w = 1) by the whole extra weight; a pool of two
    animals and two plants by half of it (w = 1/2); timing does not matter for a mode whose onset comes after
    both windows. Every condition gets the same total extra weight."""
    data = toy.hierarchical_dataset()
    animals = steering.target_items(data, "animal")
    basis, weights = steering.mode_weights(data, animals)
    mode = 2  # mammal vs bird: w = 1 for the animals, onset near step 588
    assert weights[mode] == pytest.approx(1.0)
    window = Window(299, 353)
    result = steering.steer_pools(data, {"class": animals, "half": (0, 2, 4, 6)}, window, 1.0, [0, 1], mode, basis)
    dose = 54.0
    assert result.weights["class"] == pytest.approx([1.0, 1.0]) and result.weights["half"] == pytest.approx([0.5, 0.5])
    for timing in ("inside", "before"):
        assert result.effect("class", timing).mean() == pytest.approx(-dose, abs=4)
        assert result.effect("half", timing).mean() == pytest.approx(-dose / 2, abs=4)
        assert np.allclose(result.predicted[f"class:{timing}"] - result.onsets["none"], -dose, atol=1e-6)
    assert np.abs(result.effect("class", "inside") - result.effect("class", "before")).max() < 2


def test_toy_pools_refuse_unequal_pools():
    data = toy.hierarchical_dataset()
    basis, _ = steering.mode_weights(data, (0, 1))
    with pytest.raises(ValueError, match="same non-zero number"):
        steering.steer_pools(data, {"a": (0, 1), "b": (2,)}, Window(299, 353), 1.0, [0], 2, basis)
    with pytest.raises(ValueError, match="2 item lists for 1 seeds"):
        steering.steer_pools(data, {"a": [(0, 1), (2, 3)]}, Window(299, 353), 1.0, [0], 2, basis)


# ------------------------------------------------------------------------------------------------ power


@pytest.mark.parametrize("effect, seeds", [(0.5, 34), (0.8, 15), (0.3, 90)])
def test_seeds_for_power_match_the_paired_t_test_tables(effect, seeds):
    # G*Power, "means: difference between two dependent means", α = 0.05 two-sided, power 0.8
    assert steering.seeds_for_power(effect, 1.0) == seeds
    assert steering.seeds_for_power(-effect * 300, 300.0) == seeds  # scale and sign do not matter
    assert steering.paired_power(effect, 1.0, seeds) >= 0.8 > steering.paired_power(effect, 1.0, seeds - 1)


def test_min_detectable_effect_is_detected_in_80_percent_of_simulated_runs():
    sd, n = 250.0, 10
    smallest = steering.min_detectable_effect(sd, n)
    assert steering.paired_power(smallest, sd, n) == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(0)
    d = rng.normal(smallest, sd, (20000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    detected = (np.abs(t) > stats.t.ppf(0.975, n - 1)).mean()
    assert detected == pytest.approx(0.8, abs=0.015)
    assert steering.min_detectable_effect(sd, 4 * n) < smallest / 1.9  # about 1/√4 of it with four times the seeds


def test_power_refuses_bad_input():
    with pytest.raises(ValueError, match="sd = 0"):
        steering.seeds_for_power(1.0, 0)
    with pytest.raises(ValueError, match="effect = 0"):
        steering.seeds_for_power(0.0, 1.0)
    with pytest.raises(ValueError, match="n = 1"):
        steering.min_detectable_effect(1.0, 1)
    with pytest.raises(ValueError, match="power = 1.5"):
        steering.seeds_for_power(1.0, 1.0, power=1.5)


# --------------------------------------------------------------------------------------- verdict and effects


def record(mean, low, high, n=12):
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n}


@pytest.mark.parametrize("effect, detectable, target, words", [
    (record(-120.0, -200.0, -40.0), None, None, ["Reproduced", "cross 120 steps earlier", "excludes zero"]),
    (record(980.0, 120.0, 1840.0), None, None, ["The opposite of the paper", "980 steps earlier",
                                                 "95% interval 120 … 1,840 steps"]),
    (record(-30.0, -90.0, 30.0), 210.4, 300.0, ["Not reproduced", "−30 steps", "contains zero", "12 seeds",
                                                "a difference of 210 steps", "rules out an advantage of inside "
                                                "as large as the 300 steps"]),
    # the design could not reliably see its target (610 > 300) and the interval allows it: inconclusive
    (record(-30.0, -400.0, 340.0), 610.0, 300.0, ["Inconclusive", "610 steps",
                                                  "more than the 300 steps it was sized for", "is not ruled out"]),
    # the design could see its target (210 < 300), and the interval still allows it: not reproduced, not excluded
    (record(-30.0, -400.0, 340.0), 210.0, 300.0, ["Not reproduced", "210 steps",
                                                  "as large as 300 steps is not ruled out"]),
    (record(float("nan"), float("nan"), float("nan")), None, None, ["No comparison", "did not cross"]),
])
def test_verdict_words_match_the_interval_and_the_power(effect, detectable, target, words):
    said = steering.verdict(effect, detectable, target)
    for w in words:
        assert w in said, (w, said)


def test_an_inconclusive_verdict_names_the_seeds_that_would_see_the_target():
    said = steering.verdict(record(-30.0, -400.0, 340.0), 610.0, 300.0, needed=33)
    assert said.startswith("Inconclusive") and "(about 33 seeds would see it)" in said
    assert "seeds would" not in steering.verdict(record(-30.0, -400.0, 340.0), 210.0, 300.0, needed=33)


def test_selection_effects_pair_each_condition_with_no_upweighting():
    none = np.array([1000.0, 1200.0, 900.0, 1100.0])
    crossing = {"none": none, "bif:inside": none - [100, 120, 80, 100], "bif:before": none - [50, 70, 30, 50],
                "random:inside": none + [10, -10, 20, -20], "random:before": none}
    out = steering.selection_effects(crossing)
    assert list(out) == ["bif", "random"]  # "class" has no runs here
    assert out["bif"]["effect"] == pytest.approx(-100.0) and out["bif"]["n"] == 4
    assert out["bif"]["ci"][0] < -100 < out["bif"]["ci"][1] < 0
    assert out["bif"]["before"]["effect"] == pytest.approx(-50.0)
    assert out["bif"]["inside_minus_before"]["effect"] == pytest.approx(-50.0)
    assert out["random"]["effect"] == pytest.approx(0.0) and out["random"]["ci"][0] < 0 < out["random"]["ci"][1]
    # the pool against random items of the same count, inside: (none - bif shift) - (none + random shift)
    assert out["bif"]["minus_random"]["effect"] == pytest.approx(-100.0)
    assert out["bif"]["minus_random"]["per_seed"] == [-110.0, -110.0, -100.0, -80.0]
    assert "minus_random" not in out["random"]
    assert "minus_random" not in steering.selection_effects({k: v for k, v in crossing.items()
                                                             if not k.startswith("random")})["bif"]
    shown = steering.effects_table(out)
    assert shown.loc["bif: inside − random inside", "mean (steps)"] == pytest.approx(-100.0)


def test_power_design_sizes_the_seeds_from_a_pilot():
    crossings = {"none": np.array([1000.0, 1200.0, np.nan, 1400.0])}
    differences = [100.0, -300.0, np.nan, 200.0]
    formation, target, sd, needed = steering.power_design(crossings, differences, 0.25)
    assert formation == pytest.approx(1200.0) and target == pytest.approx(300.0)
    assert sd == pytest.approx(np.std([100.0, -300.0, 200.0], ddof=1))
    assert needed == steering.seeds_for_power(300.0, sd)
    _, _, sd, needed = steering.power_design({"none": np.array([np.nan, np.nan])}, [np.nan, 5.0], 0.25)
    assert np.isnan(sd) and needed is None


def test_study_crossings_read_one_seed_per_row():
    import pandas as pd

    table = pd.DataFrame({"lm_crossing_step.none.per_seed.0": [1000.0, None, 1100.0],
                          "lm_crossing_step.class:inside.per_seed.0": [900.0, 950.0, None],
                          "other": [1, 2, 3]})
    out = steering.study_crossings(table, ["none", "class:inside", "bif:inside"])
    assert list(out) == ["none", "class:inside"]  # no column for bif:inside
    assert np.allclose(out["none"], [1000.0, np.nan, 1100.0], equal_nan=True)
    assert np.allclose(out["class:inside"], [900.0, 950.0, np.nan], equal_nan=True)


def test_pool_table_and_effects_table_describe_the_pools():
    pools = {"bif": np.array([0, 1]), "random": np.array([2, 3])}
    table = steering.pool_table(pools, np.array([True, False, True, True]), np.array([10, 20, 30, 40]),
                                np.array([-2.0, -1.0, 0.5, 1.5]))
    assert table.loc["bif", "in the hand-chosen class"] == pytest.approx(0.5)
    assert table.loc["random", "induction tokens per sequence"] == pytest.approx(35.0)
    assert table.loc["bif", "mean BIF (nats²)"] == pytest.approx(-1.5) and table.loc["bif", "sequences"] == 2
    none = np.array([1000.0, 1200.0, 900.0])
    effects = steering.selection_effects({"none": none, "bif:inside": none - 100, "bif:before": none - 50})
    shown = steering.effects_table(effects)
    assert list(shown.index) == ["bif: inside − none", "bif: before − none", "bif: inside − before"]
    assert shown.loc["bif: inside − none", "mean (steps)"] == pytest.approx(-100.0)
    assert shown.loc["bif: inside − none", "95% interval (steps)"] == "−100 … −100"


def test_sentences_say_what_the_run_found():
    from stagewise.curves import Window

    said = steering.window_sentence(Window(900, 2800), Window(900, 2800), Window(900, 2400), Window(1500, 2800),
                                    Window(900, 1800), True)
    assert said.startswith("The window is the same with both budgets") and "score's rise" in said
    assert "lower bound" in said and "cut" in said
    said = steering.window_sentence(Window(900, 2800), Window(950, 2700), Window(1000, 2400), Window(900, 2800),
                                    Window(900, 2800), False)
    assert "becomes 950–2,700 instead of 900–2,800" in said and "self-influence's rise" in said
    assert "cut" not in said and "lower bound" not in said
    record = lambda e, gap=0.0: {"effect": e, "inside_minus_before": {"effect": gap}}  # noqa: E731
    effects = {"class": record(-55.8, 0.01), "bif": record(-55.8), "random": record(-22.3)}
    predicted = {"class": {"inside": -54.0}, "random": {"inside": -25.3}}
    said = steering.toy_selection_sentence(effects, predicted, True, True)
    assert "are the hand-chosen branch: at the window's start" in said and "55.8 steps earlier" in said
    assert "random items 22.3" in said and "timing does not matter" in said
    said = steering.toy_selection_sentence({**effects, "class": record(-55.8, 3.0)}, predicted, False, True)
    assert "differ from the hand-chosen branch." in said and "timing does not matter" not in said
