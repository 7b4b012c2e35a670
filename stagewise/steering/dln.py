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
from stagewise.influence import bif, bif_stderr
from stagewise.sampling import sample

from ..curves import Window, first_crossing, peak_window
from .schedule import equal_windows, window_schedule

__all__ = ["CONDITIONS", "ToyPools", "ToySteering", "influence_window", "item_bif", "mode_onsets", "mode_weights",
           "predicted_onsets", "steer", "steer_pools", "target_items"]

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
    masks = np.zeros((len(CONDITIONS), len(seeds), data.num_items))
    masks[:, :, list(items)] = 1.0
    onsets, loss = _train_onsets(data, masks, np.stack([extra[c] for c in CONDITIONS]), seeds, basis, lr=lr,
                                 num_steps=num_steps, hidden_width=hidden_width, init_scale=init_scale)
    shift = onsets[0][None] - onsets
    predicted = np.stack([onsets[0] - predicted_onsets(onsets[0], weights.numpy(), extra[c]) for c in CONDITIONS])
    return ToySteering(CONDITIONS, windows, onsets, shift, predicted, weights.numpy(), basis, extra, loss, items,
                       seeds)


def _train_onsets(data: toy.HierarchicalData, masks: np.ndarray, rates: np.ndarray, seeds, basis: toy.ModeBasis, *,
                  lr: float, num_steps: int, hidden_width: int, init_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Train every (condition, seed) as one batch: β_i(t) = 1 + rates[c, t]·masks[c, s, i]; each seed's runs start
    from its own initialization. Returns the onsets of every mode (condition, seed, r) and the objective
    (condition, seed, T + 1)."""
    conditions = masks.shape[0]
    x, y = data.batch
    widths = (x.shape[1], hidden_width, y.shape[1])
    inits = [toy.init_params(toy.DLNConfig(widths=widths, init_scale=init_scale, seed=s)) for s in seeds]
    # run index = condition * len(seeds) + seed index
    params = {name: torch.stack([init[name] for _ in range(conditions) for init in inits]) for name in inits[0]}
    mask = torch.as_tensor(masks.reshape(conditions * len(seeds), -1), dtype=torch.float64)  # (R, N)
    rates = torch.as_tensor(rates, dtype=torch.float64).repeat_interleave(len(seeds), dim=0)  # (R, T)

    def beta(step: int) -> torch.Tensor:
        eps = rates[:, step] if step < num_steps else torch.zeros(len(rates), dtype=torch.float64)
        return 1.0 + eps[:, None] * mask

    run = toy.train_runs(params, data, toy.TrainConfig(lr=lr, num_steps=num_steps, checkpoint_every=1), beta)
    onsets = mode_onsets(run, basis).reshape(conditions, len(seeds), -1)
    return onsets, run.loss.numpy().reshape(conditions, len(seeds), -1)


def item_bif(data: toy.HierarchicalData, query, step: int, seed: int = 0, config=None, *, lr: float = 0.05,
             hidden_width: int = 16, init_scale: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(values, stderr), each (N,): the BIF of every item on the mean loss of the ``query`` items at ``step``.

    The checkpoint is step ``step`` of chapter 3's gradient-descent run from seed ``seed``; the posterior is the
    localized one of :data:`stagewise.toy.PLAIN_SGLD` (or ``config``). By bilinearity the BIF on the query's mean
    loss is the mean of the item-by-item BIF over the query items; its error is the ESS-based one of that mean.
    Negative = up-weighting the item lowers the query's loss (helps).
    """
    query = list(query)
    if not query or not set(query) <= set(range(data.num_items)):
        raise ValueError(f"query = {query!r} (accepted: a non-empty list of item indices 0 … {data.num_items - 1})")
    x, y = data.batch
    init = toy.init_params(toy.DLNConfig(widths=(x.shape[1], hidden_width, y.shape[1]), init_scale=init_scale,
                                         seed=seed))
    run = toy.train(init, data, toy.TrainConfig(lr=lr, num_steps=step, checkpoint_steps=(step,)))
    params = dict(run.checkpoint_list()[0][1])
    trace = sample(toy.bif_loss_fn, params, data.batch, data.batch, config or toy.PLAIN_SGLD, progress=False)
    losses = trace.losses.double()
    target = losses[:, :, query].mean(dim=-1, keepdim=True)
    return bif(losses, target)[:, 0].numpy(), bif_stderr(losses, target)[:, 0].numpy()


@dataclass
class ToyPools:
    """The toy model's selection experiment: several pools of items up-weighted inside or before a window.

    names:     the pools' names (e.g. ("bif", "class", "random")); pools: name → the items of each seed.
    mode:      the mode whose onset is the formation step; seeds: the initialization seeds.
    windows:   {"inside": Window, "before": Window}.
    onsets:    "none" and "<name>:<inside|before>" → (seed,) onset of ``mode`` (steps).
    predicted: "<name>:<inside|before>" → (seed,) the onset Saxe's clock predicts from the seed's own "none".
    weights:   name → (seed,) w of ``mode`` for the seed's pool (the share of the extra weight the mode feels).
    """

    names: tuple[str, ...]
    pools: dict
    mode: int
    seeds: tuple[int, ...]
    windows: dict
    onsets: dict
    predicted: dict
    weights: dict

    def effect(self, name: str, timing: str) -> np.ndarray:
        """(seed,) onset of ``mode`` with pool ``name`` up-weighted ``timing`` minus without (< 0: earlier)."""
        return self.onsets[f"{name}:{timing}"] - self.onsets["none"]


def steer_pools(data: toy.HierarchicalData, pools: dict, window: Window, extra_weight: float, seeds, mode: int,
                basis: toy.ModeBasis, *, lr: float = 0.05, num_steps: int = 1600, hidden_width: int = 16,
                init_scale: float = 1e-3) -> ToyPools:
    """Up-weight each pool of ``pools`` (name → items, or a list of items per seed) inside ``window`` or in the
    window of the same length before it (:func:`equal_windows`), ε = ``extra_weight`` per item and step, and read
    the onset of mode ``mode`` (of ``basis``) in every run; all runs train as one batch.

    Every pool must hold the same number of items, so that every condition adds the same total extra weight.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if not (np.isfinite(extra_weight) and extra_weight > 0):
        raise ValueError(f"extra_weight = {extra_weight!r} (accepted: a finite number > 0)")
    per_seed = {}
    for name, pool in pools.items():
        items = [tuple(p) for p in pool] if pool and isinstance(pool[0], (list, tuple, np.ndarray)) else None
        per_seed[name] = items if items is not None else [tuple(pool)] * len(seeds)
        if len(per_seed[name]) != len(seeds):
            raise ValueError(f"pools[{name!r}]: {len(per_seed[name])} item lists for {len(seeds)} seeds")
    sizes = {len(items) for lists in per_seed.values() for items in lists}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"pools: sizes {sorted(sizes)} (accepted: the same non-zero number of items in every pool, "
                         "so that every condition adds the same extra weight)")
    if not 0 <= mode < len(basis.s):
        raise ValueError(f"mode = {mode!r} (accepted: 0 … {len(basis.s) - 1})")
    inside, before = equal_windows(window)
    total = extra_weight * inside.length
    schedule = {t: window_schedule(num_steps, w, total, integer=False) for t, w in (("inside", inside),
                                                                                    ("before", before))}
    keys = ["none"] + [f"{n}:{t}" for n in per_seed for t in ("inside", "before")]
    masks = np.zeros((len(keys), len(seeds), data.num_items))
    rates = np.zeros((len(keys), num_steps))
    for c, key in enumerate(keys[1:], start=1):
        name, timing = key.split(":")
        for s, items in enumerate(per_seed[name]):
            masks[c, s, list(items)] = 1.0
        rates[c] = schedule[timing]
    onsets, _ = _train_onsets(data, masks, rates, seeds, basis, lr=lr, num_steps=num_steps,
                              hidden_width=hidden_width, init_scale=init_scale)
    onsets = onsets[:, :, mode]
    v2 = basis.v[:, mode].numpy() ** 2
    weights = {name: np.array([v2[list(items)].sum() for items in lists]) for name, lists in per_seed.items()}
    predicted = {}
    for c, key in enumerate(keys[1:], start=1):
        name, timing = key.split(":")
        predicted[key] = np.array([predicted_onsets(onsets[0, s], weights[name][s], schedule[timing])
                                   for s in range(len(seeds))], dtype=float)
    return ToyPools(tuple(per_seed), per_seed, mode, seeds, {"inside": inside, "before": before},
                    {key: onsets[c] for c, key in enumerate(keys)}, predicted, weights)
