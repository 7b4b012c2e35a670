"""Known-answer tests of ``stagewise.llc``: the closed-form learning coefficients and the SGLD estimator.

* ``rrr_llc`` against the rank-0 formula of Aoyagi & Watanabe 2005 (four cases; the book's Notation page,
  book/notation.md, "Learning coefficients with known answers"), against the regular
  answer at full rank (r = H ≤ min(M, N): the rank-H matrices form a manifold of dimension H(M + N − H), so
  λ = H(M + N − H)/2), against a one-hidden-unit model done by hand, and the M ↔ N (transpose) symmetry.
* ``estimate_llc`` on a regular quadratic, where the Euler chain's stationary law is known exactly, with a
  tolerance derived from the sample size; and on the normal crossing w₁²w₂⁴, against the exact finite-nβ
  expectation computed by one-dimensional quadrature. Its standard error is the ESS-based Monte Carlo error
  (checked here against the exact variance of the chain average; its coverage over repeated runs is in
  tests/test_coverage.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from stagewise.diagnostics import ess, mcse_mean, rhat
from stagewise.llc import (
    LLCEstimate,
    estimate_llc,
    normal_crossing_llc,
    regular_llc,
    rrr_llc,
)
from stagewise.sampling import SamplerDivergence, SGLDConfig, sample

DT = torch.float64
Z = 5.0  # width of the statistical checks, in standard deviations


# --------------------------------------------------------------------------------------------------------
# 1. Closed forms


def paper_rank0(M: int, H: int, N: int) -> float:
    """Aoyagi & Watanabe (2005), reduced-rank regression with true map zero (as on the book's Notation page),
    written out independently of the package."""
    if M + H < N:
        return M * H / 2
    if N + H < M:
        return H * N / 2
    if M + N < H:
        return M * N / 2
    value = (2 * M * N + 2 * H * N + 2 * M * H - N**2 - M**2 - H**2) / 8
    return value + (1 / 8 if (M + H + N) % 2 else 0)


GRID = [(M, H, N) for M in range(1, 9) for H in range(1, 9) for N in range(1, 9)]


def test_rrr_rank0_matches_paper_formula_on_a_grid():
    cases = {"M+H<N": 0, "N+H<M": 0, "M+N<H": 0, "else": 0}
    for M, H, N in GRID:
        assert rrr_llc(M, H, N) == pytest.approx(paper_rank0(M, H, N), abs=1e-12), (M, H, N)
        assert rrr_llc(M, H, N, r=0) == rrr_llc(M, H, N)
        key = "M+H<N" if M + H < N else "N+H<M" if N + H < M else "M+N<H" if M + N < H else "else"
        cases[key] += 1
    assert all(count > 20 for count in cases.values()), cases  # every case is exercised
    # Spot values: the paper's toy-like sizes and hand-checked cases.
    assert rrr_llc(2, 2, 2) == 1.5  # (8 + 8 + 8 − 4 − 4 − 4)/8 = 3/2 (even)
    assert rrr_llc(1, 1, 1) == 0.5  # L ∝ a²b²: normal crossing with k = (1, 1), λ = 1/2
    assert rrr_llc(3, 2, 10) == 3.0  # M + H < N: MH/2
    assert rrr_llc(10, 2, 3) == 3.0  # N + H < M: HN/2
    assert rrr_llc(2, 10, 3) == 3.0  # M + N < H: MN/2


def test_rrr_one_hidden_unit_is_min_of_widths_over_two():
    """H = 1, true map 0: L ∝ ‖a‖²‖b‖² with a ∈ R^M, b ∈ R^N. In polar coordinates L = ρ_a²ρ_b² with volume
    ρ_a^(M−1)ρ_b^(N−1), whose zeta function has poles at −M/2 and −N/2, so λ = min(M, N)/2."""
    for M in range(1, 10):
        for N in range(1, 10):
            assert rrr_llc(M, 1, N) == pytest.approx(min(M, N) / 2), (M, N)


def test_rrr_full_rank_is_regular():
    """r = H ≤ min(M, N): λ = dim{rank-H N×M matrices}/2 = H(M + N − H)/2 (for M = N: H(2M − H)/2)."""
    for M in range(1, 9):
        for N in range(1, 9):
            for H in range(1, min(M, N) + 1):
                assert rrr_llc(M, H, N, r=H) == pytest.approx(H * (M + N - H) / 2), (M, H, N)
    for M in range(1, 9):
        for H in range(1, M + 1):
            assert rrr_llc(M, H, M, r=H) == H * (2 * M - H) / 2


def test_rrr_is_symmetric_in_inputs_and_outputs_and_bounded_by_half_the_parameters():
    """Transposing the map (y = BAx ↔ x = AᵀBᵀy) swaps M and N; λ ≤ d/2 with d = H(M + N) parameters."""
    for M, H, N in GRID:
        for r in range(0, min(M, H, N) + 1):
            value = rrr_llc(M, H, N, r)
            assert value == rrr_llc(N, H, M, r), (M, H, N, r)
            assert 0 < value <= H * (M + N) / 2 + 1e-12, (M, H, N, r)


def test_normal_crossing_and_regular_values():
    assert normal_crossing_llc([1, 2]) == 0.25
    assert normal_crossing_llc([1, 1]) == 0.5
    assert normal_crossing_llc([2]) == 0.25
    assert normal_crossing_llc([0, 3]) == pytest.approx(1 / 6)  # k = 0: w₁ does not enter L
    assert normal_crossing_llc((3, 1, 2)) == 1 / 6
    for d in range(1, 20):
        assert regular_llc(d) == d / 2


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: rrr_llc(0, 1, 1), "M"),
        (lambda: rrr_llc(1, 0, 1), "H"),
        (lambda: rrr_llc(1, 1, 0), "N"),
        (lambda: rrr_llc(1.5, 1, 1), "M"),
        (lambda: rrr_llc(2, 2, 2, r=-1), "r"),
        (lambda: rrr_llc(2, 3, 4, r=3), "r"),  # r > min(M, H, N) = 2
        (lambda: rrr_llc(2, 2, 2, r=1.0), "r"),
        (lambda: normal_crossing_llc([]), "exponents"),
        (lambda: normal_crossing_llc([0, 0]), "exponents"),
        (lambda: normal_crossing_llc([1, -1]), "exponents"),
        (lambda: normal_crossing_llc([1.5]), "exponents"),
        (lambda: regular_llc(0), "num_params"),
        (lambda: regular_llc(-3), "num_params"),
        (lambda: regular_llc(2.5), "num_params"),
        (lambda: regular_llc(True), "num_params"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{name} = "), message
    assert "accepted" in message, message


# --------------------------------------------------------------------------------------------------------
# 2. The estimator on a regular quadratic


def half_square(w: torch.Tensor, _batch=None) -> torch.Tensor:
    return 0.5 * (w * w).sum()


@pytest.mark.parametrize("wstar", [[0.0, 0.0, 0.0, 0.0], [0.3, -0.2, 0.1, 0.0]])
def test_estimate_llc_on_a_regular_quadratic(wstar):
    """L(w) = ½‖w‖² in d = 4 dimensions, localization γ around w*.

    The posterior is N(μ, 1/p) per coordinate with p = nβ + γ and μ = γw*/p. The plain-SGLD Euler chain has
    exactly that mean and variance s = 1/(p(1 − εp/4)) (coefficient ρ = 1 − εp/2 per step), so

        E[λ̂] = nβ·(E[L] − L(w*)) = nβ·(½‖μ‖² + ½·d·s − ½‖w*‖²).

    For w* = 0 this is nβ·d·s/2 → nβ·d/(2(nβ + γ)) (the continuous posterior) as ε → 0, and → d/2 = λ as
    nβ/γ → ∞. Writing w = μ + z, L = ½‖μ‖² + μᵀz + ½‖z‖²: the linear part has variance ‖μ‖²s and
    autocorrelation ρ^τ, the quadratic part variance d·s²/2 and autocorrelation ρ^(2τ), uncorrelated. So one
    chain's average of nβL over T steps has variance at most

        nβ²/T · [‖μ‖²·s·(1 + ρ)/(1 − ρ) + (d·s²/2)·(1 + ρ²)/(1 − ρ²)],

    and the mean over C independent chains that divided by C. Burn-in b leaves a bias ≤ nβ·(d·s/2 + |μ|·|w*|)
    ·ρ^b, here < 1e-8.
    """
    d, nbeta, gamma, eps = 4, 100.0, 100.0, 1e-3
    C, T, burnin = 100, 2000, 300
    wstar_np = np.array(wstar)
    p = nbeta + gamma
    rho = 1 - eps * p / 2
    s = 1 / (p * (1 - eps * p / 4))
    mu = gamma * wstar_np / p
    expected = nbeta * (0.5 * mu @ mu + 0.5 * d * s - 0.5 * wstar_np @ wstar_np)
    per_chain_var = nbeta**2 / T * (mu @ mu * s * (1 + rho) / (1 - rho) + d * s**2 / 2 * (1 + rho**2) / (1 - rho**2))
    sd = math.sqrt(per_chain_var / C)
    assert nbeta * (d * s + 1) * rho**burnin < 1e-8

    cfg = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=T // 2, thin=2,
                     num_burnin=burnin, seed=31)
    trace = sample(half_square, torch.tensor(wstar_np, dtype=DT), config=cfg, progress=False)
    est = estimate_llc(trace)
    assert isinstance(est, LLCEstimate)
    assert trace.init_loss == pytest.approx(0.5 * wstar_np @ wstar_np, abs=1e-15)

    # The estimator's arithmetic: every step after burn-in (not only the thinned draws), per chain.
    after = trace.loss_trace[:, burnin:].numpy()
    assert after.shape == (C, T)
    per_chain = nbeta * (after.mean(axis=1) - trace.init_loss)
    np.testing.assert_allclose(est.per_chain, per_chain, rtol=1e-12, atol=1e-12)
    assert est.estimate == pytest.approx(per_chain.mean(), rel=1e-12)
    # The standard error and diagnostics are those of the nβ-scaled loss trace (chain, step).
    series = nbeta * (trace.loss_trace[:, burnin:] - trace.init_loss)
    assert est.stderr == pytest.approx(float(mcse_mean(series)), rel=1e-12)
    assert est.ess == pytest.approx(float(ess(series, "mean")), rel=1e-12)
    assert est.rhat == pytest.approx(float(rhat(series)), rel=1e-12) and est.rhat < 1.01
    assert est.as_dict() == {"estimate": est.estimate, "stderr": est.stderr, "per_chain": list(est.per_chain),
                             "ess": est.ess, "rhat": est.rhat, "not_minimum": bool(expected < 0)}
    # w* away from the minimum (the second case) is flagged: the chains find lower loss than L(w*).

    # The known answer, within the derived tolerance.
    assert abs(est.estimate - expected) < Z * sd, (est.estimate, expected, sd)
    # The reported stderr estimates the same sd. Its relative error is half that of the ESS, whose relative sd is
    # √(2(2M + 1)/(C·T)) for a window of M lags (Sokal; tests/sampling/test_diagnostics.py),
    # M ≈ ln(√(C·T/τ))/(−ln ρ) for the slowest autocorrelation ρ^t (the linear part; ρ² for the quadratic part
    # when w* = 0): about 1.5%.
    slowest = rho if any(wstar) else rho**2
    tau = (1 + slowest) / (1 - slowest)
    window = math.log(math.sqrt(C * T / tau)) / -math.log(slowest)
    rel_sd = math.sqrt(2 * (2 * window + 1) / (C * T)) / 2
    assert abs(est.stderr / sd - 1) < Z * rel_sd, (est.stderr, sd, rel_sd)
    if not any(wstar):
        # Sanity of the setting: the continuous-posterior value is within O(ε) (here 5%) and λ = d/2 = 2 in the
        # limit; the test resolves the O(ε) Euler factor (the continuous value is > 2Z sd away).
        continuous = nbeta * d / (2 * (nbeta + gamma))
        assert continuous == 1.0 and regular_llc(d) == 2.0
        assert abs(expected - continuous) > 2 * Z * sd


def test_estimate_llc_single_chain_and_empty_trace():
    """One chain: the ESS-based standard error needs no second chain (the chain is split in half). Fewer than 4
    steps after burn-in: an estimate without a standard error (NaN)."""
    cfg = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=10.0, num_chains=1, num_draws=20, seed=0)
    est = estimate_llc(sample(half_square, torch.zeros(2, dtype=DT), config=cfg, progress=False))
    assert len(est.per_chain) == 1 and est.estimate == est.per_chain[0]
    assert math.isfinite(est.stderr) and est.stderr > 0 and 0 < est.ess and math.isfinite(est.rhat)
    short = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=10.0, num_chains=2, num_draws=3, seed=0)
    est = estimate_llc(sample(half_square, torch.zeros(2, dtype=DT), config=short, progress=False))
    assert math.isfinite(est.estimate) and math.isnan(est.stderr) and math.isnan(est.ess)
    # A run that diverged during burn-in leaves no step after burn-in to average: a ValueError, not a NaN.
    bad = SGLDConfig(step_size=0.1, nbeta=100.0, localization=1.0, num_chains=2, num_draws=10, num_burnin=100,
                     seed=0)
    with pytest.raises(SamplerDivergence) as info:
        sample(lambda w, _b=None: (w**4).sum(), torch.ones(2, dtype=DT), config=bad, progress=False)
    assert info.value.step < 100
    with pytest.raises(ValueError, match="burn-in"):
        estimate_llc(info.value.trace)


# --------------------------------------------------------------------------------------------------------
# 3. The estimator on a normal crossing, against quadrature


def normal_crossing_expectation(nbeta: float, gamma: float) -> float:
    """E[nβ·L] for L = w₁²w₂⁴ under p(w) ∝ exp(−nβL − (γ/2)‖w‖²), by 1-D quadrature.

    Given w₂, w₁ ~ N(0, 1/(2a)) with a = nβw₂⁴ + γ/2, so E[nβL | w₂] = nβw₂⁴/(2a), and integrating w₁ out
    leaves the marginal of w₂ ∝ √(π/a)·exp(−γw₂²/2). Both integrands are even; the mass sits at
    |w₂| ~ nβ^(−1/4), which is used as a break point.
    """
    scale = nbeta**-0.25

    def a(x):
        return nbeta * x**4 + gamma / 2

    def marginal(x):
        return math.sqrt(math.pi / a(x)) * math.exp(-gamma * x * x / 2)

    def weighted(x):
        return nbeta * x**4 / (2 * a(x)) * marginal(x)

    pieces = [0.0, scale, 10 * scale, 100 * scale, math.inf]

    def integral(f):
        return sum(integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
                   for lo, hi in zip(pieces[:-1], pieces[1:]))

    return integral(weighted) / integral(marginal)


def test_normal_crossing_quadrature_tends_to_one_quarter():
    """The quadrature itself: E[nβL] → λ = 1/4 as nβ → ∞, with the next pole (1/2) giving a correction
    ∝ nβ^(−1/4)."""
    values = {nb: normal_crossing_expectation(nb, 1.0) for nb in (1e4, 1e8, 1e16)}
    assert values[1e4] == pytest.approx(0.2358, abs=1e-4)
    assert abs(values[1e16] - 0.25) < 3e-4
    gap = {nb: 0.25 - v for nb, v in values.items()}
    assert gap[1e4] / gap[1e8] == pytest.approx(10, rel=0.05)  # nβ^(−1/4) scaling of the gap
    # A Monte-Carlo check of the conditional formula at one w₂: E[nβ w₁² w₂⁴] with w₁ ~ N(0, 1/(2a)).
    w2, nb, g = 0.12, 1e4, 1.0
    a = nb * w2**4 + g / 2
    w1 = np.random.default_rng(0).normal(0, math.sqrt(1 / (2 * a)), 400_000)
    assert np.mean(nb * w1**2 * w2**4) == pytest.approx(nb * w2**4 / (2 * a), rel=0.01)


def crossing_12(w: torch.Tensor, _batch=None) -> torch.Tensor:
    return w[0] ** 2 * w[1] ** 4


@pytest.mark.slow
def test_estimate_llc_on_normal_crossing_matches_quadrature():
    """L = w₁²w₂⁴ at w* = 0, γ = 1, nβ = 1e4, plain SGLD ε = 1e-4, 32 chains × 4000 draws after 1000 burn-in.

    The exact finite-nβ answer is E[nβL] = 0.2358 (quadrature above; λ = 1/4 only as nβ → ∞). The O(ε) Euler
    bias is small: given w₂ the Euler chain inflates the w₁ variance by 1/(1 − εa/2), a = nβw₂⁴ + γ/2, and
    averaging that inflation of E[nβL | w₂] over the w₂ marginal gives ≈ 0.007, under half the stderr. The
    chains are short against the slowest relaxation (≈ 2/(εγ) = 20,000 steps along the valleys), which the
    diagnostics report: R̂ ≈ 1.06 and an ESS of ≈ 860 of 128,000 steps (measured; the ESS-based stderr was
    0.0169, the former across-chain one 0.0154). The check is |error| < 4 stderr.
    """
    nbeta, gamma = 1e4, 1.0
    exact = normal_crossing_expectation(nbeta, gamma)
    cfg = SGLDConfig(step_size=1e-4, nbeta=nbeta, localization=gamma, num_chains=32, num_draws=4000,
                     num_burnin=1000, seed=0)
    trace = sample(crossing_12, torch.zeros(2, dtype=DT), config=cfg, progress=False)
    est = estimate_llc(trace)
    assert trace.init_loss == 0.0
    assert 0.005 < est.stderr < 0.04, est.stderr  # a stderr of the expected size (not a vacuous bound)
    assert est.rhat > 1.01 and est.ess < 0.05 * 32 * 4000  # the diagnostics see the slow mixing
    assert abs(est.estimate - exact) < 4 * est.stderr, (est.estimate, est.stderr, exact)
    # It is a singular value: far from the regular answer d/2 = 1 and from the k = (1, 1) value 1/2.
    assert est.estimate < normal_crossing_llc([1, 1]) - 10 * est.stderr
