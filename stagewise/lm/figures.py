"""Chapter 6's figures, each returned as a matplotlib figure (the chapter saves it with
:func:`stagewise.plotting.save` and shows it in a captioned ``{figure}``).

- :func:`token_classes_figure`: the classes of every token of one sequence;
- :func:`prefix_matching_figure`, :func:`copy_loss_figure`, :func:`training_loss_figure`,
  :func:`attention_figure`, :func:`pairing_figure`: the induction head and the delimiter pairing forming;
- :func:`class_matrices_figure`: class × class influence at a few moments, one large panel per moment with
  horizontal labels and the values written in the cells;
- :func:`class_trajectories_figure`: the best head's score on its own axis above the BIF of a few class pairs;
- :func:`verdict_figure`: the pilot's induction self-influence and the decisive windows' means with their errors;
- :func:`token_matrix_figure`: token × token influence within one sequence;
- :func:`recipe_figure`: the Pythia recipe's variants side by side.

Sizes fit the book's column (:data:`stagewise.plotting.COLUMN_WIDTH`); influence keeps the paper's sign
(negative: g helps h).
"""

from __future__ import annotations

import textwrap

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm

from stagewise import plotting

__all__ = ["CLASS_COLORS", "SHORT_NAMES", "attention_figure", "class_matrices_figure", "class_trajectories_figure",
           "copy_loss_figure", "pairing_figure", "prefix_matching_figure", "recipe_figure", "token_classes_figure",
           "token_matrix_figure", "training_loss_figure", "verdict_figure"]

_CLASSES = ("word_start", "word_part", "word_end", "left_delimiter", "right_delimiter", "formatting", "induction")
#: One colour per token class, the same in every figure of the chapter.
CLASS_COLORS = dict(zip(_CLASSES, plotting.sns.color_palette("deep", 7)))
#: Two-line labels of the classes, short enough to stand horizontally under a heat-map column.
SHORT_NAMES = {"word_start": "word\nstart", "word_part": "word\npart", "word_end": "word\nend",
               "left_delimiter": "left\ndelim.", "right_delimiter": "right\ndelim.", "formatting": "format-\nting",
               "induction": "induc-\ntion"}


def _formation_line(ax: plt.Axes, formation: int | None, label: str | None = None) -> None:
    if formation is not None:
        ax.axvline(formation, color="k", lw=1, ls="--", label=label)


def token_classes_figure(tokens: Sequence[str], membership: np.ndarray, names: Sequence[str]) -> plt.Figure:
    """The classes (rows) of each token (columns) of one sequence, in two halves; ``membership`` (G, T) bool."""
    shown = len(tokens)
    half = (shown + 1) // 2
    fig, axes = plt.subplots(2, 1, figsize=(plotting.COLUMN_WIDTH, 6.4), layout="constrained")
    for ax, first in zip(axes, (0, half)):
        last = min(first + half, shown)
        for g, name in enumerate(names):
            xs = first + np.flatnonzero(membership[g, first:last])
            ax.scatter(xs, np.full(len(xs), g), s=55, marker="s", color=CLASS_COLORS.get(name, "0.4"))
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=9.5)
        ax.set_xticks(range(first, last), tokens[first:last], rotation=90, fontsize=9, family="monospace")
        ax.set_xlim(first - 0.7, last - 0.3)
        ax.invert_yaxis()
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xlabel("token of the held-out sequence (␣ space, ⏎ newline)")
    return fig


def prefix_matching_figure(steps, prefix_matching: np.ndarray, random_best: np.ndarray,
                           formation: int | None) -> plt.Figure:
    """Every head's prefix-matching score (``prefix_matching`` (K, layer, head)) and the best head's on random
    tokens against training step; dashed: the formation step."""
    n_layers, n_heads = prefix_matching.shape[1:]
    palette = plotting.sns.color_palette("deep", n_heads)
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 4.6))
    for layer in range(n_layers):
        for head in range(n_heads):
            ax.plot(steps, prefix_matching[:, layer, head], color=palette[head], marker=".", ms=4,
                    ls="-" if layer == n_layers - 1 else ":", label=f"layer {layer} head {head}")
    ax.plot(steps, random_best, color="k", ls="--", lw=1.2, label="best head, random tokens")
    ax.set(xlabel="training step", ylabel="prefix-matching score (0–1)", ylim=(-0.02, 1.0),
           title="Prefix-matching score of every head (repeated names)")
    ax.legend(ncol=3, fontsize=8.5, loc="upper left")
    _formation_line(ax, formation)
    return fig


def copy_loss_figure(induction, random_tokens, formation: int | None) -> plt.Figure:
    """Losses on what only copying predicts (:class:`~stagewise.lm.InductionTrajectory` of repeated names and
    of random tokens) against training step."""
    color = CLASS_COLORS["induction"]
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 4.3))
    ax.plot(induction.steps, induction.first_copy_loss, color="0.6", ls=":", marker=".", label="first copy, names")
    ax.plot(induction.steps, induction.second_copy_loss, color=color, marker=".", label="second copy, names")
    if induction.induction_token_loss is not None:
        ax.plot(induction.steps, induction.induction_token_loss, color=color, ls="--", marker=".",
                label="induction tokens of held-out text")
    ax.plot(random_tokens.steps, random_tokens.second_copy_loss, color="0.3", ls="-.", lw=1,
            label="second copy, random tokens")
    ax.set(xlabel="training step", ylabel="loss (nats per token)", title="Loss on what only copying predicts")
    ax.legend(fontsize=9)
    _formation_line(ax, formation)
    return fig


def training_loss_figure(losses: Sequence[float], formation: int | None) -> plt.Figure:
    """The training loss per batch and its mean over log-spaced bins of steps, on a log axis of steps."""
    losses = np.asarray(losses)
    edges = np.unique(np.geomspace(1, len(losses) + 1, 90).astype(int))
    centres = np.sqrt(edges[:-1] * (edges[1:] - 1).clip(min=edges[:-1]))
    binned = [losses[a - 1:b - 1].mean() for a, b in zip(edges[:-1], edges[1:])]
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 4.0))
    ax.plot(np.arange(1, len(losses) + 1), losses, color="0.75", lw=0.6, label="training loss (one batch)")
    ax.plot(centres, binned, color=plotting.COLORS["estimate"], label="mean over log-spaced bins")
    ax.set(xscale="log", xlabel="training step (log scale)", ylabel="loss (nats per token)",
           title="Training loss: n-gram statistics, a plateau, the induction bump")
    _formation_line(ax, formation, "induction head forms" if formation is not None else None)
    ax.legend(fontsize=9)
    return fig


def attention_figure(pattern: np.ndarray, layer: int, head: int, step: int) -> plt.Figure:
    """One head's attention (query × key) averaged over repeated sequences [r, r]; lines split the copies."""
    half = pattern.shape[0] / 2 - 0.5
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    image = ax.imshow(pattern, cmap="viridis", vmin=0, vmax=1)
    ax.axvline(half, color="w", lw=0.8)
    ax.axhline(half, color="w", lw=0.8)
    ax.set(xlabel="key position (attended to)", ylabel="query position",
           title=f"Layer {layer} head {head}, step {step:,}")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="attention weight (0–1)")
    return fig


def pairing_figure(pairing, pairing_step: float | None, formation: int | None) -> plt.Figure:
    """How often the right closer is ranked first (:class:`~stagewise.lm.PairingTrajectory`) against step."""
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 4.0))
    shown = np.maximum(pairing.steps, 1)  # step 0 drawn at 1 on the log axis
    ax.plot(shown, pairing.accuracy, color=CLASS_COLORS["right_delimiter"], marker=".",
            label=f"every closer ({pairing.counts[0]})")
    ax.plot(shown, pairing.nested_accuracy, color=CLASS_COLORS["left_delimiter"], marker=".", ls=":",
            label=f"nested closers ({pairing.counts[1]})")
    ax.axhline(pairing.chance, color="0.5", lw=1, ls="-.", label="chance")
    for step, style, what in ((pairing_step, "-", "pairing step"), (formation, "--", "induction head forms")):
        if step is not None:
            ax.axvline(step, color="k", lw=1, ls=style, label=what)
    ax.set(xscale="log", ylim=(0, 1), xlabel="training step (log scale; step 0 at 1)",
           ylabel="right closer ranked first (fraction)", title="Closing what was opened")
    ax.legend(fontsize=9, loc="upper left")
    return fig


def class_matrices_figure(matrices: Mapping[str, np.ndarray], names: Sequence[str], *, normalized: bool = False,
                          scale: float | None = None) -> plt.Figure:
    """Class × class BIF at a few moments (``matrices``: title → (G, G), row g influences column h), one panel
    per moment stacked vertically, horizontal labels, each cell's value written in it (raw values in units of
    10⁻³ nats²; ``normalized``: −corr, −1 … 1). One colour scale: ``scale`` or the largest |value|."""
    panels = list(matrices.items())
    size = len(names)
    if normalized:
        factor, unit, limit = 1.0, "−corr(class-mean losses)", 1.0
    else:
        factor, unit = 1e3, "BIF(g → h)  (10⁻³ nats²)"
        limit = factor * (scale if scale is not None else max(np.nanmax(np.abs(m)) for _, m in panels))
    norm = TwoSlopeNorm(0, -limit, limit)
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.6, 4.3 * len(panels)), layout="constrained")
    axes = np.atleast_1d(axes)
    labels = [SHORT_NAMES.get(n, n) for n in names]
    for ax, (title, matrix) in zip(axes, panels):
        shown = factor * np.asarray(matrix, dtype=float)
        image = ax.imshow(shown, cmap="RdBu_r", norm=norm)
        for g in range(size):
            for h in range(size):
                if np.isfinite(shown[g, h]):
                    dark = abs(shown[g, h]) > 0.6 * limit
                    text = f"{shown[g, h]:.2f}" if normalized else f"{shown[g, h]:.1f}"
                    ax.text(h, g, text.replace("-", "−").replace("−0.00", "0.00").replace("−0.0", "0.0"),
                            ha="center", va="center", fontsize=8.5, color="w" if dark else "0.15")
        ax.grid(False)
        ax.set_xticks(range(size), labels, fontsize=9)
        ax.set_yticks(range(size), [n.replace("_", " ") for n in names], fontsize=9.5)
        ax.set_title(title, fontsize=11.5)
        ax.set_ylabel("influencing class g")
    axes[-1].set_xlabel("influenced class h (query tokens)")
    fig.colorbar(image, ax=list(axes), label=unit, shrink=0.5, aspect=30)
    return fig


def class_trajectories_figure(steps, pairs: Sequence[tuple[str, str]], values: Mapping[tuple[str, str], np.ndarray],
                              errors: Mapping[tuple[str, str], np.ndarray], score_steps, best,
                              formation: int | None) -> plt.Figure:
    """The best head's prefix-matching score (top, its own axis) above one panel per class pair (g, h): the BIF
    (in 10⁻³ nats²) against training step with ±2 s.e. bands, colour of g; dashed: the formation step."""
    rows = (len(pairs) + 1) // 2
    fig = plt.figure(figsize=(plotting.COLUMN_WIDTH, 2.2 + 2.25 * rows), layout="constrained")
    grid = fig.add_gridspec(rows + 1, 2, height_ratios=[0.8] + [1] * rows)
    top = fig.add_subplot(grid[0, :])
    top.plot(score_steps, best, color="0.35", marker=".", ms=4)
    top.set(ylabel="best score (0–1)", ylim=(0, 1), title="Best head's prefix-matching score")
    _formation_line(top, formation, "formation step")
    if formation is not None:
        top.legend(fontsize=9, loc="upper left")
    axes = []
    for k, (g, h) in enumerate(pairs):
        ax = fig.add_subplot(grid[1 + k // 2, k % 2], sharex=top)
        plotting.band(ax, steps, 1e3 * np.asarray(values[g, h]), 1e3 * np.asarray(errors[g, h]),
                      CLASS_COLORS.get(g, "0.3"), marker=".")
        ax.axhline(0, color="k", lw=0.6)
        _formation_line(ax, formation)
        ax.set_title(f"{g.replace('_', ' ')} → {h.replace('_', ' ')}", fontsize=10)
        ax.tick_params(labelsize=8.5)
        if k % 2 == 0:
            ax.set_ylabel("BIF (10⁻³ nats²)", fontsize=10)
        axes.append(ax)
    for ax in axes[-2:]:
        ax.set_xlabel("training step")
    return fig


def verdict_figure(pilot_steps, pilot_values, pilot_errors, decisive_steps, decisive_values, decisive_errors,
                   windows: Mapping[str, object], formation: int | None, quantity: str) -> plt.Figure:
    """The verdict on a curve (``quantity``, in nats²; drawn in 10⁻³ nats²): the pilot's values (±2 s.e.), the
    decisive checkpoints' fresh values (±2 s.e.), and each declared window's mean (``windows``: label →
    :class:`~stagewise.curves.WindowMean`) as a bar over its checkpoints with a ±2 s.e. band."""
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 4.8), layout="constrained")
    ax.errorbar(pilot_steps, 1e3 * np.asarray(pilot_values), yerr=2e3 * np.asarray(pilot_errors), color="0.55",
                marker="o", ms=4, lw=1, capsize=2, label="pilot (all sampled checkpoints)")
    ax.errorbar(decisive_steps, 1e3 * np.asarray(decisive_values), yerr=2e3 * np.asarray(decisive_errors),
                color="k", marker="s", ms=4, lw=0, elinewidth=1.2, capsize=3, zorder=3,
                label="decisive checkpoints (fresh chains)")
    palette = [plotting.COLORS["rmsprop"], plotting.COLORS["estimate"], plotting.COLORS["regular"]]
    span = float(np.ptp(pilot_steps)) or 1.0
    for (label, window), color in zip(windows.items(), palette):
        lo, hi = min(window.steps) - 0.02 * span, max(window.steps) + 0.02 * span
        mean, stderr = 1e3 * window.mean, 1e3 * window.stderr
        ax.fill_between([lo, hi], mean - 2 * stderr, mean + 2 * stderr, color=color, alpha=0.25, lw=0)
        ax.plot([lo, hi], [mean] * 2, color=color, lw=2.5, label=f"{label}: mean ± 2 s.e.")
    _formation_line(ax, formation, "formation step" if formation is not None else None)
    ax.set(xlabel="training step", ylabel=f"{quantity}  (10⁻³ nats²)")
    fig.legend(loc="outside lower center", ncol=2, fontsize=9)
    return fig


def token_matrix_figure(matrix: np.ndarray, labels: Sequence[str], is_induction: Sequence[bool], title: str,
                        scale: float) -> plt.Figure:
    """Token × token BIF (entry (s, t): token s on token t) within one sequence, on ±``scale``; induction tokens'
    labels in bold colour."""
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 7.0), layout="constrained")
    image = ax.imshow(matrix, cmap="RdBu_r", norm=TwoSlopeNorm(0, -scale, scale))
    ax.grid(False)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8.5, family="monospace")
    ax.set_yticks(range(len(labels)), labels, fontsize=8.5, family="monospace")
    for tick_x, tick_y, flag in zip(ax.get_xticklabels(), ax.get_yticklabels(), is_induction):
        if flag:
            for tick in (tick_x, tick_y):
                tick.set_color(CLASS_COLORS["induction"])
                tick.set_fontweight("bold")
    ax.set(title=title, xlabel="influenced token t", ylabel="influencing token s")
    fig.colorbar(image, ax=ax, label="BIF(s → t)  (nats²), diagonal saturated", shrink=0.8, extend="both")
    return fig


def recipe_figure(table) -> plt.Figure:
    """The Pythia recipe's variants side by side, one row of ``table`` per variant (index: labels; columns
    induction_step, peak, peak_stderr, late, late_stderr, decline, decline_stderr): the formation step, the
    peak-window and late-window induction self-influence (±2 s.e.), and the decline from the peak window to the
    late window (±2 s.e.). ``table`` None: a figure saying that the study's results are missing."""
    if table is None or not len(table):
        fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 1.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "The study's results are missing: make study NAME=lm_pythia_recipe",
                ha="center", va="center", fontsize=11)
        return fig
    fig, axes = plt.subplots(3, 1, figsize=(plotting.COLUMN_WIDTH, 8.6), sharey=True, layout="constrained")
    y = np.arange(len(table))
    axes[0].barh(y, table["induction_step"], color="0.55")
    axes[0].set(xlabel="formation step of the induction head (training steps)")
    for offset, column, label, color in ((-0.15, "peak", "peak window", plotting.COLORS["rmsprop"]),
                                         (0.15, "late", "late window", plotting.COLORS["estimate"])):
        axes[1].errorbar(table[column], y + offset, xerr=2 * table[f"{column}_stderr"], fmt="o", color=color,
                         capsize=3, label=label)
    axes[1].set(xlabel="−BIF(induction → induction)  (nats²)")
    axes[1].ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    axes[1].legend(fontsize=9)
    axes[2].errorbar(100 * table["decline"], y, xerr=200 * table["decline_stderr"], fmt="s", color="k",
                     capsize=3)
    axes[2].axvline(0, color="0.4", lw=0.8)
    axes[2].set(xlabel="decline from the peak window to the late window (%; negative: a rise)")
    # long variant names wrap, so that the figure keeps the column's width (and its text size when shown)
    axes[0].set_yticks(y, [textwrap.fill(str(v), 22) for v in table.index], fontsize=9.5)
    axes[0].invert_yaxis()  # shared: the first variant on top in every panel
    return fig
