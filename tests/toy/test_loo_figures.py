"""Smoke tests of chapter 4's figures (stagewise/toy/loo_figures.py) on a short real run of the toy model: each
returns a Figure whose plotting axes are labelled and whose several series have a legend."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from stagewise import toy
from stagewise.analysis import agreement, pair_correlations
from stagewise.toy import loo_figures


def _labelled(fig):
    assert isinstance(fig, plt.Figure)
    assert fig.axes
    for ax in fig.axes:  # a panel sharing its x axis with a labelled one needs no label of its own
        xlabel = any(other.get_xlabel().strip() for other in ax.get_shared_x_axes().get_siblings(ax))
        assert xlabel and ax.get_ylabel().strip(), ax.get_title()
    assert any(ax.get_legend() is not None for ax in fig.axes), "several series need a legend"
    plt.close(fig)


@pytest.fixture(scope="module")
def run():
    """LOO and a stand-in for the BIF (LOO plus noise) on 300 steps of the toy model, a checkpoint every 50."""
    data = toy.hierarchical_dataset()
    init = toy.init_params(toy.DLNConfig(seed=0))
    config = toy.TrainConfig(num_steps=300, checkpoint_every=50)
    trained = toy.train(init, data, config)
    loo = toy.leave_one_out(init, data, config).delta.numpy()
    steps = trained.steps.numpy()
    noisy = loo + np.random.default_rng(0).normal(0, 1e-3, loo.shape)
    return data, init, config, steps, loo, noisy


def test_pairs_and_symmetries(run):
    _, _, _, steps, loo, noisy = run
    dog, cat, sparrow, lily = (toy.ITEMS.index(n) for n in ("dog", "cat", "sparrow", "lily"))
    flips = {(dog, sparrow): {"loo": 100.0, "analytic": None, "bif": 80.0}, (dog, cat): {}}
    fig = loo_figures.pairs_figure(steps, loo, loo, noisy, np.full_like(noisy, 1e-4), flips, [100, 200],
                                   toy.ITEMS, xmax=300)
    assert len(fig.axes) == 4
    _labelled(fig)
    fig = loo_figures.symmetries_figure(steps, loo, loo, noisy, [(dog, toy.GROUPS["plant"], "plant"),
                                                                (lily, toy.GROUPS["animal"], "animal")],
                                        toy.ITEMS)
    assert fig.axes[0].get_title() == "dog on every plant"
    _labelled(fig)


def test_agreement_figures(run):
    _, _, _, steps, loo, noisy = run
    corr = {"analytic": pair_correlations(loo, loo), "bif": pair_correlations(noisy, loo)}
    scores = {name: agreement(m, loo, steps) for name, m in (("analytic", loo), ("bif", noisy))}
    fig = loo_figures.agreement_figure(corr, {name: s.peak_offsets for name, s in scores.items()})
    assert fig.axes[0].get_ylabel() == f"pairs (of {len(corr['bif'])})"
    _labelled(fig)
    _labelled(loo_figures.rank_agreement_figure(steps, {n: s.rank_corr for n, s in scores.items()},
                                                [100], len(corr["bif"])))


def test_window_ablation_and_speedup(run):
    _, _, _, steps, _, noisy = run
    centres = np.array([50.0, 150.0, 250.0])
    rng = np.random.default_rng(1)
    harm = {j: rng.uniform(0, 1, 3) for j in (2, 1)}
    helped = {j: -rng.uniform(0, 1, 3) for j in (2, 1)}
    fig = loo_figures.window_ablation_figure(centres, 100, harm, helped, {2: 150.0, 1: 250.0}, steps,
                                             {j: noisy[:, 0, j] for j in harm}, "dog", toy.ITEMS, xmax=300)
    assert len(fig.axes) == 4  # two panels, each with its twin axis for the BIF
    _labelled(fig)
    fig = loo_figures.loo_speedup_figure({"batched": [0.1, 0.12], "loop": [0.8, 0.9]}, 7.5, 9, 1600)
    assert "×7.5" in fig.axes[0].get_title()
    _labelled(fig)
