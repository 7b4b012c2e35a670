"""Two samplers in lockstep, at step sizes ε and ε/2, driven by the same Brownian increments: the runs that
stochastic-gradient Richardson–Romberg extrapolation combines (Durmus, Şimşekli, Moulines, Badeau & Richard 2016,
"Stochastic gradient Richardson-Romberg Markov chain Monte Carlo", NeurIPS).

Per step of the ε chain ("coarse"), the ε/2 chain ("fine") takes two steps with noise ξ₁, ξ₂, and the coarse
chain takes one with ξ = (ξ₁ + ξ₂)/√2, so that √ε·ξ = √(ε/2)·ξ₁ + √(ε/2)·ξ₂: both integrate the same Brownian
path. With mini-batches the coarse step uses the first fine step's batch (the same batch size, so the
gradient-noise part of the bias is also linear in ε). An RMSProp preconditioner is adapted during burn-in on the
coarse chain, by the rule of :func:`~stagewise.sampling.sample` with the same config, and that one G is then frozen
for both chains, whose laws then differ only by the step size. The two chains of a pair stay close,
so an estimate's change with the step size has a much smaller variance than either estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..config import ConfigError
from .device import resolve_device
from .inputs import Batch, LossFn
from .kernel import (SGLD, draw_batch, draw_noise, full_batch, generator_states, gradients, nonfinite_params,
                     observe, restore)
from .runner import SampleTrace, SamplerDivergence, prepare
from .settings import SGLDConfig
from .update import ChainState, rmsprop_preconditioner, sgld_step

__all__ = ["CoupledTraces", "half_step_config", "sample_coupled"]


@dataclass
class CoupledTraces:
    """The two traces of :func:`sample_coupled`, chain c of one coupled with chain c of the other.

    coarse: the run at ε = ``config.step_size`` (its config is the one given).
    fine:   the run at ε/2, as a trace of its own (config :func:`half_step_config`): twice the steps, burn-in and
            thinning, so that its draws are recorded at the same times as the coarse chain's and
            :func:`stagewise.llc.estimate_llc` reads it like any trace.
    """

    coarse: SampleTrace
    fine: SampleTrace


def half_step_config(config: SGLDConfig) -> SGLDConfig:
    """The ε/2 chain's settings: half the step size, twice the burn-in steps and thinning, the same draws."""
    return replace(config, step_size=config.step_size / 2, num_burnin=2 * config.num_burnin, thin=2 * config.thin)


def sample_coupled(
    loss_fn: LossFn,
    params: torch.Tensor | dict[str, torch.Tensor],
    data: Batch = None,
    observables: Batch = None,
    config: SGLDConfig | None = None,
    *,
    observable_fn: LossFn | None = None,
) -> CoupledTraces:
    """Run ``config.num_chains`` chains at ε = ``config.step_size`` and as many at ε/2, coupled (module docstring).

    Arguments as for :func:`~stagewise.sampling.sample`, with the same kernel pieces (:class:`SGLD`'s init, random
    streams, gradients, update, observables), always eager (``config.compile`` is not used here). The traces
    are returned on ``config.trace_device``. ``rmsprop_adapt="always"`` is refused: that sampler's
    law is biased at every step size, so there is no ε → 0 limit to extrapolate to. A chain whose loss or
    parameters stop being finite raises :class:`~stagewise.sampling.SamplerDivergence`, naming whether it was a
    chain at ε or at ε/2.
    """
    kernel = SGLD(loss_fn, config)
    config = kernel.config
    if config.preconditioner == "rmsprop" and config.rmsprop_adapt != "burnin":
        raise ConfigError(f"rmsprop_adapt = {config.rmsprop_adapt!r} (accepted here: 'burnin'): a preconditioner "
                          "that keeps adapting samples a biased law at every step size, with no ε → 0 limit")
    state = kernel.init(params)
    inputs = prepare(kernel, state, data, observables, observable_fn)  # checked, on the device, L_n(w*)
    data, observables, record_fn = inputs.data, inputs.observables, inputs.record_fn
    init_loss = inputs.init_losses[0]
    init_obs = None if inputs.init_obs is None else inputs.init_obs[0]  # (sample, ...)
    device, dtype = state.device, next(iter(state.params.values())).dtype
    full, loop, single = full_batch(data, config), config.batching == "loop", state.tensor_params
    fine_config = half_step_config(config)
    c = config.num_chains
    center, rng = state.center, state.rng
    coarse = ChainState({k: v.clone() for k, v in center.items()}, None, None)
    fine = ChainState({k: v.clone() for k, v in center.items()}, None, None)
    steps = config.num_steps
    coarse_trace = torch.empty(c, steps, dtype=dtype, device=device)
    fine_trace = torch.empty(c, 2 * steps, dtype=dtype, device=device)
    draw_at = {config.num_burnin + (k + 1) * config.thin - 1: k for k in range(config.num_draws)}
    draws = None
    if record_fn is not None:
        draws = torch.empty(2 * c, config.num_draws, *init_obs.shape, dtype=init_obs.dtype, device=device)
    root_half = 1 / math.sqrt(2)

    def grads(p, batch):
        return gradients(loss_fn, p, batch, batch_per_chain=not full, tensor_params=single, loop=loop)

    def check(t: int, losses: torch.Tensor, params: dict) -> None:
        bad_loss, bad_params = ~torch.isfinite(losses), nonfinite_params(params)
        bad = bad_loss | bad_params
        if bool(bad.any()):
            which = torch.nonzero(bad).flatten().tolist()
            names = [f"chain {i % c} at {'ε' if i < c else 'ε/2'}" for i in which]
            trace = SampleTrace(None, coarse_trace[:, :t + 1], torch.empty(0, dtype=torch.long), init_loss, None,
                                config)
            raise SamplerDivergence(which, t, ("non-finite loss" if bool(bad_loss.any()) else
                                               "non-finite parameters") + " in " + ", ".join(names), trace)

    for t in range(steps):
        # Per chain, from its own random state: the first fine step's batch and noise ξ₁, then the second's.
        generators = restore(rng, device)
        first_batch = data if full else draw_batch(data, config.batch_size, generators)
        xi1 = draw_noise(fine.params, generators)
        second_batch = data if full else draw_batch(data, config.batch_size, generators)
        xi2 = draw_noise(fine.params, generators)
        rng = generator_states(generators)
        # One pass for the coarse step and the first fine step: the same batch, 2C chains.
        both = {k: torch.cat([coarse.params[k], fine.params[k]]) for k in coarse.params}
        batch = first_batch if full else _twice(first_batch)
        g, losses = grads(both, batch)
        coarse_trace[:, t], fine_trace[:, 2 * t] = losses[:c], losses[c:]
        g_coarse, g_fine = {k: v[:c] for k, v in g.items()}, {k: v[c:] for k, v in g.items()}
        noise = {k: (xi1[k] + xi2[k]) * root_half for k in xi1}
        coarse = sgld_step(coarse, g_coarse, center, noise, config)
        fine = sgld_step(fine, g_fine, center, xi1, fine_config)
        g_fine, losses2 = grads(fine.params, second_batch)
        fine_trace[:, 2 * t + 1] = losses2
        fine = sgld_step(fine, g_fine, center, xi2, fine_config)
        if config.freezes_preconditioner and t + 1 == config.num_burnin:
            frozen = rmsprop_preconditioner(coarse.square_avg, config.rmsprop_eps)
            coarse = ChainState(coarse.params, coarse.square_avg, frozen)
            fine = ChainState(fine.params, fine.square_avg, frozen)
        if device.type == "cpu" or (t + 1) % 50 == 0 or t == steps - 1:  # a host read: rarely on a GPU
            check(t, torch.cat([losses[:c], losses[c:] + losses2]),
                  {k: torch.cat([coarse.params[k], fine.params[k]]) for k in coarse.params})
        k = draw_at.get(t)
        if k is not None and draws is not None:
            both = {name: torch.cat([coarse.params[name], fine.params[name]]) for name in coarse.params}
            draws[:, k] = observe(record_fn, both, observables, tensor_params=single, chunk=config.observable_chunk,
                                  loop=loop)

    frozen = None
    if config.freezes_preconditioner:
        frozen = fine.precond["w"] if single else fine.precond
    draw_steps = torch.tensor(sorted(draw_at), dtype=torch.long)
    target = device if config.trace_device is None else resolve_device(config.trace_device, device)
    move = (lambda v: None if v is None else  # noqa: E731
            {k: x.to(target) for k, x in v.items()} if isinstance(v, dict) else v.to(target))
    make = lambda cfg, trace, part, steps_: SampleTrace(  # noqa: E731
        None if draws is None else move(draws[part]), move(trace), steps_, init_loss, move(init_obs), cfg,
        dims=inputs.dims, preconditioner=move(frozen))
    out_coarse = make(config, coarse_trace, slice(0, c), draw_steps)
    out_fine = make(fine_config, fine_trace, slice(c, 2 * c), 2 * draw_steps + 1)
    return CoupledTraces(out_coarse, out_fine)


def _twice(batch: Batch) -> Batch:
    """A per-chain batch (chain, ...) repeated for the coarse and the fine chains: (2·chain, ...)."""
    if isinstance(batch, torch.Tensor):
        return torch.cat([batch, batch])
    if isinstance(batch, dict):
        return {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return type(batch)(torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for v in batch)
