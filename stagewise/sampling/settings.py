"""The settings of a localized (RMSProp-)SGLD run, validated when they are made."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_fields, is_int, is_number
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
                    preconditioned Langevin step, so the chains sample the posterior (up to the O(ε) bias of
                    any Euler scheme), as Stan's mass matrix adapted in warm-up and then held fixed. A frozen G
                    no longer shrinks where gradients grow: chains that leave a flat burn-in region for a steep
                    one take the burn-in's large steps there and can diverge (chapter 1's normal crossing
                    started at its flat point does); burn in where the draws will be, or lower step_size.
                    "always": V and G keep adapting at every step (devinterp's RMSProp-SGLD, and this package's
                    behaviour before the default changed). G then depends on the chain's recent path and the
                    update lacks the correction term a state-dependent preconditioner needs, so the chains
                    sample a *biased* law. On a 12-dimensional linear-Gaussian model (128 chains) its BIF error
                    against the exact answer was 11%, 10% and 9% at 1k, 4k and 16k draws per chain, where the
                    frozen variant's fell as 8%, 5% and 2.4% (chapter 2 shows the comparison).
                    Ignored by plain SGLD. Chapter 6, which samples with RMSProp, uses the default: since the
                    default changed its numbers come from the frozen variant (its cached sampler results are keyed
                    by these settings, so older always-adapting results are not reused).
    device:         where the whole run lives: "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA when available, else
                    the CPU); None = the checkpoint's device. The checkpoint, the data and the observables are
                    moved there once; noise, mini-batch indices, losses and the returned trace stay there. A CUDA
                    device that this torch build or machine lacks is rejected here, before any compute.
    dtype:          "float32" or "float64" for the parameters and the floating-point data; None = the
                    checkpoint's dtype. (bfloat16 is not offered: its 8-bit mantissa cannot represent the SGLD
                    increments ε·nβ·g ≪ |w|, which round away.)
    batching:       how the chains share a pass: "vmap" (one vmapped forward and backward for all chains),
                    "loop" (a Python loop over the chains, each on a view of the batched parameters, with one
                    backward pass for all) or "auto", which is "vmap" on every device: on the benchmark's
                    GPT-NeoX job at one CPU thread the loop took 0.91× the speed of vmap per SGLD step and
                    1.10× per draw of the observables (CPU time, median of 5 alternating rounds on a loaded
                    2-core EPYC; benchmarks/results/cpu_levers.json), a wash over a run, and on a GPU one
                    batched kernel beats C small ones. Both give the same chains up to floating-point rounding.
    check_every:    steps between two reads of the device-side divergence flag (the flag itself is set at every
                    step, so a divergence still names its first chain and step); None = 1 on the CPU (where
                    the read costs nothing) and 50 on other devices (where it would synchronise the host).

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

    def __post_init__(self) -> None:
        optional_batch = self.batch_size is None or is_int(self.batch_size, 1)
        checks = [
            ("step_size", is_number(self.step_size) and self.step_size > 0, "a finite number > 0"),
            ("nbeta", is_number(self.nbeta) and self.nbeta > 0, "a finite number > 0"),
            ("localization", is_number(self.localization) and self.localization >= 0, "a finite number ≥ 0"),
            ("num_chains", is_int(self.num_chains, 1), "an integer ≥ 1"),
            ("num_draws", is_int(self.num_draws, 1), "an integer ≥ 1"),
            ("num_burnin", is_int(self.num_burnin, 0), "an integer ≥ 0"),
            ("thin", is_int(self.thin, 1), "an integer ≥ 1"),
            ("seed", is_int(self.seed, 0), "an integer ≥ 0"),
            ("batch_size", optional_batch, "an integer ≥ 1"),  # or None: full batch
            ("preconditioner", _str_in(self.preconditioner, PRECONDITIONERS), " or ".join(map(repr, PRECONDITIONERS))),
            ("rmsprop_alpha", is_number(self.rmsprop_alpha) and 0 <= self.rmsprop_alpha < 1, "a number in [0, 1)"),
            ("rmsprop_eps", is_number(self.rmsprop_eps) and self.rmsprop_eps > 0, "a finite number > 0"),
            ("rmsprop_adapt", _str_in(self.rmsprop_adapt, RMSPROP_ADAPT), " or ".join(map(repr, RMSPROP_ADAPT))),
            ("device", self.device is None or device_problem(self.device) is None,
             device_problem(self.device) if self.device is not None else ""),
            ("dtype", self.dtype is None or _str_in(self.dtype, DTYPES), "None, " + " or ".join(map(repr, DTYPES))),
            ("batching", _str_in(self.batching, BATCHING), " or ".join(map(repr, BATCHING))),
            ("check_every", self.check_every is None or is_int(self.check_every, 1), "an integer ≥ 1 or None"),
        ]
        if self.freezes_preconditioner and is_int(self.num_burnin, 0):
            # The frozen preconditioner is the one adapted during burn-in, so burn-in must have a step.
            checks.append(("num_burnin", self.num_burnin >= 1,
                           "an integer ≥ 1 with preconditioner='rmsprop' and rmsprop_adapt='burnin', which adapts "
                           "the preconditioner during burn-in and then freezes it; or set rmsprop_adapt='always'"))
        check_fields(self, checks)

    @property
    def num_steps(self) -> int:
        """Total SGLD steps per chain: burn-in plus ``num_draws × thin``."""
        return self.num_burnin + self.num_draws * self.thin

    @property
    def freezes_preconditioner(self) -> bool:
        """True when an RMSProp preconditioner is adapted during burn-in and then held fixed."""
        return self.preconditioner == "rmsprop" and self.rmsprop_adapt == "burnin"


def _str_in(value: object, accepted: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value in accepted
