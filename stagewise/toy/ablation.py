"""Influence of the actual gradient-descent training, measured by re-weighting items and retraining.

All runs of one measurement (the full run and every ablated or perturbed one) train side by side as one batch
(:func:`~stagewise.toy.train_runs`). Sign convention, that of the BIF: **negative = i helps j**.

- :func:`leave_one_out`:     Δ_ij(t) = ℓ_j(t; all data) − ℓ_j(t; β_i = 0), the divisor kept at N.
- :func:`window_ablation`:   the same with β_i = 0 only for the updates inside a window of steps.
- :func:`finite_difference_influence`: dℓ_j(t)/dβ_i at β = 1 by central differences, the scale of
  :func:`~stagewise.toy.analytic_influence`. LOO removes a sample (β_i: 1 → 0), so to first order
  Δ_ij ≈ (1 − 0)·dℓ_j/dβ_i; LOO is not small, so it also carries the higher orders (removing an item delays the
  stages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .data import Data, as_batch, item_indices
from .dln import TrainConfig, train_runs


@dataclass
class LOOResult:
    """Exact leave-one-out influence at every checkpoint.

    steps:  checkpoint steps (S,).
    delta:  Δ_ij(t) = ℓ_j(t; all data) − ℓ_j(t; without i), shape (S, I, J) (I = left-out items, J = all items).
            Negative = i helped j (the BIF's sign).
    full:   the full-data run's per-item losses at every step, (T+1, N).
    left_out: per-item losses of each leave-one-out run at every step, (I, T+1, N).
    items:  the left-out item indices (I,).
    """

    steps: torch.Tensor
    delta: torch.Tensor
    full: torch.Tensor
    left_out: torch.Tensor
    items: tuple[int, ...]

    def pair(self, i: int, j: int) -> torch.Tensor:
        """Δ_ij over the checkpoints, (S,) (i is an item index, looked up among the left-out items)."""
        return self.delta[:, self.items.index(i), j]

    def delta_every_step(self) -> torch.Tensor:
        """Δ_ij at every step 0 … T, shape (T+1, I, J)."""
        return self.full.unsqueeze(1) - self.left_out.transpose(0, 1)


def leave_one_out(
    params: dict[str, torch.Tensor],
    data: Data,
    config: TrainConfig | None = None,
    items: Sequence[int] | None = None,
) -> LOOResult:
    """Retrain without each item (β_i = 0, divisor kept at N) from the same init, all runs in one batch.

    Run 0 uses all data, run 1 + k leaves out ``items[k]`` (default: every item).
    """
    n = as_batch(data)[0].shape[0]
    items = item_indices(items, n, "items")
    beta = torch.ones(1 + len(items), n, dtype=torch.float64)
    for k, i in enumerate(items):
        beta[1 + k, i] = 0.0
    run = train_runs(params, data, config, beta)
    at = run.item_losses_at_checkpoints  # (S, R, N)
    delta = at[:, :1] - at[:, 1:]
    return LOOResult(run.steps, delta, run.item_losses[0], run.item_losses[1:], items)


@dataclass
class WindowAblation:
    """Influence of removing item i only during a window of steps.

    steps:   checkpoint steps (S,).
    windows: the windows (t₀, t₁): β_i = 0 for the updates at steps t₀ ≤ t < t₁, 1 otherwise.
    delta:   ℓ_j(t; all data) − ℓ_j(t; i removed in window w), shape (S, W, I, J); negative = i helped j.
    items:   the ablated item indices (I,).
    """

    steps: torch.Tensor
    windows: tuple[tuple[int, int], ...]
    delta: torch.Tensor
    items: tuple[int, ...]


def window_ablation(
    params: dict[str, torch.Tensor],
    data: Data,
    windows: Sequence[tuple[int, int]],
    config: TrainConfig | None = None,
    items: Sequence[int] | None = None,
) -> WindowAblation:
    """Remove each item only during each window, all (window, item) runs plus the full run in one batch.

    An empty window (t₀ = t₁) is no ablation; the window (0, num_steps) is leave-one-out.
    """
    config = config or TrainConfig()
    n = as_batch(data)[0].shape[0]
    items = item_indices(items, n, "items")
    windows = tuple((int(a), int(b)) for a, b in windows)
    for a, b in windows:
        if not 0 <= a <= b <= config.num_steps:
            raise ValueError(f"window ({a}, {b}): accepted windows have 0 ≤ t₀ ≤ t₁ ≤ num_steps = {config.num_steps}")
    num_runs = 1 + len(windows) * len(items)
    starts = torch.tensor([a for a, _ in windows]).repeat_interleave(len(items))
    ends = torch.tensor([b for _, b in windows]).repeat_interleave(len(items))
    ablated = torch.tensor(items).repeat(len(windows))
    ones = torch.ones(num_runs, n, dtype=torch.float64)

    def beta(step: int) -> torch.Tensor:
        b = ones.clone()
        inside = (starts <= step) & (step < ends)
        rows = torch.nonzero(inside).flatten()
        b[1 + rows, ablated[rows]] = 0.0
        return b

    run = train_runs(params, data, config, beta)
    at = run.item_losses_at_checkpoints  # (S, R, N)
    delta = (at[:, :1] - at[:, 1:]).reshape(at.shape[0], len(windows), len(items), n)
    return WindowAblation(run.steps, windows, delta, items)


def finite_difference_influence(
    params: dict[str, torch.Tensor],
    data: Data,
    config: TrainConfig | None = None,
    *,
    train: Sequence[int] | None = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """dℓ_q(t)/dβ_p of the actual GD training by central differences (β_p = 1 ± eps), all runs batched.

    Returns (steps (S,), influence (S, I, J)). Negative = p helps q; the scale of
    :func:`~stagewise.toy.analytic_influence`.
    """
    n = as_batch(data)[0].shape[0]
    train = item_indices(train, n, "train")
    beta = torch.ones(2 * len(train), n, dtype=torch.float64)
    for k, p in enumerate(train):
        beta[2 * k, p] += eps
        beta[2 * k + 1, p] -= eps
    run = train_runs(params, data, config, beta)
    at = run.item_losses_at_checkpoints  # (S, 2I, N)
    return run.steps, (at[:, 0::2] - at[:, 1::2]) / (2 * eps)
