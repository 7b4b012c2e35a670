"""Sampling runs: :func:`sample` (one checkpoint) and :func:`sample_many` (K checkpoints batched), a loop over
:meth:`SGLD.step <stagewise.sampling.kernel.SGLD.step>`, and what they return (:class:`SampleTrace`) or raise
(:class:`SamplerDivergence`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple, Sequence

import torch
from torch.func import vmap
from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

from .device import resolve_device
from .inputs import Batch, LossFn, Params, check_per_sample, index, leaves, prepare_batch, to_device
from .kernel import SGLD, SamplerState, full_batch, observe
from .settings import SGLDConfig
from .update import call_loss


@dataclass
class SampleTrace:
    """What a sampling run records.

    losses:      per-sample losses on the observables at every draw, shape (chain, draw, sample, ...)
                 (trailing dimensions are whatever ``loss_fn`` returns per sample, e.g. tokens).
    loss_trace:  mean mini-batch training loss at every step, before the update, shape (chain, step).
    draw_steps:  the step index (0-based, counting burn-in) after which each draw was recorded, shape (draw,).
    init_loss:   L_n(w*), the training loss at the checkpoint on the full data.
    init_observable_losses: per-sample losses on the observables at w*, shape (sample, ...), or None.
    config:      the settings of the run.
    preconditioner: the frozen RMSProp preconditioner G of each chain, shaped like the parameters with a
                 leading chain dimension (a tensor, or a dict for dict parameters); None for plain SGLD, with
                 ``rmsprop_adapt="always"``, or when the run stopped before the end of burn-in.

    Every tensor lives on ``config.trace_device`` (None: the run's device) except ``draw_steps`` (CPU);
    :meth:`to` moves them all.
    """

    losses: torch.Tensor | None
    loss_trace: torch.Tensor
    draw_steps: torch.Tensor
    init_loss: float
    init_observable_losses: torch.Tensor | None
    config: SGLDConfig
    dims: tuple[str, ...] = field(default=("chain", "draw", "sample"))
    preconditioner: torch.Tensor | Params | None = None

    def to(self, device: torch.device | str) -> "SampleTrace":
        """The same trace with its tensors on ``device`` (e.g. ``"cpu"`` after a GPU run)."""
        def move(v):
            if isinstance(v, torch.Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: x.to(device) for k, x in v.items()}
            return v

        return replace(self, losses=move(self.losses), loss_trace=move(self.loss_trace),
                       init_observable_losses=move(self.init_observable_losses),
                       preconditioner=move(self.preconditioner))

    @property
    def num_chains(self) -> int:
        return self.loss_trace.shape[0]

    @property
    def draw_loss(self) -> torch.Tensor:
        """Mini-batch training loss at the steps that became draws, shape (chain, draw)."""
        return self.loss_trace[:, self.draw_steps]

    def summary(self) -> dict[str, Any]:
        """Settings and shapes as plain data (for metrics files)."""
        return {
            "config": asdict(self.config),
            "losses_shape": None if self.losses is None else list(self.losses.shape),
            "dims": list(self.dims),
            "init_loss": self.init_loss,
        }


class SamplerDivergence(RuntimeError):
    """Raised when a chain's loss or parameters stop being finite.

    Attributes: ``chains`` (indices of the failing chains), ``step`` (0-based step at which it was seen),
    ``reason`` (what was non-finite) and ``trace`` (a :class:`SampleTrace` holding everything recorded up to
    that step, for inspection).
    """

    def __init__(self, chains: Sequence[int], step: int, reason: str, trace: SampleTrace):
        self.chains = list(chains)
        self.step = step
        self.reason = reason
        self.trace = trace
        super().__init__(
            f"SGLD diverged: chain(s) {self.chains} at step {step} of {trace.config.num_steps} ({reason}). "
            f"Lower step_size (now {trace.config.step_size:g}) or raise localization "
            f"(now {trace.config.localization:g})."
        )


def sample(
    loss_fn: LossFn,
    params: torch.Tensor | dict[str, torch.Tensor],
    data: Batch = None,
    observables: Batch = None,
    config: SGLDConfig | None = None,
    *,
    observable_fn: LossFn | None = None,
    progress: bool = True,
    observable_chunk: int | None = None,
) -> SampleTrace:
    """Run ``config.num_chains`` localized (RMSProp-)SGLD chains around ``params`` = w*, all in one pass.

    loss_fn:      ``loss_fn(params, batch)`` → per-sample losses, shape (batch, ...) or a scalar for a
                  potential with no data. The training objective is their mean, L_n.
    params:       the checkpoint w*: a tensor or a dict of tensors (see :func:`module_loss_fn`); numpy arrays
                  are converted. The chains run on ``config.device`` (None: the checkpoint's device), where the
                  data and observables are moved once.
    data:         training data (tensor, tuple or dict of tensors with leading dimension n; numpy arrays are
                  converted), or None for a potential L(w) with no data. Mini-batches are drawn per chain with
                  replacement.
    observables:  a fixed batch whose per-sample losses are recorded at every draw.
    config:       every setting of the sampler (:class:`SGLDConfig`; None = the defaults).
    observable_fn: what is recorded, ``observable_fn(params, observables)`` → (sample, ...); defaults to
                  ``loss_fn`` (per-sample losses, what the BIF needs). Nothing is recorded when both
                  ``observables`` and ``observable_fn`` are None.
    progress:     show a progress bar.
    observable_chunk: the same as ``config.observable_chunk`` (which it replaces when given); kept until
                  :mod:`stagewise.attribute` sets it in the config.

    Returns a :class:`SampleTrace`. Bad inputs (NaN in w* or the data, empty data, a loss that is not per
    sample) raise ValueError or TypeError before any step. Raises :class:`SamplerDivergence` when any chain's
    loss or parameters become non-finite, naming the chains and the step.
    """
    if observable_chunk is not None:
        config = replace(config or SGLDConfig(), observable_chunk=observable_chunk)
    kernel = SGLD(loss_fn, config)
    return run(kernel, kernel.init(params), data, observables, observable_fn, progress)[0]


def sample_many(
    loss_fn: LossFn,
    checkpoints: Sequence[torch.Tensor | dict[str, torch.Tensor]],
    data: Batch = None,
    observables: Batch = None,
    config: SGLDConfig | None = None,
    *,
    observable_fn: LossFn | None = None,
    progress: bool = True,
) -> list[SampleTrace]:
    """:func:`sample` around several checkpoints at once: K checkpoints × C chains run as K·C batched chains.

    Each chain is localized at its own checkpoint; one pass advances all of them, which for small models saves
    the per-call overhead of K separate runs. Every checkpoint must have the same parameter names,
    shapes, dtypes and devices (a ValueError names the first that differs). Returns one :class:`SampleTrace`
    per checkpoint. Chain c of every checkpoint has chain c's random stream, so each trace holds the chains of a
    separate :func:`sample` call with the same seed (up to the rounding of batched matmuls). A
    divergence names the failing chains as ``(checkpoint index, chain)`` pairs in its message and in
    ``.chains`` (flat indices k·C + c).
    """
    kernel = SGLD(loss_fn, config)
    return run(kernel, kernel.init_many(checkpoints), data, observables, observable_fn, progress)


# --------------------------------------------------------------------------------------------------------
# Inputs: checked and moved to the run's device once, before any step


class Prepared(NamedTuple):
    """A run's inputs on its device, and what the chains are compared with (see :func:`prepare`)."""

    data: Batch
    observables: Batch
    record_fn: LossFn | None  # what is recorded at a draw; None: nothing
    init_losses: list[float]  # L_n(w*) of each checkpoint
    init_obs: torch.Tensor | None  # (checkpoint, sample, ...) at w*
    dims: tuple[str, ...]


def prepare(kernel: SGLD, state: SamplerState, data: Batch, observables: Batch,
            observable_fn: LossFn | None) -> Prepared:
    """Check the inputs, move the data and observables to the state's device (floating-point tensors in its
    dtype) and evaluate L_n(w*) and the observables at each checkpoint; errors name the argument and the fix."""
    loss_fn, config = kernel.loss_fn, kernel.config
    if observable_fn is not None and not callable(observable_fn):
        raise TypeError(f"observable_fn must be callable or None; got {type(observable_fn).__name__}")
    first = next(iter(state.params.values()))
    device, dtype = first.device, first.dtype
    n = count = None
    if data is not None:
        data, n = prepare_batch(data, "data")
        data = to_device(data, device, dtype)
    if observables is not None:
        observables, count = prepare_batch(observables, "observables")
        observables = to_device(observables, device, dtype)
    if n is not None and config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size = {config.batch_size} is larger than the data ({n} samples); accepted: "
                         f"1 … {n}, or None for full-batch gradients (SGLDConfig(batch_size=...))")
    recording = observables is not None or observable_fn is not None
    record_fn = (observable_fn or loss_fn) if recording else None
    single, loop = state.tensor_params, config.batching == "loop"
    centers = {k: v[::config.num_chains].contiguous() for k, v in state.center.items()}  # (checkpoint, ...)
    first_center = {k: v[:1] for k, v in centers.items()}  # one forward pass on one sample, before any step
    first_pass(loss_fn, single, first_center, data, "data", "loss_fn", loop)
    if recording and observables is not None:
        first_pass(record_fn, single, first_center, observables, "observables",
                   "observable_fn" if observable_fn is not None else "loss_fn", loop)
    with torch.no_grad():
        chunk = None if full_batch(data, config) else config.batch_size
        init_losses = [full_data_loss(loss_fn, single, {k: v[j] for k, v in centers.items()}, data, n, chunk)
                       for j in range(next(iter(centers.values())).shape[0])]
        init_obs = observe(record_fn, centers, observables, tensor_params=single) if recording else None
    if init_obs is not None and observable_fn is None:
        check_per_sample(init_obs[0], count, "loss_fn", "the observables")
    dims = ("chain", "draw", "sample") if init_obs is None else dims_for(init_obs[0])
    return Prepared(data, observables, record_fn, init_losses, init_obs, dims)


def full_data_loss(loss_fn: LossFn, single: bool, center: Params, data: Batch, n: int | None,
                   batch_size: int | None) -> float:
    """L_n(w*) on the full data; with mini-batches in batch-sized pieces, to bound memory.

    Each sample's losses are averaged over their trailing dimensions (e.g. tokens) first, as in the mean the
    chains descend. The first piece's output is checked to be per-sample.
    """
    if data is None:
        return float(call_loss(loss_fn, single, center, None).mean())
    size = n if batch_size is None else min(batch_size, n)
    total = 0.0
    for start in range(0, n, size):
        count = min(start + size, n) - start
        piece = data if count == n else index(data, torch.arange(start, start + count,
                                                                 device=leaves(data)[0].device))
        out = call_loss(loss_fn, single, center, piece)
        if start == 0:
            check_per_sample(out, count, "loss_fn", "the data")
        if count == n:
            return float(out.mean())
        total += float(out.reshape(count, -1).mean(1).sum())
    return total / n


# --------------------------------------------------------------------------------------------------------
# The loop


# What went non-finite first, per chain (codes of device flags; 0 = nothing).
REASONS = {1: "non-finite loss", 2: "non-finite parameters", 3: "non-finite observable loss"}


def run(kernel: SGLD, state: SamplerState, data: Batch, observables: Batch, observable_fn: LossFn | None,
        progress: bool) -> list[SampleTrace]:
    """The sampler proper: ``config.num_steps`` steps from ``state`` (K checkpoints × C chains), the losses of
    every step and the observables at every draw recorded in buffers on the device, one trace per checkpoint."""
    config = kernel.config
    inputs = prepare(kernel, state, data, observables, observable_fn)
    device, chains, steps = state.device, state.num_chains, config.num_steps
    loss_trace = torch.empty(chains, steps, dtype=next(iter(state.params.values())).dtype, device=device)
    draw_steps = torch.tensor([config.num_burnin + (k + 1) * config.thin - 1 for k in range(config.num_draws)],
                              device="cpu")  # step labels: on the host by design
    draw_at = {int(t): k for k, t in enumerate(draw_steps)}
    draws = None
    if inputs.record_fn is not None:  # (chain, draw, sample, ...), filled in place
        draws = torch.empty(chains, config.num_draws, *inputs.init_obs.shape[1:], dtype=inputs.init_obs.dtype,
                            device=device)
    first_bad = torch.full((chains,), -1, dtype=torch.long, device=device)  # the step each chain failed at
    reason = torch.zeros(chains, dtype=torch.uint8, device=device)  # and why (REASONS)
    codes = {c: torch.tensor(c, dtype=torch.uint8, device=device) for c in REASONS}
    every = config.check_every or (1 if device.type == "cpu" else 50)
    num_drawn = 0

    def flag(bad: torch.Tensor, code: torch.Tensor, t: int) -> None:
        nonlocal first_bad, reason
        new = bad & (first_bad < 0)
        first_bad = torch.where(new, t, first_bad)
        reason = torch.where(new, code, reason)

    bar = tqdm(range(steps), desc="SGLD", disable=not progress, leave=False, mininterval=0.5)
    for t in bar:
        state, info = kernel.step(state, inputs.data)
        loss_trace[:, t] = info.loss
        flag(info.nonfinite_loss | info.nonfinite_params,
             torch.where(info.nonfinite_loss, codes[1], codes[2]), t)
        k = draw_at.get(t)
        if k is not None:
            if draws is not None:
                draws[:, k] = obs = kernel.observe(state, inputs.observables, inputs.record_fn)
                flag(~torch.isfinite(obs.reshape(chains, -1)).all(dim=1), codes[3], t)
            num_drawn = k + 1
        if (t + 1) % every == 0 or t == steps - 1:
            if bool((first_bad >= 0).any()):  # one host read every `every` steps
                bar.close()
                raise divergence(kernel, inputs, state, loss_trace, draws, draw_steps, num_drawn, first_bad,
                                 reason)
            if progress:
                bar.set_postfix(loss=f"{float(info.loss.mean()):.4g}")
    bar.close()
    return traces(kernel, inputs, state, loss_trace, draws, draw_steps, steps, num_drawn)


def traces(kernel: SGLD, inputs: Prepared, state: SamplerState, loss_trace: torch.Tensor,
           draws: torch.Tensor | None, draw_steps: torch.Tensor, steps_done: int,
           num_drawn: int) -> list[SampleTrace]:
    """One :class:`SampleTrace` per checkpoint of the first ``steps_done`` steps and ``num_drawn`` draws, on
    ``config.trace_device``."""
    config = kernel.config
    target = state.device if config.trace_device is None else resolve_device(config.trace_device, state.device)

    def move(v):
        return None if v is None else v.to(target)

    # The preconditioner is frozen when burn-in's last step is done; a run that stopped before has none.
    precond = state.precond if state.precond is not None and steps_done >= config.num_burnin else None
    c = config.num_chains
    out = []
    for j in range(len(inputs.init_losses)):
        part = slice(j * c, (j + 1) * c)
        g = None if precond is None else {k: move(v[part]) for k, v in precond.items()}
        out.append(SampleTrace(
            losses=None if draws is None else move(draws[part, :num_drawn]),
            loss_trace=move(loss_trace[part, :steps_done]),
            draw_steps=draw_steps[:num_drawn],
            init_loss=inputs.init_losses[j],
            init_observable_losses=None if inputs.init_obs is None else move(inputs.init_obs[j]),
            config=config,
            dims=inputs.dims,
            preconditioner=None if g is None else (g["w"] if state.tensor_params else g),
        ))
    return out


def divergence(kernel: SGLD, inputs: Prepared, state: SamplerState, loss_trace: torch.Tensor,
               draws: torch.Tensor | None, draw_steps: torch.Tensor, num_drawn: int, first_bad: torch.Tensor,
               reason: torch.Tensor) -> SamplerDivergence:
    """The error for the chains that failed first: its trace holds the steps up to that one and the draws
    before it; with several checkpoints it names (checkpoint, chain) pairs and carries every trace."""
    first, why = first_bad.cpu(), reason.cpu()
    t = int(first[first >= 0].min())
    bad = first == t
    text = " and ".join(REASONS[code] for code in sorted({int(r) for r in why[bad]}))
    chains = torch.nonzero(bad).flatten().tolist()
    found = traces(kernel, inputs, state, loss_trace, draws, draw_steps, t + 1,
                   int((draw_steps[:num_drawn] < t).sum()))
    if len(found) == 1:
        return SamplerDivergence(chains, t, text, found[0])
    c = kernel.config.num_chains
    where = ", ".join(f"(checkpoint {k // c}, chain {k % c})" for k in chains)
    error = SamplerDivergence(chains, t, f"{text} in {where}", found[chains[0] // c])
    error.traces = found
    return error


# --------------------------------------------------------------------------------------------------------
# The first pass: an error at w* names what was passed and the fix


def describe_batch(batch: Batch) -> str:
    if batch is None:
        return "None"
    if isinstance(batch, torch.Tensor):
        return f"a {str(batch.dtype).replace('torch.', '')} tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, dict):
        return "{" + ", ".join(f"{k!r}: {describe_batch(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return "(" + ", ".join(describe_batch(v) for v in batch) + ")"
    return type(batch).__name__


def first_pass(fn: LossFn, single: bool, center: Params, batch: Batch, name: str, fn_name: str,
               loop: bool) -> None:
    """``fn`` on the first sample of ``batch`` at the checkpoint, as the chains will call it (vmapped over one
    chain unless ``loop``), before any step: an error there is re-raised naming what was passed and the fix."""
    one = None if batch is None else index(batch, torch.arange(1, device=leaves(batch)[0].device))
    try:
        with torch.no_grad():
            if loop:
                call_loss(fn, single, {k: v[0] for k, v in center.items()}, one)
            else:
                vmap(partial(call_loss, fn, single), in_dims=(0, None))(center, one)
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        text = str(error)
        params = describe_batch(center["w"][0] if single else {k: v[0] for k, v in center.items()})
        hints = []
        if "random" in text.lower():
            hints.append("the loss draws random numbers (dropout or another random layer: the model is in "
                         "training mode); call model.eval() before building the loss (module_loss_fn, "
                         "lm_loss_fn), or pass SGLDConfig(batching='loop')")
        if leaves(one) and any(leaf.dtype == torch.bool for leaf in leaves(one)):
            hints.append(f"{name} holds bool tensors: convert them to the checkpoint's dtype "
                         "(x.to(torch.float32)) or to integer ids")
        if "dtype" in text or "Double" in text or "Float" in text or "Half" in text:
            hints.append(f"cast {name} to the checkpoint's dtype, or set SGLDConfig(dtype=...) for both")
        if "shape" in text or "size" in text or "mat1" in text:
            hints.append(f"the shape of each sample of {name} must be what the model takes (and the checkpoint's "
                         "parameters those of the model)")
        raise ValueError(f"{fn_name} failed on the first sample of {name} ({describe_batch(one)}) at the "
                         f"checkpoint ({params}): {type(error).__name__}: {text}"
                         + (". Fix: " + "; ".join(hints) if hints else "")) from error


def dims_for(per_sample_losses: torch.Tensor) -> tuple[str, ...]:
    extra = per_sample_losses.dim() - 1
    if extra <= 0:
        return ("chain", "draw", "sample")
    if extra == 1:
        return ("chain", "draw", "sample", "token")
    return ("chain", "draw", "sample", *[f"dim{i}" for i in range(extra)])
