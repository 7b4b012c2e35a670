"""Sampling runs: :func:`sample` (one checkpoint) and :func:`sample_many` (K checkpoints batched), built on the
steps of :mod:`stagewise.sampling.kernel`, and what they return (:class:`SampleTrace`) or raise
(:class:`SamplerDivergence`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

from ..config import is_int
from .inputs import Batch, LossFn, Params, as_params, check_per_sample, index, prepare_batch, stack_checkpoints
from .kernel import SamplerState, draw_batch, make_generator, nonfinite_chains, observe, step, _call, _start
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
    """

    losses: torch.Tensor | None
    loss_trace: torch.Tensor
    draw_steps: torch.Tensor
    init_loss: float
    init_observable_losses: torch.Tensor | None
    config: SGLDConfig
    dims: tuple[str, ...] = field(default=("chain", "draw", "sample"))
    preconditioner: torch.Tensor | Params | None = None

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
) -> SampleTrace:
    """Run ``config.num_chains`` localized (RMSProp-)SGLD chains around ``params`` = w*, all in one pass.

    loss_fn:      ``loss_fn(params, batch)`` → per-sample losses, shape (batch, ...) or a scalar for a
                  potential with no data. The training objective is their mean, L_n.
    params:       the checkpoint w*: a tensor or a dict of tensors (see :func:`module_loss_fn`); numpy arrays
                  are converted. The chains run on its device.
    data:         training data (tensor, tuple or dict of tensors with leading dimension n; numpy arrays are
                  converted), or None for a potential L(w) with no data. Mini-batches are drawn per chain with
                  replacement.
    observables:  a fixed batch whose per-sample losses are recorded at every draw.
    observable_fn: what is recorded, ``observable_fn(params, observables)`` → (sample, ...); defaults to
                  ``loss_fn`` (per-sample losses, what the BIF needs). Nothing is recorded when both
                  ``observables`` and ``observable_fn`` are None.
    observable_chunk: evaluate the observables this many samples at a time (bounds memory); None = all.

    Returns a :class:`SampleTrace`. Bad inputs (NaN in w* or the data, empty data, a loss that is not per
    sample) raise ValueError or TypeError before any step. Raises :class:`SamplerDivergence` when any chain's
    loss or parameters become non-finite, naming the chains and the step.
    """
    config = _check_config(config)
    centers, single = as_params(params)
    return _run(loss_fn, {k: v.unsqueeze(0) for k, v in centers.items()}, single, data, observables, config,
                observable_fn, observable_chunk, progress)[0]


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
) -> list[SampleTrace]:
    """:func:`sample` around several checkpoints at once: K checkpoints × C chains run as K·C batched chains.

    Each chain is localized at its own checkpoint; one vmapped pass advances all of them, which for small
    models is about K times faster than K separate runs. Every checkpoint must have the same parameter names,
    shapes, dtypes and devices (a ValueError names the first that differs). Returns one :class:`SampleTrace`
    per checkpoint (the random streams differ from separate :func:`sample` calls with the same seed). A
    divergence names the failing chains as ``(checkpoint index, chain)`` pairs in its message and in
    ``.chains`` (flat indices k·C + c).
    """
    config = _check_config(config)
    centers, single = stack_checkpoints(checkpoints)
    return _run(loss_fn, centers, single, data, observables, config, observable_fn, observable_chunk, progress)


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
        return float(_call(loss_fn, single, center, None).mean())
    size = n if batch_size is None else min(batch_size, n)
    total = 0.0
    for start in range(0, n, size):
        count = min(start + size, n) - start
        piece = data if count == n else index(data, torch.arange(start, start + count))
        out = _call(loss_fn, single, center, piece)
        if start == 0:
            check_per_sample(out, count, "loss_fn", "the data")
        if count == n:
            return float(out.mean())
        total += float(out.reshape(count, -1).mean(1).sum())
    return total / n


class _Recorder:
    """Collects the loss trace and the draws of a run and turns them into traces (or a divergence)."""

    def __init__(self, config: SGLDConfig, num_centers: int, dtype: torch.dtype, init_losses: list[float],
                 init_obs: torch.Tensor | None, single: bool):
        self.config, self.num_centers, self.single = config, num_centers, single
        self.per_center = config.num_chains
        self.init_losses, self.init_obs = init_losses, init_obs
        self.loss_trace = torch.empty(num_centers * config.num_chains, config.num_steps, dtype=dtype)
        self.draw_steps = torch.tensor(
            [config.num_burnin + (k + 1) * config.thin - 1 for k in range(config.num_draws)], dtype=torch.long)
        self.draws: list[torch.Tensor] = []
        self.num_drawn = 0
        self.precond: Params | None = None

    def is_draw(self, t: int) -> bool:
        k = self.num_drawn
        return k < self.config.num_draws and t == int(self.draw_steps[k])

    def add(self, obs: torch.Tensor | None) -> None:
        """Count a draw, keeping what was recorded at it (None when nothing is recorded)."""
        if obs is not None:
            self.draws.append(obs)
        self.num_drawn += 1

    def traces(self, steps_done: int) -> list[SampleTrace]:
        losses = torch.stack(self.draws, dim=1) if self.draws else None
        dims = ("chain", "draw", "sample") if self.init_obs is None else _dims_for(self.init_obs[0])
        c = self.per_center
        return [
            SampleTrace(
                losses=None if losses is None else losses[j * c : (j + 1) * c],
                loss_trace=self.loss_trace[j * c : (j + 1) * c, :steps_done],
                draw_steps=self.draw_steps[: self.num_drawn],
                init_loss=self.init_losses[j],
                init_observable_losses=None if self.init_obs is None else self.init_obs[j],
                config=self.config,
                dims=dims,
                preconditioner=self._precond_of(j),
            )
            for j in range(self.num_centers)
        ]

    def _precond_of(self, j: int):
        if self.precond is None:
            return None
        c = self.per_center
        part = {k: v[j * c : (j + 1) * c] for k, v in self.precond.items()}
        return part["w"] if self.single else part

    def divergence(self, bad: torch.Tensor, t: int, reason: str) -> SamplerDivergence:
        chains = torch.nonzero(bad).flatten().tolist()
        traces = self.traces(t + 1)
        if self.num_centers == 1:
            return SamplerDivergence(chains, t, reason, traces[0])
        c = self.per_center
        where = ", ".join(f"(checkpoint {k // c}, chain {k % c})" for k in chains)
        error = SamplerDivergence(chains, t, f"{reason} in {where}", traces[chains[0] // c])
        error.traces = traces
        return error


def _run(loss_fn, centers: Params, single: bool, data, observables, config: SGLDConfig, observable_fn,
         observable_chunk, progress) -> list[SampleTrace]:
    """The sampler proper: ``centers`` holds K checkpoints stacked on a leading dimension."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, loss_fn(params, batch) → per-sample losses; got "
                        f"{type(loss_fn).__name__}")
    if observable_fn is not None and not callable(observable_fn):
        raise TypeError(f"observable_fn must be callable or None; got {type(observable_fn).__name__}")
    if observable_chunk is not None and not is_int(observable_chunk, 1):
        raise ValueError(f"observable_chunk = {observable_chunk!r}: accepted values are integers ≥ 1 or None")
    n = None
    if data is not None:
        data, n = prepare_batch(data, "data")
    if observables is not None:
        observables, count = prepare_batch(observables, "observables")
    full_batch = n is None or config.batch_size is None or config.batch_size >= n
    recording = observables is not None or observable_fn is not None
    record_fn = observable_fn or loss_fn
    num_centers = next(iter(centers.values())).shape[0]
    device = next(iter(centers.values())).device

    with torch.no_grad():
        init_losses = [_full_data_loss(loss_fn, single, {k: v[j] for k, v in centers.items()}, data, n,
                                       None if full_batch else config.batch_size) for j in range(num_centers)]
        init_obs = observe(record_fn, centers, observables, tensor_params=single) if recording else None
    if init_obs is not None and observable_fn is None:
        check_per_sample(init_obs[0], count, "loss_fn", "the observables")

    state: SamplerState = _start(centers, single, config)
    generator = make_generator(config.seed, device)
    recorder = _Recorder(config, num_centers, next(iter(centers.values())).dtype, init_losses, init_obs, single)
    num_chains = num_centers * config.num_chains
    bar = tqdm(range(config.num_steps), desc="SGLD", disable=not progress, leave=False, mininterval=0.5)
    for t in bar:
        batch = data if full_batch else draw_batch(data, num_chains, config.batch_size, generator)
        state = step(state, batch, generator, loss_fn, config, batch_per_chain=not full_batch)
        recorder.loss_trace[:, t] = state.loss.to(recorder.loss_trace.device)
        recorder.precond = state.precond
        failure = nonfinite_chains(state)
        if failure is not None:
            raise recorder.divergence(failure[0].cpu(), t, failure[1])
        if recorder.is_draw(t):
            obs = None
            if recording:
                obs = observe(record_fn, state.params, observables, tensor_params=single,
                              chunk=None if observable_chunk is None else int(observable_chunk))
                bad = ~torch.isfinite(obs.reshape(num_chains, -1)).all(dim=1)
                if bool(bad.any()):
                    raise recorder.divergence(bad.cpu(), t, "non-finite observable loss")
            recorder.add(obs)
        if progress and t % 50 == 0:
            bar.set_postfix(loss=f"{float(state.loss.mean()):.4g}")
    bar.close()
    return recorder.traces(config.num_steps)


def _dims_for(per_sample_losses: torch.Tensor) -> tuple[str, ...]:
    extra = per_sample_losses.dim() - 1
    if extra <= 0:
        return ("chain", "draw", "sample")
    if extra == 1:
        return ("chain", "draw", "sample", "token")
    return ("chain", "draw", "sample", *[f"dim{i}" for i in range(extra)])
