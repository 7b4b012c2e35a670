"""Nonlinear networks on the hierarchy: y = W_L·σ(⋯σ(W_1 x)), with batched exact leave-one-out and the BIF.

The deep linear network of :mod:`stagewise.toy` with an activation σ between its layers ("linear": none, the
toy itself; "tanh"; "relu"), no biases, the same widths and the same initialization (:func:`stagewise.toy.
init_params`). Training is full-batch gradient descent on (1/N)·Σ_i β_i·½‖y_i − f(x_i)‖², the divisor N kept
fixed whatever the β_i, exactly as :func:`stagewise.toy.train_runs`; runs (leave-one-out copies, seeds) are a
leading dimension of every weight tensor, so R runs are one batched pass of matrix products, not a loop.

Sign convention of influence, the BIF's (book/notation.md): **negative = i helps j**. LOO
Δ_ij(t) = ℓ_j(t; all data) − ℓ_j(t; β_i = 0); BIF −Cov(ℓ_i, ℓ_j) under the localized posterior at checkpoint t.
Time is in gradient-descent steps; losses in nats (½ squared error).

- :func:`per_item_losses`, :func:`loss_fn`: ℓ_i (..., N), for the sampler and :func:`~stagewise.analysis.
  gradient_alignment`.
- :func:`train_runs`, :func:`train`: batched training with checkpoints (a :class:`stagewise.toy.TrainingRun`).
- :func:`leave_one_out_many`, :func:`leave_one_out`: exact LOO at every checkpoint, several initializations and
  every left-out item in one batch (:class:`stagewise.toy.LOOResult`).
- :func:`bif_trajectories`: the BIF at every checkpoint of several runs, all chains in one batched sampler pass.
- :func:`llc_curve`: the LLC estimate (:func:`stagewise.llc.estimate_llc`) at every checkpoint of a run.
- :func:`agreement_scores`: chapter 4's agreement scores of an influence trajectory with LOO, as one record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import toy
from .analysis import agreement, pair_correlations
from .influence import InfluenceTrajectory, bif, bif_stderr
from .llc import LLCEstimate, estimate_llc
from .sampling import SGLDConfig, sample_many

__all__ = ["ACTIVATIONS", "agreement_scores", "bif_trajectories", "forward", "leave_one_out", "leave_one_out_many", "llc_curve",
           "loss_fn", "per_item_losses", "train", "train_runs"]

#: The activations between layers: "linear" is the deep linear network of :mod:`stagewise.toy`.
ACTIVATIONS = ("linear", "tanh", "relu")


def _check_activation(activation: str) -> str:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation = {activation!r}: accepted values are {', '.join(map(repr, ACTIVATIONS))}")
    return activation


def _sigma(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "tanh":
        return torch.tanh(h)
    if activation == "relu":
        return torch.relu(h)
    return h


def _sigma_prime(h: torch.Tensor, a: torch.Tensor, activation: str) -> torch.Tensor:
    """σ′(h), given a = σ(h). ReLU′(0) = 0, as autograd takes it."""
    if activation == "tanh":
        return 1.0 - a * a
    if activation == "relu":
        return (h > 0).to(h.dtype)
    return torch.ones_like(h)


def forward(params: dict[str, torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """f(x) = W_L·σ(⋯σ(W_1 x)), shape (..., N, d_out) for inputs x (N, d_in) and weights with leading dims (...)."""
    _check_activation(activation)
    names = toy.layer_names(params)
    h = x.transpose(-1, -2)  # (d_in, N): activations are (..., width, N)
    for k, name in enumerate(names):
        h = params[name] @ h
        if k < len(names) - 1:
            h = _sigma(h, activation)
    return h.transpose(-1, -2)


def per_item_losses(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor],
                    activation: str) -> torch.Tensor:
    """ℓ_i = ½‖y_i − f(x_i)‖², shape (..., N) (nats); ``batch`` = (inputs (N, d_in), targets (N, d_out))."""
    x, y = batch
    return 0.5 * ((y - forward(params, x, activation)) ** 2).sum(-1)


def loss_fn(activation: str) -> Callable:
    """``loss_fn(params, batch) -> (N,)`` per-item losses of this activation, as the sampler takes it."""
    _check_activation(activation)

    def losses(params, batch):
        return per_item_losses(params, batch, activation)

    losses.__name__ = f"per_item_losses_{activation}"
    return losses


def train_runs(params: dict[str, torch.Tensor], data: toy.Data, config: toy.TrainConfig | None = None,
               beta: torch.Tensor | None = None, *, activation: str = "tanh") -> toy.TrainingRun:
    """Train R networks at once by full-batch GD, each with its own per-item weights β (R, N).

    params: initial weights {"W1": (h, d_in), …}, shared by all runs, or with a leading run dimension (R, …).
    beta:   (R, N) per-item weights, or None (one run, all β_i = 1; R from params if they have a run dimension).
    Returns a :class:`stagewise.toy.TrainingRun` with the run dimension R (shapes as documented there). The
    gradients are backpropagation written out for this network (checked against autograd in the tests), one
    batched matrix product per layer and step for all runs. With ``activation="linear"`` the numbers are those
    of :func:`stagewise.toy.train_runs`.
    """
    _check_activation(activation)
    config = config or toy.TrainConfig()
    x, y = toy.as_batch(data)
    n = x.shape[0]
    names = toy.layer_names(params)
    lead = {params[name].dim() for name in names}
    if lead not in ({2}, {3}):
        raise ValueError("params: every weight (out, in), or every weight with a leading run dimension (R, out, in)")
    runs_in_params = params[names[0]].shape[0] if lead == {3} else None
    if beta is None:
        beta = torch.ones(runs_in_params or 1, n, dtype=x.dtype)
    beta = torch.as_tensor(beta, dtype=x.dtype)
    if beta.dim() != 2 or beta.shape[1] != n or (runs_in_params is not None and beta.shape[0] != runs_in_params):
        raise ValueError(f"beta: shape (R, N = {n}) with R = the run dimension of params "
                         f"({runs_in_params or 'any'}); got {tuple(beta.shape)}")
    num_runs = beta.shape[0]
    weights = [(params[name] if lead == {3} else params[name].expand(num_runs, *params[name].shape))
               .to(x.dtype).clone() for name in names]
    xt = x.T.expand(num_runs, *x.T.shape)  # (R, d_in, N)
    schedule = config.schedule()
    wanted = set(schedule)
    saved: list[list[torch.Tensor]] = []
    item_losses = torch.empty(num_runs, config.num_steps + 1, n, dtype=x.dtype)
    objective = torch.empty(num_runs, config.num_steps + 1, dtype=x.dtype)
    scale = beta.unsqueeze(1) / n  # (R, 1, N): ∂L/∂ℓ_i = β_i / N
    for step in range(config.num_steps + 1):
        pre, acts = [], [xt]  # pre-activations h_l and activations a_l = σ(h_l) of the hidden layers
        for k, w in enumerate(weights):
            h = w @ acts[-1]
            if k < len(weights) - 1:
                pre.append(h)
                h = _sigma(h, activation)
            acts.append(h)
        residual = y.T - acts[-1]  # (R, d_out, N)
        losses = 0.5 * (residual**2).sum(1)
        item_losses[:, step] = losses
        objective[:, step] = (beta * losses).sum(1) / n
        if step in wanted:
            saved.append([w.clone() for w in weights])
        if step == config.num_steps:
            break
        delta = -residual * scale  # ∂L/∂(output of layer L), (R, d_out, N)
        grads = []
        for k in range(len(weights) - 1, -1, -1):
            grads.append(delta @ acts[k].transpose(1, 2))
            if k > 0:
                delta = (weights[k].transpose(1, 2) @ delta) * _sigma_prime(pre[k - 1], acts[k], activation)
        for w, g in zip(weights, reversed(grads)):
            w.sub_(config.lr * g)
    checkpoints = {name: torch.stack([s[k] for s in saved]) for k, name in enumerate(names)}
    steps = torch.tensor(schedule)
    return toy.TrainingRun(steps, checkpoints, objective, item_losses, item_losses[:, steps].transpose(0, 1))


def train(params: dict[str, torch.Tensor], data: toy.Data, config: toy.TrainConfig | None = None, *,
          activation: str = "tanh") -> toy.TrainingRun:
    """One GD run on all items; shapes as :class:`stagewise.toy.TrainingRun` without the run dimension."""
    run = train_runs(params, data, config, activation=activation)
    return _one(run, 0)


def _one(run: toy.TrainingRun, r: int) -> toy.TrainingRun:
    return toy.TrainingRun(run.steps, {k: v[:, r] for k, v in run.checkpoints.items()}, run.loss[r],
                           run.item_losses[r], run.item_losses_at_checkpoints[:, r])


def leave_one_out_many(inits: Sequence[dict[str, torch.Tensor]], data: toy.Data,
                       config: toy.TrainConfig | None = None, *, activation: str = "tanh",
                       items: Sequence[int] | None = None) -> tuple[list[toy.TrainingRun], list[toy.LOOResult]]:
    """Exact LOO from each of several initializations, all (1 + I)·len(inits) retrainings in one batched run.

    For initialization s, run 0 uses all data and run 1 + k leaves out ``items[k]`` (β = 0, divisor kept at N).
    Returns (the full-data run of each init, the :class:`stagewise.toy.LOOResult` of each init), with
    Δ_ij(t) = ℓ_j(t; all) − ℓ_j(t; without i) of shape (S, I, N); negative = i helped j.
    """
    if not inits:
        raise ValueError("inits: at least one initialization ({'W1': …, 'W2': …})")
    n = toy.as_batch(data)[0].shape[0]
    items = toy.item_indices(items, n, "items")
    per = 1 + len(items)
    beta = torch.ones(per, n, dtype=torch.float64)
    for k, i in enumerate(items):
        beta[1 + k, i] = 0.0
    names = toy.layer_names(inits[0])
    stacked = {name: torch.stack([p[name] for p in inits]).repeat_interleave(per, dim=0) for name in names}
    run = train_runs(stacked, data, config, beta.repeat(len(inits), 1), activation=activation)
    fulls, results = [], []
    for s in range(len(inits)):
        block = slice(s * per, (s + 1) * per)
        at = run.item_losses_at_checkpoints[:, block]  # (S, 1 + I, N)
        fulls.append(_one(run, s * per))
        results.append(toy.LOOResult(run.steps, at[:, :1] - at[:, 1:], run.item_losses[s * per],
                                     run.item_losses[block][1:], items))
    return fulls, results


def leave_one_out(params: dict[str, torch.Tensor], data: toy.Data, config: toy.TrainConfig | None = None, *,
                  activation: str = "tanh", items: Sequence[int] | None = None) -> toy.LOOResult:
    """Exact LOO from one initialization (see :func:`leave_one_out_many`), shape (S, I, N)."""
    return leave_one_out_many([params], data, config, activation=activation, items=items)[1][0]


def _checkpoints(runs: Sequence[toy.TrainingRun], steps: Sequence[int] | None) -> list[list[tuple[int, dict]]]:
    out = []
    for run in runs:
        checkpoints = run.checkpoint_list()
        if steps is not None:
            wanted = {int(s) for s in steps}
            missing = wanted - {s for s, _ in checkpoints}
            if missing:
                raise ValueError(f"steps {sorted(missing)} are not checkpoints of the run")
            checkpoints = [(s, p) for s, p in checkpoints if s in wanted]
        out.append(checkpoints)
    return out


def bif_trajectories(runs: Sequence[toy.TrainingRun], data: toy.Data, config: SGLDConfig, *,
                     activation: str = "tanh", steps: Sequence[int] | None = None, normalized: bool = False,
                     keep_traces: bool = False) -> list[InfluenceTrajectory]:
    """The BIF −Cov(ℓ_i, ℓ_j) (N × N, all items as train and query) at every checkpoint of each run.

    Every checkpoint of every run is sampled in one :func:`~stagewise.sampling.sample_many` pass (runs ×
    checkpoints × ``config.num_chains`` chains, one vmapped step for all), full batch. Returns one
    :class:`~stagewise.influence.InfluenceTrajectory` per run: values and stderr (S, N, N); negative = i helps j.
    """
    _check_activation(activation)
    if not isinstance(config, SGLDConfig):
        raise TypeError(f"config must be an SGLDConfig; got {type(config).__name__}")
    if not runs:
        raise ValueError("runs: at least one TrainingRun")
    batch = toy.as_batch(data)
    grouped = _checkpoints(runs, steps)
    flat = [p for checkpoints in grouped for _, p in checkpoints]
    traces = sample_many(loss_fn(activation), flat, batch, batch, config, progress=False)
    out, k = [], 0
    for checkpoints in grouped:
        mine = traces[k: k + len(checkpoints)]
        k += len(checkpoints)
        values = torch.stack([bif(t.losses, normalized=normalized) for t in mine])
        if config.num_chains > 1:
            errors = torch.stack([bif_stderr(t.losses, normalized=normalized) for t in mine])
        else:
            errors = torch.full_like(values, math.nan)
        out.append(InfluenceTrajectory(torch.tensor([s for s, _ in checkpoints]), values, errors,
                                       list(mine) if keep_traces else None))
    return out


def llc_curve(run: toy.TrainingRun, data: toy.Data, config: SGLDConfig, *, activation: str = "tanh",
              steps: Sequence[int] | None = None) -> tuple[torch.Tensor, list[LLCEstimate]]:
    """The LLC estimate λ̂ = nβ·(E[L_n] − L_n(w_t)) at every checkpoint w_t of ``run``, one batched sampler pass.

    Returns (steps (S,), one :class:`~stagewise.llc.LLCEstimate` per checkpoint). Nothing but the training loss
    is recorded. λ̂ is the LLC only where w_t is a local minimum; at a saddle (a plateau of the run) or on a slope
    (a transition) the chains move downhill and λ̂ can be negative: such estimates are flagged
    (``LLCEstimate.not_minimum``) and warned about with their step. The localized posterior exists only if
    ``localization`` exceeds nβ times the steepest negative curvature of L_n at w_t.
    """
    _check_activation(activation)
    if not isinstance(config, SGLDConfig):
        raise TypeError(f"config must be an SGLDConfig; got {type(config).__name__}")
    checkpoints = _checkpoints([run], steps)[0]
    traces = sample_many(loss_fn(activation), [p for _, p in checkpoints], toy.as_batch(data), None, config,
                         progress=False)
    return torch.tensor([s for s, _ in checkpoints]), [estimate_llc(t, checkpoint=int(s))
                                                       for (s, _), t in zip(checkpoints, traces)]


def agreement_scores(values, reference, steps) -> dict:
    """Chapter 4's scores of an influence trajectory against a reference (both (S, N, N), e.g. BIF and LOO).

    corr_median: median over the N·(N − 1) pairs i ≠ j of the Pearson correlation over checkpoints
    (:func:`~stagewise.analysis.pair_correlations`); rank_corr_median: median over checkpoints of the Spearman
    correlation of the off-diagonal entries; sign_agreement and peak_offset_median (steps): from
    :func:`~stagewise.analysis.agreement` with its defaults. Correlations do not see scale, so the raw BIF (nats²)
    and LOO (nats) compare directly.
    """
    corr = pair_correlations(values, reference)
    scores = agreement(values, reference, steps)
    return {"corr_median": float(np.nanmedian(corr)), "rank_corr_median": float(np.nanmedian(scores.rank_corr)),
            "sign_agreement": float(scores.sign_agreement),
            "peak_offset_median": float(np.median(scores.peak_offsets))}
