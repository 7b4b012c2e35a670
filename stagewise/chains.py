"""Statistics of MCMC chains over recorded traces: R̂, effective sample sizes, Monte Carlo standard errors, settling.

These help choose ε, γ and nβ: a chain whose loss trace still drifts after burn-in, or per-sample losses with
R̂ well above 1 or a small effective sample size, mean the BIF from that run is not yet trustworthy.

The definitions are those of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R̂ for assessing convergence of MCMC" (Bayesian Analysis 16(2)), as
implemented by ArviZ (arviz-stats), against which tests/sampling/test_diagnostics.py checks them:

- every chain is split in half, so drift within a chain counts like disagreement between chains;
- *rank normalization*: the pooled draws of each quantity are replaced by their normal scores
  Φ⁻¹((rank − 3/8)/(S + 1/4)) (average ranks for ties), which makes R̂ and the bulk ESS meaningful for
  heavy-tailed draws;
- the multi-chain ESS uses ρ̂_t = 1 − (W − mean_c acov_c(t))/var⁺ (var⁺ includes the between-chain variance,
  so chains that disagree lower the ESS) summed with Geyer's initial monotone sequence.

Everything is computed with torch on the input's device, vectorized over quantities and lags (no Python loop
over draws); results stay on that device.

These errors are Monte Carlo errors only: the sampler's own O(ε) step-size bias is measured by
:func:`stagewise.diagnostics.step_size_check`. The estimators (:mod:`stagewise.llc`, :mod:`stagewise.influence`)
import these statistics from here; users find them in :mod:`stagewise.diagnostics` with the step-size checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only for annotations: the estimators here need nothing from the sampler
    from .sampling import SampleTrace

__all__ = ["ChainReport", "ess", "mcse_mean", "rhat", "settling_report", "summarize"]

ESS_METHODS = ("bulk", "tail", "mean")
RHAT_METHODS = ("rank", "split")


def _as_chains(x: torch.Tensor) -> torch.Tensor:
    """(chain, draw, ...) → (chain, draw, K) in float64."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected an array shaped (chain, draw, ...); got {shape}")
    if x.shape[1] < 4:
        raise ValueError(f"x has {x.shape[1]} draws per chain: accepted arrays have at least 4 draws per chain")
    return x.reshape(x.shape[0], x.shape[1], -1).double()


def _split(y: torch.Tensor) -> torch.Tensor:
    """(C, N, K) → (2C, N//2, K): first and last halves of each chain (the middle draw of an odd N is dropped)."""
    half = y.shape[1] // 2
    return torch.cat([y[:, :half], y[:, -half:]], dim=0)


def _sorted_pooled(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool chains × draws of each quantity: (C, N, K) → sorted values (S, K) and their order (S, K)."""
    return torch.sort(y.reshape(-1, y.shape[2]), dim=0)


def _z_scale(y: torch.Tensor) -> torch.Tensor:
    """Rank-normalize each quantity over all its pooled draws: normal scores of the average ranks (Blom, c = 3/8)."""
    c, n, k = y.shape
    s = c * n
    values, order = _sorted_pooled(y)
    pos = torch.arange(s, device=y.device, dtype=torch.float64)[:, None].expand(s, k)
    differs = values[1:] != values[:-1]
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[1:] = differs
    ends = torch.ones_like(values, dtype=torch.bool)
    ends[:-1] = differs
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(0).values  # first position of each tie run
    last = torch.where(ends, pos, torch.full_like(pos, s - 1)).flip(0).cummin(0).values.flip(0)
    ranks = torch.empty_like(values).scatter_(0, order, (first + last) / 2 + 1)
    return torch.special.ndtri((ranks - 0.375) / (s + 0.25)).reshape(c, n, k)


def _median(y: torch.Tensor) -> torch.Tensor:
    """Median of each quantity over its pooled draws (mean of the two middle values for an even count): (K,)."""
    values, _ = _sorted_pooled(y)
    s = values.shape[0]
    return (values[(s - 1) // 2] + values[s // 2]) / 2


def _quantile(y: torch.Tensor, prob: float) -> torch.Tensor:
    """Linearly interpolated quantile of each quantity over its pooled draws (numpy's default): (K,)."""
    values, _ = _sorted_pooled(y)
    position = prob * (values.shape[0] - 1)
    lo = math.floor(position)
    hi = min(lo + 1, values.shape[0] - 1)
    return values[lo] + (position - lo) * (values[hi] - values[lo])


def _autocov(y: torch.Tensor) -> torch.Tensor:
    """Autocovariance of each chain at every lag (divisor N), by FFT: (C, N, K) → (C, K, N).

    The draws are moved to the last, contiguous axis first: FFTs along it are several times faster.
    """
    n = y.shape[1]
    centred = (y - y.mean(1, keepdim=True)).transpose(1, 2).contiguous()
    size = 1 << (2 * n - 1).bit_length()  # zero padding ≥ 2N − 1: the linear, not circular, autocovariance
    spectrum = torch.fft.rfft(centred, n=size, dim=-1)
    return torch.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size, dim=-1)[..., :n] / n


def _ess_chains(y: torch.Tensor) -> torch.Tensor:
    """Multi-chain ESS of each quantity of a (M, n, K) array (chains as given, not split), shape (K,).

    Geyer's initial positive sequence over the pairs P_k = ρ̂_2k + ρ̂_2k+1 (stopping at the first P_k ≤ 0 or at
    lag n − 3), made monotone (P_k ← min(P_k, P_k−1)); the first dropped pair's even term is kept if positive.
    τ̂ = −1 + 2·Σ P_k + that term, bounded below by 1/log10(M·n); ESS = M·n/τ̂. A constant quantity has ESS M·n.
    """
    m, n, k = y.shape
    acov = _autocov(y).mean(0).T  # (n, K): averaged over chains
    mean_var = acov[0] * n / (n - 1)
    var_plus = mean_var * (n - 1) / n
    if m > 1:
        var_plus = var_plus + y.mean(1).var(0, unbiased=True)
    rho = 1 - (mean_var - acov) / var_plus  # (n, K)
    rho[0] = 1.0
    kmax = max((n - 3) // 2, 0)  # the last pair the sequence may look at (lag n − 3)
    pairs = rho[: 2 * kmax + 2].reshape(kmax + 1, 2, k).sum(1)  # (kmax + 1, K)
    nonpositive = pairs <= 0
    last_pair = torch.where(nonpositive.any(0), nonpositive.int().argmax(0),
                            torch.full((k,), kmax, dtype=torch.long, device=y.device))
    kept = torch.arange(kmax + 1, device=y.device)[:, None] < last_pair  # pairs 0 … last_pair − 1
    monotone = torch.cummin(pairs, 0).values
    even = rho.gather(0, (2 * last_pair)[None]).squeeze(0)
    final = torch.where((pairs.gather(0, last_pair[None]).squeeze(0) >= 0) | (even > 0), even,
                        torch.zeros_like(even))
    tau = -1 + 2 * torch.where(kept, monotone, torch.zeros_like(monotone)).sum(0) + final
    total = m * n
    tau = tau.clamp(min=1 / math.log10(total))
    result = total / tau
    constant = (y.amax((0, 1)) - y.amin((0, 1))) < torch.finfo(torch.float64).resolution
    result = torch.where(constant, torch.full_like(result, float(total)), result)
    return torch.where(torch.isnan(rho).any(0) & ~constant, torch.full_like(result, math.nan), result)


def ess(x: torch.Tensor, method: str = "bulk", *, prob: float = 0.05) -> torch.Tensor:
    """Effective sample size of each quantity in a (chain, draw, ...) array (Vehtari et al. 2021), shape x.shape[2:].

    method "bulk" (default): ESS of the rank-normalized split chains, the sampling efficiency of the bulk
    (means, medians) that is robust to heavy tails. "tail": the smaller of the ESS of the indicators
    x ≤ q_prob and x ≤ q_(1−prob) (default the 5% and 95% quantiles), the efficiency of interval ends.
    "mean": ESS of the split chains on the original scale, the one that sets the Monte Carlo error of the mean
    (:func:`mcse_mean`). All are ≈ chains × draws for independent draws and smaller for autocorrelated or
    disagreeing chains. (Before rank normalization was added, ``ess(x)`` was the unsplit "mean" variant.)
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method = {method!r}: accepted values are " + ", ".join(map(repr, ESS_METHODS)))
    if method == "tail" and not (isinstance(prob, (int, float)) and 0 < prob < 1):
        raise ValueError(f"prob = {prob!r}: accepted values are numbers in (0, 1)")
    y = _as_chains(x)
    if method == "bulk":
        out = _ess_chains(_z_scale(_split(y)))
    elif method == "mean":
        out = _ess_chains(_split(y))
    else:
        low, high = sorted((prob, 1 - prob))
        out = torch.minimum(*[_ess_chains(_split((y <= _quantile(y, p)).double())) for p in (low, high)])
    return out.reshape(x.shape[2:])


def mcse_mean(x: torch.Tensor) -> torch.Tensor:
    """Monte Carlo standard error of the mean over chains × draws of each quantity, shape x.shape[2:].

    sd(pooled draws) / √ESS_mean (:func:`ess` with method "mean"; Vehtari et al. 2021, as ArviZ's
    ``mcse(method="mean")``): the within-chain autocorrelation and the between-chain disagreement both enter,
    and it is defined for a single chain too.
    """
    y = _as_chains(x)
    sd = y.reshape(-1, y.shape[2]).std(0, unbiased=True)
    return (sd / _ess_chains(_split(y)).sqrt()).reshape(x.shape[2:])


def _rhat_chains(y: torch.Tensor) -> torch.Tensor:
    """R̂ of (M, n, K) chains as given: √((n − 1)/n + B/(n·W)), B = n·Var(chain means), W = mean chain variance."""
    n = y.shape[1]
    between = n * y.mean(1).var(0, unbiased=True)
    within = y.var(1, unbiased=True).mean(0)
    return torch.sqrt((between / within + n - 1) / n)


def rhat(x: torch.Tensor, method: str = "rank") -> torch.Tensor:
    """R̂ of each quantity in a (chain, draw, ...) array; ≈ 1 when the chains agree. Returns shape x.shape[2:].

    method "rank" (default, Vehtari et al. 2021): the larger of the split-R̂ of the rank-normalized draws (bulk)
    and of the rank-normalized |x − median| (tails, catches chains with equal means but different spreads).
    "split": the classic split-R̂ on the original scale (Gelman et al., BDA3 §11.4; the earlier default).
    Both split each chain in half, so drift within one chain also raises R̂.
    """
    if method not in RHAT_METHODS:
        raise ValueError(f"method = {method!r}: accepted values are " + ", ".join(map(repr, RHAT_METHODS)))
    halves = _split(_as_chains(x))
    if method == "split":
        out = _rhat_chains(halves)
    else:
        bulk = _rhat_chains(_z_scale(halves))
        tail = _rhat_chains(_z_scale((halves - _median(halves)).abs()))
        out = torch.maximum(bulk, tail)
    return out.reshape(x.shape[2:])


@dataclass(frozen=True)
class ChainReport:
    """Per-chain settling check of the training-loss trace after burn-in."""

    chain: int
    first_half_mean: float
    second_half_mean: float
    drift_z: float
    settled: bool


def settling_report(trace: SampleTrace, *, z_threshold: float = 4.0) -> list[ChainReport]:
    """Flag chains whose loss still drifts after burn-in.

    For each chain, compare the mean loss of the first and second halves of the post-burn-in steps; the
    difference is scaled by its standard error under the null hypothesis that the chain is stationary, when
    both halves have the same law: Var(mean₂ − mean₁) ≈ 2·var/ESS, with var and ESS (of that chain alone, unsplit)
    taken from the second half. (The first half is where a leftover transient sits; measured on it, the
    transient would inflate its own error bar and hide itself.) |z| > ``z_threshold`` → not settled.
    """
    loss = trace.loss_trace[:, trace.config.num_burnin :].double()
    half = loss.shape[1] // 2
    if half < 4:
        raise ValueError("settling_report needs at least 8 steps after burn-in")
    first, second = loss[:, :half], loss[:, half : 2 * half]
    # Each chain on its own, unsplit: (chain, draw) → one "chain" of draws with the chains as quantities.
    single = _ess_chains(second.T[None]).clamp(min=1)  # (C,)
    error = (2 * second.var(1, unbiased=True) / single).sqrt().clamp(min=1e-300)
    z = (second.mean(1) - first.mean(1)) / error
    rows = torch.stack([first.mean(1), second.mean(1), z], 1).cpu().tolist()
    return [ChainReport(c, a, b, zc, abs(zc) <= z_threshold) for c, (a, b, zc) in enumerate(rows)]


def summarize(trace: SampleTrace, *, z_threshold: float = 4.0) -> str:
    """A short printable summary: loss per chain, R̂ and bulk/tail ESS of the recorded losses, unsettled chains."""
    lines = [
        f"{trace.num_chains} chains × {trace.config.num_draws} draws (burn-in {trace.config.num_burnin}, "
        f"ε = {trace.config.step_size:g}, γ = {trace.config.localization:g}, nβ = {trace.config.nbeta:g}, "
        f"{trace.config.preconditioner})"
    ]
    reports = settling_report(trace, z_threshold=z_threshold)
    unsettled = [r.chain for r in reports if not r.settled]
    means = sorted(r.second_half_mean for r in reports)
    lines.append(
        f"mean loss after burn-in across chains: min {means[0]:.4g}, median {means[len(means) // 2]:.4g}, "
        f"max {means[-1]:.4g}"
    )
    if trace.losses is not None and trace.losses.shape[1] >= 4:
        r = rhat(trace.losses).cpu()
        bulk = ess(trace.losses, "bulk").cpu()
        tail = ess(trace.losses, "tail").cpu()
        total = trace.losses.shape[0] * trace.losses.shape[1]
        lines.append(
            f"recorded losses: rank-normalized split R-hat max {float(r.max()):.3f} (median {float(r.median()):.3f}); "
            f"bulk ESS min {float(bulk.min()):.0f} (median {float(bulk.median()):.0f}), tail ESS min "
            f"{float(tail.min()):.0f} (median {float(tail.median()):.0f}) of {total}"
        )
    if unsettled:
        lines.append(f"WARNING: chain(s) {unsettled} did not settle (loss drift |z| > {z_threshold:g})")
    else:
        lines.append("all chains settled (no loss drift after burn-in)")
    return "\n".join(lines)
