"""Chapter 7's helpers in stagewise.steering: tables, summaries, schedules per condition, paired runs, figures."""

import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from stagewise import steering, toy  # noqa: E402
from stagewise.curves import Window  # noqa: E402

CONDITIONS = ("none", "inside", "before")


def fake_result(shift_inside, shift_before, predicted_inside, predicted_before, onsets_none, weights,
                blocks=((0,), (1, 2))):
    """A ToySteering-like record with hand-set (seed, mode) arrays: the condition axis is none, inside, before."""
    shift = np.stack([np.zeros_like(np.asarray(shift_inside, float)), shift_inside, shift_before]).astype(float)
    predicted = np.stack([np.zeros_like(shift[0]), predicted_inside, predicted_before]).astype(float)
    onsets = np.stack([onsets_none, onsets_none - shift[1], onsets_none - shift[2]]).astype(float)
    r = shift.shape[-1]
    basis = SimpleNamespace(s=torch.ones(r), blocks=blocks)
    return SimpleNamespace(conditions=CONDITIONS, shift=shift, predicted_shift=predicted, onsets=onsets,
                           weights=np.asarray(weights, float), basis=basis,
                           windows={"none": None, "inside": Window(300, 350), "before": Window(250, 300)})


@pytest.fixture
def result():
    # two seeds, three modes: mode 0 off the branch (w = 0), mode 1 on it (w = 1), mode 2 straddles it (w = 1/2)
    return fake_result(shift_inside=[[0.5, 50.0, 10.0], [-0.5, 54.0, 14.0]],
                       shift_before=[[1.0, 52.0, 30.0], [0.0, 56.0, 26.0]],
                       predicted_inside=[[0.0, 54.0, 27.0], [0.0, 54.0, 27.0]],
                       predicted_before=[[0.0, 54.0, 27.0], [0.0, 54.0, 27.0]],
                       onsets_none=np.array([[270.0, 590.0, 390.0], [280.0, 600.0, 400.0]]),
                       weights=[0.0, 1.0, 0.5])


# --------------------------------------------------------------------------------------------- toy tables


def test_mode_labels_name_the_contrasted_branches():
    data = toy.hierarchical_dataset()
    basis, _ = steering.mode_weights(data, steering.target_items(data, "animal"))
    assert steering.mode_labels(data, basis) == [
        "all items", "animal vs plant", "mammal vs bird", "flower vs tree", "dog vs cat", "sparrow vs robin",
        "rose vs lily", "oak vs pine"]
    # sides that are no branch are spelled out; loadings within ±tol are ignored
    v = torch.zeros(8, 2, dtype=torch.float64)
    v[[0, 4], 0], v[1, 0], v[7, 0] = 0.5, -0.7, 0.01
    v[[0, 1], 1] = 0.7
    made = toy.ModeBasis(torch.zeros(15, 2), torch.ones(2), v, 0.125, ((0,), (1,)))
    assert steering.mode_labels(data, made) == ["dog+rose vs cat", "dog+cat"]


def test_stage_of_mode_is_the_block_index():
    data = toy.hierarchical_dataset()
    basis, _ = steering.mode_weights(data, steering.target_items(data, "animal"))
    assert steering.stage_of_mode(basis).tolist() == [0, 1, 2, 2, 3, 3, 3, 3]


def test_shift_table_holds_the_seed_means(result):
    table = steering.shift_table(result, ["off", "on", "half"])
    assert list(table.index) == [1, 2, 3] and table.index.name == "k"
    assert table["stage"].tolist() == [1, 2, 2]
    assert table["onset, no extra (step)"].tolist() == [275.0, 595.0, 395.0]
    assert table["inside: shift"].tolist() == [0.0, 52.0, 12.0]
    assert table["before: shift"].tolist() == [0.5, 54.0, 28.0]
    assert table["inside: predicted"].tolist() == [0.0, 54.0, 27.0]
    assert "none: shift" not in table


def test_difference_table_and_exact_mode_errors(result):
    table = steering.difference_table(result, ["off", "on", "half"])
    assert table["inside − before (steps)"].tolist() == [-0.5, -2.0, -16.0]
    assert table["predicted"].tolist() == [0.0, 0.0, 0.0]
    # largest |measured − predicted| of any seed and condition: mode 1: |50 − 54|, 56 − 54 → 4; mode 2: |10 − 27|
    assert table["largest |measured − predicted|"].tolist() == [1.0, 4.0, 17.0]
    mean_error, seed_error = steering.exact_mode_errors(result)  # modes 0 and 1 only (w ∈ {0, 1})
    assert mean_error == pytest.approx(2.0)  # before, mode 1: mean 54 vs 54 → 0; inside: 52 vs 54 → 2
    assert seed_error == pytest.approx(4.0)


def test_condition_means_leave_out_the_reference(result):
    assert steering.condition_means(result, result.shift) == {"inside": [0.0, 52.0, 12.0],
                                                              "before": [0.5, 54.0, 28.0]}


# --------------------------------------------------------------------------------------- language model


def test_crossing_summary_counts_the_seeds_that_crossed():
    out = steering.crossing_summary(np.array([100.0, np.nan, 300.0]))
    assert out == {"mean": 200.0, "stderr": pytest.approx(100.0), "per_seed": [100.0, None, 300.0], "crossed": 2}
    one = steering.crossing_summary([250.0, np.nan])
    assert one["mean"] == 250.0 and math.isnan(one["stderr"]) and one["crossed"] == 1
    none = steering.crossing_summary([np.nan, np.nan])
    assert math.isnan(none["mean"]) and none["per_seed"] == [None, None] and none["crossed"] == 0


def effect(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high}


@pytest.mark.parametrize("record, start, numbers", [
    (effect(-120.0, -200.0, -40.0), "Reproduced", "cross 120 steps earlier"),
    (effect(80.0, 20.0, 140.0), "The opposite of the paper", "cross 80 steps earlier than inside"),
    (effect(-30.0, -90.0, 30.0), "Not reproduced", "(95% interval −90 … 30 steps, which contains zero)"),
    (effect(-30.0, float("nan"), float("nan")), "Inside minus before is −30 steps", "no verdict"),
    (effect(float("nan"), float("nan"), float("nan")), "No comparison", "did not cross"),
])
def test_verdict_follows_the_interval(record, start, numbers):
    said = steering.verdict(record)
    assert said.startswith(start) and numbers in said


def test_effect_table_rounds_the_intervals():
    d = steering.paired_difference([100.0, 112.0, 95.0], [90.0, 100.0, 99.0], resamples=2000)
    table = steering.effect_table({"inside − before (steps)": d})
    row = table.loc["inside − before (steps)"]
    assert row["mean"] == pytest.approx(6.0) and row["seeds"] == 3
    assert row["95% CI (t)"] == f"{d['ci_low']:.0f} … {d['ci_high']:.0f}"
    assert row["95% CI (bootstrap)"] == f"{d['bootstrap_low']:.0f} … {d['bootstrap_high']:.0f}"


def test_condition_schedules_carry_equal_extra_data():
    window = Window(120, 170)
    schedules = steering.condition_schedules(300, *steering.equal_windows(window, earliest=1), 400)
    assert list(schedules) == list(steering.CONDITIONS)
    assert schedules["none"].sum() == 0 and schedules["none"].dtype == np.int64
    assert schedules["inside"].sum() == schedules["before"].sum() == 400
    assert np.flatnonzero(schedules["inside"]).tolist() == list(range(120, 170))
    assert np.flatnonzero(schedules["before"]).tolist() == list(range(70, 120))


def test_spread_steps_takes_evenly_spaced_checkpoints():
    steps = list(range(25, 201, 25))  # 8 measured steps after step 0
    assert steering.spread_steps(steps, 3) == [25, 125, 200]  # indices 0, round(3.5) = 4, 7
    assert steering.spread_steps(steps, 8) == steps
    assert steering.spread_steps(steps, 20) == steps  # never a step twice
    assert steering.spread_steps(steps, 1) == [25]
    with pytest.raises(ValueError, match="count"):
        steering.spread_steps(steps, 0)


@pytest.fixture(scope="module")
def tiny_lm():
    from stagewise.lm import AttentionOnlyConfig

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 20, (40, 16), generator=generator)
    boost = torch.zeros(40, dtype=torch.bool)
    boost[:6] = True
    probe = torch.randint(2, 20, (4, 4), generator=generator).repeat(1, 2)
    config = AttentionOnlyConfig(vocab_size=20, n_ctx=16, d_model=8, n_heads=2, n_layers=2)
    return config, ids, boost, probe


def test_train_conditions_pairs_the_seeds_and_reuses_done_runs(tiny_lm):
    model_config, ids, boost, probe = tiny_lm
    config = steering.SteeringConfig(steps=8, batch_size=4, eval_every=4, warmup=0, seed=0)
    schedules = steering.condition_schedules(8, Window(4, 6), Window(2, 4), 6)
    done = steering.train_steered(model_config, ids, boost, schedules["none"], config, probe)
    runs = steering.train_conditions(model_config, ids, boost, schedules, config, [0, 3], probe,
                                     done={("none", 0): done})
    assert list(runs) == ["none", "inside", "before"] and all(len(rs) == 2 for rs in runs.values())
    assert runs["none"][0] is done
    for condition, rs in runs.items():
        assert np.array_equal(rs[1].extra, schedules[condition])
    # each run is train_steered with the seed replaced: seed 3's "inside" run, trained directly
    direct = steering.train_steered(model_config, ids, boost, schedules["inside"],
                                    steering.SteeringConfig(steps=8, batch_size=4, eval_every=4, warmup=0, seed=3),
                                    probe)
    assert np.array_equal(direct.train_loss, runs["inside"][1].train_loss)
    # a seed's runs share their first steps (same init and base batches) until extra data arrives at step 2
    assert np.allclose(runs["none"][1].train_loss[:2], runs["before"][1].train_loss[:2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="seeds"):
        steering.train_conditions(model_config, ids, boost, schedules, config, [], probe)


# ------------------------------------------------------------------------------------------------ figures


def test_toy_shifts_figure_draws_the_measured_and_predicted_shifts(result):
    fig = steering.toy_shifts_figure(result, np.linspace(0, 1, 1601), ["off", "on", "half"], "animal")
    top, bottom = fig.axes
    spans = [p.get_x() for p in top.patches]  # the two shaded windows, inside then before
    assert spans == [300, 250]
    assert top.get_xlim() == (0, 1600)
    onsets = sorted(line.get_xdata()[0] for line in top.lines[1:])
    assert onsets == [275.0, 495.0]  # stage means of the no-extra onsets: mode 0; modes 1 and 2
    bars = [p.get_height() for p in bottom.patches]
    assert bars == [0.0, 52.0, 12.0, 0.5, 54.0, 28.0]  # inside's three modes, then before's
    ticks = [line for line in bottom.lines if line.get_marker() == "_" and line.get_markersize() == 16]
    assert [t.get_ydata().tolist() for t in ticks] == [[0.0, 54.0, 27.0]] * 2
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["1: off", "2: on", "3: half"]
    matplotlib.pyplot.close(fig)


def steered(best, loss, steps=(0, 10, 20)):
    return SimpleNamespace(steps=np.array(steps), best=np.array(best, float),
                           second_copy_loss=np.array(loss, float))


def test_window_figure_shades_both_windows():
    baseline = steered([0.0, 0.2, 0.5], [3.0, 2.0, 1.0])
    fig = steering.window_figure(baseline, [10, 20], [1e-3, 4e-3], Window(8, 16), Window(1, 8), 0.3)
    ax, twin = fig.axes
    assert ax.lines[0].get_ydata().tolist() == [0.0, 0.2, 0.5]
    assert list(ax.lines[1].get_ydata()) == [0.3, 0.3]  # the threshold
    assert [p.get_x() for p in ax.patches] == [8, 1]
    assert twin.lines[0].get_ydata().tolist() == [1e-3, 4e-3]
    matplotlib.pyplot.close(fig)


def test_conditions_figure_averages_over_seeds_and_marks_no_crossing():
    runs = {"none": [steered([0, 0.1, 0.2], [3, 3, 3]), steered([0, 0.3, 0.4], [3, 2, 1])],
            "inside": [steered([0, 0.5, 0.6], [3, 2, 2]), steered([0, 0.7, 0.8], [3, 1, 1])]}
    crossing = {"none": np.array([15.0, 12.0]), "inside": np.array([5.0, 4.0])}
    fig = steering.conditions_figure(runs, crossing, Window(8, 16), Window(1, 8), 0.3)
    score, loss, cross = fig.axes
    assert score.lines[0].get_ydata().tolist() == pytest.approx([0.0, 0.2, 0.3])
    assert loss.lines[1].get_ydata().tolist() == pytest.approx([3.0, 1.5, 1.5])
    dots = [line for line in cross.lines if line.get_marker() == "o"]
    assert [d.get_ydata().tolist() for d in dots] == [[15.0, 12.0], [5.0, 4.0]]
    diamonds = [line for line in cross.lines if line.get_marker() == "D"]
    assert [d.get_ydata().tolist() for d in diamonds] == [[13.5], [4.5]]
    assert not cross.texts
    matplotlib.pyplot.close(fig)
    never = steering.conditions_figure(runs, {c: np.full(2, np.nan) for c in runs}, Window(8, 16), Window(1, 8),
                                       0.3)
    assert "no seed crossed" in never.axes[2].texts[0].get_text()
    matplotlib.pyplot.close(never)


def test_show_saves_the_png_and_closes_the_figure(tmp_path):
    fig = matplotlib.pyplot.figure()
    path = steering.show(fig, "made", tmp_path)
    assert path == tmp_path / "made.png" and path.stat().st_size > 0
    assert not matplotlib.pyplot.fignum_exists(fig.number)
