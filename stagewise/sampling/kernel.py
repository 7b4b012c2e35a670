"""The sampler as pure steps, BlackJAX-style: ``state = init(params, config)``, then
``state = step(state, batch, generator, loss_fn, config)`` as often as wanted.

A :class:`SamplerState` holds everything that changes (positions, RMSProp average, frozen preconditioner,
step count, last loss) plus the localization centres; ``step`` returns a new state and never modifies the
old one. It is made of small pieces that can be used on their own: :func:`gradients` (one vmapped forward and
backward pass for all chains), :func:`draw_noise`, :func:`draw_batch`, :func:`sgld_step` (the update formula),
:func:`nonfinite_chains` (the divergence check) and :func:`observe` (what is recorded at a draw).

Randomness comes from one ``torch.Generator`` passed to every call (made by :func:`make_generator` on the
parameters' device): per step first the mini-batch indices ``randint(n, (chains, batch_size))`` (only with
mini-batches), then ``randn((chains, *shape))`` for every parameter in dict order. Noise is drawn on the
parameters' device, so nothing crosses devices inside a step. On the CPU a seed gives exactly the chains of
earlier versions of this package; on another device the same seed gives another stream (torch's CUDA and CPU
generators differ), reproducible on that device.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import torch
from torch.func import vmap

from .inputs import Batch, LossFn, Params, as_params, index, num_samples, stack_checkpoints
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


class SamplerState(NamedTuple):
    """Everything a run carries from one step to the next (shapes (chain, *param shape) unless stated).

    params, square_avg, precond: as in :class:`ChainState`.
    center:        the localization centre w* of each chain.
    step:          steps taken so far (0 after :func:`init`).
    loss:          mean mini-batch loss of each chain at the positions *before* the last step, (chain,);
                   None after :func:`init`.
    tensor_params: w* was one tensor, so ``loss_fn`` receives ``params["w"]`` rather than the dict.
    """

    params: Params
    center: Params
    square_avg: Params | None
    precond: Params | None
    step: int
    loss: torch.Tensor | None
    tensor_params: bool


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


# --------------------------------------------------------------------------------------------------------
# Starting: the state of all chains at w*


def make_generator(seed: int, device: torch.device | str | None = None) -> torch.Generator:
    """The generator of a run, on ``device`` (the parameters' device; CPU by default), seeded with ``seed``."""
    return torch.Generator(device=device or "cpu").manual_seed(seed)


def _start(centers: Params, tensor_params: bool, config: SGLDConfig) -> SamplerState:
    # Chain k·C + c is chain c of checkpoint k; its localization centre is checkpoint k.
    center = {k: v.repeat_interleave(config.num_chains, dim=0) for k, v in centers.items()}
    return SamplerState(params={k: v.clone() for k, v in center.items()}, center=center, square_avg=None,
                        precond=None, step=0, loss=None, tensor_params=tensor_params)


def init(params: torch.Tensor | dict[str, torch.Tensor], config: SGLDConfig) -> SamplerState:
    """``config.num_chains`` chains at the checkpoint ``params`` = w* (a tensor, numpy array or dict of them)."""
    centers, single = as_params(params)
    return _start({k: v.unsqueeze(0) for k, v in centers.items()}, single, config)


def init_many(checkpoints, config: SGLDConfig) -> SamplerState:
    """``config.num_chains`` chains at each of K checkpoints: chain k·C + c belongs to checkpoint k."""
    return _start(*stack_checkpoints(checkpoints), config)


# --------------------------------------------------------------------------------------------------------
# The pieces of a step


def _call(loss_fn: LossFn, tensor_params: bool, p: Params, batch: Batch) -> torch.Tensor:
    return loss_fn(p["w"] if tensor_params else p, batch)


def _mean_loss(loss_fn: LossFn, tensor_params: bool, p: Params, batch: Batch) -> torch.Tensor:
    return _call(loss_fn, tensor_params, p, batch).mean()


def gradients(
    loss_fn: LossFn,
    params: Params,
    batch: Batch,
    *,
    batch_per_chain: bool = False,
    tensor_params: bool = False,
) -> tuple[Params, torch.Tensor]:
    """Gradient of each chain's mean mini-batch loss, and that loss (chain,), in one vmapped pass.

    ``batch`` is shared by all chains, or has a leading chain dimension when ``batch_per_chain``.
    Chains are independent, so the gradient of the summed chain losses is each chain's own gradient: one
    vmapped forward and one backward pass (several times faster than vmap(grad(...))).
    """
    per_chain = vmap(partial(_mean_loss, loss_fn, tensor_params), in_dims=(0, 0 if batch_per_chain else None))
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        values = per_chain(leaves, batch)
        grads = torch.autograd.grad(values.sum(), list(leaves.values()))
    return dict(zip(leaves, grads)), values.detach()


def draw_noise(params: Params, generator: torch.Generator) -> Params:
    """Standard normal draws shaped like every parameter, in dict order, on the parameters' device."""
    return {k: torch.randn(v.shape, generator=generator, dtype=v.dtype, device=v.device) for k, v in params.items()}


def draw_batch(data: Batch, num_chains: int, batch_size: int, generator: torch.Generator) -> Batch:
    """One mini-batch per chain, drawn with replacement: every tensor becomes (chain, batch_size, ...)."""
    idx = torch.randint(num_samples(data), (num_chains, batch_size), generator=generator, device=generator.device)
    return index(data, idx)


def nonfinite_chains(state: SamplerState) -> tuple[torch.Tensor, str] | None:
    """(mask of the failing chains, what was non-finite) if a chain's loss or parameters are NaN or infinite."""
    num_chains = next(iter(state.params.values())).shape[0]
    bad_loss = ~torch.isfinite(state.loss) if state.loss is not None else None
    bad_params = torch.zeros(num_chains, dtype=torch.bool, device=next(iter(state.params.values())).device)
    for v in state.params.values():
        bad_params |= ~torch.isfinite(v.reshape(num_chains, -1)).all(dim=1)
    if bad_loss is not None and bool(bad_loss.any()):
        return bad_loss | bad_params, "non-finite loss"
    if bool(bad_params.any()):
        return bad_params, "non-finite parameters"
    return None


def step(
    state: SamplerState,
    batch: Batch,
    generator: torch.Generator,
    loss_fn: LossFn,
    config: SGLDConfig,
    *,
    batch_per_chain: bool = False,
) -> SamplerState:
    """One SGLD step of every chain: gradients on ``batch``, noise from ``generator``, the update.

    With ``config.rmsprop_adapt == "burnin"`` the RMSProp preconditioner adapts during the first
    ``config.num_burnin`` steps and is frozen when the last of them is done. Returns the new state (the loss
    it records is the one before the update); check it with :func:`nonfinite_chains`.
    """
    grads, losses = gradients(loss_fn, state.params, batch, batch_per_chain=batch_per_chain,
                              tensor_params=state.tensor_params)
    noise = draw_noise(state.params, generator)
    chains = sgld_step(ChainState(state.params, state.square_avg, state.precond), grads, state.center, noise,
                       config)
    taken = state.step + 1
    precond = chains.precond
    if config.freezes_preconditioner and taken == config.num_burnin:
        precond = rmsprop_preconditioner(chains.square_avg, config.rmsprop_eps)
    return state._replace(params=chains.params, square_avg=chains.square_avg, precond=precond, step=taken,
                          loss=losses)


def observe(
    fn: LossFn,
    params: Params,
    observables: Batch,
    *,
    tensor_params: bool = False,
    chunk: int | None = None,
) -> torch.Tensor:
    """``fn(params, observables)`` for every chain, (chain, sample, ...); ``chunk`` samples at a time if set."""
    per_chain = vmap(partial(_call, fn, tensor_params), in_dims=(0, None))
    with torch.no_grad():
        if chunk is None or observables is None:
            return per_chain(params, observables).detach()
        count = num_samples(observables)
        parts = [per_chain(params, index(observables, torch.arange(s, min(s + chunk, count))))
                 for s in range(0, count, chunk)]
        return torch.cat(parts, dim=1).detach()
