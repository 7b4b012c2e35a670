"""The RMSProp-SGLD of the default (preconditioner adapted in burn-in, then frozen) samples the exact law.

On a linear-Gaussian model the localized posterior is Gaussian with precision P = (nβ/n)·XᵀX + γI and mean
μ = P⁻¹((nβ/n)·Xᵀy + γw*). With the preconditioner frozen at a diagonal G (per chain), one full-batch step is
the linear recursion

    u' = M·u + √(εG)·ξ,     u = w − μ,     M = I − (ε/2)·G·P,

whose stationary mean is 0 and whose stationary covariance S solves the discrete Lyapunov equation
S = M·S·Mᵀ + ε·G: the *exact* law of the frozen chain, including its O(ε) Euler bias (G = I gives plain SGLD).
The chains start at w* = the least-squares fit, which is μ here, so burn-in (500 steps, ≈ 20 relaxation times of
the slowest direction) only has to spread them out.

The checks use the C independent chains: with D_c the difference between chain c's second moment about μ and
its exact S_c, the mean D̄ over chains has the standard error se = sd_c(D_c)/√C. Each entry must be within
5 se at the full length (78 distinct entries: the chance of a false alarm is ~1e-3), the relative Frobenius
error ‖D̄‖/‖S̄‖ must stay within 3·‖se‖/‖S̄‖ at every length (E‖D̄‖² = Σ se², so an unbiased sampler sits
near 1·‖se‖: measured 1.2, 1.1, 0.8 at 500, 2,000, 8,000 draws) and it must fall by at least half from the
shortest to the longest run (a 1/√N error falls by 4). For scale: RMSProp with rmsprop_adapt="always", run the
same way and compared with the posterior, is 5.4 se off in its worst entry at 8,000 draws (the frozen chain:
2.7), and its BIF error stays near 8% however long it runs (chapter 2).
"""

from __future__ import annotations

import numpy as np
import pytest

from stagewise.models.bif import LinearRegression
from stagewise.sampling import SGLDConfig, sample

Z = 5.0


def lyapunov(M: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """S with S = M S Mᵀ + Q."""
    d = M.shape[0]
    return np.linalg.solve(np.eye(d * d) - np.kron(M, M), Q.reshape(-1)).reshape(d, d)


def model_12d():
    model = LinearRegression(num_samples=40, num_features=12, noise=0.5, seed=0)
    x, y = model.data()
    w_star = model.least_squares()
    nbeta, gamma = 40.0, 1.0
    mean, cov = model.exact_posterior(nbeta, gamma, w_star)
    precision = np.linalg.inv(cov.numpy())
    return model, (x, y), w_star, nbeta, gamma, mean.numpy(), cov.numpy(), precision


def check_against_exact(draws: np.ndarray, mu: np.ndarray, exact_per_chain: np.ndarray, lengths):
    """draws (C, N, d); exact_per_chain (C, d, d). Returns the relative errors at each length."""
    C = draws.shape[0]
    exact = exact_per_chain.mean(0)
    errors = []
    for k in lengths:
        u = draws[:, :k] - mu
        D = np.einsum("cnk,cnl->ckl", u, u) / k - exact_per_chain  # (C, d, d)
        D_bar = D.mean(0)
        se = D.std(0, ddof=1) / np.sqrt(C)
        error, scale = np.linalg.norm(D_bar) / np.linalg.norm(exact), np.linalg.norm(se) / np.linalg.norm(exact)
        assert error <= 3 * scale, (k, error, scale)
        errors.append(error)
    assert np.all(np.abs(D_bar) < Z * se), np.abs(D_bar / se).max()
    assert errors[-1] < 0.5 * errors[0], errors
    return errors


@pytest.mark.slow
def test_frozen_rmsprop_and_plain_sgld_converge_to_the_exact_law():
    model, batch, w_star, nbeta, gamma, mu, cov, P = model_12d()
    assert np.allclose(mu, w_star.numpy())  # the chains start at the posterior mean
    d, C, lengths = 12, 32, (500, 2000, 8000)

    # RMSProp, adapted during 500 burn-in steps, then frozen.
    eps = 0.003
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=lengths[-1],
                        num_burnin=500, preconditioner="rmsprop", seed=5)
    trace = sample(model.loss, w_star, batch, config=config, observable_fn=lambda w, _: w, progress=False)
    G = trace.preconditioner.numpy()  # (C, d): the frozen preconditioner of every chain
    assert G.shape == (C, d) and np.all(G > 1) and np.all(G < 1 / config.rmsprop_eps)
    assert G.std() > 0.01 * G.mean()  # it did adapt: not the constant 1/eps
    exact = np.stack([lyapunov(np.eye(d) - 0.5 * eps * g[:, None] * P, eps * np.diag(g)) for g in G])
    errors = check_against_exact(trace.losses.numpy(), mu, exact, lengths)
    # The exact law of the frozen chain is within a few per cent of the posterior itself (its Euler bias).
    assert np.linalg.norm(exact.mean(0) - cov) / np.linalg.norm(cov) < 0.05
    assert errors[-1] < 0.05

    # Plain SGLD, the same checks (G = I).
    eps = 0.02
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=C, num_draws=4000, seed=6)
    trace = sample(model.loss, w_star, batch, config=config, observable_fn=lambda w, _: w, progress=False)
    assert trace.preconditioner is None
    exact = lyapunov(np.eye(d) - 0.5 * eps * P, eps * np.eye(d))
    check_against_exact(trace.losses.numpy(), mu, np.broadcast_to(exact, (C, d, d)), (250, 1000, 4000))
