"""The deep linear network y = W_L ⋯ W_1 x and its training by full-batch gradient descent, with checkpoints.

Default: W₁ 16×8, W₂ 15×16, no bias, init N(0, σ²) with σ = 1e-3, seeded. Training minimizes
(1/N)·Σ_i β_i·½‖y_i − W_L⋯W_1 x_i‖² with the divisor N kept fixed whatever the β_i. Runs are a leading dimension
of every weight tensor, so many runs with different per-item weights β (leave-one-out for every item, time-window
ablations) are one batched run, not a loop. Time is in gradient-descent steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import Interval, Satisfies, check_fields, is_int
from .data import Data, as_batch


@dataclass(frozen=True)
class DLNConfig:
    """A deep linear network y = W_L ⋯ W_1 x without biases.

    widths:     layer widths from input to output, (d_in, h_1, …, d_out); default (8, 16, 15): W₁ 16×8, W₂ 15×16.
    init_scale: σ of the N(0, σ²) initialization of every weight (> 0).
    seed:       seed of the initialization (≥ 0).
    """

    widths: tuple[int, ...] = (8, 16, 15)
    init_scale: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        widths = tuple(self.widths) if isinstance(self.widths, (tuple, list)) else None
        check_fields(self, {
            "widths": Satisfies(lambda _: widths is not None and len(widths) >= 2 and all(is_int(w, 1) for w in widths),
                                "a tuple of ≥ 2 integers ≥ 1 (input, hidden…, output)"),
            "init_scale": Interval(gt=0),
            "seed": Interval(ge=0, integer=True),
        })
        object.__setattr__(self, "widths", widths)

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def num_params(self) -> int:
        return sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))


def init_params(config: DLNConfig | None = None) -> dict[str, torch.Tensor]:
    """{"W1": (h_1, d_in), …, "WL": (d_out, h_{L−1})}, float64, drawn in that order from ``config.seed``."""
    config = config or DLNConfig()
    g = torch.Generator().manual_seed(config.seed)
    return {
        f"W{l + 1}": config.init_scale * torch.randn(o, i, generator=g, dtype=torch.float64)
        for l, (i, o) in enumerate(zip(config.widths[:-1], config.widths[1:]))
    }


def layer_names(params: dict[str, torch.Tensor]) -> list[str]:
    """The layer names W1 … WL of ``params`` in order (raises unless they are exactly W1 … WL)."""
    names = sorted(params, key=lambda k: int(k[1:]))
    if names != [f"W{l + 1}" for l in range(len(names))]:
        raise ValueError(f"params must be named W1 … WL; got {sorted(params)}")
    return names


def end_to_end(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The product W = W_L ⋯ W_1, shape (..., d_out, d_in) (leading run/chain dimensions are kept)."""
    names = layer_names(params)
    w = params[names[0]]
    for name in names[1:]:
        w = params[name] @ w
    return w


def per_item_losses(params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """ℓ_i = ½‖y_i − W x_i‖², shape (..., N) for params with leading dimensions (...)."""
    x, y = data
    out = x @ end_to_end(params).transpose(-1, -2)  # (..., N, d_out)
    return 0.5 * ((y - out) ** 2).sum(-1)


@dataclass(frozen=True)
class TrainConfig:
    """Full-batch gradient descent.

    lr:               learning rate (> 0).
    num_steps:        gradient steps (≥ 1).
    checkpoint_every: a checkpoint every this many steps, step 0 and the last step included (≥ 1).
    checkpoint_steps: an explicit checkpoint schedule (sorted steps in 0 … num_steps) replacing the regular one.
    """

    lr: float = 0.05
    num_steps: int = 1600
    checkpoint_every: int = 25
    checkpoint_steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        steps = self.checkpoint_steps
        steps_ok = steps is None or (
            isinstance(steps, (tuple, list)) and len(steps) > 0
            and all(is_int(s, 0) and s <= self.num_steps for s in steps)
            and list(steps) == sorted(set(steps))
        )
        check_fields(self, {
            "lr": Interval(gt=0),
            "num_steps": Interval(ge=1, integer=True),
            "checkpoint_every": Interval(ge=1, integer=True),
            "checkpoint_steps": Satisfies(lambda _: steps_ok, "None or strictly increasing integers in 0 … num_steps"),
        })
        if steps is not None:
            object.__setattr__(self, "checkpoint_steps", tuple(steps))

    def schedule(self) -> tuple[int, ...]:
        """The checkpoint steps."""
        if self.checkpoint_steps is not None:
            return self.checkpoint_steps
        steps = list(range(0, self.num_steps + 1, self.checkpoint_every))
        if steps[-1] != self.num_steps:
            steps.append(self.num_steps)
        return tuple(steps)


@dataclass
class TrainingRun:
    """What :func:`train_runs` records, for R runs trained side by side (R is absent for :func:`train`).

    steps:        checkpoint steps, shape (S,).
    checkpoints:  name → weights at each checkpoint, shape (S, [R,] out, in).
    loss:         training objective (1/N)·Σ β_i ℓ_i at every step 0 … T, shape ([R,] T+1).
    item_losses:  unweighted per-item losses ℓ_i at every step, shape ([R,] T+1, N).
    item_losses_at_checkpoints: the same at the checkpoints, shape (S, [R,] N).
    """

    steps: torch.Tensor
    checkpoints: dict[str, torch.Tensor]
    loss: torch.Tensor
    item_losses: torch.Tensor
    item_losses_at_checkpoints: torch.Tensor

    def checkpoint_list(self, run: int | None = None) -> list[tuple[int, dict[str, torch.Tensor]]]:
        """[(step, {"W1": …, …})] for ``bif_trajectory``; ``run`` picks one run of a batched training."""
        out = []
        for k, step in enumerate(self.steps.tolist()):
            p = {name: w[k] if run is None else w[k, run] for name, w in self.checkpoints.items()}
            out.append((int(step), p))
        return out

    def flat_checkpoints(self) -> torch.Tensor:
        """Checkpoints as flat parameter vectors (W1 first, row-major), shape (S, [R,] num_params)."""
        names = layer_names(self.checkpoints)
        lead = self.checkpoints[names[0]].shape[:-2]
        return torch.cat([self.checkpoints[n].reshape(*lead, -1) for n in names], dim=-1)


BetaSchedule = Callable[[int], torch.Tensor]


def train_runs(
    params: dict[str, torch.Tensor],
    data: Data,
    config: TrainConfig | None = None,
    beta: torch.Tensor | BetaSchedule | None = None,
) -> TrainingRun:
    """Train R networks at once by full-batch GD, each with its own per-item weights β.

    params: initial weights {"W1": (h, d_in), …}, shared by all runs, or with a leading run dimension (R, …).
    beta:   per-item weights, (R, N) (constant), or ``beta(step) -> (R, N)`` giving the weights of the update
            from step t to t + 1 (time-window ablations), or None (one run, all β_i = 1).
    The objective is (1/N)·Σ_i β_i·½‖y_i − W x_i‖²: the divisor stays N when some β_i = 0. Runs are the leading
    dimension of every weight tensor (batched matmul), so R runs cost about one. Gradients are the exact
    backpropagation of a linear network, written out (no autograd graph).
    """
    config = config or TrainConfig()
    x, y = as_batch(data)
    n = x.shape[0]
    names = layer_names(params)
    if beta is None:
        beta = torch.ones(1, n, dtype=x.dtype)
    schedule = beta if callable(beta) else (lambda step, b=beta: b)
    num_runs = schedule(0).shape[0]
    weights = []
    for name in names:
        w = params[name].to(x.dtype)
        if w.dim() == 2:
            w = w.expand(num_runs, *w.shape)
        weights.append(w.clone())
    xt = x.T  # (d_in, N): activations are (R, width, N)
    checkpoint_steps = config.schedule()
    wanted = set(checkpoint_steps)
    saved: list[list[torch.Tensor]] = []
    item_losses = torch.empty(num_runs, config.num_steps + 1, n, dtype=x.dtype)
    objective = torch.empty(num_runs, config.num_steps + 1, dtype=x.dtype)
    for step in range(config.num_steps + 1):
        acts = [xt.expand(num_runs, *xt.shape)]
        for w in weights:
            acts.append(w @ acts[-1])
        residual = y.T - acts[-1]  # (R, d_out, N)
        losses = 0.5 * (residual**2).sum(1)  # (R, N)
        item_losses[:, step] = losses
        b = schedule(step).to(x.dtype)
        objective[:, step] = (b * losses).sum(1) / n
        if step in wanted:
            saved.append([w.clone() for w in weights])
        if step == config.num_steps:
            break
        # ∂L/∂(output) = −β_i r_i / N; back through the layers.
        delta = -residual * b.unsqueeze(1) / n
        grads = []
        for l in range(len(weights) - 1, -1, -1):
            grads.append(delta @ acts[l].transpose(1, 2))
            delta = weights[l].transpose(1, 2) @ delta
        for w, g in zip(weights, reversed(grads)):
            w.sub_(config.lr * g)
    checkpoints = {name: torch.stack([s[l] for s in saved]) for l, name in enumerate(names)}
    steps = torch.tensor(checkpoint_steps)
    return TrainingRun(steps, checkpoints, objective, item_losses, item_losses[:, steps].transpose(0, 1))


def train(
    params: dict[str, torch.Tensor],
    data: Data,
    config: TrainConfig | None = None,
    beta: torch.Tensor | None = None,
) -> TrainingRun:
    """One GD run (β: (N,) per-item weights, default all 1); shapes as :class:`TrainingRun` without R."""
    b = None if beta is None else torch.as_tensor(beta, dtype=torch.float64).reshape(1, -1)
    run = train_runs(params, data, config, b)
    return TrainingRun(
        run.steps,
        {k: v[:, 0] for k, v in run.checkpoints.items()},
        run.loss[0],
        run.item_losses[0],
        run.item_losses_at_checkpoints[:, 0],
    )
