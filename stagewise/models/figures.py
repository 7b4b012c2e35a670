"""Figures of the known-answer models, one function per figure, each returning a matplotlib ``Figure``.

Chapter 1 (singular learning theory, :mod:`.slt`):

- :func:`posterior_panels`: the posterior density of the two-minima potential at several inverse temperatures.
- :func:`mass_ratio_figure`: the posterior mass near the regular minimum over the mass near the singular one.
- :func:`free_energy_figure`: exact free energies F(nβ) of normal forms against log nβ, with lines of slope λ.
- :func:`trajectories_figure`: SGLD chain paths over the contours of a potential, one panel per sampler.
- :func:`llc_truth_figure`: LLC estimates of models with known λ against λ, with d/2 for comparison.
- :func:`llc_nbeta_figure`, :func:`llc_step_size_figure`: the LLC estimate against nβ and against the step size.
- :func:`chain_figure`: nβ·L(w) along one chain, stable (linear axis) or diverging (log axis).

Chapter 5 (phases, :mod:`.phases`; the terms of the law of total covariance in the colours of :data:`TERMS`):

- :func:`two_phases_figure`, :func:`phase_weights_figure`: the posterior of the two-cluster model at a few
  weights ρ, and its phase weight π_U against ρ.
- :func:`decomposition_figure`: the exact BIF of pairs of samples split into within and between terms, against
  ρ (bottom axis) and π_U (top axis).
- :func:`between_peak_figure`: the size of both terms against π_U, with π_U·π_V.
- :func:`sgld_sweep_figure`: sampled against exact BIF across the sweep.
- :func:`stage_figure`, :func:`local_terms_figure`: one stage of the one-mode linear network (training loss and
  π_U on their own axes) and the local BIF of pairs with its terms.

The chapters compute the results (quadrature, sampler runs); these functions only draw them, in the book's
style (:func:`stagewise.plotting.set_style`) and colours (:data:`stagewise.plotting.COLORS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from stagewise import plotting

__all__ = ["TERMS", "between_peak_figure", "chain_figure", "decomposition_figure", "free_energy_figure",
           "llc_nbeta_figure", "llc_step_size_figure", "llc_truth_figure", "local_terms_figure", "mass_ratio_figure",
           "phase_weights_figure", "posterior_panels", "readable_model_name", "sgld_sweep_figure", "stage_figure",
           "trajectories_figure", "two_phases_figure"]

#: Colours of the terms of the law of total covariance (chapter 5): total = within + between.
TERMS = {"total": plotting.COLORS["truth"], "within": plotting.COLORS["regular"],
         "between": plotting.COLORS["singular"]}


def readable_model_name(name: str) -> str:
    """A known-answer model's name for a figure: "reduced-rank regression" → "RRR", ``w1^2`` → mathtext."""
    name = name.replace("reduced-rank regression", "RRR")
    return re.sub(r"w(\d)\^(\d)", r"$w_\1^\2$", name)


def posterior_panels(densities: Mapping[float, np.ndarray], axis: np.ndarray,
                     regular_minimum: tuple[float, float] = (1.0, 1.0)) -> plt.Figure:
    """Two-by-two heat maps of posterior densities (``densities``: nβ → density on the square grid ``axis`` ×
    ``axis``, shape (len(axis), len(axis)) with rows along w₂), shown as the square root of the density for
    contrast, the ``regular_minimum`` circled."""
    if not densities:
        raise ValueError("densities: give at least one nβ → density")
    rows = (len(densities) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(6.4, 3.1 * rows + 0.2), sharex=True, sharey=True,
                             layout="constrained", squeeze=False)
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    for ax, (nbeta, density) in zip(axes.flat, densities.items()):
        ax.imshow(np.sqrt(density), extent=extent, origin="lower", cmap="magma")
        ax.plot(*regular_minimum, "o", color="white", mfc="none", ms=10, label="regular minimum")
        ax.set_title(f"nβ = {nbeta:g}")
        ax.grid(False)
    for ax in axes.flat[len(densities):]:
        ax.set_visible(False)
    for row, col in np.ndindex(axes.shape):  # the lowest visible panel of each column carries its x axis
        if axes[row, col].get_visible() and (row == rows - 1 or not axes[row + 1, col].get_visible()):
            axes[row, col].set_xlabel("$w_1$")
            axes[row, col].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("$w_2$")
    axes[0, 0].legend(loc="lower right", fontsize=9)
    return fig


def mass_ratio_figure(nbetas: Sequence[float], mass_ratio: Sequence[float], lambdas: tuple[float, float],
                      radius: float) -> plt.Figure:
    """The posterior mass within ``radius`` of the regular minimum over that near the singular one, against nβ
    (log-log), with the slope −(λ_regular − λ_singular) the asymptotics predict (``lambdas``), drawn through
    the last point."""
    nbetas, mass_ratio = np.asarray(nbetas, float), np.asarray(mass_ratio, float)
    slope = -(lambdas[0] - lambdas[1])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.loglog(nbetas, mass_ratio, "o-", color=plotting.COLORS["regular"], label="exact (quadrature)")
    ax.loglog(nbetas, mass_ratio[-1] * (nbetas / nbetas[-1]) ** slope, "--", color=plotting.COLORS["truth"],
              label=f"slope −({lambdas[0]:g} − {lambdas[1]:g}) = {slope:g}".replace("-", "−"))
    ax.set(xlabel="inverse temperature nβ", ylabel=f"mass within {radius:g} of the regular minimum\n"
           "÷ mass within it of the singular one", title="The regular minimum loses the posterior")
    ax.legend()
    return fig


def free_energy_figure(nbetas: Sequence[float], free_energy: Mapping[str, Sequence[float]],
                       lambdas: Mapping[str, float], slopes: Mapping[str, float]) -> plt.Figure:
    """The exact free energy F(nβ) of each normal form (``free_energy``: name → values at ``nbetas``) against
    log nβ, with a dashed line of slope λ (``lambdas``) through its last point; the legend gives the fitted
    ``slopes``."""
    log_nbeta = np.log(np.asarray(nbetas, float))
    colors = [plotting.COLORS["regular"], plotting.COLORS["singular"], plotting.COLORS["analytic"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for (name, values), color in zip(free_energy.items(), colors):
        values = np.asarray(values, float)
        ax.plot(log_nbeta, values, "o-", color=color, label=f"{name} (λ = {lambdas[name]:g}): fitted slope {slopes[name]:.3f}")
        ax.plot(log_nbeta, values[-1] + lambdas[name] * (log_nbeta - log_nbeta[-1]), "--", color=color,
                alpha=0.6)
    ax.set(xlabel="log nβ", ylabel="free energy F(nβ)  (nats)", title="F(nβ) ≈ λ·log nβ (dashed: slope λ)")
    ax.legend(fontsize=9.5)
    return fig


def trajectories_figure(potential, paths: Mapping[str, np.ndarray], *, extent: float = 3.0,
                        center: tuple[float, float] = (0.0, 0.0)) -> plt.Figure:
    """SGLD chain paths (``paths``: panel title → positions (chain, step, 2)) over the contours of
    log₁₀ ``potential`` on the square ±``extent``, two panels a row (readable on a phone); the cell after the
    last panel holds the colour bar and the legend."""
    import torch

    if not paths:
        raise ValueError("paths: give at least one panel title → positions (chain, step, 2)")
    grid_axis = np.linspace(-extent, extent, 300)
    gx, gy = np.meshgrid(grid_axis, grid_axis)
    with torch.no_grad():
        k = potential(torch.from_numpy(np.stack([gx, gy], -1))).numpy()
    log_k = np.log10(k + 1e-6)
    rows = len(paths) // 2 + 1
    fig, axes = plt.subplots(rows, 2, figsize=(6.6, 3.2 * rows), sharex=True, sharey=True,
                             layout="constrained", squeeze=False)
    for ax, (title, positions) in zip(axes.flat, paths.items()):
        contour = ax.contourf(gx, gy, log_k, levels=np.arange(-6, 4), cmap="Greys_r", alpha=0.6)
        for c in range(positions.shape[0]):
            ax.plot(positions[c, :, 0], positions[c, :, 1], lw=0.6, alpha=0.8)
        ax.plot(*center, "*", color="k", ms=12, label="w*, where the chains start")
        ax.set_title(title, fontsize=11)
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent))
    for ax in axes[:, 0]:
        ax.set_ylabel("$w_2$")
    for ax in axes.flat:
        ax.set_xlabel("$w_1$")
        ax.xaxis.set_tick_params(labelbottom=True)
    spare = axes.flat[len(paths):]  # at least one cell: the colour bar and the legend go there
    for ax in spare:
        ax.set_axis_off()
    bar = spare[0].inset_axes([0.08, 0.62, 0.84, 0.09])
    fig.colorbar(contour, cax=bar, orientation="horizontal", label="log₁₀ K(w)  (shading)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    spare[0].legend(handles, labels, loc="lower center", fontsize=9.5, title="lines: one colour per chain",
                    title_fontsize=9.5)
    return fig


def _spread_labels(y: np.ndarray, gap: float, floor: float) -> np.ndarray:
    """Label heights at least ``gap`` apart and at least ``floor``, each close to its point's height ``y``:
    pushed down from the highest point first (below the diagonal of an estimate-against-truth plot is empty),
    then up where that went below ``floor``."""
    y = np.asarray(y, dtype=float)
    placed = np.empty_like(y)
    last = np.inf
    for k in np.argsort(-y):
        placed[k] = min(y[k], last - gap)
        last = placed[k]
    last = -np.inf
    for k in np.argsort(placed):
        placed[k] = max(placed[k], floor, last + gap)
        last = placed[k]
    return placed


def llc_truth_figure(table: pd.DataFrame) -> plt.Figure:
    """LLC estimates (``table``: columns name, truth, estimate, stderr, params) against the known λ, with ±2
    standard errors, the d/2 of a regular model with as many parameters (grey crosses) and the diagonal; every
    point named, the names spaced so that none overlaps another."""
    missing = {"name", "truth", "estimate", "stderr", "params"} - set(table.columns)
    if missing:
        raise ValueError(f"table: no column {sorted(missing)} (columns: {list(table.columns)})")
    half_dim = table["params"] / 2
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    ax.errorbar(table.truth, table.estimate, yerr=2 * table.stderr, fmt="o", capsize=4,
                color=plotting.COLORS["estimate"], label="SGLD estimate ± 2 s.e.", zorder=3)
    ax.plot(table.truth, half_dim, "x", color="grey", ms=8, label="d/2 (what a regular model would give)")
    top = float(max(half_dim.max(), table.estimate.max()) * 1.1)
    ax.plot([0, top], [0, top], "--", color=plotting.COLORS["truth"], label="estimate = truth")
    label_y = _spread_labels(table.estimate.to_numpy(float), gap=0.055 * top, floor=0.035 * top)
    for name, x, y, y_text in zip(table["name"], table.truth, table.estimate, label_y):
        ax.annotate(readable_model_name(name), (x, y), xytext=(x + 0.09 * top, y_text), fontsize=9.5,
                    va="center", arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.7})
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="known learning coefficient λ", ylabel="estimated LLC λ̂",
           title="LLC estimates against known answers")
    ax.legend(loc="lower right", fontsize=9.5)  # the corner below the diagonal that no point reaches
    return fig


def llc_nbeta_figure(sweep: pd.DataFrame, dense_nbeta: Sequence[float], dense_exact: Sequence[float],
                     truth: float, title: str) -> plt.Figure:
    """LLC estimates (``sweep``: columns nbeta, estimate, stderr) against nβ (log axis) with ±2 s.e., the
    exact finite-nβ expectation E[nβ·K] (``dense_exact`` at ``dense_nbeta``) and the asymptotic λ ``truth``."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.errorbar(sweep.nbeta, sweep.estimate, yerr=2 * sweep.stderr, fmt="o", capsize=4,
                color=plotting.COLORS["estimate"], label="SGLD estimate ± 2 s.e.")
    ax.plot(dense_nbeta, dense_exact, color=plotting.COLORS["singular"], label="exact E[nβ·K] at this nβ")
    ax.axhline(truth, ls="--", color=plotting.COLORS["truth"], label=f"λ = {truth:g}")
    top = float(max((sweep.estimate + 2 * sweep.stderr).max(), truth) * 1.15)
    ax.set(xscale="log", xlabel="inverse temperature nβ", ylabel="LLC  (estimated λ)", ylim=(0, top),
           title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)  # below: never over a point
    return fig


def llc_step_size_figure(sweep: pd.DataFrame, truth: float, title: str) -> plt.Figure:
    """LLC estimates (``sweep``: columns step_size, estimate, stderr) against the step size ε with ±2 s.e. and
    the known λ ``truth``; ticks at the swept step sizes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.errorbar(sweep.step_size, sweep.estimate, yerr=2 * sweep.stderr, fmt="o-", capsize=4,
                color=plotting.COLORS["estimate"], label="SGLD estimate ± 2 s.e.")
    ax.axhline(truth, ls="--", color=plotting.COLORS["truth"], label=f"λ = {truth:g}")
    steps = sweep.step_size.to_numpy(float)
    ax.set_xticks(steps, [f"{s:g}" for s in steps])
    margin = 0.15 * (steps.max() - steps.min() if len(steps) > 1 else steps[0])
    top = float(max((sweep.estimate + 2 * sweep.stderr).max(), truth) * 1.45)
    ax.set(xlabel="step size ε", ylabel="LLC  (estimated λ)", ylim=(0, top), title=title,
           xlim=(steps.min() - margin, steps.max() + margin))
    ax.legend(loc="lower right")
    return fig


def chain_figure(nbeta_loss: np.ndarray, *, label: str, title: str, truth: float | None = None,
                 stopped_at: int | None = None, diverged: bool = False) -> plt.Figure:
    """nβ·L(w) along one chain (``nbeta_loss``, one value per step) labelled ``label``: with ``truth`` (λ) as a
    dashed line; ``diverged=True`` draws it on a log axis with points, and ``stopped_at`` marks the step at
    which the sampler reported the divergence."""
    nbeta_loss = np.asarray(nbeta_loss, float)
    steps = np.arange(len(nbeta_loss))
    color = plotting.COLORS["diverged" if diverged else "plain"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    if diverged:
        ax.semilogy(steps, np.clip(nbeta_loss, 1e-6, None), "o-", ms=3, color=color, label=label)
    else:
        ax.plot(steps, nbeta_loss, lw=0.6, color=color, label=label)
        ax.set_ylim(min(0.0, nbeta_loss.min()), 1.35 * nbeta_loss.max())  # headroom: the legend stays clear
    if truth is not None:
        ax.axhline(truth, ls="--", color=plotting.COLORS["truth"], label=f"λ = {truth:g}")
    if stopped_at is not None:
        ax.axvline(stopped_at, ls=":", color=plotting.COLORS["truth"],
                   label=f"divergence reported at step {stopped_at}")
    scale = "  (nats, log scale)" if diverged else "  (nats)"
    ax.set(xlabel="SGLD step", ylabel="nβ · L(w)" + scale, title=title)
    ax.legend(loc="upper left", ncols=1 if diverged else 2)
    return fig


# ------------------------------------------------------------------------------------------ chapter 5: phases


def two_phases_figure(w, densities: Mapping[float, np.ndarray], points, n_left: int, nbeta: float) -> plt.Figure:
    """Posterior densities of the prototype (``densities``: weight ρ → density at the grid ``w``), with the
    data ``points`` as triangles, the first ``n_left`` of them the left cluster."""
    points = np.asarray(points, dtype=float)
    fig, ax = plt.subplots(figsize=(6.8, 4.0), layout="constrained")
    for (rho, density), color in zip(densities.items(), ["C0", "C4", "C1", "C2", "C3"]):
        ax.plot(w, density, color=color, label=f"ρ = {rho:.2f}")
    ax.plot(points[:n_left], np.zeros(n_left), "v", color="C0", ms=10,
            label=f"left cluster (samples 0–{n_left - 1})")
    ax.plot(points[n_left:], np.zeros(len(points) - n_left), "v", color="C1", ms=10,
            label=f"right cluster (samples {n_left}–{len(points) - 1})")
    ax.set(xlabel="prototype w", ylabel="posterior density  (per unit of w)",
           title=f"Two basins, two phases (nβ = {nbeta:g})")
    ax.legend(fontsize=9.5, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2)  # below: off the peaks
    return fig


def phase_weights_figure(rho, pi_u) -> plt.Figure:
    """The phase weight π_U of the left basin against the weight ρ of the right cluster, and π_U·π_V."""
    rho, pi_u = np.asarray(rho, dtype=float), np.asarray(pi_u, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    ax.plot(rho, pi_u, color=plotting.COLORS["truth"], label="$\\pi_U$ (left basin)")
    ax.plot(rho, pi_u * (1 - pi_u), color=plotting.COLORS["singular"], label="$\\pi_U \\pi_V$")
    ax.axhline(0.5, ls=":", color="grey")
    ax.set(xlabel="weight ρ of the right cluster", ylabel="phase weight  (probability)",
           title="The sweep moves the mass")
    ax.legend()
    return fig


def _pi_u_axis(ax, rho, pi_u, ticks=(0.99, 0.9, 0.5, 0.1, 0.01)) -> None:
    """A top axis giving π_U at the ρ of the bottom axis (π_U falls with ρ: ``rho`` increasing)."""
    rho, pi_u = np.asarray(rho, dtype=float), np.asarray(pi_u, dtype=float)
    top = ax.secondary_xaxis("top", functions=(lambda r: np.interp(r, rho, pi_u),
                                               lambda p: np.interp(p, pi_u[::-1], rho[::-1])))
    shown = [tick for tick in ticks if pi_u.min() < tick < pi_u.max()]
    top.set_xticks(shown, [f"{tick:g}" for tick in shown])
    top.set_xlabel("phase weight $\\pi_U$ of the left basin")


def decomposition_figure(rho, pi_u, curves: Mapping[str, Mapping[str, np.ndarray]], rho_half: float
                         ) -> plt.Figure:
    """The exact BIF of each pair (``curves``: pair name → term → one value per ``rho``), split into its terms,
    one panel per pair stacked; the bottom axis is ρ, the top one π_U at that ρ, dotted where π_U = 1/2."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(6.6, 3.4 * len(curves) + 0.4), sharex=True,
                             layout="constrained", squeeze=False)
    for ax, (name, terms) in zip(axes[:, 0], curves.items()):
        for term, color in TERMS.items():
            ax.plot(rho, terms[term], color=color, lw=2.4 if term == "total" else 1.6, label=term)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(rho_half, ls=":", color="grey", label="$\\pi_U = 1/2$")
        ax.set_ylabel(f"BIF, {name}\n(nats²)")
        _pi_u_axis(ax, rho, pi_u)
    axes[0, 0].legend(fontsize=9.5, ncols=2)
    axes[-1, 0].set_xlabel("weight ρ of the right cluster")
    return fig


def between_peak_figure(pi_u, between_norm, within_norm) -> plt.Figure:
    """The size (Frobenius norm over all pairs, nats²) of the between and within terms against π_U, with
    π_U·π_V scaled to the between term's peak (dashed) and the peak dotted."""
    pi_u, between_norm = np.asarray(pi_u, dtype=float), np.asarray(between_norm, dtype=float)
    peak = int(np.argmax(between_norm))
    fig, ax = plt.subplots(figsize=(6.8, 4.2), layout="constrained")
    ax.plot(pi_u, between_norm, color=TERMS["between"], lw=2, label="‖between‖ (Frobenius, all pairs)")
    ax.plot(pi_u, within_norm, color=TERMS["within"], lw=2, label="‖within‖")
    scale = between_norm[peak] / (pi_u[peak] * (1 - pi_u[peak]))
    ax.plot(pi_u, scale * pi_u * (1 - pi_u), "--", color=plotting.COLORS["truth"], label="∝ $\\pi_U \\pi_V$")
    ax.axvline(pi_u[peak], ls=":", color="grey")
    ax.set(xlabel="phase weight $\\pi_U$ of the left basin", ylabel="size of the term  (nats²)",
           title=f"The between term peaks at $\\pi_U$ = {pi_u[peak]:.2f}")
    ax.legend()
    return fig


def sgld_sweep_figure(rho_dense, exact: Mapping[str, np.ndarray], sweep: pd.DataFrame) -> plt.Figure:
    """Sampled against exact BIF across the sweep, one panel per pair: the exact total (``exact``: pair →
    values at ``rho_dense``), and the rows of ``sweep`` (columns pair, rho, local, pooled): each basin sampled
    locally with the exact π_U (dots) and all draws pooled (crosses)."""
    pairs = list(exact)
    fig, axes = plt.subplots(len(pairs), 1, figsize=(7.0, 3.3 * len(pairs)), sharex=True, layout="constrained",
                             squeeze=False)
    for ax, name in zip(axes[:, 0], pairs):
        group = sweep[sweep["pair"] == name]
        ax.plot(rho_dense, exact[name], color=plotting.COLORS["truth"], lw=2, label="exact (quadrature)")
        ax.plot(group.rho, group.local, "o", color=plotting.COLORS["estimate"],
                label="SGLD, each basin locally, exact $\\pi_U$")
        ax.plot(group.rho, group.pooled, "x", color=plotting.COLORS["rmsprop"], ms=7,
                label="SGLD, all draws pooled ($\\pi_U$ wrong)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(ylabel="BIF  (nats²)", title=name)
    axes[-1, 0].set_xlabel("weight ρ of the right cluster")
    axes[0, 0].legend(loc="center right", fontsize=9)
    return fig


def stage_figure(steps, train_loss, pi_u) -> plt.Figure:
    """One stage of a network on two axes sharing the training step: the training loss (nats) above, the
    posterior weight π_U of the phase "mode not learned" (a probability) below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.0), sharex=True, layout="constrained")
    top.plot(steps, train_loss, color=plotting.COLORS["truth"], label="training loss")
    top.set(ylabel="training loss  (nats)", title="One stage: plateau, then the mode is learned")
    bottom.plot(steps, pi_u, color=plotting.COLORS["singular"], label="$\\pi_U$ (mode not learned)")
    bottom.axhline(0.5, ls=":", color="grey")
    bottom.set(xlabel="training step", ylabel="phase weight $\\pi_U$\n(probability)", ylim=(-0.03, 1.03))
    for ax in (top, bottom):
        ax.legend(loc="upper right")
    return fig


def local_terms_figure(steps, terms: Mapping[str, Mapping[str, np.ndarray]], half_step: float) -> plt.Figure:
    """The local BIF of pairs along training (``terms``: pair name → term → one value per checkpoint of
    ``steps``), with its within and between terms, one panel per pair stacked; dotted: ``half_step``, where
    π_U = 1/2."""
    fig, axes = plt.subplots(len(terms), 1, figsize=(6.6, 3.2 * len(terms)), sharex=True, layout="constrained",
                             squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], terms.items()):
        for term, color in TERMS.items():
            ax.plot(steps, values[term], color=color, label=term, lw=2.4 if term == "total" else 1.6)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(half_step, ls=":", color="grey", label="$\\pi_U = 1/2$")
        ax.set(ylabel="local BIF  (nats²)", title=f"pair {name}")
    axes[-1, 0].set_xlabel("training step")
    axes[0, 0].legend(fontsize=9.5, ncols=2)
    return fig
