"""Chapter 8's figures (stagewise.nonlinear_figures): each returns a figure with labelled axes and a legend, draws
the values it is given, and refuses inputs it cannot draw with a message naming the argument."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from stagewise import nonlinear_figures as figures
from stagewise.curves import detect_signals

matplotlib.use("Agg")

STEPS = np.arange(0, 401, 50)
KNOWN = [100.0, 250.0]


def _loss(center):
    t = np.arange(401)
    return 1.0 / (1.0 + np.exp((t - center) / 10.0)) + 1e-5


def _labelled(ax):
    return ax.get_xlabel().strip() and ax.get_ylabel().strip()


def _legend_labels(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_losses_figure_draws_each_model_and_the_stages():
    fig = figures.losses_figure({"linear": _loss(100), "relu": _loss(200)}, KNOWN, seed=3)
    (ax,) = fig.axes
    assert _labelled(ax) and "seed 3" in ax.get_title()
    assert _legend_labels(ax) == ["linear", "relu", "Saxe's $t^*_k$ (linear)"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), _loss(200))
    assert [line.get_xdata()[0] for line in ax.lines[2:]] == KNOWN
    plt.close(fig)


def test_pairs_figure_draws_loo_on_top_and_the_bif_below():
    rng = np.random.default_rng(0)
    loo, bif = rng.normal(size=(len(STEPS), 3, 3)), rng.normal(size=(len(STEPS), 3, 3))
    fig = figures.pairs_figure({"linear": (STEPS, loo, bif), "tanh": (STEPS, loo, bif)}, [(0, 1), (0, 2)],
                               ["dog", "cat", "sparrow"], KNOWN, xmax=300)
    top_left, top_right, bottom_left, bottom_right = fig.axes
    assert [ax.get_title() for ax in (top_left, top_right)] == ["dog → cat", "dog → sparrow"]
    assert all(ax.get_ylabel() for ax in fig.axes) and all(_labelled(ax) for ax in (bottom_left, bottom_right))
    np.testing.assert_allclose(top_right.lines[0].get_ydata(), loo[:, 0, 2])
    np.testing.assert_allclose(bottom_left.lines[0].get_ydata(), bif[:, 0, 1])
    assert bottom_left.get_xlim() == (0, 300)
    assert _legend_labels(top_left) == ["linear", "tanh"]
    plt.close(fig)
    with pytest.raises(ValueError, match="trajectories"):
        figures.pairs_figure({"linear": (STEPS[:-1], loo, bif)}, [(0, 1)], ["a", "b", "c"], KNOWN)
    with pytest.raises(ValueError, match="pairs"):
        figures.pairs_figure({"linear": (STEPS, loo, bif)}, [], ["a", "b", "c"], KNOWN)


def test_agreement_figure_has_a_dot_per_seed_and_a_bar_per_limit():
    fig = figures.agreement_figure({"linear": [0.6, 0.7], "relu": [0.1, 0.3, 0.2]}, {"linear": 0.68, "relu": 0.2})
    (ax,) = fig.axes
    assert _labelled(ax) and len(_legend_labels(ax)) == 2
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [d.get_ydata().tolist() for d in dots] == [[0.6, 0.7], [0.1, 0.3, 0.2]]
    bars = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [b.get_ydata().tolist() for b in bars] == [[0.68, 0.68], [0.2, 0.2]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["linear", "relu"]
    plt.close(fig)
    with pytest.raises(ValueError, match="limits"):
        figures.agreement_figure({"linear": [0.6]}, {})


def test_llc_figure_draws_the_estimates_with_their_band():
    estimates = np.column_stack([np.linspace(-5, 15, len(STEPS)), np.full(len(STEPS), 0.5)])
    fig = figures.llc_figure({"linear": _loss(100)}, STEPS, {"linear": estimates}, KNOWN, nbeta=100.0,
                             localization=100.0, seed=0)
    top, bottom = fig.axes
    assert top.get_ylabel() and _labelled(bottom) and "nβ = 100" in bottom.get_ylabel()
    np.testing.assert_allclose(bottom.lines[0].get_ydata(), estimates[:, 0])
    assert "± 2 s.e." in _legend_labels(bottom) and "linear" in _legend_labels(top)
    plt.close(fig)
    with pytest.raises(ValueError, match="llc"):
        figures.llc_figure({"linear": _loss(100)}, STEPS, {"linear": estimates[:-1]}, KNOWN, nbeta=1.0,
                           localization=1.0, seed=0)


def test_detection_figure_marks_what_each_rule_found():
    loss = _loss(100) + 0.5 * _loss(250)
    estimates = np.where(STEPS < 150, 0.0, 10.0)
    values = np.random.default_rng(1).normal(size=(len(STEPS), 3, 3))
    detected = detect_signals(loss, bif=(STEPS, values), llc=(STEPS, estimates))
    fig = figures.detection_figure(loss, (STEPS, estimates), (STEPS, values), detected, KNOWN, seed=0)
    rate, llc, activity = fig.axes
    assert all(ax.get_ylabel() for ax in fig.axes) and _labelled(activity)
    assert _legend_labels(rate) == ["linear", "Saxe's $t^*_k$", "detected"]
    marked = [line.get_xdata()[0] for line in rate.lines[1 + len(KNOWN):]]
    assert marked == pytest.approx(detected["loss"]) and len(marked) == 2
    assert np.argmax(rate.lines[0].get_ydata()) == pytest.approx(100, abs=3)
    np.testing.assert_allclose(llc.lines[0].get_ydata(), estimates)
    plt.close(fig)
    with pytest.raises(ValueError, match="detected"):
        figures.detection_figure(loss, (STEPS, estimates), (STEPS, values), {"loss": []}, KNOWN, seed=0)
