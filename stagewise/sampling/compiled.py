"""``torch.compile`` of the sampler's per-step work, used when ``SGLDConfig(compile=True)``.

Two functions are compiled (TorchInductor, static shapes), once per process for each loss and shape:

* :func:`block_update`: the gradient of the mean mini-batch loss (``torch.func.grad_and_value``), the RMSProp
  average and the update formula of :func:`~stagewise.sampling.update.sgld_step`, in one graph, so that the
  forward, the backward and the elementwise update are fused where inductor can fuse them;
* :func:`block_observe`: the observables' losses (called under ``torch.no_grad``).

A *block* is one chain with ``batching="loop"`` (the graph is compiled once and called on the views of every
chain) or all chains with ``"vmap"`` (vmapped inside the graph). The noise and the mini-batch indices are drawn
outside the graphs, from the same per-chain generators as the eager path, so a seed gives the same chains with
or without compile up to floating-point rounding (the fused kernels add in another order: ~1e-7 relative in
float32 per step, growing slowly along a chain as any rounding difference does).

The localization centre w* is an *argument* of the compiled update, never a constant captured by the graph and
never an alias of the positions: a graph first traced while the positions aliased w* can be reused by later
calls with w − w* fixed at 0 (a silently wrong update). :func:`unaliased` copies any position that shares storage
with its centre before a call; tests compare the compiled draws with the eager ones.

The first call in a process traces and compiles (seconds; minutes with a cold inductor cache, which lives in
/tmp/torchinductor_<user>); later calls reuse the graphs. It pays on long runs only (measured in
benchmarks/results/cpu_levers.json).
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable

import torch
from torch.func import grad_and_value, vmap

from .inputs import Batch, LossFn, Params
from .settings import SGLDConfig
from .update import ChainState, call_loss, chain_of, index_chain, mean_loss, sgld_step


def block_update(loss_fn: LossFn, tensor_params: bool, config: SGLDConfig, batched: bool, batch_per_chain: bool,
                 params: Params, center: Params, noise: Params, batch: Batch, square_avg: Params | None,
                 precond: Params | None) -> tuple[Params, Params | None, torch.Tensor]:
    """(new positions, new RMSProp average, mean mini-batch loss before the step) of one block of chains.

    ``batched``: the block is all chains (a leading chain dimension, vmapped; ``batch_per_chain`` as in
    :func:`~stagewise.sampling.kernel.gradients`); else one chain, without the chain dimension.
    """
    grad_loss = grad_and_value(partial(mean_loss, loss_fn, tensor_params))
    if batched:
        grad_loss = vmap(grad_loss, in_dims=(0, 0 if batch_per_chain else None))
    grads, loss = grad_loss(params, batch)
    new = sgld_step(ChainState(params, square_avg, precond), grads, center, noise, config)
    return new.params, new.square_avg, loss


def block_observe(fn: LossFn, tensor_params: bool, batched: bool, params: Params, observables: Batch) -> torch.Tensor:
    """``fn`` on the observables for one block of chains (see :func:`block_update`)."""
    per_block = partial(call_loss, fn, tensor_params)
    if batched:
        per_block = vmap(per_block, in_dims=(0, None))
    return per_block(params, observables)


@lru_cache(maxsize=None)
def compiled(fn: Callable) -> Callable:
    """``torch.compile(fn)`` with static shapes, made once per process (its graphs are cached by dynamo)."""
    return torch.compile(fn, dynamic=False)


def unaliased(params: Params, center: Params) -> Params:
    """``params`` with every tensor that shares storage with its centre replaced by a copy (see the module)."""
    return {k: v.clone() if v.untyped_storage().data_ptr() == center[k].untyped_storage().data_ptr() else v
            for k, v in params.items()}


def _stack(blocks: list[Params | None]) -> Params | None:
    return None if blocks[0] is None else {k: torch.stack([b[k] for b in blocks]) for k in blocks[0]}


def compiled_update(loss_fn: LossFn, tensor_params: bool, config: SGLDConfig, state: ChainState, center: Params,
                    noise: Params, batch: Batch, *, loop: bool,
                    batch_per_chain: bool) -> tuple[Params, Params | None, torch.Tensor]:
    """:func:`block_update`, compiled, for every chain: one call on all chains, or with ``loop`` one per chain
    on views. Returns (new positions, new RMSProp average, losses (chain,)), stacked on the chain dimension."""
    update = compiled(block_update)
    params = unaliased(state.params, center)
    if config.preconditioner == "rmsprop" and state.precond is None and state.square_avg is None:
        state = state._replace(square_avg={k: torch.zeros_like(v) for k, v in params.items()})  # V starts at 0
    if not loop:
        return update(loss_fn, tensor_params, config, True, batch_per_chain, params, center, noise, batch,
                      state.square_avg, state.precond)
    num_chains = next(iter(params.values())).shape[0]
    outs = [update(loss_fn, tensor_params, config, False, False, chain_of(params, c), chain_of(center, c),
                   chain_of(noise, c), index_chain(batch, c) if batch_per_chain else batch,
                   chain_of(state.square_avg, c), chain_of(state.precond, c)) for c in range(num_chains)]
    return _stack([o[0] for o in outs]), _stack([o[1] for o in outs]), torch.stack([o[2] for o in outs])


def compiled_observe(fn: LossFn, tensor_params: bool, params: Params, observables: Batch, *,
                     loop: bool) -> torch.Tensor:
    """:func:`block_observe`, compiled, for every chain: (chain, sample, ...)."""
    observe = compiled(block_observe)
    if not loop:
        return observe(fn, tensor_params, True, params, observables)
    num_chains = next(iter(params.values())).shape[0]
    return torch.stack([observe(fn, tensor_params, False, chain_of(params, c), observables)
                        for c in range(num_chains)])
