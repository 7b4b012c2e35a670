"""Localized SGLD and RMSProp-preconditioned SGLD, with chains batched in one pass.

The sampler draws from the localized, tempered posterior around a checkpoint ``w*``

    p(w) ∝ exp(−nβ·L_n(w) − (γ/2)·‖w − w*‖²)

with the updates of PAPER.md §2 (ε = ``step_size``, γ = ``localization``, nβ = ``nbeta``):

    plain:    w ← w − (ε/2)·[nβ·g + γ·(w − w*)] + √ε·ξ
    RMSProp:  V ← α·V + (1 − α)·g²,  G = 1/(√V + eps)
              w ← w − (ε/2)·G·[nβ·g + γ·(w − w*)] + √(ε·G)·ξ

where g is the gradient of the mean mini-batch loss and ξ ~ N(0, I).

A model is a *loss of its parameters*: ``loss_fn(params, batch) -> per-sample losses``, where ``params`` is
a tensor or a dict of tensors (an ``nn.Module`` becomes one through :func:`module_loss_fn`). Chains are a
leading dimension of every parameter tensor and the loss is mapped over it with ``torch.func.vmap``: one
forward and one backward pass advance all chains. At every draw the per-sample losses on a fixed set of
*observables* are recorded, giving the (chain, draw, sample[, ...]) array that the influence and LLC
estimators consume. A non-finite loss or parameter stops the run with :class:`SamplerDivergence`, which
names the chains and the step; nothing is dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
from torch.func import functional_call, vmap
from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

from .config import ConfigError, check_fields, is_int, is_number  # noqa: F401  (ConfigError re-exported)

Params = dict[str, torch.Tensor]
Batch = Any  # a tensor, a tuple of tensors or a dict of tensors with a leading sample dimension, or None
LossFn = Callable[[Any, Batch], torch.Tensor]

PRECONDITIONERS = ("none", "rmsprop")


@dataclass(frozen=True)
class SGLDConfig:
    """Settings of a localized (RMSProp-)SGLD run. Every field is checked when the config is made.

    step_size:      ε, the SGLD step size (> 0).
    nbeta:          nβ, inverse temperature times sample size (> 0).
    localization:   γ, strength of the pull towards the checkpoint w* (≥ 0).
    num_chains:     independent chains, all started at w* (≥ 1).
    num_draws:      draws recorded per chain after burn-in (≥ 1).
    num_burnin:     steps discarded before the first draw (≥ 0).
    thin:           steps between two recorded draws (≥ 1).
    batch_size:     mini-batch size per chain and step; None = full batch (≥ 1).
    preconditioner: "none" (plain SGLD) or "rmsprop".
    rmsprop_alpha:  α, decay of the squared-gradient average (in [0, 1)).
    rmsprop_eps:    eps added to √V in the preconditioner (> 0).
    seed:           seed of the noise and of the mini-batch draws (≥ 0).
    """

    step_size: float = 1e-3
    nbeta: float = 100.0
    localization: float = 100.0
    num_chains: int = 4
    num_draws: int = 100
    num_burnin: int = 0
    thin: int = 1
    batch_size: int | None = None
    preconditioner: str = "none"
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        optional_batch = self.batch_size is None or is_int(self.batch_size, 1)
        check_fields(self, [
            ("step_size", is_number(self.step_size) and self.step_size > 0, "a finite number > 0"),
            ("nbeta", is_number(self.nbeta) and self.nbeta > 0, "a finite number > 0"),
            ("localization", is_number(self.localization) and self.localization >= 0, "a finite number ≥ 0"),
            ("num_chains", is_int(self.num_chains, 1), "an integer ≥ 1"),
            ("num_draws", is_int(self.num_draws, 1), "an integer ≥ 1"),
            ("num_burnin", is_int(self.num_burnin, 0), "an integer ≥ 0"),
            ("thin", is_int(self.thin, 1), "an integer ≥ 1"),
            ("seed", is_int(self.seed, 0), "an integer ≥ 0"),
            ("batch_size", optional_batch, "an integer ≥ 1"),  # or None: full batch
            ("preconditioner", self.preconditioner in PRECONDITIONERS, " or ".join(map(repr, PRECONDITIONERS))),
            ("rmsprop_alpha", is_number(self.rmsprop_alpha) and 0 <= self.rmsprop_alpha < 1, "a number in [0, 1)"),
            ("rmsprop_eps", is_number(self.rmsprop_eps) and self.rmsprop_eps > 0, "a finite number > 0"),
        ])

    @property
    def num_steps(self) -> int:
        """Total SGLD steps per chain: burn-in plus ``num_draws × thin``."""
        return self.num_burnin + self.num_draws * self.thin


class ChainState(NamedTuple):
    """State of all chains: parameters and (for RMSProp) squared-gradient averages, each (chain, *shape)."""

    params: Params
    square_avg: Params | None


def sgld_step(
    state: ChainState,
    grads: Params,
    center: Params,
    noise: Params,
    config: SGLDConfig,
) -> ChainState:
    """One (RMSProp-)SGLD update of all chains, as a pure function.

    ``grads`` are gradients of the mean mini-batch loss (without the nβ factor and the localization term),
    ``center`` is the checkpoint w* (broadcast over chains) and ``noise`` standard normal draws, all with the
    shapes of ``state.params``. Returns the new state; the inputs are not modified.
    """
    eps, nbeta, gamma = config.step_size, config.nbeta, config.localization
    new_params: Params = {}
    new_avg: Params | None = {} if config.preconditioner == "rmsprop" else None
    for name, w in state.params.items():
        g = grads[name]
        drift = nbeta * g + gamma * (w - center[name])
        if new_avg is None:
            new_params[name] = w - 0.5 * eps * drift + math.sqrt(eps) * noise[name]
        else:
            previous = state.square_avg[name] if state.square_avg is not None else torch.zeros_like(w)
            v = config.rmsprop_alpha * previous + (1 - config.rmsprop_alpha) * g * g
            precond = 1.0 / (v.sqrt() + config.rmsprop_eps)
            new_avg[name] = v
            new_params[name] = w - 0.5 * eps * precond * drift + (eps * precond).sqrt() * noise[name]
    return ChainState(new_params, new_avg)


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
    """

    losses: torch.Tensor | None
    loss_trace: torch.Tensor
    draw_steps: torch.Tensor
    init_loss: float
    init_observable_losses: torch.Tensor | None
    config: SGLDConfig
    dims: tuple[str, ...] = field(default=("chain", "draw", "sample"))

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


# --------------------------------------------------------------------------------------------------------
# Models as losses of their parameters


def module_loss_fn(
    module: torch.nn.Module,
    per_sample_loss: Callable[[Callable[..., Any], Batch], torch.Tensor],
) -> tuple[Params, LossFn]:
    """Turn an ``nn.Module`` into (parameters w*, loss of parameters) for :func:`sample`.

    ``per_sample_loss(forward, batch)`` receives ``forward(*args, **kwargs)``, which runs the module with the
    parameters being sampled (through ``torch.func.functional_call``), and returns per-sample losses.
    Buffers are held fixed at their current values.
    """
    params = {name: p.detach().clone() for name, p in module.named_parameters()}
    buffers = {name: b.detach() for name, b in module.named_buffers()}

    def loss_fn(p: Params, batch: Batch) -> torch.Tensor:
        def forward(*args: Any, **kwargs: Any) -> Any:
            return functional_call(module, (p, buffers), args, kwargs)

        return per_sample_loss(forward, batch)

    return params, loss_fn


def _as_param_dict(params: torch.Tensor | Mapping[str, torch.Tensor]) -> tuple[Params, bool]:
    if isinstance(params, torch.Tensor):
        return {"w": params.detach()}, True
    if isinstance(params, Mapping) and params and all(isinstance(v, torch.Tensor) for v in params.values()):
        return {k: v.detach() for k, v in params.items()}, False
    raise TypeError("params must be a tensor or a non-empty dict of tensors (the checkpoint w*)")


def _num_samples(data: Batch) -> int:
    leaves = _leaves(data)
    if not leaves:
        raise ValueError("data must hold at least one tensor with a leading sample dimension")
    n = leaves[0].shape[0]
    if any(leaf.shape[0] != n for leaf in leaves):
        raise ValueError("every tensor in data must have the same leading (sample) dimension")
    return n


def _leaves(data: Batch) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [v for v in data.values() if isinstance(v, torch.Tensor)]
    if isinstance(data, (tuple, list)):
        return [v for v in data if isinstance(v, torch.Tensor)]
    return []


def _take(tensor: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # index_select on the flat index is much cheaper than advanced indexing with a 2-D index tensor.
    flat = tensor.index_select(0, idx.reshape(-1).to(tensor.device))
    return flat.reshape(*idx.shape, *tensor.shape[1:])


def _index(data: Batch, idx: torch.Tensor) -> Batch:
    """Select samples ``idx`` (any shape) from every tensor of ``data``."""
    if isinstance(data, torch.Tensor):
        return _take(data, idx)
    if isinstance(data, Mapping):
        return {k: (_take(v, idx) if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    return type(data)(_take(v, idx) if isinstance(v, torch.Tensor) else v for v in data)


# --------------------------------------------------------------------------------------------------------
# The sampler


def sample(
    loss_fn: LossFn,
    params: torch.Tensor | Mapping[str, torch.Tensor],
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
    params:       the checkpoint w*: a tensor or a dict of tensors (see :func:`module_loss_fn`).
    data:         training data (tensor, tuple or dict of tensors with leading dimension n), or None for a
                  potential L(w) with no data. Mini-batches are drawn per chain with replacement.
    observables:  a fixed batch whose per-sample losses are recorded at every draw.
    observable_fn: what is recorded, ``observable_fn(params, observables)`` → (sample, ...); defaults to
                  ``loss_fn`` (per-sample losses, what the BIF needs). Nothing is recorded when both
                  ``observables`` and ``observable_fn`` are None.
    observable_chunk: evaluate the observables this many samples at a time (bounds memory); None = all.

    Returns a :class:`SampleTrace`. Raises :class:`SamplerDivergence` when any chain's loss or parameters
    become non-finite, naming the chains and the step.
    """
    center, unwrap = _as_param_dict(params)
    stacked = {k: v.unsqueeze(0) for k, v in center.items()}
    return _run(loss_fn, stacked, unwrap, data, observables, config or SGLDConfig(), observable_fn,
                observable_chunk, progress)[0]


def sample_many(
    loss_fn: LossFn,
    checkpoints: Sequence[torch.Tensor | Mapping[str, torch.Tensor]],
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
    models is about K times faster than K separate runs. Returns one :class:`SampleTrace` per checkpoint
    (the random streams differ from separate :func:`sample` calls with the same seed). A divergence names
    the failing chains as ``(checkpoint index, chain)`` pairs in its message and in ``.chains`` (flat indices
    k·C + c).
    """
    if not checkpoints:
        raise ValueError("checkpoints must hold at least one set of parameters")
    pairs = [_as_param_dict(p) for p in checkpoints]
    unwrap = pairs[0][1]
    names = list(pairs[0][0])
    if any(list(c) != names for c, _ in pairs):
        raise ValueError("every checkpoint must have the same parameter names and shapes")
    stacked = {k: torch.stack([c[k] for c, _ in pairs]) for k in names}
    return _run(loss_fn, stacked, unwrap, data, observables, config or SGLDConfig(), observable_fn,
                observable_chunk, progress)


def _run(loss_fn, centers: Params, unwrap: bool, data, observables, config: SGLDConfig, observable_fn,
         observable_chunk, progress) -> list[SampleTrace]:
    """The sampler proper: ``centers`` holds K checkpoints stacked on a leading dimension."""
    num_centers = next(iter(centers.values())).shape[0]
    per_center = config.num_chains
    num_chains = num_centers * per_center
    generator = torch.Generator().manual_seed(config.seed)

    n = None if data is None else _num_samples(data)
    full_batch = n is None or config.batch_size is None or config.batch_size >= n
    if observables is not None:
        _num_samples(observables)
    recording = observables is not None or observable_fn is not None

    def per_sample(p: Params, b: Batch) -> torch.Tensor:
        return loss_fn(p["w"] if unwrap else p, b)

    def mean_loss(p: Params, b: Batch) -> torch.Tensor:
        return per_sample(p, b).mean()

    chain_loss = vmap(mean_loss, in_dims=(0, None if full_batch else 0))

    def step_grad(p: Params, b: Batch) -> tuple[Params, torch.Tensor]:
        # Chains are independent, so the gradient of the summed chain losses is each chain's own gradient:
        # one vmapped forward and one backward pass (several times faster than vmap(grad(...))).
        leaves = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        with torch.enable_grad():
            values = chain_loss(leaves, b)
            grads = torch.autograd.grad(values.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), values.detach()

    def observed(p: Params, b: Batch) -> torch.Tensor:
        return (observable_fn or loss_fn)(p["w"] if unwrap else p, b)

    observe = vmap(observed, in_dims=(0, None))

    def record(p: Params) -> torch.Tensor:
        if observable_chunk is None or observables is None:
            return observe(p, observables)
        count = _num_samples(observables)
        parts = [
            observe(p, _index(observables, torch.arange(s, min(s + observable_chunk, count))))
            for s in range(0, count, observable_chunk)
        ]
        return torch.cat(parts, dim=1)

    def full_data_loss(p: Params) -> float:
        if data is None or full_batch:
            return float(mean_loss(p, data))
        # L_n(w*) on the full data, in mini-batch sized pieces to bound memory.
        # Each sample's losses are averaged over their trailing dimensions (e.g. tokens) first, as in the mean
        # the chains descend.
        size = config.batch_size
        total = sum(
            float(per_sample(p, _index(data, torch.arange(s, min(s + size, n)))).reshape(
                min(s + size, n) - s, -1).mean(1).sum())
            for s in range(0, n, size)
        )
        return total / n

    with torch.no_grad():
        init_losses = [full_data_loss({k: v[j] for k, v in centers.items()}) for j in range(num_centers)]
        init_obs = observe(centers, observables).detach() if recording else None

    # Chain k·C + c is chain c of checkpoint k; its localization centre is checkpoint k.
    center = {k: v.repeat_interleave(per_center, dim=0) for k, v in centers.items()}
    state = ChainState(params={k: v.clone() for k, v in center.items()}, square_avg=None)
    loss_trace = torch.empty(num_chains, config.num_steps, dtype=next(iter(centers.values())).dtype)
    draw_steps = torch.tensor(
        [config.num_burnin + (k + 1) * config.thin - 1 for k in range(config.num_draws)], dtype=torch.long
    )
    recorded: list[torch.Tensor] = []

    def traces_so_far(steps_done: int) -> list[SampleTrace]:
        draws = len(recorded)
        losses = torch.stack(recorded, dim=1) if recorded else None
        dims = ("chain", "draw", "sample") if init_obs is None else _dims_for(init_obs[0])
        return [
            SampleTrace(
                losses=None if losses is None else losses[j * per_center : (j + 1) * per_center],
                loss_trace=loss_trace[j * per_center : (j + 1) * per_center, :steps_done],
                draw_steps=draw_steps[:draws],
                init_loss=init_losses[j],
                init_observable_losses=None if init_obs is None else init_obs[j],
                config=config,
                dims=dims,
            )
            for j in range(num_centers)
        ]

    def diverged(bad: torch.Tensor, step: int, reason: str) -> SamplerDivergence:
        chains = torch.nonzero(bad).flatten().tolist()
        traces = traces_so_far(step + 1)
        if num_centers == 1:
            return SamplerDivergence(chains, step, reason, traces[0])
        where = ", ".join(f"(checkpoint {c // per_center}, chain {c % per_center})" for c in chains)
        error = SamplerDivergence(chains, step, f"{reason} in {where}", traces[chains[0] // per_center])
        error.traces = traces
        return error

    next_draw = 0
    bar = tqdm(range(config.num_steps), desc="SGLD", disable=not progress, leave=False, mininterval=0.5)
    for step in bar:
        if full_batch:
            batch = data
        else:
            batch = _index(data, torch.randint(n, (num_chains, config.batch_size), generator=generator))
        grads, values = step_grad(state.params, batch)
        loss_trace[:, step] = values.detach()
        # Noise comes from one CPU generator so that a seed gives the same chains on any device.
        noise = {k: torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device) for k, v in state.params.items()}
        state = sgld_step(state, grads, center, noise, config)

        bad_loss = ~torch.isfinite(values)
        bad_params = torch.zeros(num_chains, dtype=torch.bool, device=bad_loss.device)
        for v in state.params.values():
            bad_params |= ~torch.isfinite(v.reshape(num_chains, -1)).all(dim=1)
        if bad_loss.any() or bad_params.any():
            what = "loss" if bad_loss.any() else "parameters"
            raise diverged(bad_loss | bad_params, step, f"non-finite {what}")

        if next_draw < config.num_draws and step == int(draw_steps[next_draw]):
            if recording:
                with torch.no_grad():
                    obs = record(state.params).detach()
                bad_obs = ~torch.isfinite(obs.reshape(num_chains, -1)).all(dim=1)
                if bad_obs.any():
                    raise diverged(bad_obs, step, "non-finite observable loss")
                recorded.append(obs)
            next_draw += 1
        if progress and step % 50 == 0:
            bar.set_postfix(loss=f"{float(values.mean()):.4g}")
    bar.close()
    return traces_so_far(config.num_steps)


def _dims_for(per_sample_losses: torch.Tensor) -> tuple[str, ...]:
    extra = per_sample_losses.dim() - 1
    if extra <= 0:
        return ("chain", "draw", "sample")
    if extra == 1:
        return ("chain", "draw", "sample", "token")
    return ("chain", "draw", "sample", *[f"dim{i}" for i in range(extra)])
