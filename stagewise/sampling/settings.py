"""The settings of a localized (RMSProp-)SGLD run, validated when they are made."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Interval, OneOf, Optional, Rule, Satisfies, check_fields
from .device import device_problem

PRECONDITIONERS = ("none", "rmsprop")
RMSPROP_ADAPT = ("burnin", "always")
BATCHING = ("auto", "vmap", "loop")
DTYPES = ("float32", "float64")

_POSITIVE, _COUNT = Interval(gt=0), Interval(ge=1, integer=True)
# The rule of every SGLDConfig field, in the order a config reports them; handed out by SGLDConfig.rule. None: the
# rule depends on this machine (a device it has), so __post_init__ makes it for the value. num_burnin's rule
# is the base one: with an RMSProp preconditioner frozen after burn-in a config also needs num_burnin ≥ 1.
_FIELD_RULES: dict[str, Rule | None] = {
    "step_size": _POSITIVE,
    "nbeta": _POSITIVE,
    "localization": Interval(ge=0),
    "num_chains": _COUNT,
    "num_draws": _COUNT,
    "num_burnin": Interval(ge=0, integer=True),
    "thin": _COUNT,
    "seed": Interval(ge=0, integer=True),
    "batch_size": Satisfies(lambda v: v is None or _COUNT.accepts(v), "an integer ≥ 1"),  # None: full batch
    "preconditioner": OneOf(*PRECONDITIONERS),
    "rmsprop_alpha": Interval(ge=0, lt=1),
    "rmsprop_eps": _POSITIVE,
    "rmsprop_adapt": OneOf(*RMSPROP_ADAPT),
    "device": None,
    "dtype": Optional(OneOf(*DTYPES)),
    "batching": OneOf(*BATCHING),
    "check_every": Optional(_COUNT),
    "compile": OneOf(True, False),
    "observable_chunk": Optional(_COUNT),
    "trace_device": None,
}


def _device_rule(value: str | None) -> Rule:
    """The rule of ``device`` or ``trace_device``: None or a device this machine has (described for ``value``)."""
    return Satisfies(lambda v: v is None or device_problem(v) is None,
                     (device_problem(value) if value is not None else None) or "")


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
        burnin = _FIELD_RULES["num_burnin"]
        if self.freezes_preconditioner and burnin.accepts(self.num_burnin):  # frozen: adapted during burn-in
            burnin = Satisfies(_COUNT.accepts,
                               "an integer ≥ 1 with preconditioner='rmsprop' and rmsprop_adapt='burnin', which adapts "
                               "the preconditioner during burn-in and then freezes it; or set rmsprop_adapt='always'")
        made = {"num_burnin": burnin, "device": _device_rule(self.device),
                "trace_device": _device_rule(self.trace_device)}
        check_fields(self, {name: made.get(name, rule) for name, rule in _FIELD_RULES.items()})

    @classmethod
    def rule(cls, name: str) -> Rule:
        """The rule of field ``name``: the values a config accepts there, e.g. for a chapter's validation cell.

        ``SGLDConfig.rule("nbeta")`` accepts exactly the values ``SGLDConfig(nbeta=...)`` accepts and describes
        them in the same words; narrow it with ``&`` (``SGLDConfig.rule("num_chains") & Interval(le=64)``).
        ``num_burnin``'s is the base range (a config with an RMSProp preconditioner frozen after burn-in also
        needs num_burnin ≥ 1). ``device`` and ``trace_device`` have none here: what they accept depends on the
        machine that runs the config. A name that is no field: ValueError naming the accepted ones.
        """
        if name not in _FIELD_RULES:
            names = ", ".join(field for field, rule in _FIELD_RULES.items() if rule is not None)
            raise ValueError(f"SGLDConfig.rule({name!r}): SGLDConfig has no field {name!r} (accepted: {names})")
        rule = _FIELD_RULES[name]
        if rule is None:
            raise ValueError(f"SGLDConfig.rule({name!r}): what {name} accepts depends on the machine that runs "
                             "the config; a chapter's device parameter takes stagewise.sampling.DEVICE_NAME "
                             "(the form of the name) and check_device(device) (this machine has it)")
        return rule

    @property
    def num_steps(self) -> int:
        """Total SGLD steps per chain: burn-in plus ``num_draws × thin``."""
        return self.num_burnin + self.num_draws * self.thin

    @property
    def freezes_preconditioner(self) -> bool:
        """True when an RMSProp preconditioner is adapted during burn-in and then held fixed."""
        return self.preconditioner == "rmsprop" and self.rmsprop_adapt == "burnin"

