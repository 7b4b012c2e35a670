"""Steering the toy model: up-weight some items for a window of steps and see each mode's onset move.

The deep linear network of :mod:`stagewise.toy` learns mode k of Σ_yx = U·diag(s)·Vᵀ along Saxe's sigmoid,
dG_k/dt = 2·lr·G_k·(s_k − c·G_k), rising to s_k/c with its half-way point (the *onset* of the stage) at
t*_k = ln(s_k/(c·a₀) − 1)/(2·lr·s_k). Up-weighting the items of a set S by ε(t) (β_i = 1 + ε(t) for i ∈ S, the
divisor N kept) changes Σ_yx to Yᵀ·D·X/N and Σ_xx to D/N with D = I + ε(t)·P_S. To first order in ε, in a
basis where the perturbation is diagonal inside every block of equal singular values,

    s_k → s_k·(1 + w_k ε(t)),   c → c·(1 + w_k ε(t)),   w_k = Σ_{i ∈ S} (v_k)_i²   (exact for modes on S's subtree)

so s_k/c and a₀ do not change and the mode's equation only gains a factor 1 + w_k·ε(t) on its rate: the mode runs
on a clock τ_k(t) = t + w_k·∫₀ᵗ ε. Its onset moves to the t' with τ_k(t') = t*_k, an advance of

    Δ_k = t*_k − t'_k = w_k · (extra weight delivered before t'_k).

Up-weighting therefore buys the same advance whenever it happens, as long as it is delivered before the onset;
what arrives after it does nothing for the onset. :func:`predicted_onsets` solves this; :func:`steer` trains the
three conditions (no extra weight, extra weight inside a window, the same total before it) for several seeds as
one batched gradient-descent run and reads every mode's onset (:func:`mode_onsets`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stagewise import toy
from stagewise.analysis import readable_modes

from ..curves import Window, first_crossing, peak_window
from .schedule import equal_windows, window_schedule

__all__ = ["CONDITIONS", "ToySteering", "influence_window", "mode_onsets", "mode_weights", "predicted_onsets",
           "steer", "target_items"]

CONDITIONS = ("none", "inside", "before")


def target_items(data: toy.HierarchicalData, target: str) -> tuple[int, ...]:
    """Indices of the items named by ``target``: an item ("dog") or a branch of the tree ("bird", "animal")."""
    if target in data.items:
        return (data.items.index(target),)
    if target in data.groups:
        return tuple(data.groups[target])
    raise ValueError(f"target = {target!r} (accepted: an item {list(data.items)} or a branch {list(data.groups)})")


def mode_weights(data: toy.Data, items) -> tuple[toy.ModeBasis, torch.Tensor]:
    """(basis, w): the readable SVD basis of Σ_yx, re-rotated inside each block of equal singular values so that
    up-weighting ``items`` is diagonal there, and w_k = Σ_{i ∈ items} (v_k)_i², shape (r,), in [0, 1].

    w_k is the share of one unit of extra weight per item that mode k feels, to first order (module docstring).
    """
    basis = readable_modes(toy.mode_basis(data))
    u, v = basis.u.clone(), basis.v.clone()
    p = torch.zeros(v.shape[0], dtype=v.dtype)
    p[list(items)] = 1.0
    for block in map(list, basis.blocks):
        forcing = v[:, block].T @ torch.diag(p) @ v[:, block]
        off_diagonal = forcing - torch.diag(torch.diagonal(forcing))
        if len(block) > 1 and off_diagonal.abs().max() > 1e-10:
            # degenerate perturbation theory: diagonalize the forcing inside the block (a readable basis in
            # which it is diagonal already, e.g. modes on disjoint subtrees, is kept as it is)
            _, rotation = torch.linalg.eigh(forcing)
            u[:, block], v[:, block] = u[:, block] @ rotation, v[:, block] @ rotation
    basis = toy.ModeBasis(u, basis.s, v, basis.c, basis.blocks)
    return basis, (v**2 * p[:, None]).sum(0)


def predicted_onsets(onsets, weights, extra) -> np.ndarray:
    """Onsets t'_k (steps) of modes with unperturbed onsets ``onsets`` (r,) under extra weight ``extra`` (T,).

    weights: w_k (r,) from :func:`mode_weights`; extra: ε(t) per item of the target for the update from step t to
    t + 1. Solves t' + w_k·E(t') = t*_k with E(t) = Σ_{t'' < t} ε(t''), linear between steps. NaN stays NaN.
    """
    onsets, weights = np.asarray(onsets, dtype=float), np.asarray(weights, dtype=float)
    delivered = np.concatenate([[0.0], np.cumsum(np.asarray(extra, dtype=float))])  # E(t), t = 0 … T
    steps = np.arange(len(delivered), dtype=float)
    out = np.full(onsets.shape, np.nan)
    for k, (t_star, w) in enumerate(zip(onsets.flat, np.broadcast_to(weights, onsets.shape).flat)):
        if np.isfinite(t_star):
            clock = steps + w * delivered  # τ_k(t), increasing
            out.flat[k] = float(np.interp(t_star, clock, steps)) if t_star <= clock[-1] else t_star - w * delivered[-1]
    return out


def mode_onsets(run: toy.TrainingRun, basis: toy.ModeBasis) -> np.ndarray:
    """Half-rise step of every mode in every run: first step where u_kᵀ·W·v_k ≥ s_k/(2c), shape ([R,] r).

    :func:`stagewise.curves.first_crossing`, interpolated linearly between checkpoints (train with a checkpoint
    every step for whole-step resolution); NaN for a mode that never gets there.
    """
    w = toy.end_to_end(run.checkpoints)  # (S, [R,] out, in)
    strength = torch.diagonal(basis.u.T @ w @ basis.v, dim1=-2, dim2=-1).numpy()  # (S, [R,] r)
    return first_crossing(run.steps.numpy().astype(float), strength, (basis.s / basis.c).numpy() / 2)


def influence_window(data: toy.HierarchicalData, items, lr: float, a0, num_steps: int,
                     fraction: float = 0.5) -> tuple[Window, np.ndarray]:
    """(window, curve): where the analytic influence of ``items`` on the other items peaks (:func:`peak_window`).

    curve (num_steps + 1,): mean over i ∈ items and j ∉ items of |dℓ_j(t)/dβ_i| (Saxe's mode dynamics,
    :func:`stagewise.toy.analytic_influence`), at every step.
    """
    others = [j for j in range(data.num_items) if j not in items]
    steps = torch.arange(num_steps + 1)
    influence = toy.analytic_influence(data, steps, lr, a0, train=list(items), query=others)  # (S, I, J)
    curve = influence.abs().mean(dim=(1, 2)).numpy()
    return peak_window(steps.numpy(), curve, fraction), curve


@dataclass
class ToySteering:
    """The toy steering experiment: onsets of every mode, per condition and seed.

    conditions: ("none", "inside", "before"); windows: condition → Window of extra weight (None for "none").
    onsets:     (condition, seed, r) half-rise steps; shift: (condition, seed, r) advance t*(none) − t*(condition)
                (positive = earlier); predicted_shift: the same from :func:`predicted_onsets` applied to each seed's
                own "none" onsets. weights: w_k (r,); basis: the mode basis used; extra: condition → (T,) ε(t).
    loss:       (condition, seed, T + 1) training objective of every run (nats).
    """

    conditions: tuple[str, ...]
    windows: dict
    onsets: np.ndarray
    shift: np.ndarray
    predicted_shift: np.ndarray
    weights: np.ndarray
    basis: toy.ModeBasis
    extra: dict
    loss: np.ndarray
    items: tuple[int, ...]
    seeds: tuple[int, ...]


def steer(data: toy.HierarchicalData, items, window: Window, extra_weight: float, seeds, *, lr: float = 0.05,
          num_steps: int = 1600, hidden_width: int = 16, init_scale: float = 1e-3) -> ToySteering:
    """Train the three conditions for every seed as one batch and read the onsets of every mode.

    items: the up-weighted items. window: the "inside" window; "before" is the window of the same length
    before it (:func:`equal_windows`, which shortens both when "before" would start before step 0).
    extra_weight: ε, the extra weight per item and step inside ``window`` (β = 1 + ε); "before" gets the same
    total ε·window.length per item. seeds: initialization seeds (each seed's three runs share their init).
    """
    items, seeds = tuple(items), tuple(int(s) for s in seeds)
    if not (np.isfinite(extra_weight) and extra_weight > 0):
        raise ValueError(f"extra_weight = {extra_weight!r} (accepted: a finite number > 0)")
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    inside, before = equal_windows(window)
    windows = {"none": None, "inside": inside, "before": before}
    total = extra_weight * inside.length
    extra = {c: np.zeros(num_steps) if w is None else window_schedule(num_steps, w, total, integer=False)
             for c, w in windows.items()}
    basis, weights = mode_weights(data, items)
    x, y = data.batch
    widths = (x.shape[1], hidden_width, y.shape[1])
    inits = [toy.init_params(toy.DLNConfig(widths=widths, init_scale=init_scale, seed=s)) for s in seeds]
    # run index = condition * len(seeds) + seed index
    params = {name: torch.stack([init[name] for _ in CONDITIONS for init in inits]) for name in inits[0]}
    mask = torch.zeros(data.num_items, dtype=torch.float64)
    mask[list(items)] = 1.0
    rates = torch.as_tensor(np.stack([extra[c] for c in CONDITIONS]), dtype=torch.float64)  # (3, T)

    def beta(step: int) -> torch.Tensor:
        eps = rates[:, step] if step < num_steps else torch.zeros(len(CONDITIONS), dtype=torch.float64)
        return (1.0 + eps[:, None] * mask[None]).repeat_interleave(len(seeds), dim=0)  # (R, N)

    run = toy.train_runs(params, data, toy.TrainConfig(lr=lr, num_steps=num_steps, checkpoint_every=1), beta)
    onsets = mode_onsets(run, basis).reshape(len(CONDITIONS), len(seeds), -1)
    shift = onsets[0][None] - onsets
    predicted = np.stack([onsets[0] - predicted_onsets(onsets[0], weights.numpy(), extra[c]) for c in CONDITIONS])
    loss = run.loss.numpy().reshape(len(CONDITIONS), len(seeds), -1)
    return ToySteering(CONDITIONS, windows, onsets, shift, predicted, weights.numpy(), basis, extra, loss, items,
                       seeds)
