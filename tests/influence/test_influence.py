"""Known-answer tests of the influence estimators, ``stagewise.influence``.

What is checked, and against what:

* The exact Gaussian case (the book's Notation page, book/notation.md, "The BIF as a derivative, and an exact
  case"). For ℓ_i(w) = ½(y_i − x_iᵀw)² and a Gaussian law of w (the localized
  posterior of a linear model: precision P = (nβ/n)·XᵀX + γI, mean μ = P⁻¹((nβ/n)·Xᵀy + γw*)), the residuals
  r = y − Xw are Gaussian with mean m = y − Xμ and covariance c = X·Cov(w)·Xᵀ, and Isserlis' theorem gives

      Cov(ℓ_i, ℓ_j) = ½·c_ij² + m_i·m_j·c_ij          (exact),

  so BIF = −Cov is known. The closed form is itself checked against Gauss–Hermite quadrature (w = μ + L·z with
  z ~ N(0, I₃); a tensor rule with 5 nodes per dimension integrates every polynomial of degree ≤ 9 in each z_k
  exactly, and all moments used here have degree ≤ 8).

* Tolerances (derived, not tuned). For N iid draws the unbiased sample covariance has the exact variance

      Var(Ĉ_ij) = (μ₂₂ − C_ij²)/N + (C_ii·C_jj + C_ij²)/(N(N − 1)),     μ₂₂ = E[u_i²·u_j²],  u = ℓ − E ℓ,

  with the fourth moments μ₂₂ from the same exact quadrature, and E‖Ĉ − C‖_F² = Σ_ij Var(Ĉ_ij). For SGLD draws
  (plain, full batch) the chain is exactly Gaussian AR(1) in the eigenbasis of P (tests/sampling/):
  z_k(t+1) = ρ_k·z_k(t) + noise with ρ_k = 1 − εp_k/2 and stationary variance s_k = 1/(p_k(1 − εp_k/4)). Expanding
  f = u_i·u_j in Hermite polynomials of the standardized z, f − E f = Σ_α a_α He_α(z), its lag-τ autocovariance is
  Σ_α a_α²·α!·(ρ^α)^τ, so the long-run variance of f is exactly V_ij = Σ_α a_α²·α!·(1 + ρ^α)/(1 − ρ^α) (ρ^α =
  Π_k ρ_k^α_k), and Var(Ĉ_ij) ≤ V_ij/(C·N) for C independent stationary chains of N draws (every autocovariance
  is positive, so the finite-N sum is smaller). The centring at the pooled mean adds a bias (C_ij − L_ij)/(C·N − 1)
  with L the long-run covariance of u, computed the same way. Each entry is checked within Z = 5 standard
  deviations (plus that bias); the Frobenius norm within Z·√(E‖Ĉ − C‖²): ‖Ĉ − C‖² is close to a weighted sum of
  χ²₁ variables, whose tail beyond 25× its mean is largest when one weight carries everything (a single χ²₁:
  probability 6e-7).

* Sign convention: BIF(i, j) = ∂E[ℓ_j]/∂β_i = −Cov(ℓ_i, ℓ_j), checked by differentiating the exact Gaussian
  posterior's E[ℓ_j] in the weight of sample i, and by reweighting a fixed set of draws.

* Group influence by bilinearity, standard errors against the spread over independent replicates, the damped
  classical IF against hand computation and retraining, the regular-model relation nβ·BIF ≈ IF(damping γ/nβ),
  and the checkpoint trajectory against direct calls.

Losses are written with elementwise products rather than matmuls (cheaper under vmap over many chains).
"""

from __future__ import annotations

import itertools
import math
import resource
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss, hermeval

from stagewise.diagnostics import mcse_mean
from stagewise.influence import (
    InfluenceTrajectory,
    bif,
    bif_stderr,
    bif_trajectory,
    classical_influence,
    group_bif,
    group_bif_stderr,
    token_bif,
)
from stagewise.sampling import SamplerDivergence, SampleTrace, SGLDConfig, sample

DT = torch.float64
Z = 5.0  # the width of every statistical check, in standard deviations


# --------------------------------------------------------------------------------------------------------
# The linear model and its exact answers


def regression_problem(n: int = 8, d: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT)[:d] + torch.randn(n, generator=g, dtype=DT)
    return X, y


def regression_loss(w: torch.Tensor, batch) -> torch.Tensor:
    X, y = batch
    return 0.5 * (y - (X * w).sum(-1)) ** 2  # per-sample losses, shape (batch,)


def localized_posterior(X: np.ndarray, y: np.ndarray, nbeta: float, gamma: float, wstar: np.ndarray):
    """Precision P = (nβ/n)XᵀX + γI and mean μ of p(w) ∝ exp(−nβ·L_n(w) − (γ/2)‖w − w*‖²)."""
    n, d = X.shape
    P = nbeta / n * X.T @ X + gamma * np.eye(d)
    mu = np.linalg.solve(P, nbeta / n * X.T @ y + gamma * wstar)
    return P, mu


def closed_form_cov(X: np.ndarray, y: np.ndarray, mu: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Cov(ℓ_i, ℓ_j) = ½c_ij² + m_i m_j c_ij for w ~ N(μ, S) (module docstring)."""
    m = y - X @ mu
    c = X @ S @ X.T
    return 0.5 * c**2 + np.outer(m, m) * c


def gauss_hermite(d: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss–Hermite rule for z ~ N(0, I_d): nodes (k^d, d), weights (k^d,) summing to 1."""
    x, w = hermegauss(k)
    w = w / math.sqrt(2 * math.pi)
    nodes = np.array(list(itertools.product(x, repeat=d)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=d))), axis=1)
    return nodes, weights


def loss_moments(m: np.ndarray, B: np.ndarray):
    """ℓ = ½(m + Bz)², z ~ N(0, I): exact E ℓ, Cov(ℓ) and μ₂₂[i, j] = E[u_i² u_j²] (u = ℓ − E ℓ)."""
    nodes, weights = gauss_hermite(B.shape[1])
    loss = 0.5 * (m + nodes @ B.T) ** 2
    u = loss - weights @ loss
    cov = (weights[:, None] * u).T @ u
    mu22 = (weights[:, None] * u**2).T @ u**2
    return weights @ loss, cov, mu22


def iid_cov_variance(cov: np.ndarray, mu22: np.ndarray, N: int) -> np.ndarray:
    """Exact Var(Ĉ_ij) of the unbiased sample covariance from N iid draws (module docstring)."""
    v = np.diag(cov)
    return (mu22 - cov**2) / N + (np.outer(v, v) + cov**2) / (N * (N - 1))


def long_run_moments(m: np.ndarray, B: np.ndarray, rho: np.ndarray):
    """For ℓ = ½(m + Bz)² with z_k independent stationary Gaussian AR(1) chains (coefficients ρ_k, unit variance):
    Cov(ℓ), the long-run variance V_ij = Σ_τ Cov(f_ij(t), f_ij(t + τ)) of f_ij = u_i·u_j, and the long-run
    covariance L_ij = Σ_τ Cov(u_i(t), u_j(t + τ)), by Hermite expansion (module docstring; f has degree 4, u
    degree 2, so |α| ≤ 4 and the quadrature of f·He_α, degree ≤ 8, is exact)."""
    d = B.shape[1]
    nodes, weights = gauss_hermite(d)
    loss = 0.5 * (m + nodes @ B.T) ** 2
    u = loss - weights @ loss
    n = len(m)
    f = (u[:, :, None] * u[:, None, :]).reshape(len(weights), n * n)
    f = f - weights @ f
    V = np.zeros(n * n)
    L = np.zeros((n, n))
    for alpha in itertools.product(range(5), repeat=d):
        degree = sum(alpha)
        if degree == 0 or degree > 4:
            continue
        he = np.prod([hermeval(nodes[:, k], [0] * a + [1]) for k, a in enumerate(alpha)], axis=0)
        norm = float(np.prod([math.factorial(a) for a in alpha]))  # E[He_α²] = α!
        r = float(np.prod(rho ** np.array(alpha)))
        gain = (1 + r) / (1 - r)  # Σ_τ r^|τ|
        coef_f = (weights * he) @ f / norm
        V += coef_f**2 * norm * gain
        if degree <= 2:
            coef_u = (weights * he) @ u / norm
            L += np.outer(coef_u, coef_u) * norm * gain
    return (weights[:, None] * u).T @ u, V.reshape(n, n), L


# Shared data (n = 8 samples, d = 3 features) and posterior settings.
X_T, Y_T = regression_problem()
X_NP, Y_NP = X_T.numpy(), Y_T.numpy()
NBETA, GAMMA = 20.0, 5.0
WSTAR_NP = np.array([1.0, 0.0, -1.0])  # the checkpoint, away from the least-squares fit


def gaussian_draws(mu: np.ndarray, S: np.ndarray, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Exact draws of w ~ N(μ, S) via torch.distributions.MultivariateNormal, shape (*shape, d)."""
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the global generator's state
        torch.manual_seed(seed)
        law = torch.distributions.MultivariateNormal(torch.tensor(mu), covariance_matrix=torch.tensor(S))
        return law.sample(shape)


def losses_at(w: torch.Tensor, X: torch.Tensor = X_T, y: torch.Tensor = Y_T) -> torch.Tensor:
    """Per-sample losses at draws w (..., d) → (..., n)."""
    return 0.5 * (y - w @ X.T) ** 2


# --------------------------------------------------------------------------------------------------------
# 1. Exact Gaussian check


def test_closed_form_covariance_of_squared_residuals_matches_quadrature():
    """½c² + mmc (Isserlis) against exact Gauss–Hermite quadrature of the same Gaussian: equal to rounding."""
    P, mu = localized_posterior(X_NP, Y_NP, NBETA, GAMMA, WSTAR_NP)
    S = np.linalg.inv(P)
    m = Y_NP - X_NP @ mu
    mean, cov, _ = loss_moments(m, -X_NP @ np.linalg.cholesky(S))
    exact = closed_form_cov(X_NP, Y_NP, mu, S)
    np.testing.assert_allclose(cov, exact, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mean, 0.5 * (m**2 + np.diag(X_NP @ S @ X_NP.T)), rtol=1e-12)
    assert np.all(np.abs(m) > 0.05) and np.abs(exact - exact.T).max() < 1e-15  # non-trivial, symmetric


def test_bif_of_exact_gaussian_draws_matches_closed_form():
    """Estimator only: 4 chains × 10,000 iid draws of w from the exact posterior (N = 40,000 pooled).

    Every entry |−BIF_ij − C_ij| < Z·√Var(Ĉ_ij) (exact iid variance, module docstring); relative Frobenius error
    < Z·√(E‖Ĉ − C‖²)/‖C‖ (≈ 5 × 1.2% here). Query losses on new points use the same formula with the
    train × query cross-covariance.
    """
    P, mu = localized_posterior(X_NP, Y_NP, NBETA, GAMMA, WSTAR_NP)
    S = np.linalg.inv(P)
    C, T = 4, 10_000
    N = C * T
    w = gaussian_draws(mu, S, (C, T), seed=0)
    train = losses_at(w)
    assert train.shape == (C, T, 8) and train.dtype == DT
    estimate = bif(train).numpy()
    assert estimate.shape == (8, 8)

    exact = closed_form_cov(X_NP, Y_NP, mu, S)
    _, cov, mu22 = loss_moments(Y_NP - X_NP @ mu, -X_NP @ np.linalg.cholesky(S))
    var = iid_cov_variance(cov, mu22, N)
    assert np.all(np.abs(-estimate - exact) < Z * np.sqrt(var))
    frobenius_bound = Z * math.sqrt(var.sum()) / np.linalg.norm(exact)
    assert frobenius_bound < 0.08
    assert np.linalg.norm(-estimate - exact) / np.linalg.norm(exact) < frobenius_bound

    # Train × query: queries are 3 new points; the joint vector of 11 losses is the same kind of Gaussian.
    g = torch.Generator().manual_seed(2)
    Xq = torch.randn(3, 3, generator=g, dtype=DT)
    yq = torch.randn(3, generator=g, dtype=DT)
    query = losses_at(w, Xq, yq)
    cross = bif(train, query).numpy()
    assert cross.shape == (8, 3)
    X_all, y_all = np.vstack([X_NP, Xq.numpy()]), np.concatenate([Y_NP, yq.numpy()])
    exact_all = closed_form_cov(X_all, y_all, mu, S)
    _, cov_all, mu22_all = loss_moments(y_all - X_all @ mu, -X_all @ np.linalg.cholesky(S))
    sd_all = np.sqrt(iid_cov_variance(cov_all, mu22_all, N))
    assert np.all(np.abs(-cross - exact_all[:8, 8:]) < Z * sd_all[:8, 8:])
    # The I × I call and the (train, train) call are the same estimate.
    torch.testing.assert_close(bif(train, train), bif(train), rtol=0, atol=0)


@pytest.mark.slow
def test_bif_error_shrinks_like_one_over_root_n():
    """Relative Frobenius error at N = 500, 2,000, 8,000, 32,000 pooled iid draws, R = 150 replicates each.

    (i) At each N the mean of ‖Ĉ − C‖² over the replicates equals the exact E‖Ĉ − C‖² = Σ Var(Ĉ_ij) (a 1/N law,
    module docstring) within Z standard errors (sd of the R values / √R; the relative se is ≈ 1.1/√150 ≈ 9%).
    (ii) The least-squares slope of log RMS error against log N is −½ within Z·sd, where sd follows from the
    same standard errors: Var(log RMS_k) ≈ (se_k/(2·mean_k))², slope weights (x_k − x̄)/Σ(x − x̄)².
    """
    P, mu = localized_posterior(X_NP, Y_NP, NBETA, GAMMA, WSTAR_NP)
    S = np.linalg.inv(P)
    exact = closed_form_cov(X_NP, Y_NP, mu, S)
    _, cov, mu22 = loss_moments(Y_NP - X_NP @ mu, -X_NP @ np.linalg.cholesky(S))
    Ns, R = [500, 2_000, 8_000, 32_000], 150
    log_rms, log_sd = [], []
    for k, N in enumerate(Ns):
        w = gaussian_draws(mu, S, (R, 4, N // 4), seed=10 + k)
        sq = np.array([float(((-bif(losses_at(w[r])).numpy() - exact) ** 2).sum()) for r in range(R)])
        expected = iid_cov_variance(cov, mu22, N).sum()
        se = sq.std(ddof=1) / math.sqrt(R)
        assert abs(sq.mean() - expected) < Z * se, (N, sq.mean(), expected, se)
        log_rms.append(0.5 * math.log(sq.mean()))
        log_sd.append(se / (2 * sq.mean()))
    x = np.log(Ns)
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    slope = float(weights @ np.array(log_rms))
    slope_sd = math.sqrt(float((weights**2) @ np.array(log_sd) ** 2))
    assert slope_sd < 0.02
    assert abs(slope + 0.5) < Z * slope_sd, (slope, slope_sd)


@pytest.mark.slow
def test_sampler_and_bif_match_exact_euler_stationary_covariance():
    """Sampler + estimator: plain full-batch SGLD (ε = 0.01, nβ = 20, γ = 5, w* ≠ μ), 200 chains × 2,000 draws.

    The Euler chain's stationary law is Gaussian with mean μ and covariance U·diag(1/(p(1 − εp/4)))·Uᵀ, so the
    closed form gives the exact covariance of the recorded losses. Tolerances from the exact long-run variances
    of u_i·u_j (module docstring; τ_max = (1 + ρ_max)/(1 − ρ_max) ≈ 24, so ~17,000 effective draws out of
    400,000). Burn-in: the start-up bias |w* − μ|·ρ_max^burnin < 1e-8.

    The test resolves the O(ε) Euler factor: the continuous posterior's answer (covariance P⁻¹) lies more than
    2Z standard deviations from the Euler one in at least one entry, and the estimate rejects it.
    """
    eps, C, N = 0.01, 200, 2_000
    P, mu = localized_posterior(X_NP, Y_NP, NBETA, GAMMA, WSTAR_NP)
    p, U = np.linalg.eigh(P)
    rho = 1 - eps * p / 2
    s = 1 / (p * (1 - eps * p / 4))
    S_euler = U @ np.diag(s) @ U.T
    burnin = math.ceil(math.log(1e-8 / np.linalg.norm(WSTAR_NP - mu)) / math.log(rho.max()))
    config = SGLDConfig(step_size=eps, nbeta=NBETA, localization=GAMMA, num_chains=C, num_draws=N,
                        num_burnin=burnin, seed=3)
    trace = sample(regression_loss, torch.tensor(WSTAR_NP), (X_T, Y_T), (X_T, Y_T), config, progress=False)
    estimate = -bif(trace.losses).numpy()

    exact = closed_form_cov(X_NP, Y_NP, mu, S_euler)
    cov, V, L = long_run_moments(Y_NP - X_NP @ mu, -X_NP @ U @ np.diag(np.sqrt(s)), rho)
    np.testing.assert_allclose(cov, exact, rtol=1e-10, atol=1e-14)
    M = C * N
    sd = np.sqrt(V / M)
    bias = (np.abs(exact) + np.abs(L)) / (M - 1)
    assert np.all(np.abs(estimate - exact) < Z * sd + bias), np.abs(estimate - exact) / sd
    frobenius_bound = (Z * math.sqrt((sd**2).sum()) + np.linalg.norm(bias)) / np.linalg.norm(exact)
    assert frobenius_bound < 0.06
    assert np.linalg.norm(estimate - exact) / np.linalg.norm(exact) < frobenius_bound

    continuous = closed_form_cov(X_NP, Y_NP, mu, np.linalg.inv(P))
    assert np.max(np.abs(exact - continuous) / sd) > 2 * Z
    assert np.max(np.abs(estimate - continuous) / sd) > Z


# --------------------------------------------------------------------------------------------------------
# 2. Normalized BIF


def test_normalized_bif_is_minus_pearson_correlation_of_pooled_draws():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(3, 40, 1, generator=g, dtype=DT)
    train = base * torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=DT) + torch.randn(3, 40, 5, generator=g,
                                                                                    dtype=DT)
    query = base * torch.tensor([-1.0, 4.0], dtype=DT) + 10 * torch.randn(3, 40, 2, generator=g, dtype=DT)
    pooled = np.vstack([train.reshape(120, 5).numpy().T, query.reshape(120, 2).numpy().T])
    corr = np.corrcoef(pooled)

    square = bif(train, normalized=True).numpy()
    np.testing.assert_allclose(square, -corr[:5, :5], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.diag(square), -1.0, rtol=0, atol=1e-14)
    cross = bif(train, query, normalized=True).numpy()
    np.testing.assert_allclose(cross, -corr[:5, 5:], rtol=1e-12, atol=1e-14)
    assert np.all(np.abs(cross) <= 1) and np.all(np.abs(square) <= 1 + 1e-14)
    # Scale-free: rescaling (and shifting) one sample's losses changes the raw BIF but not the normalized one.
    scaled = train * torch.tensor([1.0, 7.0, 1.0, 1.0, 1.0], dtype=DT) + 3.0
    torch.testing.assert_close(bif(scaled, normalized=True), bif(train, normalized=True), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(bif(scaled)[1, 0], 7 * bif(train)[1, 0], rtol=1e-12, atol=0)


def test_bif_rejects_bad_shapes():
    with pytest.raises(ValueError, match="chain, draw, sample"):
        bif(torch.randn(10, 3, dtype=DT))
    with pytest.raises(ValueError, match="token_bif or group_bif"):
        bif(torch.randn(2, 10, 3, 4, dtype=DT))
    with pytest.raises(ValueError, match="same draws"):
        bif(torch.randn(2, 10, 3, dtype=DT), torch.randn(2, 11, 3, dtype=DT))
    with pytest.raises(ValueError, match="at least 2 pooled draws"):
        bif(torch.randn(1, 1, 3, dtype=DT))


# --------------------------------------------------------------------------------------------------------
# 3. Sign convention


def exact_expected_loss(weights: np.ndarray, gamma: float, wstar: np.ndarray, X: np.ndarray, y: np.ndarray):
    """E[ℓ_j] under p(w) ∝ exp(−Σ_i b_i ℓ_i(w) − (γ/2)‖w − w*‖²) (Gaussian): ½((y_j − x_jᵀμ)² + x_jᵀP⁻¹x_j)."""
    P = (X.T * weights) @ X + gamma * np.eye(X.shape[1])
    mu = np.linalg.solve(P, (X.T * weights) @ y + gamma * wstar)
    return 0.5 * ((y - X @ mu) ** 2 + np.einsum("id,de,ie->i", X, np.linalg.inv(P), X))


def test_bif_is_the_derivative_of_expected_loss_in_the_sample_weight():
    """BIF(i, j) = ∂E_β[ℓ_j]/∂β_i = −Cov(ℓ_i, ℓ_j), with β_i the weight of ℓ_i in the exponent (Lee et al. 2025,
    arXiv 2510.12071; the book's Notation page, "The BIF as a derivative, and an exact case")
    (b_i = nβ/n for the localized posterior). Central differences of the exact Gaussian E[ℓ_j] (step 1e-5·b,
    error O(h²) ≈ 1e-10 relative) against the closed-form −Cov, for every pair (i, j)."""
    n = len(Y_NP)
    b = np.full(n, NBETA / n)
    _, mu = localized_posterior(X_NP, Y_NP, NBETA, GAMMA, WSTAR_NP)
    P = (X_NP.T * b) @ X_NP + GAMMA * np.eye(3)
    exact_bif = -closed_form_cov(X_NP, Y_NP, mu, np.linalg.inv(P))
    derivative = np.empty((n, n))
    h = 1e-5 * b[0]
    for i in range(n):
        up, down = b.copy(), b.copy()
        up[i] += h
        down[i] -= h
        derivative[i] = (exact_expected_loss(up, GAMMA, WSTAR_NP, X_NP, Y_NP)
                         - exact_expected_loss(down, GAMMA, WSTAR_NP, X_NP, Y_NP)) / (2 * h)
    np.testing.assert_allclose(derivative, exact_bif, rtol=1e-7, atol=1e-10 * np.abs(exact_bif).max())


def test_bif_is_the_derivative_of_reweighted_draws():
    """On any fixed set of draws, reweighting by exp(−δ·ℓ_i) and differentiating the weighted mean of ℓ_j at
    δ = 0 gives exactly −Cov_N(ℓ_i, ℓ_j) (divisor N) = BIF·(N − 1)/N: the estimator's sign is the definition's."""
    g = torch.Generator().manual_seed(8)
    losses = torch.randn(2, 50, 4, generator=g, dtype=DT).exp()
    flat = losses.reshape(100, 4)
    N, delta = 100, 1e-6

    def reweighted_mean(i, d):
        weight = torch.exp(-d * flat[:, i])
        return (weight[:, None] * flat).sum(0) / weight.sum()

    derivative = torch.stack([(reweighted_mean(i, delta) - reweighted_mean(i, -delta)) / (2 * delta)
                              for i in range(4)])
    torch.testing.assert_close(derivative, bif(losses) * (N - 1) / N, rtol=1e-7, atol=1e-10)


def test_positively_correlated_losses_give_negative_bif_meaning_i_helps_j():
    """Losses that rise and fall together (a shared factor) → BIF < 0: up-weighting i lowers j's loss (helps).
    Anti-correlated losses → BIF > 0: up-weighting i raises j's loss (harms). Checked on synthetic losses and on
    a linear model where it is obvious which sample helps which:

    * samples 0 and 1 are near-duplicates (same x up to 1%, same y): fitting one fits the other → helps;
    * samples 2 and 3 share x but have y on opposite sides of the fit: pulling towards one pushes away from the
      other → harms.

    The exact derivative ∂E[ℓ_j]/∂β_i has the stated sign, and so does the BIF from 40,000 exact draws, by more
    than Z exact standard deviations.
    """
    g = torch.Generator().manual_seed(9)
    shared = torch.randn(4, 500, 1, generator=g, dtype=DT)
    noise = torch.randn(4, 500, 3, generator=g, dtype=DT)
    together = bif(shared * torch.tensor([1.0, 1.0, -1.0], dtype=DT) + 0.5 * noise)
    # N = 2,000, Var(ℓ) = 1.25, Cov = ±1: sd of each sample covariance = √(1.25² + 1)/√2000 ≈ 0.036, so the
    # ±0.8 thresholds are > 5 sd inside the exact values ∓1.
    assert together[0, 1] < -0.8 and together[0, 2] > 0.8 and together[1, 2] > 0.8

    X = np.array([[1.0, 0.5, -0.3], [1.01, 0.5, -0.3], [-0.4, 1.0, 0.8], [-0.4, 1.0, 0.8],
                  [0.3, -1.2, 0.5], [0.9, 0.1, 1.1]])
    w_fit = np.array([0.5, -1.0, 2.0])
    y = X @ w_fit
    y[[0, 1]] += 2.0  # a shared outlier
    y[2] += 1.5  # opposite residuals at the same x
    y[3] -= 1.5
    nbeta, gamma, wstar = 6.0, 1.0, w_fit
    P, mu = localized_posterior(X, y, nbeta, gamma, wstar)
    S = np.linalg.inv(P)
    exact = -closed_form_cov(X, y, mu, S)
    b = np.full(6, nbeta / 6)

    def dloss(i, j, h=1e-6):
        up, down = b.copy(), b.copy()
        up[i] += h
        down[i] -= h
        f = exact_expected_loss
        return (f(up, gamma, wstar, X, y)[j] - f(down, gamma, wstar, X, y)[j]) / (2 * h)

    assert exact[0, 1] < 0 and dloss(0, 1) < 0  # i = 0 helps j = 1
    assert exact[2, 3] > 0 and dloss(2, 3) > 0  # i = 2 harms j = 3

    N = 40_000
    w = gaussian_draws(mu, S, (4, N // 4), seed=11)
    estimate = bif(losses_at(w, torch.tensor(X), torch.tensor(y)))
    _, cov, mu22 = loss_moments(y - X @ mu, -X @ np.linalg.cholesky(S))
    sd = np.sqrt(iid_cov_variance(cov, mu22, N))
    assert estimate[0, 1] < -Z * sd[0, 1]
    assert estimate[2, 3] > Z * sd[2, 3]


# --------------------------------------------------------------------------------------------------------
# 4. Per-token and group influence


def overlapping_groups(shape: tuple[int, int], seed: int) -> torch.Tensor:
    """Four (sample, token) masks: two random overlapping ones, one holding a single token, one empty; the token
    (0, 0) is in no group."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(4, *shape, generator=g) < 0.4
    masks[2] = False
    masks[2, -1, -1] = True
    masks[3] = False
    masks[:, 0, 0] = False
    assert (masks[0] & masks[1]).any()  # the groups overlap
    return masks


def block_means(tokens: torch.Tensor, train_groups: torch.Tensor, query_groups: torch.Tensor) -> torch.Tensor:
    """Mean of the token × token BIF over every (g, h) block, by brute force; NaN for an empty group."""
    G, H = len(train_groups), len(query_groups)
    out = torch.full((G, H), float("nan"), dtype=DT)
    for g in range(G):
        for h in range(H):
            if train_groups[g].any() and query_groups[h].any():
                out[g, h] = tokens[train_groups[g]][:, query_groups[h]].mean()
    return out


def test_group_bif_is_the_mean_of_the_token_block():
    g = torch.Generator().manual_seed(12)
    C, D, I, T = 3, 60, 4, 6
    # Correlated token losses (a shared factor per sample plus noise), positive like losses.
    losses = (torch.randn(C, D, I, 1, generator=g, dtype=DT) + torch.randn(C, D, I, T, generator=g,
                                                                           dtype=DT)).exp()
    groups = overlapping_groups((I, T), seed=13)
    tokens = token_bif(losses)
    assert tokens.shape == (I, T, I, T)
    torch.testing.assert_close(tokens.reshape(I * T, I * T), bif(losses.reshape(C, D, I * T)), rtol=0, atol=0)

    result = group_bif(losses, groups)
    assert result.shape == (4, 4)
    expected = block_means(tokens, groups, groups)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-13, equal_nan=True)
    assert torch.isnan(result[3]).all() and torch.isnan(result[:, 3]).all()  # the empty group
    assert torch.isfinite(result[:3, :3]).all()
    # A one-token group is that token's own entry.
    torch.testing.assert_close(result[2, 2], tokens[I - 1, T - 1, I - 1, T - 1], rtol=1e-12, atol=0)

    # Separate query losses (J = 2 sequences of U = 5 tokens) and query groups.
    Jq, U = 2, 5
    query = losses[:, :, :Jq, :U] * 0.5 + torch.randn(C, D, Jq, U, generator=g, dtype=DT).exp()
    query_groups = torch.rand(3, Jq, U, generator=g) < 0.5
    query_groups[2] = False
    cross = group_bif(losses, groups, query, query_groups)
    assert cross.shape == (4, 3)
    torch.testing.assert_close(cross, block_means(token_bif(losses, query), groups, query_groups), rtol=1e-10,
                               atol=1e-13, equal_nan=True)
    # Other groups on the training tokens themselves (query_losses None).
    other = overlapping_groups((I, T), seed=14)[:2]
    torch.testing.assert_close(group_bif(losses, groups, query_groups=other),
                               block_means(tokens, groups, other), rtol=1e-10, atol=1e-13, equal_nan=True)
    # Per-sample losses (no token dimension) with groups of samples.
    sample_groups = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    per_sample = losses.sum(-1)
    torch.testing.assert_close(group_bif(per_sample, sample_groups),
                               block_means(bif(per_sample), sample_groups, sample_groups), rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="group masks cover"):
        group_bif(losses, torch.ones(2, I, T + 1, dtype=torch.bool))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status, caps RLIMIT_AS")
def test_group_bif_never_builds_the_token_by_token_matrix():
    """200 sequences × 200 tokens = 40,000 tokens: a token × token float64 matrix would take 12.8 GB, while the
    losses take 20 draws × 40,000 × 8 B = 6.4 MB. The address space is capped at its current size + 2 GiB for the
    call (a token × token allocation fails at once instead of exhausting the machine), and the call must be
    quick. The value is checked against the block mean computed token pair by token pair for two small groups.
    """
    g = torch.Generator().manual_seed(15)
    C, D, I, T = 2, 10, 200, 200
    losses = torch.randn(C, D, I, T, generator=g, dtype=DT).exp()
    groups = torch.rand(5, I, T, generator=g) < 0.3
    groups[0] = False
    groups[0, 3, :3] = True  # 3 tokens
    groups[1] = False
    groups[1, 150, 10:14] = True  # 4 tokens
    assert (I * T) ** 2 * 8 > 10e9

    with open("/proc/self/status") as status:
        vm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_kib * 1024 + 2 * 2**30
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        start = time.perf_counter()
        result = group_bif(losses, groups)
        elapsed = time.perf_counter() - start
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert result.shape == (5, 5) and torch.isfinite(result).all()
    assert elapsed < 5.0, elapsed

    flat = losses.reshape(C * D, I * T)
    a_idx = torch.nonzero(groups[0].reshape(-1)).flatten()
    b_idx = torch.nonzero(groups[1].reshape(-1)).flatten()
    pairs = bif(flat[:, a_idx].reshape(C, D, -1), flat[:, b_idx].reshape(C, D, -1))
    assert pairs.shape == (3, 4)
    torch.testing.assert_close(result[0, 1], pairs.mean(), rtol=1e-10, atol=1e-14)


def test_group_bif_from_integer_labels_equals_the_masks_path():
    """One label per token (−1 = no group) is the same partition as disjoint masks; blocks of tokens change
    nothing (the reduction is forced into many small blocks); float32 losses keep float64 accuracy of the
    covariances; the group means are the true means."""
    import stagewise.influence.groups as inf  # the module whose block size is patched below

    g = torch.Generator().manual_seed(21)
    C, D, I, T, G = 3, 40, 5, 7, 4
    losses = 3.0 + 0.01 * torch.randn(C, D, I, T, generator=g, dtype=DT)  # a level ≫ the fluctuations
    labels = torch.randint(-1, G, (I, T), generator=g)
    labels[0, :G] = torch.arange(G)  # every group has a member
    masks = torch.stack([labels == k for k in range(G)])
    expected = block_means(token_bif(losses), masks, masks)
    torch.testing.assert_close(group_bif(losses, labels), expected, rtol=1e-10, atol=1e-16)
    torch.testing.assert_close(group_bif(losses, masks), expected, rtol=1e-10, atol=1e-16)
    brute = torch.stack([(losses * m).sum((2, 3)) / m.sum() for m in masks.double()], -1)
    torch.testing.assert_close(inf.group_means(losses, labels), brute, rtol=1e-13, atol=0)
    old = inf._GROUP_BLOCK
    inf._GROUP_BLOCK = 3 * C * D  # 3 tokens a block
    try:
        torch.testing.assert_close(group_bif(losses, labels), expected, rtol=1e-10, atol=1e-16)
        torch.testing.assert_close(group_bif(losses, masks), expected, rtol=1e-10, atol=1e-16)
    finally:
        inf._GROUP_BLOCK = old
    # float32 losses: the centred float32 sums keep the covariances to float32 accuracy of the fluctuations.
    single = group_bif(losses.float(), labels)
    torch.testing.assert_close(single, block_means(token_bif(losses.float().double()), masks, masks), rtol=1e-5,
                               atol=1e-12)
    # num_groups: an extra empty group is NaN; a label past num_groups is an error naming the range.
    wider = group_bif(losses, labels, num_groups=G + 1)
    assert wider.shape == (G + 1, G + 1) and torch.isnan(wider[G]).all()
    torch.testing.assert_close(wider[:G, :G], expected, rtol=1e-10, atol=1e-16)
    with pytest.raises(ValueError, match="labels must lie in -1"):
        group_bif(losses, labels, num_groups=G - 1)
    with pytest.raises(ValueError, match="trailing shape"):
        group_bif(losses, labels[:, :3])
    with pytest.raises(TypeError, match="integer labels"):
        group_bif(losses, labels.double())
    # Separate query losses with their own labels.
    query = torch.randn(C, D, 2, 3, generator=g, dtype=DT)
    q_labels = torch.tensor([[0, 1, 1], [2, 0, -1]])
    q_masks = torch.stack([q_labels == k for k in range(3)])
    torch.testing.assert_close(group_bif(losses, labels, query, q_labels),
                               block_means(token_bif(losses, query), masks, q_masks), rtol=1e-10, atol=1e-16)


def test_token_bif_refuses_what_cannot_fit_and_points_to_group_bif():
    losses = torch.zeros(2, 3, 4, 5, dtype=DT)
    need = 8 * (20 * 20 + 6 * 40)
    assert token_bif(torch.randn(2, 3, 4, 5, dtype=DT), max_bytes=need).shape == (4, 5, 4, 5)
    with pytest.raises(MemoryError, match="group_bif with integer token labels"):
        token_bif(losses, max_bytes=need - 1)
    # The default limit is half the free memory: 10⁶ × 10⁶ tokens (8 TB) is refused before any allocation.
    huge = torch.zeros(1, 4, 1, 10**6, dtype=torch.float32).expand(1, 4, 1, 10**6)
    with pytest.raises(MemoryError, match="7450.64 GiB"):
        token_bif(huge)


# --------------------------------------------------------------------------------------------------------
# 5. Standard errors


def c4(k: int) -> float:
    """E[s]/σ for the sample standard deviation of k iid Gaussian values."""
    return math.sqrt(2 / (k - 1)) * math.exp(math.lgamma(k / 2) - math.lgamma((k - 1) / 2))


def kurtosis(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(0)
    return (centred**4).mean(0) / (centred**2).mean(0) ** 2


def check_stderr_against_replicates(estimates: torch.Tensor, stderrs: torch.Tensor, pieces: torch.Tensor):
    """estimates (R, I, J) of the BIF from R independent replicates, their stderrs (R, I, J), and the per-piece
    estimates (R, K, I, J) each stderr came from.

    The stderr is s_K/√K with s_K the sd of K pieces, so E[stderr] = c4(K)·σ_piece/√K, which (pieces of equal
    size, each ≫ 1 draw, so the pooled estimate is their mean up to O(1/size)) is c4(K) × the sd of the BIF
    estimate. The test ratio mean_R(stderr)/(c4(K)·sd_R(estimate)) has log-variance ≈ (κ − 1)/(4(R − 1)) from the
    empirical sd plus (κ_p − 1)/(4(K − 1)R) from the mean stderr, κ and κ_p the kurtoses of the estimates and of
    the pieces (measured here); each entry must be within Z such standard deviations (≈ 20% at R = 400, K = 10).
    Returns the tolerance.
    """
    R, K = pieces.shape[:2]
    ratio = stderrs.mean(0) / (c4(K) * estimates.std(0, unbiased=True))
    kappa = kurtosis(estimates)
    kappa_p = kurtosis(pieces.reshape(R * K, *pieces.shape[2:]))
    tol = Z * torch.sqrt((kappa - 1) / (4 * (R - 1)) + (kappa_p - 1) / (4 * (K - 1) * R))
    assert torch.all(ratio.log().abs() < tol), (ratio, tol)
    return tol


def test_bif_stderr_matches_spread_over_independent_replicates():
    """R = 400 replicates of 10 chains × 200 iid exact-posterior draws; 4 training samples × 3 queries."""
    X, y = X_NP[:4], Y_NP[:4]
    P, mu = localized_posterior(X, y, 4.0, 1.0, WSTAR_NP)
    R, C, D = 400, 10, 200
    w = gaussian_draws(mu, np.linalg.inv(P), (R, C, D), seed=16)
    train = losses_at(w, torch.tensor(X), torch.tensor(y))
    query = losses_at(w, X_T[4:7], Y_T[4:7])
    estimates = torch.stack([bif(train[r], query[r]) for r in range(R)])
    stderrs = torch.stack([bif_stderr(train[r], query[r]) for r in range(R)])
    pieces = torch.stack([torch.stack([bif(train[r, c:c + 1], query[r, c:c + 1]) for c in range(C)])
                          for r in range(R)])
    assert stderrs.shape == (R, 4, 3)
    # The default stderr is the ESS-based Monte Carlo error of the mean of the products (ℓ_i − ℓ̄_i)(ℓ_j − ℓ̄_j)
    # over all C·D draws (times the covariance's (C·D)/(C·D − 1)).
    S = C * D
    du = train - train.mean((1, 2), keepdim=True)
    dv = query - query.mean((1, 2), keepdim=True)
    products = du[..., :, None] * dv[..., None, :]  # (R, C, D, 4, 3)
    expected = torch.stack([mcse_mean(products[r]) for r in range(R)]) * S / (S - 1)
    torch.testing.assert_close(stderrs, expected, rtol=1e-10, atol=0)
    # For iid draws the ESS is ≈ C·D, so the stderr estimates the sd of the estimate directly: the ratio
    # mean_R(stderr)/sd_R(estimate) has log-sd ≈ √((κ − 1)/(4(R − 1))) from the empirical sd (κ the kurtosis of
    # the estimates) plus the stderr's own noise averaged over R replicates (relative sd per replicate
    # ≈ √((κ_f − 1)/(4·C·D)) from the products' kurtosis κ_f, plus the ESS estimate's ≈ √(10/(C·D))/2).
    ratio = stderrs.mean(0) / estimates.std(0, unbiased=True)
    kappa = kurtosis(estimates)
    kappa_f = kurtosis(products.reshape(R * S, 4, 3))
    tol = Z * torch.sqrt((kappa - 1) / (4 * (R - 1)) + ((kappa_f - 1) / (4 * S) + 10 / (4 * S)) / R)
    assert torch.all(ratio.log().abs() < tol), (ratio, tol)
    assert tol.max() < 0.3
    # Square (train × train) and normalized variants run and have the matching shapes.
    assert bif_stderr(train[0]).shape == (4, 4)
    assert torch.all(bif_stderr(train[0], normalized=True) < 1)


@pytest.mark.slow
def test_bif_stderr_batch_means_on_one_autocorrelated_chain():
    """One chain per replicate whose draws are autocorrelated: w = μ + L·z with z_k stationary AR(1), ρ = 0.5
    (τ = 3). Batch means with K = 10 batches of 1,000 draws (≫ τ, so the batches are nearly independent:
    neighbouring batch means correlate by ≈ τ/1000) must match the spread over R = 400 replicates, like the
    multi-chain case. The batches are the contiguous blocks of draws (remainder dropped) — checked exactly."""
    from scipy import signal

    X, y = X_NP[:4], Y_NP[:4]
    P, mu = localized_posterior(X, y, 4.0, 1.0, WSTAR_NP)
    L = np.linalg.cholesky(np.linalg.inv(P))
    R, D, K, rho = 400, 10_000, 10, 0.5
    rng = np.random.default_rng(17)
    xi = rng.standard_normal((R, 3, D)) * math.sqrt(1 - rho**2)
    xi[..., 0] /= math.sqrt(1 - rho**2)
    z = signal.lfilter([1.0], [1.0, -rho], xi, axis=-1)  # unit-variance AR(1)
    w = torch.from_numpy(mu + np.einsum("de,ret->rtd", L, z))  # (R, D, 3)
    losses = losses_at(w, torch.tensor(X), torch.tensor(y))[:, None]  # (R, 1 chain, D, 4)
    estimates = torch.stack([bif(losses[r]) for r in range(R)])
    stderrs = torch.stack([bif_stderr(losses[r], num_batches=K) for r in range(R)])
    size = D // K
    pieces = torch.stack([torch.stack([bif(losses[r, :, k * size:(k + 1) * size]) for k in range(K)])
                          for r in range(R)])
    torch.testing.assert_close(stderrs, pieces.std(1, unbiased=True) / math.sqrt(K), rtol=1e-12, atol=0)
    check_stderr_against_replicates(estimates, stderrs, pieces)
    # A remainder is dropped: 1,003 draws in 10 batches use the first 1,000.
    odd = losses[0, :, :1003]
    torch.testing.assert_close(bif_stderr(odd, num_batches=10), bif_stderr(odd[:, :1000], num_batches=10),
                               rtol=0, atol=0)


@pytest.mark.parametrize("num_batches", [0, 1, 52, -3, 2.5, True, "4"])
def test_bif_stderr_rejects_bad_num_batches(num_batches):
    losses = torch.randn(1, 103, 3, dtype=DT)
    with pytest.raises(ValueError, match=r"num_batches = .*accepted values are integers 2 … draws/2 = 51"):
        bif_stderr(losses, num_batches=num_batches)


def test_bif_stderr_with_one_chain_and_too_few_draws():
    assert bif_stderr(torch.randn(1, 50, 3, dtype=DT)).shape == (3, 3)  # one chain: its halves give the ESS
    with pytest.raises(ValueError, match="3 draws per chain: the standard error needs at least 4"):
        bif_stderr(torch.randn(2, 3, 3, dtype=DT))
    assert bif_stderr(torch.randn(1, 50, 3, dtype=DT), num_batches=np.int64(5)).shape == (3, 3)
    assert bif_stderr(torch.randn(1, 50, 3, dtype=DT), num_batches=25).shape == (3, 3)  # the edge draws/2


# --------------------------------------------------------------------------------------------------------
# 6. Classical influence


def test_classical_influence_of_linear_model_equals_hand_computation():
    """ℓ = ½(y − xᵀw)²: H = XᵀX/n exactly, ∇ℓ_i = −(y_i − x_iᵀw)·x_i, IF_ij = −∇ℓ_jᵀ(H + γI)⁻¹∇ℓ_i, at a
    point that is not a minimum, with separate queries, with and without damping."""
    X, y = X_NP, Y_NP
    g = torch.Generator().manual_seed(18)
    Xq = torch.randn(3, 3, generator=g, dtype=DT)
    yq = torch.randn(3, generator=g, dtype=DT)
    w = np.array([0.2, -0.3, 1.1])
    H = X.T @ X / len(y)
    grads = -(y - X @ w)[:, None] * X
    qgrads = -(yq.numpy() - Xq.numpy() @ w)[:, None] * Xq.numpy()
    for damping in [0.0, 0.7]:
        expected = -grads @ np.linalg.solve(H + damping * np.eye(3), qgrads.T)  # (I, J)
        result = classical_influence(regression_loss, torch.tensor(w), (X_T, Y_T), (Xq, yq), damping=damping)
        assert result.shape == (8, 3) and result.dtype == DT
        np.testing.assert_allclose(result.numpy(), expected, rtol=1e-10, atol=1e-13)
    square = classical_influence(regression_loss, torch.tensor(w), (X_T, Y_T), (X_T, Y_T), damping=0.7)
    torch.testing.assert_close(square, square.T, rtol=1e-12, atol=1e-14)  # symmetric for train = query
    # float32 parameters are promoted to float64.
    assert classical_influence(regression_loss, torch.tensor(w, dtype=torch.float32), (X_T, Y_T), (X_T, Y_T),
                               damping=0.7).dtype == DT


def test_classical_influence_is_the_retraining_derivative():
    """The damped IF is what retraining gives: w_δ = argmin L_n(w) + δ·ℓ_i(w) + (γ/2)‖w − ŵ‖² around the least-
    squares fit ŵ (where ∇L_n = 0) has dℓ_j(w_δ)/dδ at δ = 0 equal to −∇ℓ_jᵀ(H + γI)⁻¹∇ℓ_i: negative when
    up-weighting i lowers j's loss, the BIF's sign. Central differences of the closed-form minimizer."""
    X, y = X_NP, Y_NP
    n = len(y)
    w_hat = np.linalg.solve(X.T @ X, X.T @ y)
    gamma, h = 0.3, 1e-6
    IF = classical_influence(regression_loss, torch.tensor(w_hat), (X_T, Y_T), (X_T, Y_T), damping=gamma).numpy()

    def retrained_losses(i, delta):
        A = X.T @ X / n + delta * np.outer(X[i], X[i]) + gamma * np.eye(3)
        w = np.linalg.solve(A, X.T @ y / n + delta * X[i] * y[i] + gamma * w_hat)
        return 0.5 * (y - X @ w) ** 2

    derivative = np.stack([(retrained_losses(i, h) - retrained_losses(i, -h)) / (2 * h) for i in range(n)])
    np.testing.assert_allclose(derivative, IF, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("damping", [-1.0, float("nan"), float("inf"), "0.1", None])
def test_classical_influence_rejects_bad_damping(damping):
    with pytest.raises(ValueError, match="damping"):
        classical_influence(regression_loss, torch.zeros(3, dtype=DT), (X_T, Y_T), (X_T, Y_T), damping=damping)


def test_regular_model_bif_equals_damped_classical_if_up_to_the_gaussian_term():
    """Exactly, for the linear model at its least-squares fit ŵ = w* (so μ = ŵ and m = the residuals):
    IF_ij(damping γ/nβ) = −r_i r_j x_iᵀ(H + γ/nβ)⁻¹x_j = −nβ·r_i r_j c_ij with c = XP⁻¹Xᵀ, while
    nβ·BIF_ij = −nβ(½c_ij² + r_i r_j c_ij). So nβ·BIF = IF − (nβ/2)·c², a gap of relative order c/r² ~ 1/nβ."""
    nbeta, gamma = 100.0, 10.0
    w_hat = np.linalg.solve(X_NP.T @ X_NP, X_NP.T @ Y_NP)
    P, mu = localized_posterior(X_NP, Y_NP, nbeta, gamma, w_hat)
    np.testing.assert_allclose(mu, w_hat, rtol=1e-12)
    S = np.linalg.inv(P)
    c = X_NP @ S @ X_NP.T
    IF = classical_influence(regression_loss, torch.tensor(w_hat), (X_T, Y_T), (X_T, Y_T),
                             damping=gamma / nbeta).numpy()
    nbeta_bif = -nbeta * closed_form_cov(X_NP, Y_NP, mu, S)
    np.testing.assert_allclose(nbeta_bif, IF - nbeta / 2 * c**2, rtol=1e-10, atol=1e-14)
    assert np.abs(nbeta / 2 * c**2).max() < 0.1 * np.abs(IF).max()


@pytest.mark.slow
def test_sampled_bif_correlates_with_damped_classical_if_in_a_regular_model():
    """For a regular model at its minimum, nβ·BIF(localization γ) ≈ IF(damping γ/nβ) (Lee et al. 2025, arXiv
    2510.12071; the book's Notation page, "Classical influence function"). Plain SGLD in
    float64 (ε = 2e-3, nβ = 100, γ = 10, 100 chains × 2,000 draws) at the least-squares fit of the n = 8
    regression (chains start at the posterior mean ŵ; burn-in 300 leaves ρ_max^600 ≈ 3e-18 of the covariance's
    ramp-up). Pearson correlation of the off-diagonal entries ≥ 0.95. (Expected gaps: the Gaussian term above,
    the Euler factor 1/(1 − εp/4) ≤ 1.10 and Monte Carlo error ~1% relative (from the long-run variances of the
    exact test): all far too small to bring the correlation near 0.95.)"""
    nbeta, gamma, eps = 100.0, 10.0, 2e-3
    w_hat = torch.linalg.solve(X_T.T @ X_T, X_T.T @ Y_T)
    p = np.linalg.eigvalsh(nbeta / 8 * X_NP.T @ X_NP + gamma * np.eye(3))
    assert eps * p.max() / 4 < 0.1
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=100, num_draws=2_000,
                        num_burnin=300, seed=19)
    trace = sample(regression_loss, w_hat, (X_T, Y_T), (X_T, Y_T), config, progress=False)
    assert trace.losses.dtype == DT
    scaled = nbeta * bif(trace.losses)
    IF = classical_influence(regression_loss, w_hat, (X_T, Y_T), (X_T, Y_T), damping=gamma / nbeta)
    off = ~torch.eye(8, dtype=torch.bool)
    corr = np.corrcoef(scaled[off].numpy(), IF[off].numpy())[0, 1]
    assert corr >= 0.95, corr
    assert (torch.sign(scaled[off]) == torch.sign(IF[off])).float().mean() > 0.9


# --------------------------------------------------------------------------------------------------------
# 7. Trajectories over checkpoints


def gd_checkpoints(steps=(0, 5, 40), lr=0.1) -> list[tuple[int, torch.Tensor]]:
    """Full-batch gradient descent on L_n from w = 0, saved at the given steps."""
    w = torch.zeros(3, dtype=DT)
    saved = []
    for t in range(max(steps) + 1):
        if t in steps:
            saved.append((t, w.clone()))
        w = w + lr * X_T.T @ (Y_T - X_T @ w) / len(Y_T)
    return saved


TRAJ_CONFIG = SGLDConfig(step_size=0.01, nbeta=NBETA, localization=GAMMA, num_chains=4, num_draws=30,
                         num_burnin=20, seed=20)


def test_bif_trajectory_equals_direct_sampling_at_every_checkpoint():
    checkpoints = gd_checkpoints()
    train, query = [0, 2, 5], [1, 3]
    traj = bif_trajectory(regression_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, train=train,
                          query=query, keep_traces=True, progress=False)
    assert isinstance(traj, InfluenceTrajectory)
    assert traj.steps.tolist() == [0, 5, 40]
    assert traj.values.shape == (3, 3, 2) and traj.stderr.shape == (3, 3, 2)
    assert len(traj.traces) == 3 and all(isinstance(t, SampleTrace) for t in traj.traces)
    for k, (step, params) in enumerate(checkpoints):
        trace = sample(regression_loss, params, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, progress=False)
        a, b = trace.losses[:, :, train], trace.losses[:, :, query]
        torch.testing.assert_close(traj.values[k], bif(a, b), rtol=0, atol=0)
        torch.testing.assert_close(traj.stderr[k], bif_stderr(a, b), rtol=0, atol=0)
        torch.testing.assert_close(traj.traces[k].losses, trace.losses, rtol=0, atol=0)
    # The checkpoints differ, so the influence moves along the trajectory.
    assert not torch.allclose(traj.values[0], traj.values[2])
    torch.testing.assert_close(traj.pair(2, 1), traj.values[:, 2, 1], rtol=0, atol=0)

    frame = traj.to_frame(names_i=["a", "b", "c"], names_j=["q1", "q3"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["step", "i", "j", "bif", "stderr"] and len(frame) == 3 * 3 * 2
    row = frame[(frame.step == 5) & (frame.i == "c") & (frame.j == "q3")]
    assert len(row) == 1
    assert float(row.bif.iloc[0]) == float(traj.values[1, 2, 1])
    assert float(row.stderr.iloc[0]) == float(traj.stderr[1, 2, 1])
    assert sorted(traj.to_frame().i.unique().tolist()) == [0, 1, 2]

    # Normalized; default train/query = all samples; no traces kept by default.
    full = bif_trajectory(regression_loss, checkpoints[:1], (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, normalized=True,
                          progress=False)
    assert full.values.shape == (1, 8, 8) and full.traces is None
    torch.testing.assert_close(torch.diagonal(full.values[0]), -torch.ones(8, dtype=DT), rtol=0, atol=1e-14)


def test_bif_trajectory_divergence_names_the_checkpoint_step():
    """A loss that is NaN where w₀ > 50: the checkpoint at step 300 sits there, so its run fails at step 0."""

    def fragile(w, batch):
        return torch.where(w[0] > 50, torch.full_like(batch[1], float("nan")), regression_loss(w, batch))

    far = torch.tensor([100.0, 0.0, 0.0], dtype=DT)
    checkpoints = gd_checkpoints(steps=(0, 5)) + [(300, far)]
    with pytest.raises(SamplerDivergence) as info:
        bif_trajectory(fragile, checkpoints, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, progress=False)
    err = info.value
    assert "checkpoint step 300" in str(err) and "checkpoint step 300" in err.reason
    assert err.step == 0 and err.chains == [0, 1, 2, 3]
    assert err.trace.loss_trace.shape == (4, 1)
    with pytest.raises(ValueError, match="at least one"):
        bif_trajectory(regression_loss, [], (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, progress=False)


TOKEN_SHIFTS = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0], dtype=DT)


def per_token_loss(w, batch):
    """Five 'tokens' per sample: ½(y − xᵀw − shift_t)² (each token a different squared residual)."""
    X, y = batch
    r = (y - (X * w).sum(-1)).unsqueeze(-1) - TOKEN_SHIFTS
    return 0.5 * r**2


def test_bif_trajectory_groups_path():
    checkpoints = gd_checkpoints(steps=(0, 40))
    g = torch.Generator().manual_seed(21)
    groups = torch.rand(3, 8, 5, generator=g) < 0.4
    traj = bif_trajectory(per_token_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, groups=groups,
                          progress=False)
    assert traj.values.shape == (2, 3, 3) and traj.stderr.shape == (2, 3, 3)
    for k, (_, params) in enumerate(checkpoints):
        losses = sample(per_token_loss, params, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, progress=False).losses
        assert losses.shape == (4, 30, 8, 5)
        torch.testing.assert_close(traj.values[k], group_bif(losses, groups), rtol=0, atol=0)
        # One home for group errors: the trajectory's are group_bif_stderr's (ESS-based), not a cross-chain spread.
        torch.testing.assert_close(traj.stderr[k], group_bif_stderr(losses, groups), rtol=1e-6, atol=0)
    # The ESS-based errors are defined with one chain too; with fewer than 4 draws they are NaN.
    single = SGLDConfig(**{**TRAJ_CONFIG.__dict__, "num_chains": 1})
    one = bif_trajectory(per_token_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), single, groups=groups,
                         keep_traces=True, progress=False)
    assert torch.isfinite(one.stderr).all() and torch.isfinite(one.values).all()
    torch.testing.assert_close(one.stderr[1], group_bif_stderr(one.traces[1].losses, groups), rtol=1e-6, atol=0)
    plain = bif_trajectory(regression_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), single, progress=False)
    assert torch.isfinite(plain.stderr).all() and torch.isfinite(plain.values).all()
    short = SGLDConfig(**{**TRAJ_CONFIG.__dict__, "num_draws": 3})
    few = bif_trajectory(per_token_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), short, groups=groups, progress=False)
    assert torch.isnan(few.stderr).all() and torch.isfinite(few.values).all()


def test_bif_trajectory_groups_honour_train_and_query():
    """With groups, ``train`` / ``query`` pick the samples whose tokens make up the rows' and the columns' groups:
    the same numbers as group_bif / group_bif_stderr on masks restricted to those samples, for masks and labels."""
    checkpoints = gd_checkpoints(steps=(40,))
    g = torch.Generator().manual_seed(22)
    masks = torch.rand(3, 8, 5, generator=g) < 0.5
    labels = torch.randint(-1, 3, (8, 5), generator=g)
    labels[0, 0], labels[1, 0] = 2, 0  # every label present among the train samples
    train, query = [0, 1, 2, 4], [3, 5, 6, 7]
    keep_train = torch.zeros(8, dtype=torch.bool)
    keep_train[train] = True
    for groups in (masks, labels):
        traj = bif_trajectory(per_token_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG, groups=groups,
                              train=train, query=query, keep_traces=True, progress=False)
        losses = traj.traces[0].losses
        as_masks = groups if groups.dtype == torch.bool else torch.stack([groups == k for k in range(3)])
        rows = as_masks & keep_train[None, :, None]
        cols = as_masks & ~keep_train[None, :, None]
        torch.testing.assert_close(traj.values[0], group_bif(losses, rows, losses, cols), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(traj.stderr[0], group_bif_stderr(losses, rows, losses, cols), rtol=1e-6, atol=0)
        everything = bif_trajectory(per_token_loss, checkpoints, (X_T, Y_T), (X_T, Y_T), TRAJ_CONFIG,
                                    groups=groups, progress=False)
        assert not torch.allclose(everything.values[0], traj.values[0])  # train/query are no longer ignored
