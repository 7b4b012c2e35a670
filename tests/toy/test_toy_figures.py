"""Smoke tests of chapter 3's figures (stagewise/toy/figures.py) on the real hierarchy and a short training run:
each returns a Figure whose plotting axes are labelled and whose several series have a legend."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Text

from stagewise import toy
from stagewise.analysis import readable_modes
from stagewise.toy import figures


def _labelled(fig, *, legend: bool = True):
    assert isinstance(fig, plt.Figure)
    drawn = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert drawn
    for ax in drawn:  # a panel sharing its x axis with a labelled one below it needs no label of its own
        xlabel = any(other.get_xlabel().strip() for other in ax.get_shared_x_axes().get_siblings(ax))
        assert xlabel and ax.get_ylabel().strip(), ax.get_title()
    if legend:
        assert any(ax.get_legend() is not None for ax in drawn), "several series need a legend"
    plt.close(fig)


@pytest.fixture(scope="module")
def trained():
    data = toy.hierarchical_dataset()
    basis = readable_modes(toy.mode_basis(data))
    init = toy.init_params(toy.DLNConfig(widths=(8, 16, 15), init_scale=1e-3, seed=0))
    lr, num_steps = 0.05, 1200
    run = toy.train(init, data, toy.TrainConfig(lr=lr, num_steps=num_steps, checkpoint_every=50))
    a0 = toy.effective_initial_strength(init, data)
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    theory = toy.mode_strength(t[:, None], basis.s, a0, lr, basis.c)
    return data, basis, run, toy.predicted_stage_steps(data, lr, a0).numpy(), theory


def test_stage_colors():
    assert len(figures.stage_colors(4)) == 4 and figures.stage_colors(1)[0] != figures.stage_colors(2)[1]
    with pytest.raises(ValueError, match="num_stages"):
        figures.stage_colors(0)


def test_tree_and_data(trained):
    data = trained[0]
    fig = figures.tree_figure(data, toy.NODES)
    assert {"living thing", "animal", "tree"} <= {text.get_text() for text in fig.axes[0].texts}
    _labelled(fig, legend=False)
    _labelled(figures.data_figure(data), legend=False)
    noisy = toy.hierarchical_dataset(stochastic=True, num_features=40, flip_prob=0.1, seed=0)
    fig = figures.data_figure(noisy, stochastic=True, flip_prob=0.1)
    assert "40 features" in fig.axes[0].get_title()
    _labelled(fig, legend=False)


def test_singular_values_and_modes(trained):
    data, basis = trained[:2]
    names = ["living thing", "animal vs plant", "classes", "items"]
    fig = figures.singular_values_figure(basis.s, basis.blocks, names)
    assert fig.axes[0].get_legend_handles_labels()[1] == names
    assert [t.get_text() for t in fig.axes[0].texts][-1] == "0.125 ×4"  # four tied modes at 1/8
    _labelled(fig)
    fig = figures.modes_figure(basis, data.items, data.features)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and panels[0].get_position().y0 > panels[1].get_position().y0  # stacked
    _labelled(fig, legend=False)


def test_loss_and_strengths(trained):
    _, basis, run, predicted, theory = trained
    loss = run.loss.numpy()  # one value per step
    theory_loss = (((basis.s - basis.c * theory) ** 2) / (2 * basis.c)).sum(1).numpy()
    fig = figures.loss_stages_figure(loss, theory_loss, predicted, predicted * 0.97, [1.0, 0.6, 0.25, 0.0])
    assert sum("t^*" in t.get_text() for t in fig.axes[0].texts) == len(predicted)
    _labelled(fig)
    strength = torch.diagonal(basis.u.T @ toy.end_to_end(run.checkpoints) @ basis.v, dim1=-2, dim2=-1)
    fig = figures.mode_strengths_figure(run.steps.numpy(), strength.numpy(), theory.numpy(),
                                        np.zeros(len(run.steps)), basis, predicted, ["a", "b", "c", "d"])
    _labelled(fig)


def test_representation_labels_each_final_spot_once(trained):
    data, _, run, predicted, _ = trained
    rng = np.random.default_rng(0)
    ends = np.repeat(rng.normal(size=(4, 3)), 2, axis=0)  # the two items of each class end together
    frames = np.linspace(0, 1, len(run.steps))[:, None, None] * ends[None]
    fig = figures.representation_figure(frames, run.steps.numpy(), predicted, data.items, ["x", "y", "z"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if isinstance(t, Text) and "/" in t.get_text()]
    assert sorted(labels) == ["dog / cat", "oak / pine", "rose / lily", "sparrow / robin"]
    assert ax.get_zlabel() == "z" and ax.get_legend() is not None
    _labelled(fig)


def test_branch_distances(trained):
    steps = trained[2].steps.numpy()
    curve = 1 / (1 + np.exp(-(steps - 400) / 30))
    fig = figures.branch_distances_figure(steps, curve, {"dog – cat": curve ** 2}, trained[3])
    assert len(fig.axes[0].get_legend_handles_labels()[1]) >= 2
    _labelled(fig)
