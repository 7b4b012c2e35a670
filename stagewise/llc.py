"""The local learning coefficient (LLC): its SGLD estimator and the known answers it is checked against.

Estimator (Lau et al.): λ̂ = nβ·(E_w[L_n(w)] − L_n(w*)), the expectation over the localized tempered posterior
around w*, estimated per chain from the mini-batch losses recorded after burn-in.

Known answers (Watanabe; Aoyagi & Watanabe 2005):
- normal crossing L(w) = Π_i w_i^(2 k_i):  λ = min_i 1/(2 k_i) over the i with k_i > 0;
- a regular model with d parameters:       λ = d/2;
- reduced-rank regression y = B·A·x (M inputs, H hidden, N outputs) with a true map of rank r: the
  Aoyagi–Watanabe formula (:func:`rrr_llc`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .config import is_int
from .chains import ess as effective_sample_size
from .chains import rhat

if TYPE_CHECKING:  # only for annotations
    from .sampling import SampleTrace


@dataclass(frozen=True)
class LLCEstimate:
    """An LLC estimate: the mean over chains, its standard error, each chain's value, and two diagnostics.

    estimate:  λ̂ = nβ·(mean over chains and steps of L_c(t) − L_n(w*)) (dimensionless); equal to the mean of
               ``per_chain``.
    stderr:    Monte Carlo standard error of ``estimate``: nβ·sd(L)/√ESS, with ESS the effective sample size of
               the loss trace (split chains, within-chain autocorrelation measured against the variance that
               includes the between-chain spread; Vehtari et al. 2021). Defined with one chain; NaN with fewer
               than 4 steps after burn-in. (Until this change it was sd(per_chain)/√chains, which has only
               chains − 1 degrees of freedom and covered far less than ±2 s.e. suggests.)
    per_chain: λ̂_c for each chain.
    ess:       that effective sample size of the loss trace (of chains × steps after burn-in).
    rhat:      rank-normalized split-R̂ of the loss trace (≈ 1 when chains agree; > 1.01 is a warning).
    not_minimum: True when λ̂ is negative beyond twice its standard error (λ̂ + 2·stderr < 0; with no standard
               error, λ̂ < 0): the chains found lower loss than L_n(w*), so w* is not a local minimum (an early
               training checkpoint, a saddle, a slope) and λ̂ is no learning coefficient there.
    """

    estimate: float
    stderr: float
    per_chain: tuple[float, ...]
    ess: float = math.nan
    rhat: float = math.nan
    not_minimum: bool = False

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "stderr": self.stderr, "per_chain": list(self.per_chain),
                "ess": self.ess, "rhat": self.rhat, "not_minimum": self.not_minimum}


class NotAMinimumWarning(UserWarning):
    """An LLC estimate at a checkpoint that is not a local minimum (see :attr:`LLCEstimate.not_minimum`)."""


def estimate_llc(trace: SampleTrace, *, checkpoint: str | int | None = None, warn: bool = True) -> LLCEstimate:
    """λ̂ = nβ·(E[L_n] − L_n(w*)) from a :class:`SampleTrace`, using every step after burn-in.

    A checkpoint that is not a local minimum (λ̂ negative beyond twice its standard error: L_n(w*) is clearly
    above the mean loss of the draws) is flagged in :attr:`LLCEstimate.not_minimum` and, with ``warn``, by a
    :class:`NotAMinimumWarning` naming ``checkpoint`` (a training step or a label).

    The standard error is the ESS-based Monte Carlo error (see :class:`LLCEstimate`). Why ESS and not batch
    means: the loss trace of a singular model mixes on time scales that differ by orders of magnitude between
    settings, and Geyer's initial sequence adapts to each, where a batch size would have to be chosen ≫ τ in
    advance. Over 400 runs of 4 chains, ±2 s.e. held the exact answer 94.5% of the time on a regular quadratic
    and 92% on the normal crossing w₁²w₂⁴ at nβ = 10, γ = 1 (the former s.e.: 87% and 84.5%;
    tests/test_coverage.py). That needs chains many relaxation times long. Along the flat directions of a
    singular model the slowest relaxation takes ≈ 2/(ε·γ) steps; with chains not much longer than that no error
    bar from them can be trusted, and R̂ > 1.01 is the warning sign (with ε = 1e-4, γ = 1, nβ = 1e4 and 4 chains
    × 4,000 steps, R̂ ≈ 1.06 and either s.e. covered only 83%): run longer chains or raise ε·γ.
    """
    if not (hasattr(trace, "loss_trace") and hasattr(trace, "config") and hasattr(trace, "init_loss")):
        raise TypeError(f"trace must be the SampleTrace that stagewise.sampling.sample returns (it carries the loss "
                        f"trace, L_n(w*) and nβ); got {type(trace).__name__}. From a saved run, load it with "
                        "stagewise.attribute.load_traces")
    config = trace.config
    after_burnin = trace.loss_trace[:, config.num_burnin :]
    if after_burnin.shape[1] == 0:
        raise ValueError("the trace has no steps after burn-in: raise num_draws or lower num_burnin")
    series = config.nbeta * (after_burnin.double() - trace.init_loss)  # (chain, step)
    per_chain = series.mean(dim=1)
    if series.shape[1] >= 4:
        ess = effective_sample_size(series, "mean")
        stderr = float(series.std(unbiased=True) / ess.sqrt())  # = mcse_mean(series), without a second ESS pass
        ess, r = float(ess), float(rhat(series))
    else:
        stderr = ess = r = math.nan
    estimate = float(per_chain.mean())
    not_minimum = estimate + 2 * (0.0 if math.isnan(stderr) else stderr) < 0
    if warn and not_minimum:
        where = "the checkpoint" if checkpoint is None else (f"checkpoint step {checkpoint}"
                                                              if isinstance(checkpoint, int) else str(checkpoint))
        warnings.warn(NotAMinimumWarning(
            f"LLC estimate {estimate:.4g} ± {stderr:.2g} at {where} is negative beyond its standard error: the "
            f"chains found lower loss than at w* (L_n(w*) = {trace.init_loss:.4g}), so w* is not a local minimum "
            "and the estimate is no learning coefficient there"), stacklevel=2)
    return LLCEstimate(estimate, stderr, tuple(per_chain.cpu().tolist()), ess, r, not_minimum)


def normal_crossing_llc(exponents: Sequence[int]) -> float:
    """λ of L(w) = Π_i w_i^(2 k_i) at w = 0: min over k_i > 0 of 1/(2 k_i). ``exponents`` are the k_i ≥ 0."""
    if any((not isinstance(k, int)) or k < 0 for k in exponents) or not any(k > 0 for k in exponents):
        raise ValueError(f"exponents = {list(exponents)!r}: accepted values are integers ≥ 0, at least one > 0")
    return min(1.0 / (2 * k) for k in exponents if k > 0)


def regular_llc(num_params: int) -> float:
    """λ = d/2 of a regular model (non-degenerate minimum) with d parameters."""
    if isinstance(num_params, bool) or not isinstance(num_params, int) or num_params < 1:
        raise ValueError(f"num_params = {num_params!r}: accepted values are integers ≥ 1")
    return num_params / 2


def rrr_llc(M: int, H: int, N: int, r: int = 0) -> float:
    """λ of reduced-rank regression y = B·A·x, A ∈ R^{H×M}, B ∈ R^{N×H}, at a true map of rank r ≤ H.

    Aoyagi & Watanabe (2005), main theorem:
      if N + r ≤ M + H, M + r ≤ N + H and H + r ≤ M + N:
          λ = [2(H + r)(M + N) − (M − N)² − (H + r)²] / 8, plus 1/8 when M + H + N + r is odd;
      else if M + H < N + r:  λ = [H·M − H·r + N·r] / 2;
      else if N + H < M + r:  λ = [H·N − H·r + M·r] / 2;
      else (M + N < H + r):   λ = M·N / 2.
    """
    for name, value, low in (("M", M, 1), ("H", H, 1), ("N", N, 1), ("r", r, 0)):
        if not is_int(value, low):
            raise ValueError(f"{name} = {value!r}: accepted values are integers ≥ {low}")
    M, H, N, r = int(M), int(H), int(N), int(r)
    if r > min(H, M, N):
        raise ValueError(f"r = {r}: accepted values are 0 ≤ r ≤ min(M, H, N) = {min(H, M, N)}")
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        value = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        return (value + (1 if (M + H + N + r) % 2 else 0)) / 8
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    return M * N / 2
