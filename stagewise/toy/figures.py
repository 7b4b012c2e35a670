"""Figures of the toy model (chapter 3), one function per figure, each returning a matplotlib ``Figure``.

- :func:`tree_figure`, :func:`data_figure`: the hierarchy as a dendrogram and as the item-by-feature matrix.
- :func:`singular_values_figure`, :func:`modes_figure`: the singular values of Σ_yx by stage, and the singular
  vectors (which items a mode contrasts, which features it predicts).
- :func:`loss_stages_figure`: the training loss with Saxe's analytic curve, the predicted and observed stage
  steps, and the loss drop per step.
- :func:`mode_strengths_figure`: every mode's strength uᵀWv against training step, with the analytic sigmoids.
- :func:`representation_figure`, :func:`branch_distances_figure`: the hidden representation of the items over
  training (3-D, by classical MDS) and the distances that grow at each stage.

Stages are coloured by :func:`stage_colors` (viridis, first stage dark); time is in gradient-descent steps.
The chapter computes the run and the theory; these functions only draw them, in the book's style
(:func:`stagewise.plotting.set_style`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from mpl_toolkits.mplot3d import proj3d

from stagewise import plotting

__all__ = ["branch_distances_figure", "data_figure", "loss_stages_figure", "mode_strengths_figure",
           "modes_figure", "representation_figure", "singular_values_figure", "stage_colors", "tree_figure"]

_LEVELS = ["root", "kingdom", "class", "item"]


def stage_colors(num_stages: int) -> list:
    """One colour per stage, from viridis (the first stage darkest)."""
    if num_stages < 1:
        raise ValueError(f"num_stages = {num_stages}: at least one stage")
    return [plt.get_cmap("viridis")(0.9 * k / max(num_stages - 1, 1)) for k in range(num_stages)]


def tree_figure(data, node_names: Sequence[str]) -> plt.Figure:
    """The hierarchy of ``data`` (a :class:`~stagewise.toy.HierarchicalData`) as a dendrogram: one column per
    level of the tree, one row per item, internal nodes named by ``node_names`` (breadth-first)."""
    depth = len(data.levels) - 1
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for lvl, level in enumerate(data.levels):
        for k, members in enumerate(level):
            row = np.mean(members)
            if lvl < depth:
                for child in data.levels[lvl + 1][2 * k: 2 * k + 2]:
                    ax.plot([lvl, lvl, lvl + 1], [row, np.mean(child), np.mean(child)], color="0.45", lw=1.3)
                ax.annotate(node_names[2 ** lvl - 1 + k], (lvl, row), xytext=(4, 5), fontsize=10,
                            textcoords="offset points", ha="left", va="bottom")
            ax.plot(lvl, row, "o", color=plotting.COLORS["estimate"], ms=6, zorder=3)
    ax.set(xlim=(-0.15, depth + 0.1), xticks=range(depth + 1), xticklabels=_LEVELS[: depth + 1],
           yticks=range(data.num_items), ylim=(data.num_items - 0.5, -0.5), xlabel="level of the tree",
           ylabel="item")
    ax.set_yticklabels(data.items)
    ax.grid(False)
    return fig


def data_figure(data, *, stochastic: bool = False, flip_prob: float | None = None) -> plt.Figure:
    """The item-by-feature matrix Y of ``data``: 0/1 features in grey scale with red lines between the
    levels of the tree, or (``stochastic``) ±1 features diffused down the tree with flip probability
    ``flip_prob``."""
    y = data.targets.numpy()
    fig, ax = plt.subplots(figsize=(7.2, 4.3), layout="constrained")
    scale = float(np.abs(y).max())
    image = ax.imshow(y, cmap="RdBu_r" if stochastic else "Greys", vmin=-scale if stochastic else 0,
                      vmax=scale, aspect="auto")
    ax.set(yticks=range(data.num_items), yticklabels=data.items, ylabel="item", xlabel="feature",
           ylim=(data.num_items - 0.5, -0.5))
    if stochastic:
        ax.set_title(f"{y.shape[1]} features by branching diffusion (flip probability {flip_prob:g})")
    else:
        ax.set_xticks(range(y.shape[1]), data.features, rotation=60, ha="right", rotation_mode="anchor")
        for edge in np.cumsum([len(level) for level in data.levels])[:-1]:
            ax.axvline(edge - 0.5, color=plotting.COLORS["singular"], lw=1.2)
        ax.set_title("Y: item i has feature f when it lies under node f")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="feature value", shrink=0.8, pad=0.015)
    return fig


def _stage_of_mode(blocks: Sequence[Sequence[int]]) -> list[int]:
    return [b for b, block in enumerate(blocks) for _ in block]


def singular_values_figure(s, blocks: Sequence[Sequence[int]], stage_names: Sequence[str]) -> plt.Figure:
    """The singular values ``s`` of Σ_yx as bars coloured by stage (``blocks``: the mode indices of each
    stage, ``stage_names`` its legend entry), each stage labelled with its value and how many modes tie."""
    s = np.asarray(s, dtype=float)
    colors = stage_colors(len(blocks))
    stage = _stage_of_mode(blocks)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.bar(range(1, len(s) + 1), s, color=[colors[b] for b in stage])
    for b, block in enumerate(blocks):
        ax.annotate(f"{s[block[0]]:.3f}" + (f" ×{len(block)}" if len(block) > 1 else ""),
                    (np.mean(block) + 1, s[block[0]]), xytext=(0, 4), textcoords="offset points", ha="center",
                    fontsize=9.5)
        ax.bar(0, 0, color=colors[b], label=stage_names[b].replace("\n", " "))
    ax.set(xlabel="mode k", ylabel="singular value $s_k$ of $Σ_{yx}$", xticks=range(1, len(s) + 1),
           title="One stage per distinct singular value", ylim=(0, s[0] * 1.15), xlim=(0.4, len(s) + 0.6))
    ax.legend(loc="upper right", fontsize=9, title="stage")
    return fig


def modes_figure(basis, items: Sequence[str], features: Sequence[str]) -> plt.Figure:
    """The singular vectors of ``basis`` (a :class:`~stagewise.toy.ModeBasis`): v_k (items × modes) above u_k
    (features × modes), one panel each so that both stay readable on a narrow screen; black lines separate
    the blocks of tied modes."""
    v, u = basis.v.numpy(), basis.u.numpy()
    rows = (len(items), min(len(features), 20))
    fig, axes = plt.subplots(2, 1, figsize=(6.0, 8.2), layout="constrained",
                             gridspec_kw={"height_ratios": rows})
    lim = float(max(np.abs(u).max(), np.abs(v).max()))
    labels = [str(k + 1) for k in range(v.shape[1])]
    for ax, matrix, names, title, what in [(axes[0], v, items, "$v_k$: which items a mode contrasts", "item"),
                                           (axes[1], u, features, "$u_k$: which features it predicts",
                                            "feature")]:
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set(xticks=range(len(labels)), xticklabels=labels, xlabel="mode k", title=title)
        if len(names) <= 20:
            ax.set_yticks(range(len(names)), names, fontsize=10)
            ax.set_ylabel(what)
        else:
            ax.set_ylabel(f"{what} index")
        ax.grid(False)
        for edge in np.cumsum([len(block) for block in basis.blocks])[:-1]:
            ax.axvline(edge - 0.5, color="k", lw=1)
    fig.colorbar(image, ax=axes, shrink=0.8, label="loading (red +, blue −)", location="bottom")
    return fig


def loss_stages_figure(loss, theory_loss, predicted: Sequence[float], observed: Sequence[float],
                       plateaus: Sequence[float]) -> plt.Figure:
    """Top: the training ``loss`` at every step (nats) with Saxe's analytic ``theory_loss``, the ``predicted``
    stage steps (dotted, one colour per stage, labelled t*_k), the loss left after each stage (``plateaus``,
    dash-dotted) and the ``observed`` transitions (triangles). Bottom: the loss drop per step, whose peaks
    are the observed transitions."""
    loss, theory_loss = np.asarray(loss, dtype=float), np.asarray(theory_loss, dtype=float)
    observed = np.asarray(observed, dtype=float)
    t = np.arange(len(loss))
    colors = stage_colors(len(predicted))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.2, 6.4), sharex=True, layout="constrained",
                                   gridspec_kw={"height_ratios": [2, 1]})
    ax1.plot(t, loss, color=plotting.COLORS["estimate"], lw=2.2, label="gradient descent")
    ax1.plot(t, theory_loss, "--", color=plotting.COLORS["truth"], lw=1.2, label="Saxe's mode dynamics")
    for ax in (ax1, ax2):
        plotting.stage_lines(ax, predicted, colors, lw=1.6)
    for b, step in enumerate(predicted):  # staggered, so that close stages do not overprint
        height = 0.98 - 0.09 * (b % 4)
        ax1.annotate(f"$t^*_{b + 1}$ = {step:.0f}", (step, height), xycoords=("data", "axes fraction"),
                     xytext=(4, 0), textcoords="offset points", va="top", fontsize=9.5, color="0.15",
                     bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for b, level in enumerate(plateaus[:-1]):
        ax1.axhline(level, color=plotting.COLORS["singular"], lw=0.9, ls="-.", alpha=0.6, zorder=1,
                    label="loss left after each stage" if b == 0 else None)
    ax1.plot(observed, np.interp(observed, t, loss), "v", color=plotting.COLORS["singular"], ms=9, zorder=4,
             label="observed transition")
    ax1.set(ylabel="training loss  (nats)", ylim=(0, loss[0] * 1.45))
    ax1.legend(loc="center right", fontsize=9)
    rate = -np.diff(loss)
    ax2.plot(t[:-1], rate, color=plotting.COLORS["estimate"], lw=1.5, label="gradient descent")
    ax2.plot(t[:-1], -np.diff(theory_loss), "--", color=plotting.COLORS["truth"], lw=1.0, label="analytic")
    ax2.plot(observed, np.interp(observed, t[:-1], rate), "v", color=plotting.COLORS["singular"], ms=8,
             label="detected peaks")
    ax2.set(xlabel="training step", ylabel="loss drop per step\n(nats)", xlim=(0, len(loss) - 1))
    ax2.legend(loc="upper right", fontsize=9)
    return fig


def mode_strengths_figure(steps, strength, theory_strength, off_diagonal, basis, predicted: Sequence[float],
                          stage_names: Sequence[str]) -> plt.Figure:
    """Every mode's strength uᵀ_k W v_k at the checkpoint ``steps`` (``strength``: (S, r); thick, one colour
    per stage), the analytic sigmoid of each stage's first mode (``theory_strength``: (steps + 1, r), one row
    per step; dashed), the largest off-diagonal entry (``off_diagonal``: (S,); grey) and the ``predicted``
    half-way points; the legend sits below the axes."""
    strength, theory_strength = np.asarray(strength, dtype=float), np.asarray(theory_strength, dtype=float)
    final = (basis.s / basis.c).numpy()
    colors = stage_colors(len(basis.blocks))
    fig, ax = plt.subplots(figsize=(7.2, 6.0), layout="constrained")
    t = np.arange(theory_strength.shape[0])
    for b, block in enumerate(basis.blocks):
        name = stage_names[b].replace("\n", " ")
        for k in block:
            ax.plot(steps, strength[:, k], color=colors[b], lw=3, alpha=0.55,
                    label=f"{name} (gradient descent)" if k == block[0] else None)
        ax.plot(t, theory_strength[:, block[0]], "--", color="k", lw=1.1,
                label="analytic sigmoid $G_k(t)$" if b == 0 else None)
    ax.plot(steps, off_diagonal, color="0.5", lw=1.2, label="largest off-diagonal $|u_j^T W v_k|$")
    ax.plot(predicted, final[[block[0] for block in basis.blocks]] / 2, "o", mfc="white", mec="k", ms=7,
            label="predicted half-way point $t^*_k$")
    ax.set(xlabel="training step", ylabel="mode strength $u_k^T W v_k$", xlim=(0, t[-1]))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize=9.5)
    return fig


def representation_figure(frames, steps, predicted: Sequence[float], items: Sequence[str],
                          axis_names: Sequence[str]) -> plt.Figure:
    """The hidden representations of the items over training in three dimensions (``frames``: (S, items, 3),
    by classical MDS at the checkpoint ``steps``), with the positions at the checkpoints nearest to the
    ``predicted`` stage steps, the start (a star) and the final positions labelled (items that end on the
    same spot share one label); ``axis_names`` label the three axes."""
    frames, steps = np.asarray(frames, dtype=float), np.asarray(steps)
    n_items = frames.shape[1]
    item_colors = plotting.sns.color_palette("Paired", n_items)
    colors = stage_colors(len(predicted))
    fig = plt.figure(figsize=(7.0, 6.6), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    for i in range(n_items):
        ax.plot(*frames[:, i].T, color=item_colors[i], lw=2.2)
    for b, step in enumerate(predicted):
        k = int(np.argmin(np.abs(steps - step)))
        ax.scatter(*frames[k].T, color=colors[b], edgecolor="k", s=40, depthshade=False, zorder=3,
                   label=f"at $t^*_{b + 1}$ ≈ step {steps[k]}")
    ax.scatter(*frames[0].T, color="k", marker="*", s=90, label="step 0 (all items together)")
    ax.set_xlabel(axis_names[0], labelpad=10)
    ax.set_ylabel(axis_names[1], labelpad=10)
    ax.set_zlabel(axis_names[2], labelpad=8)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(plt.MaxNLocator(3))  # few ticks: no tick labels running into each other
    ax.view_init(elev=25, azim=-130)
    ax.set_box_aspect(None, zoom=0.8)  # room for the labels at the ends of the trajectories
    # Items that end on the same spot share one label, set off from the end of the trajectory on the screen,
    # away from the start, so that it covers neither the trajectory nor its last marker.
    final, reach = frames[-1], np.abs(frames).max()
    projection = ax.get_proj()
    start = np.array(proj3d.proj_transform(*frames[0].mean(0), projection)[:2])
    for i in range(n_items):
        twins = [j for j in range(n_items) if np.linalg.norm(final[j] - final[i]) < 0.05 * reach]
        if twins[0] != i:
            continue
        end = np.array(proj3d.proj_transform(*final[i], projection)[:2])
        away = (end - start) / max(float(np.linalg.norm(end - start)), 1e-12)
        ha = "left" if away[0] > 0.35 else "right" if away[0] < -0.35 else "center"  # the text starts off
        va = "bottom" if away[1] > 0.35 else "top" if away[1] < -0.35 else "center"  # the marker
        ax.annotate(" / ".join(items[j] for j in twins), end, xytext=tuple(12 * away), textcoords="offset points",
                    fontsize=10.5, weight="bold", color=np.array(item_colors[i]) * 0.75, ha=ha, va=va,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.legend(loc="upper left", fontsize=9)
    return fig


def branch_distances_figure(steps, shared, distances: Mapping[str, Sequence[float]],
                            predicted: Sequence[float]) -> plt.Figure:
    """The size of the shared motion (``shared``: the norm of the mean hidden vector at every checkpoint of
    ``steps``) and distances between items in hidden space (``distances``: label → one value per checkpoint),
    with the ``predicted`` stage steps dotted."""
    colors = stage_colors(len(predicted))
    fig, ax = plt.subplots(figsize=(7.0, 4.6), layout="constrained")
    ax.plot(steps, shared, color=colors[0], lw=2.2, label="‖mean of all items‖ (shared motion)")
    for (label, values), color in zip(distances.items(), colors[1:]):
        ax.plot(steps, values, lw=2.2, color=color, label=f"distance {label}")
    plotting.stage_lines(ax, predicted, colors, lw=1.6)
    ax.set(xlabel="training step", ylabel="length in hidden space  (units of $W_1$)", xlim=(0, steps[-1]),
           title="Each distance grows at its stage (dotted: $t^*_k$)")
    ax.legend(loc="lower right", fontsize=9)
    return fig
