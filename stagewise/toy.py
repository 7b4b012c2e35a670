"""The toy model of PAPER.md §4: a deep linear network learning a hierarchy, stage by stage.

- Data (Saxe et al. 2019): 8 items (one-hot inputs) in the order dog, cat, sparrow, robin | rose, lily, oak, pine
  and 15 binary features, one per node of a depth-3 binary tree (living thing; animal, plant; mammal, bird,
  flower, tree; the 8 leaves): feature = 1 if the item lies under the node. Σ_yx = YᵀX/8 has singular values
  √15/8 = 0.484, √7/8 = 0.331, √3/8 = 0.2165 (×2), 1/8 = 0.125 (×4): four learning stages.
  :func:`hierarchical_dataset` with ``stochastic=True`` samples ±1 features by branching diffusion instead,
  which breaks the degeneracies.
- Network: W_L ⋯ W_1 (default W₁ 16×8, W₂ 15×16, no bias), init N(0, σ²) with σ = 1e-3, seeded.
- Training: full-batch gradient descent on (1/N)·Σ_i β_i·½‖y_i − W_L⋯W_1 x_i‖² with the divisor N kept fixed
  whatever the β_i. Runs are a leading dimension of every weight tensor, so leave-one-out for all items (and
  time-window ablations) is one batched run, not a loop.
- Influence, all in one sign convention (the BIF's, PAPER.md §1): **negative = i helps j**.
    LOO:       Δ_ij(t) = ℓ_j(t; all data) − ℓ_j(t; β_i = 0)          (:func:`leave_one_out`)
    analytic:  dℓ_j(t)/dβ_i at β = 1, from Saxe's mode dynamics       (:func:`analytic_influence`)
    BIF:       −Cov(ℓ_i, ℓ_j) under the localized posterior          (:func:`toy_bif_trajectory`)
  LOO removes a sample (β_i: 1 → 0), so to first order Δ_ij ≈ (1 − 0)·dℓ_j/dβ_i: the LOO difference and the
  analytic derivative are on the same scale (LOO is not small, so it differs from the derivative by the
  higher orders: removing an item also delays the stages). The BIF is a derivative too, of the posterior mean:
  with p(w) ∝ exp(−(nβ/N)·Σ_i β_i ℓ_i(w) − (γ/2)‖w − w*‖²), ∂E[ℓ_j]/∂β_i = −(nβ/N)·Cov(ℓ_i, ℓ_j), i.e.
  (nβ/N)·BIF. Same sign, a different (local, posterior) quantity: compare shapes, signs and the normalized BIF.

Time is measured in gradient-descent steps throughout (continuous-time formulas use t = step, rate = lr).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .config import ConfigError, check_fields, is_int, is_number  # noqa: F401  (ConfigError re-exported)

__all__ = [
    "ITEMS",
    "NODES",
    "GROUPS",
    "HierarchyConfig",
    "HierarchicalData",
    "hierarchical_dataset",
    "DLNConfig",
    "init_params",
    "TrainConfig",
    "TrainingRun",
    "train",
    "train_runs",
    "per_item_losses",
    "end_to_end",
    "ConfigError",
    "LOOResult",
    "leave_one_out",
    "WindowAblation",
    "window_ablation",
    "effective_initial_strength",
    "predicted_stage_steps",
    "detect_transitions",
    "mode_strength",
    "ModeBasis",
    "mode_basis",
    "analytic_influence",
    "finite_difference_influence",
    "bif_loss_fn",
    "toy_bif_trajectory",
    "PLAIN_SGLD",
]

ITEMS = ("dog", "cat", "sparrow", "robin", "rose", "lily", "oak", "pine")
# One name per node of the depth-3 tree, in breadth-first order (the feature order of the deterministic data).
NODES = ("living thing", "animal", "plant", "mammal", "bird", "flower", "tree", *ITEMS)
# Items under each internal node (indices into ITEMS), for plotting and grouping.
GROUPS = {
    "animal": (0, 1, 2, 3),
    "plant": (4, 5, 6, 7),
    "mammal": (0, 1),
    "bird": (2, 3),
    "flower": (4, 5),
    "tree": (6, 7),
}


# --------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class HierarchyConfig:
    """The hierarchical data set.

    depth:        depth of the binary tree; 2**depth items (≥ 1; names are the paper's only for depth 3).
    stochastic:   False: one 0/1 feature per tree node (deterministic, degenerate singular values);
                  True: ±1 features sampled by branching diffusion (Saxe et al. 2019).
    num_features: features sampled in the stochastic variant (≥ 1; ignored otherwise).
    flip_prob:    probability that a feature flips sign at each branch, stochastic variant (in [0, 0.5]).
    seed:         seed of the stochastic variant (≥ 0).
    normalize:    stochastic variant: scale the ±1 features by √((depth + 1)/num_features), so that
                  ‖y_i‖² = depth + 1 as in the deterministic data and the default learning rate stays stable.
    """

    depth: int = 3
    stochastic: bool = False
    num_features: int = 1000
    flip_prob: float = 0.15
    seed: int = 0
    normalize: bool = True

    def __post_init__(self) -> None:
        check_fields(self, [
            ("depth", is_int(self.depth, 1) and self.depth <= 10, "an integer in 1 … 10"),
            ("stochastic", isinstance(self.stochastic, bool), "True or False"),
            ("num_features", is_int(self.num_features, 1), "an integer ≥ 1"),
            ("flip_prob", is_number(self.flip_prob) and 0 <= self.flip_prob <= 0.5, "a number in [0, 0.5]"),
            ("seed", is_int(self.seed, 0), "an integer ≥ 0"),
            ("normalize", isinstance(self.normalize, bool), "True or False"),
        ])


@dataclass
class HierarchicalData:
    """Inputs (N, N) one-hot, targets (N, P), with names and tree metadata.

    items:    item names, in the order of the rows.
    features: feature names (tree nodes for the deterministic data; "f0", … for the stochastic one).
    groups:   internal node → indices of the items under it (depth 3: animal, plant, mammal, bird, flower, tree).
    levels:   for each tree level 0 … depth, the tuple of item-index groups at that level.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    items: tuple[str, ...]
    features: tuple[str, ...]
    groups: dict[str, tuple[int, ...]]
    levels: tuple[tuple[tuple[int, ...], ...], ...]
    config: HierarchyConfig = field(default_factory=HierarchyConfig)

    @property
    def num_items(self) -> int:
        return self.inputs.shape[0]

    @property
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), the full batch as :func:`bif_loss_fn` and the sampler take it."""
        return self.inputs, self.targets

    def input_output_correlation(self) -> torch.Tensor:
        """Σ_yx = YᵀX/N, shape (P, N)."""
        return self.targets.T @ self.inputs / self.num_items

    def singular_values(self) -> torch.Tensor:
        """Singular values of Σ_yx, descending."""
        return torch.linalg.svdvals(self.input_output_correlation())


def hierarchical_dataset(config: HierarchyConfig | None = None, **overrides) -> HierarchicalData:
    """The hierarchy of PAPER.md §4 (keyword overrides build the config, e.g. ``stochastic=True``)."""
    if config is not None and overrides:
        raise TypeError("pass either a HierarchyConfig or keyword overrides, not both")
    config = config or HierarchyConfig(**overrides)
    n = 2**config.depth
    # Items under node k of level l: the contiguous block [k·n/2^l, (k+1)·n/2^l).
    levels = tuple(
        tuple(tuple(range(k * n // 2**lvl, (k + 1) * n // 2**lvl)) for k in range(2**lvl))
        for lvl in range(config.depth + 1)
    )
    items = ITEMS if config.depth == 3 else tuple(f"item{i}" for i in range(n))
    if config.depth == 3:
        groups = dict(GROUPS)
    else:
        groups = {f"node{lvl}.{k}": g for lvl in range(1, config.depth) for k, g in enumerate(levels[lvl])}
    inputs = torch.eye(n, dtype=torch.float64)
    if not config.stochastic:
        nodes = [g for level in levels for g in level]
        targets = torch.zeros(n, len(nodes), dtype=torch.float64)
        for f, members in enumerate(nodes):
            targets[list(members), f] = 1.0
        features = NODES if config.depth == 3 else tuple(f"node{f}" for f in range(len(nodes)))
    else:
        g = torch.Generator().manual_seed(config.seed)
        values = torch.where(torch.rand(1, config.num_features, generator=g) < 0.5, -1.0, 1.0).double()
        for _ in range(config.depth):
            # Each node hands its value to two children, each flipping it independently with flip_prob.
            values = values.repeat_interleave(2, dim=0)
            flips = torch.rand(values.shape, generator=g) < config.flip_prob
            values = torch.where(flips, -values, values)
        targets = values * math.sqrt((config.depth + 1) / config.num_features) if config.normalize else values
        features = tuple(f"f{f}" for f in range(config.num_features))
    return HierarchicalData(inputs, targets, items, features, groups, levels, config)


# --------------------------------------------------------------------------------------------------------
# Network


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
        check_fields(self, [
            ("widths", widths is not None and len(widths) >= 2 and all(is_int(w, 1) for w in widths),
             "a tuple of ≥ 2 integers ≥ 1 (input, hidden…, output)"),
            ("init_scale", is_number(self.init_scale) and self.init_scale > 0, "a finite number > 0"),
            ("seed", is_int(self.seed, 0), "an integer ≥ 0"),
        ])
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


def _layer_names(params: dict[str, torch.Tensor]) -> list[str]:
    names = sorted(params, key=lambda k: int(k[1:]))
    if names != [f"W{l + 1}" for l in range(len(names))]:
        raise ValueError(f"params must be named W1 … WL; got {sorted(params)}")
    return names


def end_to_end(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The product W = W_L ⋯ W_1, shape (..., d_out, d_in) (leading run/chain dimensions are kept)."""
    names = _layer_names(params)
    w = params[names[0]]
    for name in names[1:]:
        w = params[name] @ w
    return w


def per_item_losses(params: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """ℓ_i = ½‖y_i − W x_i‖², shape (..., N) for params with leading dimensions (...)."""
    x, y = data
    out = x @ end_to_end(params).transpose(-1, -2)  # (..., N, d_out)
    return 0.5 * ((y - out) ** 2).sum(-1)


# --------------------------------------------------------------------------------------------------------
# Training


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
        check_fields(self, [
            ("lr", is_number(self.lr) and self.lr > 0, "a finite number > 0"),
            ("num_steps", is_int(self.num_steps, 1), "an integer ≥ 1"),
            ("checkpoint_every", is_int(self.checkpoint_every, 1), "an integer ≥ 1"),
            ("checkpoint_steps", steps_ok, "None or strictly increasing integers in 0 … num_steps"),
        ])
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
        names = _layer_names(self.checkpoints)
        lead = self.checkpoints[names[0]].shape[:-2]
        return torch.cat([self.checkpoints[n].reshape(*lead, -1) for n in names], dim=-1)


BetaSchedule = Callable[[int], torch.Tensor]


def train_runs(
    params: dict[str, torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor] | HierarchicalData,
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
    x, y = data.batch if isinstance(data, HierarchicalData) else data
    n = x.shape[0]
    names = _layer_names(params)
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
    data: tuple[torch.Tensor, torch.Tensor] | HierarchicalData,
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


# --------------------------------------------------------------------------------------------------------
# Leave-one-out and time-window ablations


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
    data: tuple[torch.Tensor, torch.Tensor] | HierarchicalData,
    config: TrainConfig | None = None,
    items: Sequence[int] | None = None,
) -> LOOResult:
    """Retrain without each item (β_i = 0, divisor kept at N) from the same init, all runs in one batch.

    Run 0 uses all data, run 1 + k leaves out ``items[k]`` (default: every item).
    """
    x, _ = data.batch if isinstance(data, HierarchicalData) else data
    n = x.shape[0]
    items = tuple(range(n)) if items is None else tuple(int(i) for i in items)
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
    data: tuple[torch.Tensor, torch.Tensor] | HierarchicalData,
    windows: Sequence[tuple[int, int]],
    config: TrainConfig | None = None,
    items: Sequence[int] | None = None,
) -> WindowAblation:
    """Remove each item only during each window, all (window, item) runs plus the full run in one batch.

    An empty window (t₀ = t₁) is no ablation; the window (0, num_steps) is leave-one-out.
    """
    config = config or TrainConfig()
    x, _ = data.batch if isinstance(data, HierarchicalData) else data
    n = x.shape[0]
    items = tuple(range(n)) if items is None else tuple(int(i) for i in items)
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


# --------------------------------------------------------------------------------------------------------
# Stages: predicted and observed


@dataclass
class ModeBasis:
    """The SVD of Σ_yx = U·diag(s)·Vᵀ (thin: rank r) and the input covariance Σ_xx = c·I.

    u: (P, r), s: (r,) descending, v: (N_in, r), c: the scalar input variance (1/N for one-hot inputs).
    blocks: groups of mode indices with equal singular values (relative tolerance 1e-9), in order.
    """

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor
    c: float
    blocks: tuple[tuple[int, ...], ...]


def mode_basis(data: HierarchicalData | tuple[torch.Tensor, torch.Tensor]) -> ModeBasis:
    """SVD of Σ_yx and the scalar Σ_xx. Raises unless Σ_xx = c·I (the decoupled theory needs it)."""
    x, y = data.batch if isinstance(data, HierarchicalData) else data
    n = x.shape[0]
    sxx = x.T @ x / n
    c = float(sxx.diagonal().mean())
    if not torch.allclose(sxx, c * torch.eye(sxx.shape[0], dtype=sxx.dtype), atol=1e-12):
        raise ValueError("the mode theory needs white inputs (Σ_xx = c·I), e.g. one-hot items")
    u, s, vh = torch.linalg.svd(y.T @ x / n, full_matrices=False)
    r = int((s > 1e-12 * s[0]).sum())
    u, s, v = u[:, :r], s[:r], vh[:r].T
    blocks, current = [], [0]
    for k in range(1, r):
        if abs(float(s[k] - s[current[0]])) <= 1e-9 * float(s[0]):
            current.append(k)
        else:
            blocks.append(tuple(current))
            current = [k]
    blocks.append(tuple(current))
    return ModeBasis(u, s, v, c, tuple(blocks))


def effective_initial_strength(
    params: dict[str, torch.Tensor], data: HierarchicalData | tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Initial mode strengths a₀ (r,) that a two-layer network from a small random init effectively starts from.

    In the early, linear phase the k-th mode grows as a_k(t) ≈ ¼‖α_k + β_k‖²·e^(2·lr·s_k·t) with α_k = W₂ᵀu_k,
    β_k = W₁v_k at t = 0 (the α − β part decays), so a₀_k = ¼‖α_k + β_k‖². Within a degenerate block the modes
    share one value, the block mean (the block's trace over its size), as the decoupled theory needs.
    """
    names = _layer_names(params)
    if len(names) != 2:
        raise ValueError("effective_initial_strength is defined for two-layer networks (W1, W2)")
    basis = mode_basis(data)
    alpha = params["W2"].T @ basis.u  # (h, r)
    beta = params["W1"] @ basis.v  # (h, r)
    a0 = 0.25 * ((alpha + beta) ** 2).sum(0)
    for block in basis.blocks:
        a0[list(block)] = a0[list(block)].mean()
    return a0


def mode_strength(
    t: torch.Tensor | float, s: torch.Tensor | float, g0: torch.Tensor | float, lr: float, c: float = 1.0
) -> torch.Tensor:
    """Saxe's mode dynamics G(t) = (s/c)·e^(2s·lr·t) / (e^(2s·lr·t) − 1 + (s/c)/G(0)) (broadcasting).

    The strength of the mode of W = W₂W₁ along (u_k, v_k) under gradient flow on ½‖y − Wx‖² averaged over the
    data, for a balanced, aligned two-layer network; with Σ_xx = c·I it rises to s/c (PAPER.md's form is c = 1,
    lr = 1/τ). t in steps.
    """
    t, s, g0 = (torch.as_tensor(v, dtype=torch.float64) for v in (t, s, g0))
    k = s / (c * g0) - 1.0
    return (s / c) / (1.0 + k * torch.exp(-2.0 * lr * s * t))


def _mode_strength_derivatives(t, s, g0, lr, c):
    """G and its partial derivatives ∂G/∂s, ∂G/∂c at fixed G(0) (broadcasting)."""
    k = s / (c * g0) - 1.0
    e = torch.exp(-2.0 * lr * s * t)
    d = 1.0 + k * e
    g = (s / c) / d
    dd_ds = e / (c * g0) - 2.0 * lr * t * k * e
    dd_dc = -s / (c * c * g0) * e
    dg_ds = (1.0 / c) / d - (s / c) / d**2 * dd_ds
    dg_dc = -(s / c**2) / d - (s / c) / d**2 * dd_dc
    return g, dg_ds, dg_dc


def predicted_stage_steps(
    data: HierarchicalData | tuple[torch.Tensor, torch.Tensor],
    lr: float,
    a0: torch.Tensor | float,
) -> torch.Tensor:
    """Saxe's transition time of each distinct singular value (stage), in steps, shape (num_blocks,).

    t*_k = ln((s_k/c)/a₀ − 1) / (2·lr·s_k): the step at which mode k reaches half its final strength s_k/c
    (≈ (1/lr)·ln(s_k/a₀)/(2 s_k), PAPER.md §4, for c = 1). ``a0`` is a scalar or per-mode (r,), e.g. from
    :func:`effective_initial_strength`.
    """
    basis = mode_basis(data)
    a0 = torch.as_tensor(a0, dtype=torch.float64).expand(basis.s.shape)
    first = [b[0] for b in basis.blocks]
    s = basis.s[first]
    return torch.log(s / (basis.c * a0[first]) - 1.0) / (2.0 * lr * s)


def detect_transitions(
    loss: torch.Tensor,
    *,
    log_scale: bool = False,
    smooth: int = 5,
    min_prominence: float = 0.02,
) -> torch.Tensor:
    """Steps where the loss falls fastest: peaks of −dL/dt (of −d ln L/dt with ``log_scale``), shape (K,).

    loss: the loss at every step, (T+1,). The rate is smoothed by a centred moving average of ``smooth``
    steps; a peak counts when its prominence exceeds ``min_prominence`` × the largest rate. (The log scale
    weighs late stages more but also picks up the final exponential approach as a spurious peak.)
    """
    from scipy.signal import find_peaks

    values = loss.double()
    if log_scale:
        values = torch.log(values.clamp_min(torch.finfo(torch.float64).tiny))
    rate = -(values[1:] - values[:-1])
    if smooth > 1:
        kernel = torch.ones(1, 1, smooth, dtype=torch.float64) / smooth
        rate = torch.nn.functional.conv1d(rate.view(1, 1, -1), kernel, padding=smooth // 2).flatten()[: rate.numel()]
    peaks, _ = find_peaks(rate.numpy(), prominence=min_prominence * float(rate.max()))
    # The rate between steps t and t + 1 is reported at t.
    return torch.as_tensor(peaks, dtype=torch.long)


# --------------------------------------------------------------------------------------------------------
# Analytic influence from the mode dynamics


def _mode_coordinates(data, basis: ModeBasis):
    x, y = data.batch if isinstance(data, HierarchicalData) else data
    return x @ basis.v, y @ basis.u  # x̃ (N, r), ỹ (N, r): items in the SVD basis


def _closed_form_perturbation(basis: ModeBasis, t: torch.Tensor, a0: torch.Tensor, lr: float,
                              p_mat: torch.Tensor, q_mat: torch.Tensor) -> torch.Tensor:
    """δW̃(t) = Uᵀ(dW/dβ_p)V in closed form, (S, I, r, r), from P = Uᵀ δΣ_yx V and Q = Vᵀ δΣ_xx V (I, r, r)."""
    s, c = basis.s, basis.c
    g, dg_ds, dg_dc = _mode_strength_derivatives(t[:, None], s, a0, lr, c)  # (S, r)
    block_of = torch.empty(s.numel(), dtype=torch.long)
    for b, block in enumerate(basis.blocks):
        block_of[list(block)] = b
    same = block_of[:, None] == block_of[None, :]  # (r, r)
    p_t = p_mat.transpose(-1, -2)
    # Between blocks: the singular vectors rotate (exact SVD perturbation of Σ_yx, generators A and B),
    # δ_jk = A_jk·G_k + G_j·B_jk with P_jk = A_jk s_k + B_jk s_j and A, B skew-symmetric.
    sj, sk = s[:, None], s[None, :]
    denom = torch.where(same, torch.ones_like(sj * sk), sk**2 - sj**2)
    a = torch.where(same, 0.0, (sk * p_mat + sj * p_t) / denom)
    b = torch.where(same, 0.0, -(sj * p_mat + sk * p_t) / denom)
    gj, gk = g[:, None, :, None], g[:, None, None, :]
    delta = a.unsqueeze(0) * gk + gj * b.unsqueeze(0)
    # Within a block (one mode, or several with equal s): the symmetric part of the forcing acts like a change
    # of s (and Q like a change of c) on the whole block; the antisymmetric part is a rotation inside the
    # block, which leaves the block's strength unchanged and gives δ = P_anti·G/s.
    p_sym, p_anti = 0.5 * (p_mat + p_t), 0.5 * (p_mat - p_t)
    inside = (dg_ds[:, None, :, None] * p_sym + dg_dc[:, None, :, None] * q_mat + (g / s)[:, None, :, None] * p_anti)
    return torch.where(same, inside, delta)


def _linearized_perturbation(basis: ModeBasis, t: torch.Tensor, a0: torch.Tensor, lr: float,
                             p_mat: torch.Tensor, q_mat: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
    """δW̃(t) by integrating the linearized balanced dynamics around W = U·G(t)·Vᵀ (RK4), (S, I, r, r).

    dW/dt = lr·[√(WWᵀ)·E + E·√(WᵀW)] with E = Σ_yx − W·Σ_xx (balanced two-layer gradient flow), perturbed by
    δΣ_yx = U P Vᵀ and δΣ_xx = V Q Vᵀ, δW(0) = 0. This is the same first-order theory as the closed form but
    with the input-covariance forcing −G·Q kept between blocks as well.
    """
    s, c = basis.s, basis.c

    def rhs(time: float, d: torch.Tensor) -> torch.Tensor:
        g = mode_strength(time, s, a0, lr, c)  # (r,)
        e = s - c * g
        gj, gk = g[:, None], g[None, :]
        dt_ = d.transpose(-1, -2)
        d1 = (d * gk + gj * dt_) / (gj + gk)  # δ√(WWᵀ)
        d2 = (gj * d + dt_ * gk) / (gj + gk)  # δ√(WᵀW)
        de = p_mat - c * d - gj * q_mat  # δE
        return lr * (d1 * e[None, :] + gj * de + de * gk + e[:, None] * d2)

    steps = t.tolist()
    out = torch.zeros(len(steps), *p_mat.shape, dtype=torch.float64)
    d = torch.zeros_like(p_mat)
    now, k = 0.0, 0
    while k < len(steps) and steps[k] <= 0:
        k += 1
    end = max(steps) if steps else 0.0
    while k < len(steps):
        h = min(dt, steps[k] - now)
        k1 = rhs(now, d)
        k2 = rhs(now + h / 2, d + h / 2 * k1)
        k3 = rhs(now + h / 2, d + h / 2 * k2)
        k4 = rhs(now + h, d + h * k3)
        d = d + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        now += h
        while k < len(steps) and steps[k] <= now + 1e-9:
            out[k] = d
            k += 1
        if now > end:
            break
    return out


def analytic_influence(
    data: HierarchicalData | tuple[torch.Tensor, torch.Tensor],
    steps: torch.Tensor | Sequence[int],
    lr: float,
    a0: torch.Tensor | float,
    *,
    train: Sequence[int] | None = None,
    query: Sequence[int] | None = None,
    method: str = "closed_form",
) -> torch.Tensor:
    """dℓ_q(t)/dβ_p at β = 1 from Saxe's mode dynamics (Lee et al.), shape (S, I, J). Negative = p helps q.

    The network is idealized as W(t) = U·G(t)·Vᵀ (balanced, aligned, :func:`mode_strength` with initial
    strengths ``a0``, e.g. :func:`effective_initial_strength`). Up-weighting item p by ε changes
    Σ_yx by ε·y_p x_pᵀ/N and Σ_xx by ε·x_p x_pᵀ/N; in the SVD basis P = ỹ_p x̃_pᵀ/N, Q = x̃_p x̃_pᵀ/N, and

        δW̃ = A·G + G′ + G·B          (between modes of different s: rotation of the singular vectors)
        G′ = ∂G/∂s·sym(P) + ∂G/∂c·Q + G/s·anti(P)      (inside each block of equal singular values)

    with A_jk = (s_k P_jk + s_j P_kj)/(s_k² − s_j²), B_jk = −(s_j P_jk + s_k P_kj)/(s_k² − s_j²) (for symmetric
    P these are the paper's A_jk = B_kj = P_jk/(s_k − s_j)). Degenerate blocks are treated whole: within a block
    the symmetric forcing changes the block's strength exactly as a change of s does, and the antisymmetric part
    only rotates the block (no tie-breaking needed). The influence is dℓ_q/dε = −r_qᵀ δW x_q with r_q the
    residual of the idealized network. Same scale as LOO: Δ_pq ≈ (1 − 0)·dℓ_q/dβ_p to first order.

    method: "closed_form" (the formulas above; the Q-forcing between different blocks, which has no closed
    form, is left out — it vanishes for Q ∝ I) or "linearized" (the same linear theory integrated numerically
    with every term, see :func:`_linearized_perturbation`). With one-hot items the Q term is what makes the
    influence vanish at convergence (W* = Yᵀ does not depend on β). Measured against finite differences of
    GD (default toy, all off-diagonal pairs and checkpoints): Pearson r = 0.944 (closed form), 0.962
    (linearized); on the stochastic variant, whose modes are all distinct, 0.75 and 0.94 with 1,000 features
    (0.91 and 0.94 with 100) — there the missing
    between-mode Q term matters, so prefer "linearized" (≈ 1 s).
    """
    if method not in ("closed_form", "linearized"):
        raise ValueError(f"method = {method!r}: accepted values are 'closed_form' or 'linearized'")
    basis = mode_basis(data)
    x_t, y_t = _mode_coordinates(data, basis)
    n = x_t.shape[0]
    train = list(range(n)) if train is None else list(train)
    query = list(range(n)) if query is None else list(query)
    t = torch.as_tensor(steps, dtype=torch.float64)
    a0 = torch.as_tensor(a0, dtype=torch.float64).expand(basis.s.shape)
    xp, yp = x_t[train], y_t[train]
    p_mat = yp[:, :, None] * xp[:, None, :] / n  # (I, r, r)
    q_mat = xp[:, :, None] * xp[:, None, :] / n
    if method == "closed_form":
        delta = _closed_form_perturbation(basis, t, a0, lr, p_mat, q_mat)
    else:
        delta = _linearized_perturbation(basis, t, a0, lr, p_mat, q_mat)
    g = mode_strength(t[:, None], basis.s, a0, lr, basis.c)  # (S, r)
    xq, yq = x_t[query], y_t[query]  # (J, r)
    resid = yq[None] - g[:, None, :] * xq[None]  # (S, J, r): r̃_q = ỹ_q − G x̃_q
    # −r̃_qᵀ δ_p x̃_q for every (t, p, q)
    return -torch.einsum("sqj,spjk,qk->spq", resid, delta, xq)


def finite_difference_influence(
    params: dict[str, torch.Tensor],
    data: HierarchicalData | tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig | None = None,
    *,
    train: Sequence[int] | None = None,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """dℓ_q(t)/dβ_p of the actual GD training by central differences (β_p = 1 ± eps), all runs batched.

    Returns (steps (S,), influence (S, I, J)). Negative = p helps q; the scale of :func:`analytic_influence`.
    """
    x, _ = data.batch if isinstance(data, HierarchicalData) else data
    n = x.shape[0]
    train = list(range(n)) if train is None else list(train)
    beta = torch.ones(2 * len(train), n, dtype=torch.float64)
    for k, p in enumerate(train):
        beta[2 * k, p] += eps
        beta[2 * k + 1, p] -= eps
    run = train_runs(params, data, config, beta)
    at = run.item_losses_at_checkpoints  # (S, 2I, N)
    return run.steps, (at[:, 0::2] - at[:, 1::2]) / (2 * eps)


# --------------------------------------------------------------------------------------------------------
# BIF over the training run


def bif_loss_fn(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-item losses ℓ_i = ½‖y_i − W x_i‖², (N,): the ``loss_fn`` for ``sample`` / ``bif_trajectory``.

    Use ``data.batch`` as both the (full-batch) training data and the observables, and the checkpoints of
    :meth:`TrainingRun.checkpoint_list`.
    """
    return per_item_losses(params, batch)


def _plain_sgld():
    from .sampling import SGLDConfig

    # PAPER.md §4: plain SGLD, ε 1e-4, nβ 100, γ 100, 4 chains × 1,000 draws after 200 burn-in steps.
    return SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=4, num_draws=1000,
                      num_burnin=200, preconditioner="none", seed=0)


PLAIN_SGLD = _plain_sgld()


def toy_bif_trajectory(
    run: TrainingRun,
    data: HierarchicalData,
    config=None,
    *,
    steps: Sequence[int] | None = None,
    normalized: bool = False,
    **kwargs,
):
    """``bif_trajectory`` over the checkpoints of a toy run (``steps``: a subset of them), all 8 × 8 pairs.

    config defaults to :data:`PLAIN_SGLD` (PAPER.md §4). Returns an
    :class:`~stagewise.influence.InfluenceTrajectory` (step, i, j); negative = i helps j.
    """
    from .influence import bif_trajectory

    checkpoints = run.checkpoint_list()
    if steps is not None:
        wanted = set(int(s) for s in steps)
        missing = wanted - {s for s, _ in checkpoints}
        if missing:
            raise ValueError(f"steps {sorted(missing)} are not checkpoints of the run")
        checkpoints = [(s, p) for s, p in checkpoints if s in wanted]
    return bif_trajectory(bif_loss_fn, checkpoints, data.batch, data.batch, config or PLAIN_SGLD,
                          normalized=normalized, **kwargs)
