"""The sampler as pure steps, BlackJAX-style: ``state = init(params, config)``, then
``state = step(state, batch, generators, loss_fn, config)`` as often as wanted.

A :class:`SamplerState` holds everything that changes (positions, RMSProp average, frozen preconditioner,
step count, last loss) plus the localization centres; ``step`` returns a new state and never modifies the
old one. It is made of small pieces that can be used on their own: :func:`gradients` (one vmapped forward and
backward pass for all chains), :func:`draw_noise`, :func:`draw_batch`, :func:`sgld_step` (the update formula),
:func:`nonfinite_chains` (the divergence check) and :func:`observe` (what is recorded at a draw).

Randomness comes from one ``torch.Generator`` per chain (:func:`make_generators`), on the run's device, seeded
from (seed, chain index) alone. Per step each chain draws first its mini-batch indices ``randint(n,
(batch_size,))`` (only with mini-batches), then its noise: one ``randn`` of all D parameters in dict order
(one call per parameter when the parameters have different dtypes). So chain c is the same chain whatever
the number of chains, whether the chains are vmapped or looped, and in :func:`init_many` (chain k·C + c has
chain c's stream: every checkpoint sees the same noise, common random numbers across checkpoints). On one
device a seed reproduces the chains exactly (up to the rounding of batched against per-chain matmuls between
"vmap" and "loop"); on another device the same seed gives other chains with the same statistics (torch's CPU
and CUDA generators are different algorithms).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch.func import vmap

from .compiled import compiled_observe, compiled_update
from .device import resolve_device
from .inputs import Batch, LossFn, Params, as_params, index, leaves, num_samples, stack_checkpoints
from .settings import SGLDConfig
from .update import (ChainState, call_loss, chain_of, index_chain, mean_loss,  # noqa: F401 (re-exported)
                     rmsprop_preconditioner, sgld_step)


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


# --------------------------------------------------------------------------------------------------------
# Starting: the state of all chains at w*


def chain_seed(seed: int, chain: int) -> int:
    """The seed of chain ``chain``'s generator: a 63-bit hash of (seed, chain) (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(chain)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def make_generators(seed: int, num_chains: int, device: torch.device | str | None = None, *,
                    repeat: int = 1) -> list[torch.Generator]:
    """One generator per chain on ``device`` (CPU by default): ``repeat`` × ``num_chains`` of them, the
    generator of chain k·num_chains + c seeded with :func:`chain_seed` (seed, c)."""
    device = torch.device(device or "cpu")
    return [torch.Generator(device=device).manual_seed(chain_seed(seed, c))
            for _ in range(repeat) for c in range(num_chains)]


def place(centers: Params, config: SGLDConfig) -> Params:
    """The checkpoint(s) on ``config.device`` in ``config.dtype`` (None: where and as they are)."""
    first = next(iter(centers.values()))
    device = resolve_device(config.device, first.device)
    dtype = getattr(torch, config.dtype) if config.dtype is not None else None
    return {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in centers.items()}


def init_stacked(centers: Params, tensor_params: bool, config: SGLDConfig) -> SamplerState:
    """``config.num_chains`` chains at each of the K checkpoints stacked in ``centers`` (leading dimension K)."""
    # Chain k·C + c is chain c of checkpoint k; its localization centre is checkpoint k.
    centers = place(centers, config)
    center = {k: v.repeat_interleave(config.num_chains, dim=0) for k, v in centers.items()}
    return SamplerState(params={k: v.clone() for k, v in center.items()}, center=center, square_avg=None,
                        precond=None, step=0, loss=None, tensor_params=tensor_params)


def init(params: torch.Tensor | dict[str, torch.Tensor], config: SGLDConfig) -> SamplerState:
    """``config.num_chains`` chains at the checkpoint ``params`` = w* (a tensor, numpy array or dict of them)."""
    centers, single = as_params(params)
    return init_stacked({k: v.unsqueeze(0) for k, v in centers.items()}, single, config)


def init_many(checkpoints, config: SGLDConfig) -> SamplerState:
    """``config.num_chains`` chains at each of K checkpoints: chain k·C + c belongs to checkpoint k."""
    return init_stacked(*stack_checkpoints(checkpoints), config)


# --------------------------------------------------------------------------------------------------------
# The pieces of a step


def chain_loop(config: SGLDConfig, device: torch.device) -> bool:
    """Whether the chains run as a Python loop on views (``config.batching``; "auto" is vmap on every device,
    as measured: see :class:`SGLDConfig`)."""
    return config.batching == "loop"


def gradients(
    loss_fn: LossFn,
    params: Params,
    batch: Batch,
    *,
    batch_per_chain: bool = False,
    tensor_params: bool = False,
    loop: bool = False,
) -> tuple[Params, torch.Tensor]:
    """Gradient of each chain's mean mini-batch loss, and that loss (chain,), in one backward pass.

    ``batch`` is shared by all chains, or has a leading chain dimension when ``batch_per_chain``.
    Chains are independent, so the gradient of the summed chain losses is each chain's own gradient: one
    forward and one backward pass (several times faster than vmap(grad(...))). The forward is vmapped over
    the chains, or with ``loop`` a Python loop over views ``params[c]`` (plain matmuls instead of batched ones).
    """
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        if loop:
            values = torch.stack([
                mean_loss(loss_fn, tensor_params, chain_of(leaves, c), index_chain(batch, c) if batch_per_chain
                           else batch) for c in range(next(iter(leaves.values())).shape[0])])
        else:
            per_chain = vmap(partial(mean_loss, loss_fn, tensor_params),
                             in_dims=(0, 0 if batch_per_chain else None))
            values = per_chain(leaves, batch)
        grads = torch.autograd.grad(values.sum(), list(leaves.values()))
    return dict(zip(leaves, grads)), values.detach()


def draw_noise(params: Params, generators: list[torch.Generator]) -> Params:
    """Standard normal draws shaped like every parameter (chain, *shape), on the parameters' device.

    Chain c's D numbers come from ``generators[c]`` in one call (parameters in dict order), so they do not
    depend on the other chains; with mixed dtypes, one call per parameter.
    """
    first = next(iter(params.values()))
    num_chains = first.shape[0]
    if len(generators) != num_chains:
        raise ValueError(f"{len(generators)} generators for {num_chains} chains: one generator per chain")
    if len({v.dtype for v in params.values()}) == 1:
        sizes = [v[0].numel() for v in params.values()]
        flat = torch.empty(num_chains, sum(sizes), dtype=first.dtype, device=first.device)
        for c, g in enumerate(generators):
            torch.randn(flat.shape[1], generator=g, dtype=first.dtype, device=first.device, out=flat[c])
        pieces = flat.split(sizes, dim=1)
        return {k: p.view(v.shape) for (k, v), p in zip(params.items(), pieces)}
    out = {k: torch.empty_like(v) for k, v in params.items()}
    for c, g in enumerate(generators):
        for k, v in params.items():
            out[k][c] = torch.randn(v.shape[1:], generator=g, dtype=v.dtype, device=v.device)
    return out


def draw_batch(data: Batch, batch_size: int, generators: list[torch.Generator]) -> Batch:
    """One mini-batch per chain, drawn with replacement from ``generators[c]``: every tensor becomes
    (chain, batch_size, ...)."""
    n = num_samples(data)
    idx = torch.empty(len(generators), batch_size, dtype=torch.long, device=generators[0].device)
    for c, g in enumerate(generators):
        torch.randint(n, (batch_size,), generator=g, device=idx.device, out=idx[c])
    return index(data, idx)


def nonfinite_flags(state: SamplerState) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss not finite, parameters not finite), each a (chain,) bool tensor on the device; no host sync."""
    first = next(iter(state.params.values()))
    num_chains = first.shape[0]
    bad_params = torch.zeros(num_chains, dtype=torch.bool, device=first.device)
    for v in state.params.values():
        bad_params |= ~torch.isfinite(v.reshape(num_chains, -1)).all(dim=1)
    bad_loss = ~torch.isfinite(state.loss) if state.loss is not None else torch.zeros_like(bad_params)
    return bad_loss, bad_params


def nonfinite_chains(state: SamplerState) -> tuple[torch.Tensor, str] | None:
    """(mask of the failing chains, what was non-finite) if a chain's loss or parameters are NaN or infinite.

    Reads the flags on the host (a synchronisation on a GPU); the runner uses :func:`nonfinite_flags` instead.
    """
    bad_loss, bad_params = nonfinite_flags(state)
    if bool(bad_loss.any()):
        return bad_loss | bad_params, "non-finite loss"
    if bool(bad_params.any()):
        return bad_params, "non-finite parameters"
    return None


def step(
    state: SamplerState,
    batch: Batch,
    generators: list[torch.Generator],
    loss_fn: LossFn,
    config: SGLDConfig,
    *,
    batch_per_chain: bool = False,
) -> SamplerState:
    """One SGLD step of every chain: gradients on ``batch``, noise from ``generators`` (one per chain), the update.

    With ``config.rmsprop_adapt == "burnin"`` the RMSProp preconditioner adapts during the first
    ``config.num_burnin`` steps and is frozen when the last of them is done. Returns the new state (the loss
    it records is the one before the update); check it with :func:`nonfinite_chains`. With ``config.compile``
    the gradient and the update run as one compiled graph (:mod:`stagewise.sampling.compiled`), with the same
    noise.
    """
    loop = chain_loop(config, next(iter(state.params.values())).device)
    current = ChainState(state.params, state.square_avg, state.precond)
    if config.compile:
        noise = draw_noise(state.params, generators)
        new_params, new_avg, losses = compiled_update(loss_fn, state.tensor_params, config, current, state.center,
                                                      noise, batch, loop=loop, batch_per_chain=batch_per_chain)
        chains = ChainState(new_params, new_avg, state.precond)
    else:
        grads, losses = gradients(loss_fn, state.params, batch, batch_per_chain=batch_per_chain,
                                  tensor_params=state.tensor_params, loop=loop)
        chains = sgld_step(current, grads, state.center, draw_noise(state.params, generators), config)
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
    loop: bool = False,
    compile: bool = False,
) -> torch.Tensor:
    """``fn(params, observables)`` for every chain, (chain, sample, ...); ``chunk`` samples at a time if set.

    Vmapped over the chains, or with ``loop`` one call per chain on the views ``params[c]``; with ``compile``
    through a compiled graph (:func:`stagewise.sampling.compiled.compiled_observe`).
    """
    if compile:
        per_chain = partial(compiled_observe, fn, tensor_params, loop=loop)
    elif loop:
        def per_chain(p, batch):
            return torch.stack([call_loss(fn, tensor_params, chain_of(p, c), batch)
                                for c in range(next(iter(p.values())).shape[0])])
    else:
        per_chain = vmap(partial(call_loss, fn, tensor_params), in_dims=(0, None))
    with torch.no_grad():
        if chunk is None or observables is None:
            return per_chain(params, observables).detach()
        count = num_samples(observables)
        where = leaves(observables)[0].device
        parts = [per_chain(params, index(observables, torch.arange(s, min(s + chunk, count), device=where)))
                 for s in range(0, count, chunk)]
        return torch.cat(parts, dim=1).detach()
