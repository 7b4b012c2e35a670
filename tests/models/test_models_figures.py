"""Smoke tests of the known-answer models' figures (stagewise.models.figures): each returns a Figure whose
plotting axes are labelled and whose several series have a legend, on small known inputs."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from stagewise.models import figures
from stagewise.models.slt import normal_crossing, posterior_density, two_minima


def _labelled(fig, *, legend: bool = True):
    """The figure's plotting axes (those with data) all have x and y labels; one of them a legend."""
    assert isinstance(fig, plt.Figure)
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison and (ax.lines or ax.images or ax.collections)
             and ax.get_label() != "<colorbar>"]
    assert drawn, "no axes with data"
    for ax in drawn:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip() or _shares_labels(fig, ax), ax.get_title()
    if legend:
        assert any(ax.get_legend() is not None for ax in fig.axes), "several series need a legend"
    plt.close(fig)


def _shares_labels(fig, ax):
    """A panel of a shared-axes grid may leave its labels to the outer panels of its row and column."""
    spec = ax.get_subplotspec()
    grid = [other for other in fig.axes if other.get_visible() and other.get_subplotspec() is not None]
    row = [o for o in grid if o.get_subplotspec().rowspan == spec.rowspan]
    column = [o for o in grid if o.get_subplotspec().colspan == spec.colspan]
    return any(o.get_ylabel() for o in row) and any(o.get_xlabel() for o in column)


def test_posterior_panels():
    axis = np.linspace(-2.6, 2.6, 41)
    densities = {nb: posterior_density(two_minima(1.0), nb, 1.0, axis, axis) for nb in (1.0, 10.0, 100.0)}
    fig = figures.posterior_panels(densities, axis)
    assert sum(ax.get_visible() for ax in fig.axes) == 3  # the fourth cell of the grid is hidden
    assert [ax.get_title() for ax in fig.axes[:3]] == ["nβ = 1", "nβ = 10", "nβ = 100"]
    _labelled(fig)


def test_posterior_panels_needs_a_density():
    with pytest.raises(ValueError, match="densities"):
        figures.posterior_panels({}, np.linspace(-1, 1, 5))


def test_mass_ratio_and_free_energy():
    nbetas = np.logspace(0, 6, 7)
    _labelled(figures.mass_ratio_figure(nbetas, nbetas ** -0.75, lambdas=(1.0, 0.25), radius=0.5))
    energies = {"regular": np.log(nbetas), "singular": 0.25 * np.log(nbetas)}
    fig = figures.free_energy_figure(nbetas, energies, {"regular": 1.0, "singular": 0.25},
                                     {"regular": 1.0, "singular": 0.25})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["regular (λ = 1): fitted slope 1.000", "singular (λ = 0.25): fitted slope 0.250"]
    _labelled(fig)


def test_trajectories_two_panels_a_row():
    rng = np.random.default_rng(0)
    paths = {f"sampler {k}": rng.normal(size=(2, 50, 2)).cumsum(1) * 0.05 for k in range(3)}
    fig = figures.trajectories_figure(normal_crossing([1, 2]), paths)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("sampler")]
    assert len(panels) == 3 and len({round(ax.get_position().x0, 3) for ax in panels}) == 2
    assert all(len(ax.lines) == 3 for ax in panels)  # two chains and the start
    _labelled(fig)


def _table():
    return pd.DataFrame({"name": ["regular w1^2 + w2^2", "reduced-rank regression M=3 H=1 N=2",
                                  "normal crossing w1^2 w2^4"],
                         "truth": [1.0, 1.0, 0.25], "estimate": [1.02, 0.98, 0.24], "stderr": [0.02, 0.03, 0.01],
                         "params": [2, 5, 2]})


def test_llc_truth_labels_do_not_overlap():
    fig = figures.llc_truth_figure(_table())
    fig.canvas.draw()
    boxes = [Text.get_window_extent(text) for text in fig.axes[0].texts]  # the text, not its leader line
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert "RRR M=3 H=1 N=2" in [text.get_text() for text in fig.axes[0].texts]
    _labelled(fig)


def test_llc_truth_needs_its_columns():
    with pytest.raises(ValueError, match="params"):
        figures.llc_truth_figure(_table().drop(columns="params"))


def test_sweeps_and_chains():
    sweep = pd.DataFrame({"nbeta": [1e3, 1e4], "estimate": [0.2, 0.23], "stderr": [0.02, 0.02]})
    _labelled(figures.llc_nbeta_figure(sweep, [1e3, 1e4], [0.22, 0.24], truth=0.25, title="t"))
    steps = pd.DataFrame({"step_size": [1e-4, 2e-4, 3e-4], "estimate": [1.4, 1.45, 1.5], "stderr": [0.1] * 3})
    fig = figures.llc_step_size_figure(steps, truth=1.5, title="t")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.0001", "0.0002", "0.0003"]
    _labelled(fig)
    _labelled(figures.chain_figure(np.abs(np.random.default_rng(1).normal(size=100)), label="chain 0",
                                   truth=0.25, title="t"))
    fig = figures.chain_figure(10.0 ** np.arange(12), label="chain 3", diverged=True, stopped_at=12, title="t")
    assert fig.axes[0].get_yscale() == "log"
    _labelled(fig)


# ------------------------------------------------------------------------------------------ chapter 5: phases


def _exact_sweep(num=21):
    from stagewise.models.phases import TwoClusterPrototype

    model = TwoClusterPrototype()
    rho = np.linspace(0.6, 2.2, num)
    exact = [model.exact(r, 20.0, 1.0, size=1201) for r in rho]
    return model, rho, exact, np.array([d.weights[0] for d in exact])


def test_two_phases_and_weights():
    model, rho, _, pi_u = _exact_sweep()
    w = np.linspace(-3, 3, 61)
    densities = {r: np.exp(model.log_density(w, r, 20.0, 1.0)) for r in (0.6, 1.4, 2.2)}
    fig = figures.two_phases_figure(w, densities, model.data().numpy(), len(model.left), 20.0)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "left cluster (samples 0–2)" in labels and "right cluster (samples 3–4)" in labels
    _labelled(fig)
    _labelled(figures.phase_weights_figure(rho, pi_u))


def test_decomposition_has_a_pi_u_axis_on_top():
    _, rho, exact, pi_u = _exact_sweep()
    curves = {name: {term: np.array([getattr(d, f"bif_{term}")[i, j] for d in exact]) for term in figures.TERMS}
              for name, (i, j) in {"cross": (0, 3), "flip": (0, 2)}.items()}
    fig = figures.decomposition_figure(rho, pi_u, curves, float(np.interp(0.5, pi_u[::-1], rho[::-1])))
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(panels) == 2 and panels[0].get_position().y0 > panels[1].get_position().y0  # stacked
    tops = [child for ax in panels for child in ax.child_axes]
    assert len(tops) == 2 and all("pi_U" in top.get_xlabel() for top in tops)
    tick = tops[0].get_xticks()[0]  # the top axis maps ρ to π_U: its tick sits where π_U has that value
    assert tick in (0.99, 0.9, 0.5, 0.1, 0.01)
    _labelled(fig)
    norms = np.array([np.linalg.norm(d.between) for d in exact])
    fig = figures.between_peak_figure(pi_u, norms, np.array([np.linalg.norm(d.within) for d in exact]))
    assert f"{pi_u[np.argmax(norms)]:.2f}" in fig.axes[0].get_title()
    _labelled(fig)


def test_sgld_sweep():
    _, rho, exact, _ = _exact_sweep(9)
    totals = {"cross": np.array([d.bif_total[0, 3] for d in exact])}
    sweep = pd.DataFrame({"pair": "cross", "rho": rho, "local": totals["cross"], "pooled": totals["cross"] + 0.1})
    _labelled(figures.sgld_sweep_figure(rho, totals, sweep))


def test_stage_figure_puts_loss_and_pi_u_on_their_own_labelled_axes():
    steps = np.arange(0, 251, 10)
    pi_u = 1 / (1 + np.exp((steps - 120) / 10))
    fig = figures.stage_figure(steps, 0.4 * pi_u + 0.05, pi_u)
    top, bottom = fig.axes
    assert "nats" in top.get_ylabel() and "pi_U" in bottom.get_ylabel()
    assert len(top.lines) == 1 and len(bottom.lines) == 2  # π_U and its 1/2 line
    _labelled(fig)
    terms = {"agree": {term: np.sin(steps / 50) for term in figures.TERMS}}
    _labelled(figures.local_terms_figure(steps, terms, 120))
