"""The pieces of an SGLD step that the eager and the compiled paths share: the update formula
(:func:`sgld_step`, pure), the RMSProp preconditioner, and how a loss is called on the parameters of one
chain or of a block of chains."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .inputs import Batch, LossFn, Params
from .settings import SGLDConfig


class ChainState(NamedTuple):
    """Positions and preconditioner state of all chains, each (chain, *shape).

    params:     the positions w.
    square_avg: RMSProp's running average V of the squared gradients (None for plain SGLD or before the first
                RMSProp step).
    precond:    a frozen preconditioner G (None: RMSProp adapts G = 1/(√V + eps) at every step).
    """

    params: Params
    square_avg: Params | None
    precond: Params | None = None


def rmsprop_preconditioner(square_avg: Params, eps: float) -> Params:
    """G = 1/(√V + eps), elementwise."""
    return {k: 1.0 / (v.sqrt() + eps) for k, v in square_avg.items()}


def sgld_step(
    state: ChainState,
    grads: Params,
    center: Params,
    noise: Params,
    config: SGLDConfig,
) -> ChainState:
    """One (RMSProp-)SGLD update of all chains, as a pure function.

        plain:   w ← w − (ε/2)·[nβ·g + γ·(w − w*)] + √ε·ξ
        RMSProp: w ← w − (ε/2)·G·[nβ·g + γ·(w − w*)] + √(ε·G)·ξ, with G = ``state.precond`` when it is set
                 (frozen; V is left as it is), else V ← α·V + (1 − α)·g², G = 1/(√V + eps).

    ``grads`` are gradients of the mean mini-batch loss (without the nβ factor and the localization term),
    ``center`` is the checkpoint w* (broadcast over chains) and ``noise`` standard normal draws, all with the
    shapes of ``state.params``. Returns the new state; the inputs are not modified.
    """
    eps, nbeta, gamma = config.step_size, config.nbeta, config.localization
    rmsprop = config.preconditioner == "rmsprop"
    frozen = rmsprop and state.precond is not None
    new_params: Params = {}
    new_avg: Params | None = {} if rmsprop and not frozen else state.square_avg if frozen else None
    for name, w in state.params.items():
        g = grads[name]
        drift = nbeta * g + gamma * (w - center[name])
        if not rmsprop:
            new_params[name] = w - 0.5 * eps * drift + math.sqrt(eps) * noise[name]
            continue
        if frozen:
            precond = state.precond[name]
        else:
            previous = state.square_avg[name] if state.square_avg is not None else torch.zeros_like(w)
            v = config.rmsprop_alpha * previous + (1 - config.rmsprop_alpha) * g * g
            precond = 1.0 / (v.sqrt() + config.rmsprop_eps)
            new_avg[name] = v
        new_params[name] = w - 0.5 * eps * precond * drift + (eps * precond).sqrt() * noise[name]
    return ChainState(new_params, new_avg, state.precond if frozen else None)


def call_loss(loss_fn: LossFn, tensor_params: bool, p: Params, batch: Batch) -> torch.Tensor:
    """``loss_fn`` at the parameters ``p``: the tensor itself when the user passed one, else the dict."""
    return loss_fn(p["w"] if tensor_params else p, batch)


def mean_loss(loss_fn: LossFn, tensor_params: bool, p: Params, batch: Batch) -> torch.Tensor:
    """The mean of :func:`call_loss` (the mini-batch objective L of one chain)."""
    return call_loss(loss_fn, tensor_params, p, batch).mean()


def chain_of(params: Params | None, c: int) -> Params | None:
    """Chain c's views of parameters stacked on a leading chain dimension (None stays None)."""
    return None if params is None else {k: v[c] for k, v in params.items()}


def index_chain(batch: Batch, c: int) -> Batch:
    """Chain c's part of a batch with a leading chain dimension."""
    if isinstance(batch, torch.Tensor):
        return batch[c]
    if isinstance(batch, dict):
        return {k: (v[c] if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return type(batch)(v[c] if isinstance(v, torch.Tensor) else v for v in batch)
