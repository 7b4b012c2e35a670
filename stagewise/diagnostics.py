"""Sampler diagnostics over recorded traces: R-hat, effective sample size, and a short settling report.

These help choose ε, γ and nβ: a chain whose loss trace still drifts after burn-in, or per-sample losses with
R-hat well above 1 or a tiny effective sample size, mean the BIF from that run is not yet trustworthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sampling import SampleTrace


def _as_chains(x: torch.Tensor) -> torch.Tensor:
    """(chain, draw, ...) → (chain, draw, K) in float64."""
    if x.dim() < 2:
        raise ValueError(f"expected an array shaped (chain, draw, ...); got {tuple(x.shape)}")
    return x.reshape(x.shape[0], x.shape[1], -1).double()


def rhat(x: torch.Tensor) -> torch.Tensor:
    """Split-R̂ (Gelman et al.) of each quantity in a (chain, draw, ...) array; ≈ 1 when chains agree.

    Each chain is split in half (so drift within a chain also raises R̂). Returns shape x.shape[2:].
    """
    y = _as_chains(x)
    half = y.shape[1] // 2
    if half < 2:
        raise ValueError("R-hat needs at least 4 draws per chain")
    y = torch.cat([y[:, :half], y[:, -half:]], dim=0)  # (2C, half, K)
    n = half
    chain_means = y.mean(1)
    within = y.var(1, unbiased=True).mean(0)
    between = n * chain_means.var(0, unbiased=True)
    var_plus = (n - 1) / n * within + between / n
    out = torch.sqrt(var_plus / within)
    return out.reshape(x.shape[2:])


def ess(x: torch.Tensor) -> torch.Tensor:
    """Effective sample size of each quantity in a (chain, draw, ...) array, pooled over chains.

    Uses the chain-averaged autocorrelation (computed by FFT) summed over lags with Geyer's initial positive
    sequence. Returns shape x.shape[2:]; ≈ chains × draws for independent draws (more for anti-correlated ones).
    """
    y = _as_chains(x)
    c, n, k = y.shape
    if n < 4:
        raise ValueError("ESS needs at least 4 draws per chain")
    centred = y - y.mean(1, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=size, dim=1)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=size, dim=1)[:, :n] / n  # (C, n, K)
    var_within = acov[:, 0].mean(0)
    chain_means = y.mean(1)
    var_plus = (n - 1) / n * var_within + (chain_means.var(0, unbiased=True) if c > 1 else 0)
    rho = 1 - (var_within - acov.mean(0)) / var_plus  # (n, K)
    rho[0] = 1.0
    result = torch.empty(k, dtype=torch.float64)
    for q in range(k):
        r = rho[:, q]
        pairs = r[: (n // 2) * 2].reshape(-1, 2).sum(1)  # Γ_t = ρ_2t + ρ_2t+1
        positive = pairs > 0
        stop = int(torch.argmin(positive.int())) if not bool(positive.all()) else len(pairs)
        gamma = pairs[:stop]
        # monotone sequence: each Γ_t no larger than the one before
        gamma = torch.cummin(gamma, 0).values if len(gamma) else gamma
        tau = -1 + 2 * gamma.sum() if len(gamma) else torch.tensor(1.0, dtype=torch.float64)
        result[q] = c * n / max(float(tau), 1.0 / math.log10(max(c * n, 10)))
    return result.reshape(x.shape[2:])


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
    both halves have the same law: Var(mean₂ − mean₁) ≈ 2·var/ESS, with var and ESS taken from the second
    half. (The first half is where a leftover transient sits; measured on it, the transient would inflate its
    own error bar and hide itself.) |z| > ``z_threshold`` → not settled.
    """
    loss = trace.loss_trace[:, trace.config.num_burnin :].double()
    half = loss.shape[1] // 2
    if half < 4:
        raise ValueError("settling_report needs at least 8 steps after burn-in")
    first, second = loss[:, :half], loss[:, half : 2 * half]
    reports = []
    for c in range(loss.shape[0]):
        a, b = first[c : c + 1, :, None], second[c : c + 1, :, None]
        var = 2 * b.var() / ess(b).clamp(min=1)
        z = float((b.mean() - a.mean()) / var.sqrt().clamp(min=1e-300))
        reports.append(ChainReport(c, float(a.mean()), float(b.mean()), z, abs(z) <= z_threshold))
    return reports


def summarize(trace: SampleTrace, *, z_threshold: float = 4.0) -> str:
    """A short printable summary: loss per chain, R̂ and ESS of the recorded losses, unsettled chains."""
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
    if trace.losses is not None:
        r = rhat(trace.losses)
        e = ess(trace.losses)
        lines.append(
            f"recorded losses: R-hat max {float(r.max()):.3f} (median {float(r.median()):.3f}); "
            f"ESS min {float(e.min()):.0f} (median {float(e.median()):.0f}) of {trace.losses.shape[0] * trace.losses.shape[1]}"
        )
    if unsettled:
        lines.append(f"WARNING: chain(s) {unsettled} did not settle (loss drift |z| > {z_threshold:g})")
    else:
        lines.append("all chains settled (no loss drift after burn-in)")
    return "\n".join(lines)
