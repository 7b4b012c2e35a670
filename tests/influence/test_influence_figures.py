"""Smoke tests of chapter 2's figures (stagewise.influence.figures): each returns a Figure whose plotting axes
are labelled and whose several series have a legend, on small known inputs; bad shapes fail with a clear error."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from stagewise.influence import figures


def _labelled(fig, *, legend: bool = True):
    assert isinstance(fig, plt.Figure)
    drawn = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert drawn
    for ax in drawn:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax.get_title()
    if legend:
        assert all(ax.get_legend() is not None for ax in drawn), "several series need a legend"
    plt.close(fig)


def _matrix(n=6, seed=0):
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return -(a @ a.T) / n


def test_exact_scatter():
    exact = _matrix()
    fig = figures.exact_scatter_figure(exact, exact + 0.01, torch.full_like(exact, 0.02), 0.031)
    assert "3.1%" in fig.axes[0].get_title()
    assert any("36 pairs" in label for label in fig.axes[0].get_legend_handles_labels()[1])
    _labelled(fig)
    with pytest.raises(ValueError, match="one shape"):
        figures.exact_scatter_figure(exact, exact[:3], exact, 0.1)


def test_error_decay_one_and_several_samplers():
    draws = np.array([250, 500, 1000, 2000])
    _labelled(figures.error_decay_figure(draws, {"error": 1 / np.sqrt(draws)}, anchor="last", xlabel="draws",
                                         title="t"))
    errors = {"plain": 1 / np.sqrt(draws), "adapting": 0.1 + 0 * draws, "frozen": 1.1 / np.sqrt(draws)}
    fig = figures.error_decay_figure(draws, errors, reference="frozen", xlabel="draws", title="t",
                                     styles={"adapting": ("C1", "s--")})
    assert len(fig.axes[0].lines) == 4  # three samplers and the Monte Carlo line
    reference = fig.axes[0].lines[-1].get_ydata()
    assert reference[0] == pytest.approx(1.1 / np.sqrt(250))  # through the first point of "frozen"
    _labelled(fig)
    with pytest.raises(ValueError, match="anchor"):
        figures.error_decay_figure(draws, errors, anchor="middle", xlabel="d", title="t")
    with pytest.raises(ValueError, match=r"errors\['plain'\]: 2 errors for 4"):
        figures.error_decay_figure(draws, {"plain": [0.1, 0.2]}, xlabel="d", title="t")


def test_classical_and_degenerate():
    classical = _matrix()
    _labelled(figures.classical_scatter_figure(classical, 1.01 * classical, 0.999))
    dampings = np.logspace(0, -4, 5)
    fig = figures.degenerate_figure(dampings, 1 / dampings, [0.1, 0.01], [3.0, 3.5])
    assert fig.axes[0].xaxis_inverted()  # damping shrinks to the right
    _labelled(fig)


def test_raw_normalized_stacked():
    raw = _matrix(20)
    normalized = raw / raw.diagonal().abs().sqrt()[:, None] / raw.diagonal().abs().sqrt()[None, :]
    fig = figures.raw_normalized_figure(raw, normalized)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and panels[0].get_position().y0 > panels[1].get_position().y0  # one above the other
    _labelled(fig, legend=False)
    with pytest.raises(ValueError, match="one shape"):
        figures.raw_normalized_figure(raw, normalized[:5])


def test_settings():
    fig = figures.step_size_errors_figure([0.003, 0.01, 0.03], [0.2, 0.1, 0.12], nbeta=20, localization=1)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.003", "0.01", "0.03"]
    _labelled(fig, legend=False)
    _labelled(figures.localization_figure(np.logspace(-1, 2, 5), [5, 4, 2, 0.5, 0.1]), legend=False)


def test_step_size_check_stacked():
    comparisons = {name: {"rel_error": e, "rel_error_half": e / 2, "rel_error_extrapolated": e / 4,
                          "coverage_mc": c, "coverage_total": 0.96}
                   for name, e, c in (("plain", 0.02, 0.95), ("rmsprop", 0.06, 0.45))}
    fig = figures.step_size_check_figure(comparisons, 0.005)
    top, bottom = fig.axes
    assert top.get_position().y0 > bottom.get_position().y1  # one above the other, readable at phone width
    assert [t.get_text() for t in top.get_xticklabels()] == ["plain", "rmsprop"]
    _labelled(fig)
