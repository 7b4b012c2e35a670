"""Figures of the BIF against leave-one-out on the toy model (chapter 4), one function per figure, each returning
a matplotlib ``Figure``.

- :func:`pairs_figure`: the influence of one item on another over training, leave-one-out and the analytic
  derivative above, the normalized BIF with its error band below, sign flips circled.
- :func:`symmetries_figure`: one item's influence on every member of a group, for two (item, group) choices.
- :func:`agreement_figure`, :func:`rank_agreement_figure`: the per-pair correlations and peak-time offsets
  against LOO, and the per-checkpoint rank correlation.
- :func:`window_ablation_figure`: the largest change of a loss when an item is removed for one window only.
- :func:`loo_speedup_figure`: the wall time of leave-one-out as a loop and as one batched training.

Arrays are indexed (checkpoint, i, j) as the chapter computes them; the chapter computes, these functions only
draw, in the book's style (:func:`stagewise.plotting.set_style`). Influence is in nats (LOO, analytic) or
unitless (the normalized BIF, a correlation); time is in gradient-descent steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from stagewise import plotting

__all__ = ["COLORS", "agreement_figure", "loo_speedup_figure", "pairs_figure", "rank_agreement_figure",
           "symmetries_figure", "window_ablation_figure"]

#: one colour per measurement: the BIF is the estimate, LOO the truth, the mode theory the analytic curve
COLORS = {"bif": plotting.COLORS["estimate"], "loo": plotting.COLORS["truth"],
          "analytic": plotting.COLORS["analytic"]}


def _zero(ax: plt.Axes) -> None:
    ax.axhline(0, color="0.5", lw=0.8)


def pairs_figure(steps, loo, analytic, normalized, normalized_se, flips: Mapping[tuple[int, int], Mapping],
                 stage_steps: Sequence[float], items: Sequence[str], *, xmax: float = 1200) -> plt.Figure:
    """One column per pair (i, j) of ``flips`` (pair → {"loo"|"analytic"|"bif": sign-flip step or None}): LOO
    and the analytic derivative on top, the normalized BIF with a ±2 s.e. band below; circles at the flips."""
    fig, axes = plt.subplots(2, len(flips), figsize=(7.5, 5.8), sharex=True, squeeze=False,
                             layout="constrained")
    for col, (i, j) in enumerate(flips):
        top, bottom = axes[0, col], axes[1, col]
        top.plot(steps, loo[:, i, j], color=COLORS["loo"], lw=2, label="leave-one-out Δ")
        top.plot(steps, analytic[:, i, j], color=COLORS["analytic"], lw=1.6, ls="--",
                 label="analytic dℓ/dβ")
        plotting.band(bottom, steps, normalized[:, i, j], normalized_se[:, i, j], COLORS["bif"], lw=1.6,
                      label="normalized BIF", band_label="± 2 s.e.")
        for ax in (top, bottom):
            _zero(ax)
            plotting.stage_lines(ax, stage_steps, "0.7", lw=1)
        for name, ax in [("loo", top), ("analytic", top), ("bif", bottom)]:
            if flips[(i, j)].get(name) is not None:
                ax.plot(flips[(i, j)][name], 0, "o", ms=7, mfc="white", mec=COLORS[name], mew=2)
        top.set(title=f"{items[i]} → {items[j]}", ylabel="influence  (nats)")
        bottom.set(xlabel="training step", ylabel="normalized BIF = −corr", xlim=(0, xmax))
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[1, 0].legend(loc="upper right", fontsize=8)
    return fig


def symmetries_figure(steps, loo, analytic, normalized, panels: Sequence[tuple[int, Sequence[int], str]],
                      items: Sequence[str], *, xmax: float = 1200) -> plt.Figure:
    """One column per (item i, targets, group name) of ``panels``: i's influence on each target, LOO (solid)
    and analytic (dashed) on top, the normalized BIF below, one shade per target."""
    fig, axes = plt.subplots(2, len(panels), figsize=(7.5, 5.6), sharex=True, squeeze=False,
                             layout="constrained")
    for col, (i, targets, group) in enumerate(panels):
        shades = plt.cm.viridis(np.linspace(0.1, 0.85, len(targets)))
        for shade, j in zip(shades, targets):
            axes[0, col].plot(steps, loo[:, i, j], color=shade, lw=1.8, label=items[j])
            axes[0, col].plot(steps, analytic[:, i, j], color=shade, lw=1, ls="--")
            axes[1, col].plot(steps, normalized[:, i, j], color=shade, lw=1.6, label=items[j])
        axes[0, col].set(title=f"{items[i]} on every {group}", ylabel="LOO  (nats)")
        axes[1, col].set(xlabel="training step", ylabel="normalized BIF", xlim=(0, xmax))
        for ax in axes[:, col]:
            _zero(ax)
            ax.legend(loc="lower right", ncol=2, fontsize=7.5)
    return fig


def agreement_figure(corr: Mapping[str, np.ndarray], peak_offsets: Mapping[str, np.ndarray]) -> plt.Figure:
    """Histograms over the pairs of each measurement's (``"analytic"``, ``"bif"``) correlation over time with
    LOO (left) and of its peak-step offset from LOO's (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6), layout="constrained")
    pairs = len(next(iter(corr.values())))
    for name in corr:
        label = f"{'BIF' if name == 'bif' else name} vs LOO"
        axes[0].hist(corr[name], bins=np.linspace(-1, 1, 21), color=COLORS[name], alpha=0.55,
                     label=f"{label} (median {np.median(corr[name]):.2f})")
        offsets = np.asarray(peak_offsets[name])
        axes[1].hist(offsets, bins=np.arange(-600, 650, 50) - 25, color=COLORS[name], alpha=0.55,
                     label=f"{label} (median |Δ| {np.median(np.abs(offsets)):.0f})")
    axes[0].set(xlabel="correlation over time", ylabel=f"pairs (of {pairs})",
                title="Per pair: Pearson correlation")
    axes[1].set(xlabel="peak step − LOO's peak step", ylabel=f"pairs (of {pairs})",
                title="Peak-time offsets")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=7.5)
    return fig


def rank_agreement_figure(steps, rank_corr: Mapping[str, np.ndarray], stage_steps: Sequence[float],
                          pairs: int) -> plt.Figure:
    """Each measurement's Spearman rank correlation with LOO over the ``pairs`` off-diagonal entries, per
    checkpoint, with the stages dotted."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4), layout="constrained")
    for name, values in rank_corr.items():
        ax.plot(steps, values, color=COLORS[name], lw=1.6,
                label=f"{'BIF' if name == 'bif' else name} vs LOO")
    plotting.stage_lines(ax, stage_steps, "0.7", lw=1)
    ax.set(xlabel="training step", ylabel=f"Spearman ρ over the {pairs} pairs", ylim=(-1, 1),
           xlim=(0, float(np.max(steps))), title="Per checkpoint: rank agreement")
    ax.legend(loc="lower left", fontsize=8.5)
    return fig


def window_ablation_figure(centres, window: int, harm: Mapping[int, np.ndarray],
                           helped: Mapping[int, np.ndarray], bif_peak: Mapping[int, float], steps,
                           normalized_ij: Mapping[int, np.ndarray], item: str, items: Sequence[str],
                           *, xmax: float = 1600) -> plt.Figure:
    """One panel per target j: the largest rise (``harm[j]``) and fall (``helped[j]``) of j's loss when
    ``item`` is removed during the window centred at each of ``centres``, the BIF's positive peak dashed and
    the normalized BIF(item, j) on a right-hand axis."""
    fig, axes = plt.subplots(len(harm), 1, figsize=(7.5, 3.3 * len(harm)), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, j in zip(axes[:, 0], harm):
        ax.bar(centres, harm[j], width=0.85 * window, color=plotting.COLORS["singular"], alpha=0.75,
               label=f"largest Δ > 0: {item} harmed j in the window")
        ax.bar(centres, helped[j], width=0.85 * window, color=plotting.COLORS["regular"], alpha=0.75,
               label=f"largest Δ < 0: {item} helped j in the window")
        ax.axvline(bif_peak[j], color=COLORS["bif"], lw=2, ls="--",
                   label=f"BIF's positive peak ({bif_peak[j]:.0f})")
        twin = ax.twinx()
        twin.plot(steps, normalized_ij[j], color=COLORS["bif"], lw=1.2, alpha=0.7)
        bound = float(np.abs(normalized_ij[j]).max()) * 1.1 or 1.0
        twin.set(ylabel="normalized BIF (line)", ylim=(-bound, bound))
        twin.grid(False)
        limit = float(max(np.max(harm[j]), -np.min(helped[j]))) * 1.1 or 1.0
        ax.set(ylabel=f"change of {items[j]}'s loss\n(nats)", xlim=(0, xmax), ylim=(-limit, limit),
               title=f"removing {item} for {window} steps: effect on {items[j]}")
        _zero(ax)
        ax.legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel("training step (window centre)")
    return fig


def loo_speedup_figure(times: Mapping[str, Sequence[float]], speedup: float, runs: int,
                       steps: int) -> plt.Figure:
    """Wall times of leave-one-out as ``times["loop"]`` (``runs`` trainings one by one) and
    ``times["batched"]`` (one batched training): a dot per repeat, a bar at the median."""
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    labels = {"loop": f"loop of {runs} trainings", "batched": "one batched training"}
    for row, name in enumerate(["loop", "batched"]):
        ax.plot(times[name], [row] * len(times[name]), "o", color=COLORS["loo"], alpha=0.6,
                label="one repeat" if row == 0 else None)
        ax.barh(row, float(np.median(times[name])), color=COLORS["loo"], alpha=0.25,
                label="median" if row == 0 else None)
    ax.set(yticks=[0, 1], yticklabels=[labels["loop"], labels["batched"]], xlabel="wall time  (s)",
           ylabel="leave-one-out",
           title=f"Leave-one-out, {runs} runs × {steps:,} steps: ×{speedup:.1f} faster batched")
    ax.legend(loc="lower right", fontsize=8)
    return fig
