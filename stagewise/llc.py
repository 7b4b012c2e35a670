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
from dataclasses import dataclass
from typing import Sequence

from .sampling import SampleTrace


@dataclass(frozen=True)
class LLCEstimate:
    """An LLC estimate: the mean over chains, its standard error, and each chain's value.

    estimate:  mean over chains of λ̂_c = nβ·(mean_t L_c(t) − L_n(w*)) (dimensionless).
    stderr:    standard deviation of the per-chain values / √chains (NaN with one chain).
    per_chain: λ̂_c for each chain.
    """

    estimate: float
    stderr: float
    per_chain: tuple[float, ...]

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "stderr": self.stderr, "per_chain": list(self.per_chain)}


def estimate_llc(trace: SampleTrace) -> LLCEstimate:
    """λ̂ = nβ·(E[L_n] − L_n(w*)) from a :class:`SampleTrace`, using every step after burn-in."""
    config = trace.config
    after_burnin = trace.loss_trace[:, config.num_burnin :]
    if after_burnin.shape[1] == 0:
        raise ValueError("the trace has no steps after burn-in: raise num_draws or lower num_burnin")
    per_chain = config.nbeta * (after_burnin.double().mean(dim=1) - trace.init_loss)
    chains = per_chain.numel()
    stderr = float(per_chain.std(unbiased=True) / math.sqrt(chains)) if chains > 1 else math.nan
    return LLCEstimate(float(per_chain.mean()), stderr, tuple(float(x) for x in per_chain))


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
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} = {value!r}: accepted values are integers ≥ {low}")
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
