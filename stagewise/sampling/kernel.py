"""The sampler as a pure kernel, BlackJAX-style::

    kernel = SGLD(loss_fn, config)
    state = kernel.init(w_star)                  # config.num_chains chains at w*, on config.device
    for _ in range(config.num_steps):
        state, info = kernel.step(state, data)   # a new state; `state` itself is never modified

A :class:`SamplerState` holds everything that changes from one step to the next (positions, RMSProp average,
frozen preconditioner, step count) plus the localization centres and **each chain's random state**, so a
state is replayable: ``kernel.step(state, data)`` gives the same new state however often it is called. The
mini-batch is drawn inside ``step`` (``config.batch_size`` samples of ``data`` per chain, with replacement;
None or ≥ n: the full data). :class:`StepInfo` reports the mini-batch losses and which chains went non-finite.
``kernel.observe(state, observables)`` gives what a run records at a draw.

Randomness: each chain has its own ``torch.Generator`` stream on the run's device, seeded from (seed, chain
index) alone (:func:`make_generators`); the state keeps each generator's state (a CPU byte tensor per chain),
which ``step`` restores into this thread's scratch generators, draws from, and reads back. Per step each chain
draws first its mini-batch indices ``randint(n, (batch_size,))`` (only with mini-batches), then its noise: one
``randn`` of all D parameters in dict order (one call per parameter when the parameters have different
dtypes). So chain c is the same chain whatever the number of chains, whether the chains are vmapped or looped,
and in :meth:`SGLD.init_many` (chain k·C + c has chain c's stream: every checkpoint sees the same noise, common
random numbers across checkpoints). On one device a seed reproduces the chains exactly (up to the rounding of
batched against per-chain matmuls between "vmap" and "loop"); on another device the same seed gives other chains
with the same statistics (torch's CPU and CUDA generators are different algorithms).

The pieces (:func:`gradients`, :func:`draw_batch`, :func:`draw_noise`, :func:`~stagewise.sampling.update.sgld_step`,
:func:`nonfinite_params`, :func:`observe`) can be used on their own; the coupled sampler of
:mod:`stagewise.sampling.coupled` is built from them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch.func import vmap

from .compiled import compiled_observe, compiled_update
from .device import resolve_device
from .inputs import Batch, LossFn, Params, as_params, index, leaves, num_samples, stack_checkpoints
from .settings import SGLDConfig
from .update import ChainState, call_loss, chain_of, index_chain, mean_loss, rmsprop_preconditioner, sgld_step


class SamplerState(NamedTuple):
    """Everything a run carries from one step to the next (shapes (chain, *param shape) unless stated).

    params, square_avg, precond: as in :class:`~stagewise.sampling.update.ChainState`.
    center:        the localization centre w* of each chain.
    step:          steps taken so far (0 after :meth:`SGLD.init`).
    rng:           each chain's generator state (a tuple of CPU byte tensors, one per chain).
    tensor_params: w* was one tensor, so ``loss_fn`` receives ``params["w"]`` rather than the dict.
    """

    params: Params
    center: Params
    square_avg: Params | None
    precond: Params | None
    step: int
    rng: tuple[torch.Tensor, ...]
    tensor_params: bool

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    @property
    def num_chains(self) -> int:
        return next(iter(self.params.values())).shape[0]


class StepInfo(NamedTuple):
    """What one step reports, each (chain,) on the run's device (no host synchronisation).

    loss:             mean mini-batch loss of each chain at the positions *before* the step.
    nonfinite_loss:   that loss is NaN or infinite.
    nonfinite_params: some parameter is NaN or infinite *after* the step.
    """

    loss: torch.Tensor
    nonfinite_loss: torch.Tensor
    nonfinite_params: torch.Tensor


# --------------------------------------------------------------------------------------------------------
# Random streams: one generator per chain, its state kept in the SamplerState


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


class ScratchGenerators(threading.local):
    """This thread's scratch generators, per device, and the states they hold now (None: none known)."""

    def __init__(self) -> None:
        self.generators: dict[torch.device, list[torch.Generator]] = {}
        self.holding: dict[torch.device, tuple[torch.Tensor, ...] | None] = {}


SCRATCH = ScratchGenerators()


def restore(rng: tuple[torch.Tensor, ...], device: torch.device) -> list[torch.Generator]:
    """Generators on ``device`` holding the states ``rng``, one per chain: this thread's scratch generators, to
    draw from and then read back with :func:`generator_states`. When ``rng`` is the tuple those generators
    last gave (the usual step after step), they already hold it and nothing is copied."""
    generators = SCRATCH.generators.setdefault(device, [])
    while len(generators) < len(rng):
        generators.append(torch.Generator(device=device))
    if SCRATCH.holding.get(device) is not rng:
        for g, s in zip(generators, rng):
            g.set_state(s)  # each state is its own tensor: set_state of a row view of a stacked tensor crashes torch
    SCRATCH.holding[device] = None  # about to be drawn from
    return generators[:len(rng)]


def generator_states(generators: list[torch.Generator]) -> tuple[torch.Tensor, ...]:
    """The states of ``generators``, as a :class:`SamplerState` keeps them (a new tensor each)."""
    states = tuple(g.get_state() for g in generators)
    scratch = SCRATCH.generators.get(generators[0].device) if generators else None
    if scratch and len(generators) <= len(scratch) and generators[0] is scratch[0] and \
            generators[-1] is scratch[len(generators) - 1]:  # what restore lent: they hold these states now
        SCRATCH.holding[generators[0].device] = states
    return states


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


def full_batch(data: Batch, config: SGLDConfig) -> bool:
    """Whether a step uses all of ``data`` (no data, ``batch_size`` None or ≥ n) rather than mini-batches."""
    return data is None or config.batch_size is None or config.batch_size >= num_samples(data)


# --------------------------------------------------------------------------------------------------------
# The other pieces of a step


def place(centers: Params, config: SGLDConfig) -> Params:
    """The checkpoint(s) on ``config.device`` in ``config.dtype`` (None: where and as they are): the one place
    where a run's device is resolved."""
    first = next(iter(centers.values()))
    device = resolve_device(config.device, first.device)
    dtype = getattr(torch, config.dtype) if config.dtype is not None else None
    return {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in centers.items()}


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
    leaves_ = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        if loop:
            values = torch.stack([
                mean_loss(loss_fn, tensor_params, chain_of(leaves_, c), index_chain(batch, c) if batch_per_chain
                          else batch) for c in range(next(iter(leaves_.values())).shape[0])])
        else:
            per_chain = vmap(partial(mean_loss, loss_fn, tensor_params),
                             in_dims=(0, 0 if batch_per_chain else None))
            values = per_chain(leaves_, batch)
        grads = torch.autograd.grad(values.sum(), list(leaves_.values()))
    return dict(zip(leaves_, grads)), values.detach()


def nonfinite_params(params: Params) -> torch.Tensor:
    """(chain,) bool on the device: some parameter of the chain is NaN or infinite (no host sync)."""
    num_chains = next(iter(params.values())).shape[0]
    finite = None
    for v in params.values():
        each = torch.isfinite(v.reshape(num_chains, -1)).all(dim=1)
        finite = each if finite is None else finite & each
    return ~finite


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


# --------------------------------------------------------------------------------------------------------
# The kernel


@dataclass(frozen=True)
class SGLD:
    """Localized (RMSProp-)SGLD with ``loss_fn`` and ``config`` bound: :meth:`init`, :meth:`step`, :meth:`observe`.

    loss_fn: ``loss_fn(params, batch)`` → per-sample losses (see :func:`stagewise.sampling.sample`).
    config:  every setting of the sampler (:class:`SGLDConfig`; None = the defaults).
    """

    loss_fn: LossFn
    config: SGLDConfig = field(default_factory=SGLDConfig)

    def __post_init__(self) -> None:
        if self.config is None:
            object.__setattr__(self, "config", SGLDConfig())
        if not isinstance(self.config, SGLDConfig):
            raise TypeError(f"config must be an SGLDConfig or None; got {type(self.config).__name__}")
        if not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be callable, loss_fn(params, batch) → per-sample losses; got "
                            f"{type(self.loss_fn).__name__}")

    def init(self, w_star: torch.Tensor | dict[str, torch.Tensor]) -> SamplerState:
        """``config.num_chains`` chains at the checkpoint w* (a tensor, numpy array or dict of them), on
        ``config.device`` (None: w*'s device) in ``config.dtype``."""
        centers, single = as_params(w_star)
        return self.init_stacked({k: v.unsqueeze(0) for k, v in centers.items()}, single)

    def init_many(self, checkpoints) -> SamplerState:
        """``config.num_chains`` chains at each of K checkpoints: chain k·C + c belongs to checkpoint k."""
        return self.init_stacked(*stack_checkpoints(checkpoints))

    def init_stacked(self, centers: Params, tensor_params: bool) -> SamplerState:
        """``config.num_chains`` chains at each of the K checkpoints stacked in ``centers`` (leading dimension K)."""
        config = self.config
        centers = place(centers, config)
        center = {k: v.repeat_interleave(config.num_chains, dim=0) for k, v in centers.items()}
        repeat = next(iter(centers.values())).shape[0]
        rng = generator_states(make_generators(config.seed, config.num_chains, next(iter(center.values())).device,
                                               repeat=repeat))
        return SamplerState(params={k: v.clone() for k, v in center.items()}, center=center, square_avg=None,
                            precond=None, step=0, rng=rng, tensor_params=tensor_params)

    def step(self, state: SamplerState, data: Batch) -> tuple[SamplerState, StepInfo]:
        """One SGLD step of every chain on ``data`` (all of it, on the state's device, or None for a potential).

        Draws each chain's mini-batch and noise from the chain's random state, takes the gradients and the
        update, and with ``rmsprop_adapt="burnin"`` freezes the RMSProp preconditioner when the last of the
        ``num_burnin`` steps is done. With ``config.compile`` the gradient and update run as one compiled graph
        (:mod:`stagewise.sampling.compiled`), with the same draws. Returns (new state, :class:`StepInfo`).
        """
        config = self.config
        full = full_batch(data, config)
        generators = restore(state.rng, state.device)
        batch = data if full else draw_batch(data, config.batch_size, generators)
        noise = draw_noise(state.params, generators)
        rng = generator_states(generators)
        loop = config.batching == "loop"
        current = ChainState(state.params, state.square_avg, state.precond)
        if config.compile:
            new_params, new_avg, losses = compiled_update(self.loss_fn, state.tensor_params, config, current,
                                                          state.center, noise, batch, loop=loop,
                                                          batch_per_chain=not full)
            chains = ChainState(new_params, new_avg, state.precond)
        else:
            grads, losses = gradients(self.loss_fn, state.params, batch, batch_per_chain=not full,
                                      tensor_params=state.tensor_params, loop=loop)
            chains = sgld_step(current, grads, state.center, noise, config)
        taken = state.step + 1
        precond = chains.precond
        if config.freezes_preconditioner and taken == config.num_burnin:
            precond = rmsprop_preconditioner(chains.square_avg, config.rmsprop_eps)
        new = state._replace(params=chains.params, square_avg=chains.square_avg, precond=precond, step=taken,
                             rng=rng)
        return new, StepInfo(losses, ~torch.isfinite(losses), nonfinite_params(new.params))

    def observe(self, state: SamplerState, observables: Batch, fn: LossFn | None = None) -> torch.Tensor:
        """``fn`` (default ``loss_fn``) on the observables for every chain, (chain, sample, ...), as the config
        says (``observable_chunk``, ``batching``, ``compile``)."""
        config = self.config
        return observe(fn or self.loss_fn, state.params, observables, tensor_params=state.tensor_params,
                       chunk=config.observable_chunk, loop=config.batching == "loop", compile=config.compile)
