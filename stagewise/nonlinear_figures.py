"""Chapter 8's figures: the four models of :mod:`stagewise.nonlinear`, their influence, their LLC curves and what
the transition detector of :mod:`stagewise.curves` sees. Each function takes the chapter's results and returns a
matplotlib figure (the chapter saves it with :func:`stagewise.plotting.save`).

- :func:`losses_figure`: the training loss of each model on a log scale, with Saxe's predicted stages.
- :func:`pairs_figure`: LOO (top) and the normalized BIF (bottom) of a few item pairs, one column per pair.
- :func:`agreement_figure`: each model's BIF–LOO agreement, one dot per seed, beside its γ → ∞ limit.
- :func:`llc_figure`: the training loss (top) and the LLC estimate at each checkpoint with ±2 s.e. (bottom).
- :func:`detection_figure`: the three signals of one run (the loss's rate of fall, the LLC, the BIF's
  activity) with the transitions detected in each and Saxe's stages.

Models are named as in chapter 8 ("linear", "tanh", "relu", "stochastic"); :data:`MODEL_COLORS` gives each its
colour. Time is in gradient-descent steps, losses in nats, the BIF in nats².
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from . import plotting
from .curves import LOSS_RULE, influence_activity, smooth_curve

__all__ = ["MODEL_COLORS", "agreement_figure", "detection_figure", "llc_figure", "losses_figure", "pairs_figure"]

#: One colour per model of chapter 8: the linear network in the book's "truth" black.
MODEL_COLORS = {"linear": plotting.COLORS["truth"], "tanh": plotting.COLORS["plain"],
                "relu": plotting.COLORS["rmsprop"], "stochastic": plotting.COLORS["regular"]}


def _color(name: str):
    return MODEL_COLORS.get(name, "0.4")


def _nonempty(name: str, mapping: Mapping) -> None:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{name}: give a non-empty mapping from model name to its values, got {mapping!r}")


def losses_figure(losses: Mapping[str, Sequence[float]], known: Sequence[float], *, seed: int) -> plt.Figure:
    """The training loss of each model (``losses``: name → loss at every step 0 … T, nats) on a log scale, with
    dotted lines at ``known`` (Saxe's predicted stage steps of the linear network); ``seed`` names the run."""
    _nonempty("losses", losses)
    fig, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    last = 0
    for name, loss in losses.items():
        loss = np.asarray(loss, dtype=float)
        last = max(last, len(loss) - 1)
        ax.semilogy(np.arange(len(loss)), loss, color=_color(name), lw=1.8, label=name)
    plotting.stage_lines(ax, known, "0.55", label="Saxe's $t^*_k$ (linear)")
    ax.set(xlabel="training step", ylabel="training loss  (nats)", ylim=(1e-6, 5), xlim=(0, last),
           title=f"Loss of each model, seed {seed}")
    ax.legend(loc="lower left", fontsize=8.5)
    return fig


def pairs_figure(trajectories: Mapping[str, tuple], pairs: Sequence[tuple[int, int]], items: Sequence[str],
                 known: Sequence[float], *, xmax: float | None = None) -> plt.Figure:
    """LOO (top row, nats) and the normalized BIF (bottom row) of each item pair in ``pairs`` (one column each).

    ``trajectories``: model name → (steps (K,), LOO Δ (K, N, N), normalized BIF (K, N, N)) on one checkpoint
    grid; ``items``: the item names, for the titles; ``known``: Saxe's stages (dotted); ``xmax``: the last step
    shown (default: the last checkpoint).
    """
    _nonempty("trajectories", trajectories)
    if not pairs:
        raise ValueError("pairs: give at least one (i, j) pair of item indices")
    fig, axes = plt.subplots(2, len(pairs), figsize=(7.5, 5.6), sharex=True, layout="constrained",
                             squeeze=False)
    for col, (i, j) in enumerate(pairs):
        for name, (steps, loo, normalized) in trajectories.items():
            steps = np.asarray(steps, dtype=float)
            if np.shape(loo)[0] != len(steps) or np.shape(normalized)[0] != len(steps):
                raise ValueError(f"trajectories[{name!r}]: LOO and BIF need one entry per step "
                                 f"({len(steps)}), got {np.shape(loo)[0]} and {np.shape(normalized)[0]}")
            axes[0, col].plot(steps, np.asarray(loo)[:, i, j], color=_color(name), lw=1.8, label=name)
            axes[1, col].plot(steps, np.asarray(normalized)[:, i, j], color=_color(name), lw=1.5, label=name)
            xmax = xmax if xmax is not None else float(steps[-1])
        for ax in axes[:, col]:
            ax.axhline(0, color="0.5", lw=0.8)
            plotting.stage_lines(ax, known, "0.75", lw=1)
        axes[0, col].set(title=f"{items[i]} → {items[j]}", ylabel="LOO Δ  (nats)")
        axes[1, col].set(xlabel="training step", xlim=(0, xmax), ylabel="normalized BIF")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    return fig


def agreement_figure(scores: Mapping[str, Sequence[float]], limits: Mapping[str, float]) -> plt.Figure:
    """Each model's median over pairs of corr(BIF, LOO) over time: ``scores`` (name → one value per seed) as
    dots, ``limits`` (name → the same score of the γ → ∞ limit, the gradient alignment) as dashed bars."""
    _nonempty("scores", scores)
    missing = [name for name in scores if name not in limits]
    if missing:
        raise ValueError(f"limits: no γ → ∞ limit for {missing}; give one per model of scores")
    fig, ax = plt.subplots(figsize=(7.0, 3.6), layout="constrained")
    names = list(scores)
    for k, name in enumerate(names):
        values = np.asarray(scores[name], dtype=float)
        ax.plot(np.full(len(values), k) + np.linspace(-0.12, 0.12, len(values)), values, "o", ms=7,
                color=_color(name), label="BIF, one dot per seed" if k == 0 else None)
        ax.plot([k - 0.25, k + 0.25], [float(limits[name])] * 2, color="0.35", lw=2.2, ls="--",
                label="γ → ∞ limit (gradient alignment), mean over seeds" if k == 0 else None)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set(xticks=range(len(names)), xticklabels=names, ylim=(-0.2, 1), xlabel="model",
           ylabel="median over pairs of\ncorr(BIF, LOO) over time",
           title="Agreement with leave-one-out, per model and seed")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def llc_figure(losses: Mapping[str, Sequence[float]], steps: Sequence[float], llc: Mapping[str, np.ndarray],
               known: Sequence[float], *, nbeta: float, localization: float, seed: int) -> plt.Figure:
    """Top: the training loss of each model (``losses``, name → loss at every step, nats). Bottom: its LLC
    estimate at each checkpoint ``steps`` with ±2 s.e. (``llc``, name → (K, ≥ 2) array of estimate and standard
    error). ``nbeta`` and ``localization`` (γ) label the estimator; ``known``: Saxe's stages (dotted)."""
    _nonempty("llc", llc)
    steps = np.asarray(steps, dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.0), sharex=True, layout="constrained")
    for k, (name, curve) in enumerate(llc.items()):
        curve = np.asarray(curve, dtype=float)
        if curve.ndim != 2 or curve.shape[0] != len(steps) or curve.shape[1] < 2:
            raise ValueError(f"llc[{name!r}]: a (K, 2) array of estimate and stderr for the {len(steps)} "
                             f"steps, got shape {curve.shape}")
        loss = np.asarray(losses[name], dtype=float)
        top.semilogy(np.arange(len(loss)), loss, color=_color(name), lw=1.6, label=name)
        plotting.band(bottom, steps, curve[:, 0], curve[:, 1], _color(name), lw=1.6, marker="o", ms=3,
                      label=name, band_label="± 2 s.e." if k == 0 else None)
    for ax in (top, bottom):
        plotting.stage_lines(ax, known, "0.55", label="Saxe's $t^*_k$" if ax is top else None)
    bottom.axhline(0, color="0.5", lw=0.8)
    top.set(ylabel="training loss  (nats)", ylim=(1e-6, 5), title=f"Loss and LLC over training (seed {seed})")
    bottom.set(xlabel="training step", xlim=(0, steps[-1]),
               ylabel=f"LLC estimate λ̂\n(nβ = {nbeta:g}, γ = {localization:g})")
    top.legend(loc="lower left", fontsize=8.5)
    bottom.legend(loc="lower right", fontsize=8.5)
    return fig


def detection_figure(loss: Sequence[float], llc: tuple, bif: tuple, detected: Mapping[str, Sequence[float]],
                     known: Sequence[float], *, seed: int, name: str = "linear") -> plt.Figure:
    """The three signals of one run that the detector reads, each with its detected transitions (solid) and
    ``known`` stages (dotted): the loss's rate of fall −dL/dt (``loss`` at every step, smoothed as the loss rule
    smooths it), the LLC (``llc``: (steps, estimates)) and the BIF's activity (``bif``: (steps, values (S, N,
    N)), root mean square of the off-diagonal entries). ``detected``: :func:`stagewise.curves.detect_signals`'s
    result, with keys "loss", "llc" and "bif"."""
    missing = [key for key in ("loss", "llc", "bif") if key not in detected]
    if missing:
        raise ValueError(f"detected: no {missing}; pass curves.detect_signals(loss, bif=..., llc=...)")
    loss = np.asarray(loss, dtype=float)
    every = np.arange(len(loss))
    rate = -np.gradient(smooth_curve(every, loss, LOSS_RULE["smooth"]))
    (llc_steps, estimates), (bif_steps, values) = llc, bif
    signals = [("−dL/dt  (nats / step)", every, rate, "loss"),
               ("LLC estimate λ̂", np.asarray(llc_steps), np.asarray(estimates), "llc"),
               ("BIF activity  (nats²)", np.asarray(bif_steps), influence_activity(values), "bif")]
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 6.6), sharex=True, layout="constrained")
    for ax, (label, x, y, signal) in zip(axes, signals):
        ax.plot(x, y, color=_color(name), lw=1.5, marker="o" if len(x) < 200 else None, ms=3, label=name)
        plotting.stage_lines(ax, known, "0.55", label="Saxe's $t^*_k$")
        for k, step in enumerate(detected[signal]):
            ax.axvline(step, color=plotting.COLORS["singular"], lw=1.6, alpha=0.8,
                       label="detected" if k == 0 else None)
        ax.set(ylabel=label)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set(xlabel="training step", xlim=(0, len(loss) - 1))
    axes[0].set_title(f"What each rule finds in the {name} network's records (seed {seed})")
    return fig
