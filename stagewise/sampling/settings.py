"""The settings of a localized (RMSProp-)SGLD run, validated when they are made."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Interval, OneOf, Optional, Satisfies, check_fields
from .device import device_problem

PRECONDITIONERS = ("none", "rmsprop")
RMSPROP_ADAPT = ("burnin", "always")
BATCHING = ("auto", "vmap", "loop")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class SGLDConfig:
    """Settings of a localized (RMSProp-)SGLD run. Every field is checked when the config is made.

    step_size:      ε, the SGLD step size (> 0).
    nbeta:          nβ, inverse temperature times sample size (> 0).
    localization:   γ, strength of the pull towards the checkpoint w* (≥ 0).
    num_chains:     independent chains, all started at w* (≥ 1).
    num_draws:      draws recorded per chain after burn-in (≥ 1).
    num_burnin:     steps discarded before the first draw (≥ 0; ≥ 1 for RMSProp with rmsprop_adapt="burnin").
    thin:           steps between two recorded draws (≥ 1).
    batch_size:     mini-batch size per chain and step; None = full batch (≥ 1).
    preconditioner: "none" (plain SGLD) or "rmsprop".
    rmsprop_alpha:  α, decay of the squared-gradient average (in [0, 1)).
    rmsprop_eps:    eps added to √V in the preconditioner (> 0).
    seed:           seed of the noise and of the mini-batch draws (≥ 0).
    rmsprop_adapt:  when the RMSProp preconditioner G = 1/(√V + eps) follows the gradients:
                    "burnin" (default): V is averaged during the burn-in steps only; G is then frozen, per chain
                    and coordinate, for every step that can become a draw. With G fixed the update is a valid
                    preconditioned Langevin step, so the chains sample the posterior up to an O(ε) step-size
                    bias (that of any Euler scheme, with the effective step ε·G: RMSProp enlarges it where
                    gradients are small; :func:`stagewise.diagnostics.step_size_check` measures it), as Stan's
                    mass matrix adapted in warm-up and then held fixed. A frozen G
                    no longer shrinks where gradients grow: chains that leave a flat burn-in region for a steep
                    one take the burn-in's large steps there and can diverge (chapter 1's normal crossing
                    started at its flat point does); burn in where the draws will be, or lower step_size.
                    "always": V and G keep adapting at every step (devinterp's RMSProp-SGLD). G then depends
                    on the chain's recent path and the update lacks the correction term a state-dependent
                    preconditioner needs, so the chains sample a *biased* law whose error does not fall with
                    more draws (chapter 2 measures both variants against an exact answer).
                    Ignored by plain SGLD.
    device:         where the whole run lives: "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA when available, else
                    the CPU); None = the checkpoint's device. The checkpoint, the data and the observables are
                    moved there once; noise, mini-batch indices, losses and the returned trace stay there. A CUDA
                    device that this torch build or machine lacks is rejected here, before any compute.
    dtype:          "float32" or "float64" for the parameters and the floating-point data; None = the
                    checkpoint's dtype. (bfloat16 is not offered: its 8-bit mantissa cannot represent the SGLD
                    increments ε·nβ·g ≪ |w|, which round away.)
    batching:       how the chains share a pass: "vmap" (one vmapped forward and backward for all chains),
                    "loop" (a Python loop over the chains, each on a view of the batched parameters, with one
                    backward pass for all) or "auto", which is "vmap" on every device. Both give the same chains
                    up to floating-point rounding; which is faster depends on the model and the device
                    (benchmarks/results/cpu_levers.json).
    compile:        True: run each step's gradient and update, and the observables' losses, as graphs compiled
                    by ``torch.compile`` (TorchInductor; :mod:`stagewise.sampling.compiled`), on the chains as
                    ``batching`` says. The same noise and mini-batches as without it, so a seed gives the same
                    chains up to floating-point rounding. Building the graphs costs seconds per process, so it
                    pays on long runs only (benchmarks/results/cpu_levers.json). Default False.
    check_every:    steps between two reads of the device-side divergence flag (the flag itself is set at every
                    step, so a divergence still names its first chain and step); None = 1 on the CPU (where
                    the read costs nothing) and 50 on other devices (where it would synchronise the host).
    observable_chunk: evaluate the observables this many samples at a time (bounds memory; ≥ 1); None = all at
                    once.
    trace_device:   where the returned trace lives: "cpu" (default), another device name as for ``device``, or
                    None = the run's device (for estimators that run there too). On a GPU the trace is copied
                    back once, at the end of the run (or at a divergence).

    Integer and float fields accept numpy scalars (``np.int64(4)``) and store them as ``int``/``float``; a bool
    is never a number here.
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
    rmsprop_adapt: str = "burnin"
    device: str | None = None
    dtype: str | None = None
    batching: str = "auto"
    check_every: int | None = None
    compile: bool = False
    observable_chunk: int | None = None
    trace_device: str | None = "cpu"

    def __post_init__(self) -> None:
        positive, count = Interval(gt=0), Interval(ge=1, integer=True)
        burnin = Interval(ge=0, integer=True)
        if self.freezes_preconditioner and burnin.accepts(self.num_burnin):  # frozen: adapted during burn-in
            burnin = Satisfies(Interval(ge=1, integer=True).accepts,
                               "an integer ≥ 1 with preconditioner='rmsprop' and rmsprop_adapt='burnin', which adapts "
                               "the preconditioner during burn-in and then freezes it; or set rmsprop_adapt='always'")
        device_words = device_problem(self.device) if self.device is not None else ""
        check_fields(self, {
            "step_size": positive,
            "nbeta": positive,
            "localization": Interval(ge=0),
            "num_chains": count,
            "num_draws": count,
            "num_burnin": burnin,
            "thin": count,
            "seed": Interval(ge=0, integer=True),
            "batch_size": Satisfies(lambda v: v is None or count.accepts(v), "an integer ≥ 1"),  # None: full batch
            "preconditioner": OneOf(*PRECONDITIONERS),
            "rmsprop_alpha": Interval(ge=0, lt=1),
            "rmsprop_eps": positive,
            "rmsprop_adapt": OneOf(*RMSPROP_ADAPT),
            "device": Satisfies(lambda v: v is None or device_problem(v) is None, device_words or ""),
            "dtype": Optional(OneOf(*DTYPES)),
            "batching": OneOf(*BATCHING),
            "check_every": Optional(count),
            "compile": OneOf(True, False),
            "observable_chunk": Optional(count),
            "trace_device": Satisfies(lambda v: v is None or device_problem(v) is None,
                                      device_problem(self.trace_device) if self.trace_device is not None else ""),
        })

    @property
    def num_steps(self) -> int:
        """Total SGLD steps per chain: burn-in plus ``num_draws × thin``."""
        return self.num_burnin + self.num_draws * self.thin

    @property
    def freezes_preconditioner(self) -> bool:
        """True when an RMSProp preconditioner is adapted during burn-in and then held fixed."""
        return self.preconditioner == "rmsprop" and self.rmsprop_adapt == "burnin"

