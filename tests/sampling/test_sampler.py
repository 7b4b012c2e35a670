"""Known-answer tests of the localized (RMSProp-)SGLD sampler, ``stagewise.sampling``.

What is checked, and against what:

* Stationary law on a quadratic loss L(w) = ½(w − m)ᵀA(w − m). The localized posterior
  p(w) ∝ exp(−nβ·L(w) − (γ/2)‖w − w*‖²) is Gaussian with precision P = nβA + γI and mean
  μ = P⁻¹(nβ·A·m + γ·w*). Plain SGLD on it is the linear recursion

      u' = (I − εP/2)·u + √ε·ξ,      u = w − μ,

  so in the eigenbasis of P (P = U diag(p_k) Uᵀ) every coordinate z_k = u_kᵀu is an independent AR(1) chain
  with coefficient ρ_k = 1 − ε·p_k/2 and stationary variance s_k = ε/(1 − ρ_k²) = 1/(p_k·(1 − ε·p_k/4)):
  the *exact* law of the Euler chain, which differs from the continuous posterior (1/p_k) by the O(ε) factor
  1/(1 − ε·p_k/4). Its stationary mean is exactly μ. The tests compare the samples with these exact values.

* Tolerances (derived, not tuned). For an AR(1) chain with coefficient ρ and stationary variance s, the mean
  of N consecutive draws of C independent chains has variance ≤ s/(C·N)·(1 + ρ)/(1 − ρ) (the sum of the
  autocorrelations ρ^|τ|; the finite-N sum is smaller, so this is an upper bound). For the second moments,
  z_k² − s_k has variance 2s_k² and autocorrelation ρ_k^(2|τ|), and z_k·z_l (k ≠ l, independent chains) has
  variance s_k·s_l and autocorrelation (ρ_k·ρ_l)^|τ|, hence

      Var(mean z_k²)   ≤ 2 s_k² /(C·N)·(1 + ρ_k²)/(1 − ρ_k²),
      Var(mean z_k z_l) ≤ s_k s_l/(C·N)·(1 + ρ_kρ_l)/(1 − ρ_kρ_l).

  Every check is |estimate − exact| < 5 standard deviations (two-sided Gaussian tail 6e-7 per check). The
  burn-in is chosen so that the leftover bias of the start at w*, |w* − μ|·ρ_max^burnin, is below 1e-6 of that.
  With thinning, ρ is replaced by ρ^thin per draw.

* Mini-batches (linear-Gaussian regression, batch B < n drawn with replacement). The mean recursion is
  E[u'|u] = (I − εP/2)·u because the batch is independent of the current state, so the stationary mean is still
  exactly μ and Cov(u_{t+τ}, u_t) = (I − εP/2)^τ·S for the stationary second moment S. S itself is inflated by
  the gradient noise; it solves a linear (d²×d²) equation written out in :func:`minibatch_stationary_cov`.
  The second-moment check uses the cross-chain standard error (chains are independent and identically
  distributed, so the C per-chain averages are i.i.d.), because with multiplicative noise the draws are no
  longer Gaussian and the closed-form fourth moments above do not apply.

* Single steps, reproduced by hand from the update formulas and from the sampler's documented random stream:
  one generator per chain, ``make_generators(seed, chains)``; per step each chain draws first its mini-batch
  indices ``torch.randint(n, (batch_size,))`` (only when batch_size < n), then ``torch.randn(D)``: all its
  parameters in dict order.

Losses are written with elementwise products rather than matmuls: under ``vmap`` over ~10³ chains the tiny
batched matmuls cost 5–20× more per step on a CPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from stagewise.config import ConfigError
from stagewise.sampling import SamplerDivergence, SGLDConfig, module_loss_fn, sample
from stagewise.sampling.kernel import make_generators
from stagewise.sampling.update import ChainState, sgld_step

DT = torch.float64
Z = 5.0  # the width of every statistical check, in standard deviations

# A fixed, non-diagonal, positive-definite curvature; eigenvalues ≈ 0.62, 0.95, 1.73.
A_NP = np.array([[1.0, 0.3, 0.15], [0.3, 0.8, 0.1], [0.15, 0.1, 1.5]])
M_NP = np.array([1.0, -1.0, 0.5])  # the minimum of L
WSTAR_NP = np.array([-0.5, 0.8, -1.0])  # the checkpoint w* ≠ m


def quadratic_loss(A: np.ndarray, m: np.ndarray):
    At, mt = torch.tensor(A, dtype=DT), torch.tensor(m, dtype=DT)

    def loss(w: torch.Tensor, _batch=None) -> torch.Tensor:
        d = w - mt
        return 0.5 * (d.unsqueeze(-1) * At * d).sum()

    return loss


def record_w(w, _batch):
    return w


def gaussian_posterior(A, m, wstar, nbeta, gamma):
    """Precision P = nβA + γI and mean μ = P⁻¹(nβAm + γw*) of the localized posterior of the quadratic."""
    P = nbeta * A + gamma * np.eye(len(m))
    mu = np.linalg.solve(P, nbeta * A @ m + gamma * wstar)
    return P, mu


def eigen_moment_checks(draws: np.ndarray, mu: np.ndarray, P: np.ndarray, eps_eff: float, thin: int = 1):
    """Compare draws (C, N, d) of plain SGLD with step ``eps_eff`` with the exact Euler stationary law.

    Returns (zbar, sd_mean, S_hat, S_exact, sd_S, s_cont) in the eigenbasis of P; see the module docstring.
    """
    p, U = np.linalg.eigh(P)
    C, N, d = draws.shape
    z = (draws - mu) @ U  # eigen-coordinates, (C, N, d)
    rho = (1 - eps_eff * p / 2) ** thin  # per-draw AR(1) coefficient
    s = 1 / (p * (1 - eps_eff * p / 4))  # exact stationary variance of the Euler chain
    total = C * N
    sd_mean = np.sqrt(s / total * (1 + rho) / (1 - rho))
    S_hat = np.einsum("cnk,cnl->kl", z, z) / total
    rr = np.outer(rho, rho)
    sd_S = np.sqrt(np.outer(s, s) * (1 + np.eye(d)) / total * (1 + rr) / (1 - rr))
    return z.mean(axis=(0, 1)), sd_mean, S_hat, np.diag(s), sd_S, 1 / p


# --------------------------------------------------------------------------------------------------------
# 1. Stationary law on a quadratic


@pytest.mark.slow
def test_plain_sgld_matches_exact_gaussian_posterior():
    nbeta, gamma, eps = 10.0, 5.0, 0.01
    P, mu = gaussian_posterior(A_NP, M_NP, WSTAR_NP, nbeta, gamma)
    p = np.linalg.eigvalsh(P)
    assert np.all(np.abs(mu - M_NP) > 0.1) and np.all(np.abs(mu - WSTAR_NP) > 0.1)  # the answer is non-trivial
    C, N, burnin = 500, 2000, 300
    rho_max = 1 - eps * p.min() / 2
    assert np.linalg.norm(WSTAR_NP - mu) * rho_max**burnin < 1e-6  # start-up bias ≪ the sd of the mean (~1e-3)

    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=N,
                        num_burnin=burnin, seed=11)
    trace = sample(quadratic_loss(A_NP, M_NP), torch.tensor(WSTAR_NP, dtype=DT), config=config,
                   observable_fn=record_w, progress=False)
    assert trace.losses.dtype == DT and trace.losses.shape == (C, N, 3)
    draws = trace.losses.numpy()

    zbar, sd_mean, S_hat, S_exact, sd_S, s_cont = eigen_moment_checks(draws, mu, P, eps)
    assert np.all(np.abs(zbar) < Z * sd_mean), (zbar, sd_mean)
    assert np.all(np.abs(S_hat - S_exact) < Z * sd_S), (S_hat, S_exact, sd_S)
    # In the original coordinates: mean μ, covariance U S Uᵀ (the same statements, read back: a rotation
    # moves each entry by at most √d·max|z̄_k| for the mean and d·max|ΔS_kl| for the 3×3 matrix; np.cov's
    # centring at the sample mean instead of μ changes it by O(z̄²) ~ 1e-6).
    _, U = np.linalg.eigh(P)
    cov_exact = U @ S_exact @ U.T
    assert np.allclose(draws.mean(axis=(0, 1)), mu, atol=Z * sd_mean.max() * math.sqrt(3))
    assert np.allclose(np.cov(draws.reshape(-1, 3).T), cov_exact, rtol=0, atol=Z * sd_S.max() * 3)
    # The continuous posterior P⁻¹ is matched up to the O(ε) Euler factor 1/(1 − εp/4) — and the test resolves
    # that factor in the stiffest direction (it is more than Z standard deviations), so it checks the sampler
    # against the exact discretized law, not just to O(ε).
    k = np.argmax(p)
    assert abs(S_exact[k, k] - s_cont[k]) > 2 * Z * sd_S[k, k]
    assert abs(S_hat[k, k] - s_cont[k]) > Z * sd_S[k, k]


@pytest.mark.slow
def test_rmsprop_with_constant_preconditioner_matches_posterior():
    """RMSProp-SGLD with rmsprop_eps ≫ √V: G = 1/(√V + eps) = (1/eps)·(1 − δ), 0 ≤ δ ≤ √V/eps.

    With G = c exactly constant the update w − (ε/2)·c·[nβg + γ(w − w*)] + √(εc)·ξ *is* plain SGLD with step
    ε·c, so its stationary law is the Gaussian above with ε → ε·c (the continuous-time limit of a constant
    preconditioner leaves the posterior unchanged; the Euler chain keeps the exact 1/(1 − εc·p/4) factor).
    Here eps = 1e4 and ε = 100 give ε·c = 0.01, and √V ≤ max_t |g_t| (V is an average of g²), which is
    checked below to be < 10, so δ < 1e-3: a relative perturbation of the step far below the 5σ relative
    tolerances here (≥ 1e-2 on the variances).
    """
    nbeta, gamma, rms_eps = 10.0, 5.0, 1e4
    eps_eff = 0.01
    P, mu = gaussian_posterior(A_NP, M_NP, WSTAR_NP, nbeta, gamma)
    C, N, burnin = 500, 2000, 300
    config = SGLDConfig(step_size=eps_eff * rms_eps, nbeta=nbeta, localization=gamma, num_chains=C,
                        num_draws=N, num_burnin=burnin, preconditioner="rmsprop", rmsprop_eps=rms_eps, seed=12)
    trace = sample(quadratic_loss(A_NP, M_NP), torch.tensor(WSTAR_NP, dtype=DT), config=config,
                   observable_fn=record_w, progress=False)
    draws = trace.losses.numpy()
    # The premise: |g| = |A(w − m)| stays small compared with eps at every recorded step (and at w*).
    grad_max = max(np.abs((draws - M_NP) @ A_NP).max(), np.abs(A_NP @ (WSTAR_NP - M_NP)).max())
    assert grad_max / rms_eps < 1e-3

    zbar, sd_mean, S_hat, S_exact, sd_S, _ = eigen_moment_checks(draws, mu, P, eps_eff)
    assert np.all(np.abs(zbar) < Z * sd_mean), (zbar, sd_mean)
    assert np.all(np.abs(S_hat - S_exact) < Z * sd_S), (S_hat, S_exact, sd_S)


@pytest.mark.slow
def test_thinned_draws_keep_the_stationary_law():
    """Thinning by k records every k-th step; the AR(1) coefficient per draw becomes ρ^k (module docstring)."""
    nbeta, gamma, eps, thin = 10.0, 5.0, 0.01, 4
    P, mu = gaussian_posterior(A_NP, M_NP, WSTAR_NP, nbeta, gamma)
    C, N, burnin = 250, 600, 300
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=N,
                        num_burnin=burnin, thin=thin, seed=13)
    trace = sample(quadratic_loss(A_NP, M_NP), torch.tensor(WSTAR_NP, dtype=DT), config=config,
                   observable_fn=record_w, progress=False)
    zbar, sd_mean, S_hat, S_exact, sd_S, _ = eigen_moment_checks(trace.losses.numpy(), mu, P, eps, thin=thin)
    assert np.all(np.abs(zbar) < Z * sd_mean)
    assert np.all(np.abs(S_hat - S_exact) < Z * sd_S)


def regression_problem(n=16, d=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + torch.randn(n, generator=g, dtype=DT)
    return X, y


def regression_loss(w: torch.Tensor, batch) -> torch.Tensor:
    X, y = batch
    return 0.5 * (y - (X * w).sum(-1)) ** 2  # per-sample losses, shape (batch,)


def minibatch_stationary_cov(X, y, wstar, nbeta, gamma, eps, B):
    """Exact stationary second moment S of u = w − μ for mini-batch SGLD on ℓ_i = ½(y_i − x_iᵀw)².

    With A_B = (1/B)Σ_j x_j x_jᵀ, b_B = (1/B)Σ_j x_j y_j over B indices drawn uniformly with replacement and
    h = ε·nβ/2, one step is (using nβ(Aμ − b) + γ(μ − w*) = 0)

        u' = M_B·u + c_B + √ε·ξ,   M_B = (1 − εγ/2)·I − h·A_B,   c_B = −h·(1/B)Σ_j (ζ_j − ζ̄),
        ζ_i = x_i·(x_iᵀμ − y_i).

    B is independent of u and E[u] = 0 at stationarity, so the cross terms vanish and
    S = E[M_B S M_Bᵀ] + h²·Cov(ζ)/B + ε·I, i.e. vec S = E[M_B ⊗ M_B]·vec S + vec Q with
    E[A_B ⊗ A_B] = A⊗A + (E[xxᵀ ⊗ xxᵀ] − A⊗A)/B. Returns (μ, P, S, spectral radius of E[M_B ⊗ M_B]).
    """
    n, d = X.shape
    A = X.T @ X / n
    b = X.T @ y / n
    P = nbeta * A + gamma * np.eye(d)
    mu = np.linalg.solve(P, nbeta * b + gamma * wstar)
    h = eps * nbeta / 2
    K = (1 - eps * gamma / 2) * np.eye(d)
    EXX = np.mean([np.kron(np.outer(x, x), np.outer(x, x)) for x in X], axis=0)
    EAA = np.kron(A, A) + (EXX - np.kron(A, A)) / B
    EMM = np.kron(K, K) - h * (np.kron(K, A) + np.kron(A, K)) + h * h * EAA
    zeta = X * (X @ mu - y)[:, None]
    Q = h * h * np.cov(zeta.T, bias=True) / B + eps * np.eye(d)
    S = np.linalg.solve(np.eye(d * d) - EMM, Q.reshape(-1)).reshape(d, d)
    return mu, P, S, np.abs(np.linalg.eigvals(EMM)).max()


@pytest.mark.slow
def test_minibatch_sgld_mean_and_inflated_covariance():
    X, y = regression_problem()
    Xn, yn = X.numpy(), y.numpy()
    wstar = np.array([1.0, 1.0, -1.0])
    nbeta, gamma, eps, B = 20.0, 5.0, 0.01, 4
    mu, P, S, radius = minibatch_stationary_cov(Xn, yn, wstar, nbeta, gamma, eps, B)
    assert radius < 1  # mean-square stable, so S exists
    p, U = np.linalg.eigh(P)
    S_fullbatch = U @ np.diag(1 / (p * (1 - eps * p / 4))) @ U.T

    C, N, burnin = 250, 1000, 300
    assert np.linalg.norm(wstar - mu) * (1 - eps * p.min() / 2) ** burnin < 1e-9
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=N,
                        num_burnin=burnin, batch_size=B, seed=21)
    trace = sample(regression_loss, torch.tensor(wstar, dtype=DT), data=(X, y), config=config,
                   observable_fn=record_w, progress=False)
    u = trace.losses.numpy() - mu  # (C, N, d)

    # Mean: Var(ū) = Ω/(C·N), Ω = S + R(I − R)⁻¹S + S(I − R)⁻¹R with R = I − εP/2 (sum of the lag covariances
    # R^τ S; an upper bound for finite N since all the terms are positive in R's eigenbasis).
    R = np.eye(3) - eps * P / 2
    F = R @ np.linalg.inv(np.eye(3) - R)
    Omega = S + F @ S + S @ F.T
    sd_mean = np.sqrt(np.diag(Omega) / (C * N))
    assert np.all(np.abs(u.mean(axis=(0, 1))) < Z * sd_mean), (u.mean(axis=(0, 1)), sd_mean)

    # Second moment: exact S, with the cross-chain standard error of the C i.i.d. per-chain averages.
    per_chain = np.einsum("cnk,cnl->ckl", u, u) / N
    S_hat = per_chain.mean(axis=0)
    se = per_chain.std(axis=0, ddof=1) / math.sqrt(C)
    assert np.all(np.abs(S_hat - S) < Z * se), (S_hat, S, se)
    # Mini-batch noise inflates the variances here by ~50%, which the full-batch law cannot explain.
    assert np.all(np.abs(np.diag(S_hat) - np.diag(S_fullbatch)) > Z * np.diag(se))


# --------------------------------------------------------------------------------------------------------
# 2. Single steps by hand


def _hand_state(C=3):
    g = torch.Generator().manual_seed(5)
    params = {"a": torch.randn(C, 2, 2, generator=g, dtype=DT), "b": torch.randn(C, 3, generator=g, dtype=DT)}
    grads = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}
    center = {"a": torch.randn(2, 2, generator=g, dtype=DT), "b": torch.randn(3, generator=g, dtype=DT)}
    noise = {k: torch.randn(v.shape, generator=g, dtype=DT) for k, v in params.items()}
    return params, grads, center, noise


def test_plain_step_equals_hand_computation():
    params, grads, center, noise = _hand_state()
    cfg = SGLDConfig(step_size=0.03, nbeta=7.0, localization=2.5)
    before = {k: v.clone() for k, v in params.items()}
    new = sgld_step(ChainState(params, None), grads, center, noise, cfg)
    assert new.square_avg is None
    for k in params:
        w, gk, c, xi = before[k], grads[k], center[k], noise[k]
        expected = w - 0.015 * (7.0 * gk + 2.5 * (w - c)) + math.sqrt(0.03) * xi
        torch.testing.assert_close(new.params[k], expected, rtol=1e-14, atol=1e-14)
        assert torch.equal(params[k], before[k])  # inputs untouched


def test_rmsprop_steps_equal_hand_computation():
    params, grads, center, noise = _hand_state()
    alpha, reps, eps, nbeta, gamma = 0.9, 0.05, 0.02, 30.0, 4.0
    cfg = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, preconditioner="rmsprop",
                     rmsprop_alpha=alpha, rmsprop_eps=reps, rmsprop_adapt="always")
    s1 = sgld_step(ChainState(params, None), grads, center, noise, cfg)
    for k in params:
        w, g, c, xi = params[k], grads[k], center[k], noise[k]
        V = (1 - alpha) * g**2
        G = 1 / (V.sqrt() + reps)
        expected = w - (eps / 2) * G * (nbeta * g + gamma * (w - c)) + (eps * G).sqrt() * xi
        torch.testing.assert_close(s1.square_avg[k], V, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(s1.params[k], expected, rtol=1e-14, atol=1e-14)
    # A second step carries V: V2 = αV1 + (1 − α)g2².
    grads2 = {k: 0.5 - v for k, v in grads.items()}
    s2 = sgld_step(s1, grads2, center, noise, cfg)
    for k in params:
        w, g, c, xi = s1.params[k], grads2[k], center[k], noise[k]
        V = alpha * s1.square_avg[k] + (1 - alpha) * g**2
        G = 1 / (V.sqrt() + reps)
        expected = w - (eps / 2) * G * (nbeta * g + gamma * (w - c)) + (eps * G).sqrt() * xi
        torch.testing.assert_close(s2.square_avg[k], V, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(s2.params[k], expected, rtol=1e-14, atol=1e-14)


def _dict_potential(p, _batch=None):
    a, b = p["a"], p["b"]
    return 0.5 * (a * a).sum() + 0.25 * (b**4).sum() + a[0] * b[1] + torch.sin(b[0])


def _flatten(p, _batch=None):
    return torch.cat([p["a"], p["b"]])


@pytest.mark.parametrize("preconditioner, adapt, burnin",
                         [("none", "burnin", 0), ("rmsprop", "always", 0), ("rmsprop", "burnin", 2)])
def test_sample_reproduces_hand_steps_from_the_seed(preconditioner, adapt, burnin):
    """Full-batch steps of ``sample`` equal the update formulas fed with the documented noise stream.

    RMSProp with rmsprop_adapt="burnin" adapts V during the ``burnin`` steps, then uses G = 1/(√V + eps) from
    the last burn-in step unchanged (and V stays as it was)."""
    C, steps, seed = 4, 3, 123
    center = {"a": torch.tensor([0.3, -0.2], dtype=DT), "b": torch.tensor([0.5, 1.0, -0.7], dtype=DT)}
    cfg = SGLDConfig(step_size=0.05, nbeta=3.0, localization=2.0, num_chains=C, num_draws=steps, num_burnin=burnin,
                     preconditioner=preconditioner, rmsprop_alpha=0.8, rmsprop_eps=0.3, rmsprop_adapt=adapt,
                     seed=seed)
    trace = sample(_dict_potential, center, config=cfg, observable_fn=_flatten, progress=False)
    assert trace.draw_steps.tolist() == [burnin + t for t in range(steps)]

    gens = make_generators(seed, C)  # chain c's generator: its noise is one randn of all D = 2 + 3 parameters
    w = {k: v.expand(C, *v.shape).clone() for k, v in center.items()}
    V = {k: torch.zeros_like(v) for k, v in w.items()}
    G = None
    for t in range(burnin + steps):
        grads, losses = {k: torch.empty_like(v) for k, v in w.items()}, torch.empty(C, dtype=DT)
        for c in range(C):
            pc = {k: v[c].clone().requires_grad_(True) for k, v in w.items()}
            value = _dict_potential(pc)
            for k, gk in zip(pc, torch.autograd.grad(value, list(pc.values()))):
                grads[k][c] = gk
            losses[c] = value.detach()
        torch.testing.assert_close(trace.loss_trace[:, t], losses, rtol=1e-12, atol=1e-12)
        xi = torch.stack([torch.randn(5, generator=g, dtype=DT) for g in gens])
        noise = {"a": xi[:, :2], "b": xi[:, 2:]}
        frozen = adapt == "burnin" and t >= burnin
        for k in w:
            g = grads[k]
            drift = 3.0 * g + 2.0 * (w[k] - center[k])
            if preconditioner == "none":
                w[k] = w[k] - 0.025 * drift + math.sqrt(0.05) * noise[k]
            else:
                if not frozen:
                    V[k] = 0.8 * V[k] + 0.2 * g**2
                Gk = G[k] if frozen else 1 / (V[k].sqrt() + 0.3)
                w[k] = w[k] - 0.025 * Gk * drift + (0.05 * Gk).sqrt() * noise[k]
        if adapt == "burnin" and preconditioner == "rmsprop" and t == burnin - 1:
            G = {k: 1 / (v.sqrt() + 0.3) for k, v in V.items()}
        if t >= burnin:
            torch.testing.assert_close(trace.losses[:, t - burnin], torch.cat([w["a"], w["b"]], dim=1), rtol=1e-12,
                                       atol=1e-12)
    assert trace.init_loss == pytest.approx(float(_dict_potential(center)), rel=1e-14)
    if G is None:
        assert trace.preconditioner is None
    else:  # the trace reports the frozen preconditioner of every chain
        assert set(trace.preconditioner) == {"a", "b"}
        for k in G:
            torch.testing.assert_close(trace.preconditioner[k], G[k], rtol=1e-14, atol=1e-14)


def test_sample_reproduces_minibatch_steps_from_the_seed():
    """With batch_size < n each chain draws its indices ``randint(n, (B,))`` first in each step, then its noise."""
    X, y = regression_problem(n=10)
    C, B, steps, seed = 3, 4, 2, 7
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=C, num_draws=steps,
                     batch_size=B, seed=seed)
    trace = sample(regression_loss, wstar, data=(X, y), config=cfg, observable_fn=record_w, progress=False)
    gens = make_generators(seed, C)
    w = wstar.expand(C, 3).clone()
    for t in range(steps):
        idx, noise = torch.empty(C, B, dtype=torch.long), torch.empty(C, 3, dtype=DT)
        for c, g in enumerate(gens):
            idx[c] = torch.randint(10, (B,), generator=g)
            noise[c] = torch.randn(3, generator=g, dtype=DT)
        Xb, yb = X[idx], y[idx]  # (C, B, d), (C, B)
        resid = yb - (Xb * w[:, None, :]).sum(-1)
        grad = -(Xb * resid[..., None]).mean(1)  # gradient of the mean mini-batch loss
        torch.testing.assert_close(trace.loss_trace[:, t], (0.5 * resid**2).mean(1), rtol=1e-12, atol=1e-12)
        w = w - 0.01 * (5.0 * grad + 1.0 * (w - wstar)) + math.sqrt(0.02) * noise
        torch.testing.assert_close(trace.losses[:, t], w, rtol=1e-12, atol=1e-12)
    # L_n(w*) is the full-data mean, even though it is computed in mini-batch sized pieces (10 = 4 + 4 + 2).
    assert trace.init_loss == pytest.approx(float(regression_loss(wstar, (X, y)).mean()), rel=1e-13)


# --------------------------------------------------------------------------------------------------------
# 3. Divergence is reported with its chains and step


def test_nan_loss_names_its_chain_and_step():
    """Make exactly one (chain, step) non-finite: the unique maximum of w₀ over a reference run.

    A reference run records w after every update. The loss at step t is evaluated at the parameters after t
    updates, i.e. at w* for t = 0 and at draw t − 1 otherwise. With T just below the largest w₀ seen up to step
    T_STEPS, the loss ``NaN if w₀ > T`` is non-finite at exactly that (chain, step); the same seed replays the
    same trajectory up to it (torch.where leaves values and gradients elsewhere unchanged).
    """
    C, steps, seed = 8, 30, 3
    wstar = torch.zeros(2, dtype=DT)
    base = quadratic_loss(np.eye(2), np.zeros(2))
    cfg = SGLDConfig(step_size=0.01, nbeta=1.0, localization=1.0, num_chains=C, num_draws=steps, seed=seed)
    ref = sample(base, wstar, config=cfg, observable_fn=record_w, progress=False).losses[:, :, 0]
    at_step = torch.cat([torch.zeros(C, 1, dtype=DT), ref[:, :-1]], dim=1)  # w₀ at which step t's loss is taken
    top2 = at_step.flatten().topk(2).values
    threshold = float(top2.mean())
    chain, step = divmod(int(at_step.flatten().argmax()), steps)
    assert 0 < step < steps - 1

    def nan_loss(w, _batch=None):
        return torch.where(w[0] > threshold, torch.tensor(float("nan"), dtype=DT), base(w))

    with pytest.raises(SamplerDivergence) as info:
        sample(nan_loss, wstar, config=cfg, observable_fn=record_w, progress=False)
    err = info.value
    assert err.chains == [chain] and err.step == step and "loss" in err.reason
    assert f"chain(s) [{chain}] at step {step} of {steps}" in str(err)
    # The partial trace: every step up to and including the failing one, draws up to the one before it.
    tr = err.trace
    assert tr.loss_trace.shape == (C, step + 1)
    assert torch.isnan(tr.loss_trace[chain, step])
    assert torch.isfinite(tr.loss_trace[:, :step]).all()
    assert torch.isfinite(tr.loss_trace[torch.arange(C) != chain, step]).all()
    assert tr.losses.shape == (C, step, 2) and torch.equal(tr.draw_steps, torch.arange(step))
    torch.testing.assert_close(tr.losses[:, :, 0], ref[:, :step], rtol=0, atol=0)


def test_too_large_step_on_quartic_diverges_where_a_hand_run_does():
    """L(w) = Σ w⁴ with ε·nβ large: the iteration w ← w − (ε/2)(4nβw³ + γw) + √ε ξ blows up in a few steps.

    The same recursion run by hand with the same noise stream gives the first step at which a loss or a
    parameter is not finite (in float64 |w| grows like 2ε·nβ·|w|³: 1 → ~20 → ~10⁵ → ~10¹⁶ → … → inf).
    """
    C, seed = 6, 9
    wstar = torch.tensor([1.0, -0.5], dtype=DT)
    eps, nbeta, gamma = 0.1, 100.0, 1.0

    def quartic(w, _batch=None):
        return (w**4).sum()

    cfg = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=50, seed=seed)
    with pytest.raises(SamplerDivergence) as info:
        sample(quartic, wstar, config=cfg, progress=False)
    err = info.value

    gens = make_generators(seed, C)
    w = wstar.expand(C, 2).clone()
    for step in range(50):
        loss = (w**4).sum(1)
        xi = torch.stack([torch.randn(2, generator=g, dtype=DT) for g in gens])
        w = w - (eps / 2) * (nbeta * 4 * w**3 + gamma * (w - wstar)) + math.sqrt(eps) * xi
        bad = ~torch.isfinite(loss) | ~torch.isfinite(w).all(1)
        if bad.any():
            break
    assert 1 < step < 49
    assert err.step == step and err.chains == torch.nonzero(bad).flatten().tolist()
    assert err.trace.loss_trace.shape == (C, step + 1)
    assert "step_size" in str(err) and f"at step {step} of 50" in str(err)


# --------------------------------------------------------------------------------------------------------
# 4. Shapes, labels, draw steps, seeds, nn.Module path


TOKEN_WEIGHTS = torch.tensor([0.6, 0.8, 1.0, 1.2, 1.4], dtype=DT)


def test_shapes_dims_and_draw_steps():
    X, y = regression_problem(n=12)
    cfg = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=10.0, num_chains=3, num_draws=4, num_burnin=5,
                     thin=3, seed=0)
    assert cfg.num_steps == 5 + 4 * 3
    trace = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), observables=(X[:7], y[:7]),
                   config=cfg, progress=False)
    assert trace.losses.shape == (3, 4, 7) and trace.dims == ("chain", "draw", "sample")
    assert trace.draw_steps.tolist() == [7, 10, 13, 16]
    assert trace.loss_trace.shape == (3, 17) and trace.num_chains == 3
    assert torch.equal(trace.draw_loss, trace.loss_trace[:, [7, 10, 13, 16]])
    assert trace.init_observable_losses.shape == (7,)
    torch.testing.assert_close(trace.init_observable_losses, regression_loss(torch.zeros(3, dtype=DT), (X[:7], y[:7])))
    assert trace.summary()["losses_shape"] == [3, 4, 7] and trace.summary()["dims"] == ["chain", "draw", "sample"]

    # Per-token losses: a trailing dimension per sample becomes "token".
    def per_token(w, batch):
        X, y = batch
        r = 0.5 * (y - (X * w).sum(-1)) ** 2
        return r.unsqueeze(-1) * TOKEN_WEIGHTS  # (batch, 5 tokens); the mean over tokens is r

    tok = sample(per_token, torch.zeros(3, dtype=DT), data=(X, y), observables=(X[:7], y[:7]), config=cfg,
                 progress=False)
    assert tok.losses.shape == (3, 4, 7, 5) and tok.dims == ("chain", "draw", "sample", "token")
    # The training loss (mean over samples and tokens) is unchanged, so with the same seed the trajectory is the
    # same and the token losses are the weighted per-sample losses.
    torch.testing.assert_close(tok.losses, trace.losses[..., None] * TOKEN_WEIGHTS, rtol=1e-12, atol=1e-12)

    # Nothing to record: no losses, the loss trace is still there.
    bare = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), config=cfg, progress=False)
    assert bare.losses is None and bare.loss_trace.shape == (3, 17)


def test_draws_are_the_states_at_draw_steps_and_observables_are_per_sample_losses():
    """A thinned run records exactly the states of the unthinned run (same seed) at its draw_steps, and the
    recorded observable losses are loss_fn evaluated at those states; chunking the observables changes nothing."""
    X, y = regression_problem(n=12)
    common = dict(step_size=1e-2, nbeta=10.0, localization=3.0, num_chains=5, seed=4)
    every = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y),
                   config=SGLDConfig(num_draws=17, **common), observable_fn=record_w, progress=False)
    cfg = SGLDConfig(num_draws=4, num_burnin=5, thin=3, **common)
    thinned = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), config=cfg, observable_fn=record_w,
                     progress=False)
    assert torch.equal(thinned.losses, every.losses[:, thinned.draw_steps])
    obs = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), observables=(X[:7], y[:7]), config=cfg,
                 progress=False)
    expected = torch.stack([torch.stack([regression_loss(w, (X[:7], y[:7])) for w in chain])
                            for chain in thinned.losses])
    torch.testing.assert_close(obs.losses, expected, rtol=1e-12, atol=1e-12)
    chunked = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), observables=(X[:7], y[:7]),
                     config=replace(cfg, observable_chunk=3), progress=False)
    torch.testing.assert_close(chunked.losses, obs.losses, rtol=0, atol=0)
    by_keyword = sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), observables=(X[:7], y[:7]),
                        config=cfg, observable_chunk=3, progress=False)  # the keyword stagewise.attribute passes
    torch.testing.assert_close(by_keyword.losses, obs.losses, rtol=0, atol=0)


def test_seeds_are_deterministic():
    X, y = regression_problem(n=12)

    def run(seed, batch_size=5):
        cfg = SGLDConfig(step_size=1e-2, nbeta=10.0, localization=3.0, num_chains=4, num_draws=10,
                         batch_size=batch_size, preconditioner="rmsprop", num_burnin=3, seed=seed)
        return sample(regression_loss, torch.zeros(3, dtype=DT), data=(X, y), observables=(X, y), config=cfg,
                      progress=False)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.losses, b.losses) and torch.equal(a.loss_trace, b.loss_trace)
    assert not torch.allclose(a.losses, c.losses)
    # Chains are distinct from each other (independent noise), not copies.
    assert not torch.allclose(a.losses[0], a.losses[1])


def test_module_path_equals_plain_function_path():
    """A tiny nn.Linear regression through module_loss_fn samples exactly what the same model written as a
    function of a {"weight", "bias"} dict samples with the same seed (same parameter order, same noise)."""
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2).double()
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    g = torch.Generator().manual_seed(2)
    X = torch.randn(20, 3, generator=g, dtype=DT)
    Y = torch.randn(20, 2, generator=g, dtype=DT)

    def per_sample(forward, batch):
        x, t = batch
        return 0.5 * ((forward(x) - t) ** 2).sum(-1)

    params, loss_fn = module_loss_fn(module, per_sample)
    assert list(params) == ["weight", "bias"]

    def plain(p, batch):
        x, t = batch
        out = (x.unsqueeze(-2) * p["weight"]).sum(-1) + p["bias"]
        return 0.5 * ((out - t) ** 2).sum(-1)

    cfg = SGLDConfig(step_size=1e-2, nbeta=20.0, localization=5.0, num_chains=3, num_draws=8, batch_size=6,
                     preconditioner="rmsprop", num_burnin=2, seed=5)
    via_module = sample(loss_fn, params, data=(X, Y), observables=(X[:4], Y[:4]), config=cfg, progress=False)
    via_plain = sample(plain, {k: v.clone() for k, v in before.items()}, data=(X, Y), observables=(X[:4], Y[:4]),
                       config=cfg, progress=False)
    torch.testing.assert_close(via_module.losses, via_plain.losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(via_module.loss_trace, via_plain.loss_trace, rtol=1e-10, atol=1e-12)
    assert via_module.init_loss == pytest.approx(via_plain.init_loss, rel=1e-12)
    for k, v in module.named_parameters():  # sampling does not move the module
        assert torch.equal(v.detach(), before[k])


# --------------------------------------------------------------------------------------------------------
# 5. Config validation


@pytest.mark.parametrize(
    "field, value, accepted",
    [
        ("step_size", -1e-3, "a finite number > 0"),
        ("step_size", 0.0, "a finite number > 0"),
        ("step_size", float("nan"), "a finite number > 0"),
        ("step_size", float("inf"), "a finite number > 0"),
        ("nbeta", 0.0, "a finite number > 0"),
        ("nbeta", -5.0, "a finite number > 0"),
        ("localization", -1.0, "a finite number ≥ 0"),
        ("num_chains", 0, "an integer ≥ 1"),
        ("num_chains", True, "an integer ≥ 1"),
        ("num_chains", 2.0, "an integer ≥ 1"),
        ("num_draws", 0, "an integer ≥ 1"),
        ("num_burnin", -1, "an integer ≥ 0"),
        ("thin", 0, "an integer ≥ 1"),
        ("seed", -1, "an integer ≥ 0"),
        ("batch_size", 0, "an integer ≥ 1"),
        ("batch_size", False, "an integer ≥ 1"),
        ("preconditioner", "adam", "'none' or 'rmsprop'"),
        ("rmsprop_alpha", 1.0, "a number in [0, 1)"),
        ("rmsprop_alpha", -0.1, "a number in [0, 1)"),
        ("rmsprop_eps", 0.0, "a finite number > 0"),
        ("step_size", True, "a finite number > 0"),
    ],
)
def test_config_rejects_bad_field(field, value, accepted):
    with pytest.raises(ConfigError) as info:
        SGLDConfig(**{field: value})
    message = str(info.value)
    assert re.search(rf"\b{field} = ", message), message
    assert f"(accepted: {accepted})" in message, message
    assert isinstance(info.value, ValueError)


def test_config_reports_every_bad_field_and_accepts_edges():
    with pytest.raises(ConfigError) as info:
        SGLDConfig(step_size=-1.0, num_chains=0, preconditioner="adam")
    message = str(info.value)
    assert "step_size" in message and "num_chains" in message and "preconditioner" in message
    # Boundary values that are valid.
    cfg = SGLDConfig(localization=0.0, rmsprop_alpha=0.0, num_burnin=0, seed=0, batch_size=1, step_size=1)
    assert cfg.num_steps == cfg.num_draws
