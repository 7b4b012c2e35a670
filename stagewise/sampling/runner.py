"""Sampling runs: :func:`sample` (one checkpoint) and :func:`sample_many` (K checkpoints batched), built on the
steps of :mod:`stagewise.sampling.kernel`, and what they return (:class:`SampleTrace`) or raise
(:class:`SamplerDivergence`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Sequence

import torch
from torch.func import vmap
from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

from ..config import is_int
from .inputs import (Batch, LossFn, Params, as_params, check_per_sample, index, leaves, prepare_batch,
                     stack_checkpoints, to_device)
from .kernel import (SamplerState, call_loss, chain_loop, draw_batch, init_stacked, make_generators, nonfinite_flags,
                     observe, place, step)
from .settings import SGLDConfig


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

    Every tensor lives on the run's device except ``draw_steps`` (CPU); :meth:`to` moves them all.
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
    observable_chunk: int | None = None,
    progress: bool = True,
    trace_device: str | torch.device | None = "cpu",
) -> SampleTrace:
    """Run ``config.num_chains`` localized (RMSProp-)SGLD chains around ``params`` = w*, all in one pass.

    loss_fn:      ``loss_fn(params, batch)`` → per-sample losses, shape (batch, ...) or a scalar for a
                  potential with no data. The training objective is their mean, L_n.
    params:       the checkpoint w*: a tensor or a dict of tensors (see :func:`module_loss_fn`); numpy arrays
                  are converted. The chains run on ``config.device`` (None: the checkpoint's device), where the
                  data and observables are moved once and every tensor of the returned trace stays.
    data:         training data (tensor, tuple or dict of tensors with leading dimension n; numpy arrays are
                  converted), or None for a potential L(w) with no data. Mini-batches are drawn per chain with
                  replacement.
    observables:  a fixed batch whose per-sample losses are recorded at every draw.
    observable_fn: what is recorded, ``observable_fn(params, observables)`` → (sample, ...); defaults to
                  ``loss_fn`` (per-sample losses, what the BIF needs). Nothing is recorded when both
                  ``observables`` and ``observable_fn`` are None.
    observable_chunk: evaluate the observables this many samples at a time (bounds memory); None = all.
    trace_device: where the returned trace lives: "cpu" (default; on a GPU the losses are written into device
                  buffers and copied back in blocks of ``check_every`` steps, without blocking the steps) or
                  None = the run's device (for estimators that run there too).

    Returns a :class:`SampleTrace`. Bad inputs (NaN in w* or the data, empty data, a loss that is not per
    sample) raise ValueError or TypeError before any step. Raises :class:`SamplerDivergence` when any chain's
    loss or parameters become non-finite, naming the chains and the step.
    """
    config = _check_config(config)
    centers, single = as_params(params)
    return _run(loss_fn, {k: v.unsqueeze(0) for k, v in centers.items()}, single, data, observables, config,
                observable_fn, observable_chunk, progress, trace_device)[0]


def sample_many(
    loss_fn: LossFn,
    checkpoints: Sequence[torch.Tensor | dict[str, torch.Tensor]],
    data: Batch = None,
    observables: Batch = None,
    config: SGLDConfig | None = None,
    *,
    observable_fn: LossFn | None = None,
    observable_chunk: int | None = None,
    progress: bool = True,
    trace_device: str | torch.device | None = "cpu",
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
    config = _check_config(config)
    centers, single = stack_checkpoints(checkpoints)
    return _run(loss_fn, centers, single, data, observables, config, observable_fn, observable_chunk, progress,
                trace_device)


def _check_config(config: Any) -> SGLDConfig:
    if config is None:
        return SGLDConfig()
    if not isinstance(config, SGLDConfig):
        raise TypeError(f"config must be an SGLDConfig or None; got {type(config).__name__}")
    return config


def _full_data_loss(loss_fn: LossFn, single: bool, center: Params, data: Batch, n: int | None,
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


# Codes of what went non-finite first, per chain (device flags; 0 = nothing).
_REASONS = {1: "non-finite loss", 2: "non-finite parameters", 3: "non-finite observable loss"}


class _Recorder:
    """Collects a run's loss trace and draws in buffers on the run's device, keeps the device-side divergence
    flags, and turns them into traces (or a divergence)."""

    def __init__(self, config: SGLDConfig, num_centers: int, dtype: torch.dtype, device: torch.device,
                 init_losses: list[float], init_obs: torch.Tensor | None, recording: bool, single: bool,
                 trace_device: str | torch.device | None = None):
        self.config, self.num_centers, self.single = config, num_centers, single
        self.per_center = config.num_chains
        self.init_losses, self.init_obs = init_losses, init_obs
        chains = num_centers * config.num_chains
        self.loss_trace = torch.empty(chains, config.num_steps, dtype=dtype, device=device)
        self.draw_steps = torch.tensor(
            [config.num_burnin + (k + 1) * config.thin - 1 for k in range(config.num_draws)], dtype=torch.long,
            device="cpu")  # step labels: host-side by design
        self._draw_at = {int(t): k for k, t in enumerate(self.draw_steps)}
        self.draws = None
        if recording:  # (chain, draw, sample, ...), filled in place: no list of draws, no stack at the end
            self.draws = torch.empty(chains, config.num_draws, *init_obs.shape[1:], dtype=init_obs.dtype,
                                     device=device)
        self.num_drawn = 0
        self.precond: Params | None = None
        self.host = None if trace_device is None else torch.device(trace_device)
        if self.host == device or self.host is None:
            self.host = None  # the trace is the device buffers themselves
        else:  # host copies, filled a block at a time (pinned, so the copies do not block the steps)
            pin = device.type == "cuda" and self.host.type == "cpu"
            self.host_trace = torch.empty(self.loss_trace.shape, dtype=dtype, pin_memory=pin)
            self.host_draws = None if self.draws is None else torch.empty(self.draws.shape, dtype=self.draws.dtype,
                                                                          pin_memory=pin)
            self.copied_steps = self.copied_draws = 0
        self.first_bad = torch.full((chains,), -1, dtype=torch.long, device=device)
        self.reason = torch.zeros(chains, dtype=torch.uint8, device=device)

    def copy_back(self, steps_done: int) -> None:
        """Copy the steps and draws recorded since the last copy to the host buffers (non-blocking)."""
        if self.host is None:
            return
        a, b = self.copied_steps, steps_done
        self.host_trace[:, a:b].copy_(self.loss_trace[:, a:b], non_blocking=True)
        if self.draws is not None:
            c, d = self.copied_draws, self.num_drawn
            self.host_draws[:, c:d].copy_(self.draws[:, c:d], non_blocking=True)
        self.copied_steps, self.copied_draws = b, self.num_drawn

    def _finished(self, steps_done: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                                  Params | None]:
        """(loss trace, draws, observables at w*, preconditioner) where the trace is to live."""
        if self.host is None:
            return self.loss_trace, self.draws, self.init_obs, self.precond
        self.copy_back(steps_done)
        if self.loss_trace.device.type == "cuda":
            torch.cuda.synchronize(self.loss_trace.device)  # the non-blocking copies have landed
        move = (lambda v: None if v is None else v.to(self.host))
        precond = None if self.precond is None else {k: v.to(self.host) for k, v in self.precond.items()}
        return self.host_trace, self.host_draws, move(self.init_obs), precond

    def draw_index(self, t: int) -> int | None:
        return self._draw_at.get(t)

    def flag(self, bad: torch.Tensor, code: torch.Tensor | int, t: int) -> None:
        """Note the chains ``bad`` (a device bool mask) as failing at step t unless they failed before."""
        new = bad & (self.first_bad < 0)
        self.first_bad = torch.where(new, t, self.first_bad)
        self.reason = torch.where(new, code if isinstance(code, torch.Tensor) else torch.tensor(
            code, dtype=torch.uint8, device=bad.device), self.reason)

    def check(self) -> SamplerDivergence | None:
        """Read the flags (one host synchronisation): the divergence at the earliest failing step, if any."""
        if not bool((self.first_bad >= 0).any()):
            return None
        first, reason = self.first_bad.cpu(), self.reason.cpu()
        t = int(first[first >= 0].min())
        bad = first == t
        codes = sorted({int(r) for r in reason[bad]})
        return self.divergence(bad, t, " and ".join(_REASONS[c] for c in codes))

    def traces(self, steps_done: int, num_drawn: int | None = None) -> list[SampleTrace]:
        num_drawn = self.num_drawn if num_drawn is None else num_drawn
        loss_trace, draws, init_obs, precond = self._finished(steps_done)
        losses = None if draws is None else draws[:, :num_drawn]
        dims = ("chain", "draw", "sample") if init_obs is None else _dims_for(init_obs[0])
        c = self.per_center
        return [
            SampleTrace(
                losses=None if losses is None else losses[j * c : (j + 1) * c],
                loss_trace=loss_trace[j * c : (j + 1) * c, :steps_done],
                draw_steps=self.draw_steps[:num_drawn],
                init_loss=self.init_losses[j],
                init_observable_losses=None if init_obs is None else init_obs[j],
                config=self.config,
                dims=dims,
                preconditioner=self._precond_of(precond, j, steps_done),
            )
            for j in range(self.num_centers)
        ]

    def _precond_of(self, precond: Params | None, j: int, steps_done: int):
        # The preconditioner is frozen when burn-in's last step is done; a run that stopped before has none.
        if precond is None or steps_done < self.config.num_burnin:
            return None
        c = self.per_center
        part = {k: v[j * c : (j + 1) * c] for k, v in precond.items()}
        return part["w"] if self.single else part

    def divergence(self, bad: torch.Tensor, t: int, reason: str) -> SamplerDivergence:
        """The error for chains ``bad`` failing at step t: the trace holds steps ≤ t and the draws before t."""
        chains = torch.nonzero(bad).flatten().tolist()
        traces = self.traces(t + 1, int((self.draw_steps[: self.num_drawn] < t).sum()))
        if self.num_centers == 1:
            return SamplerDivergence(chains, t, reason, traces[0])
        c = self.per_center
        where = ", ".join(f"(checkpoint {k // c}, chain {k % c})" for k in chains)
        error = SamplerDivergence(chains, t, f"{reason} in {where}", traces[chains[0] // c])
        error.traces = traces
        return error


def _run(loss_fn, centers: Params, single: bool, data, observables, config: SGLDConfig, observable_fn,
         observable_chunk, progress, trace_device="cpu") -> list[SampleTrace]:
    """The sampler proper: ``centers`` holds K checkpoints stacked on a leading dimension."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, loss_fn(params, batch) → per-sample losses; got "
                        f"{type(loss_fn).__name__}")
    if observable_fn is not None and not callable(observable_fn):
        raise TypeError(f"observable_fn must be callable or None; got {type(observable_fn).__name__}")
    if observable_chunk is not None and not is_int(observable_chunk, 1):
        raise ValueError(f"observable_chunk = {observable_chunk!r}: accepted values are integers ≥ 1 or None")
    centers = place(centers, config)  # the run's device and dtype; data and observables follow, once
    first = next(iter(centers.values()))
    device, dtype = first.device, first.dtype
    # floating-point data follow the run's dtype (config.dtype, else the checkpoint's), as SGLDConfig documents
    n = None
    if data is not None:
        data, n = prepare_batch(data, "data")
        data = to_device(data, device, dtype)
    if observables is not None:
        observables, count = prepare_batch(observables, "observables")
        observables = to_device(observables, device, dtype)
    if n is not None and config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size = {config.batch_size} is larger than the data ({n} samples); accepted: "
                         f"1 … {n}, or None for full-batch gradients (SGLDConfig(batch_size=...))")
    full_batch = n is None or config.batch_size is None or config.batch_size >= n
    recording = observables is not None or observable_fn is not None
    record_fn = observable_fn or loss_fn
    num_centers = first.shape[0]
    loop = chain_loop(config, device)
    chunk = None if observable_chunk is None else int(observable_chunk)
    first_center = {k: v[:1] for k, v in centers.items()}  # one forward pass on one sample, before any step
    first_pass(loss_fn, single, first_center, data, "data", "loss_fn", loop)
    if recording and observables is not None:
        first_pass(record_fn, single, first_center, observables, "observables",
                   "observable_fn" if observable_fn is not None else "loss_fn", loop)

    with torch.no_grad():
        init_losses = [_full_data_loss(loss_fn, single, {k: v[j] for k, v in centers.items()}, data, n,
                                       None if full_batch else config.batch_size) for j in range(num_centers)]
        init_obs = observe(record_fn, centers, observables, tensor_params=single) if recording else None
    if init_obs is not None and observable_fn is None:
        check_per_sample(init_obs[0], count, "loss_fn", "the observables")

    state: SamplerState = init_stacked(centers, single, config)
    generators = make_generators(config.seed, config.num_chains, device, repeat=num_centers)
    recorder = _Recorder(config, num_centers, dtype, device, init_losses, init_obs, recording, single,
                         trace_device)
    num_chains = num_centers * config.num_chains
    every = config.check_every or (1 if device.type == "cpu" else 50)
    code_loss, code_params = (torch.tensor(c, dtype=torch.uint8, device=device) for c in (1, 2))
    bar = tqdm(range(config.num_steps), desc="SGLD", disable=not progress, leave=False, mininterval=0.5)
    for t in bar:
        batch = data if full_batch else draw_batch(data, config.batch_size, generators)
        state = step(state, batch, generators, loss_fn, config, batch_per_chain=not full_batch)
        recorder.loss_trace[:, t] = state.loss
        recorder.precond = state.precond
        bad_loss, bad_params = nonfinite_flags(state)  # device flags, read below every `every` steps
        recorder.flag(bad_loss | bad_params, torch.where(bad_loss, code_loss, code_params), t)
        k = recorder.draw_index(t)
        if k is not None:
            if recording:
                obs = observe(record_fn, state.params, observables, tensor_params=single, chunk=chunk, loop=loop,
                              compile=config.compile)
                recorder.draws[:, k] = obs
                recorder.flag(~torch.isfinite(obs.reshape(num_chains, -1)).all(dim=1), 3, t)
            recorder.num_drawn = k + 1
        if (t + 1) % every == 0 or t == config.num_steps - 1:
            failure = recorder.check()
            if failure is not None:
                bar.close()
                raise failure
            recorder.copy_back(t + 1)
            if progress:
                bar.set_postfix(loss=f"{float(state.loss.mean()):.4g}")
    bar.close()
    return recorder.traces(config.num_steps)


def _describe(batch: Batch) -> str:
    if batch is None:
        return "None"
    if isinstance(batch, torch.Tensor):
        return f"a {str(batch.dtype).replace('torch.', '')} tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in batch) + ")"
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
        params = _describe(center["w"][0] if single else {k: v[0] for k, v in center.items()})
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
        raise ValueError(f"{fn_name} failed on the first sample of {name} ({_describe(one)}) at the checkpoint "
                         f"({params}): {type(error).__name__}: {text}"
                         + (". Fix: " + "; ".join(hints) if hints else "")) from error


def _dims_for(per_sample_losses: torch.Tensor) -> tuple[str, ...]:
    extra = per_sample_losses.dim() - 1
    if extra <= 0:
        return ("chain", "draw", "sample")
    if extra == 1:
        return ("chain", "draw", "sample", "token")
    return ("chain", "draw", "sample", *[f"dim{i}" for i in range(extra)])
