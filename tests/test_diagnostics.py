"""Known-answer tests of the sampler diagnostics, ``stagewise.diagnostics``.

What is checked, and against what:

* ``ess`` on stationary Gaussian AR(1) chains x_t = ρ·x_{t−1} + ξ_t, whose integrated autocorrelation time is
  τ = 1 + 2·Σ_{t≥1} ρ^t = (1 + ρ)/(1 − ρ) exactly, so the effective sample size of C chains × N draws is
  C·N·(1 − ρ)/(1 + ρ) (iid: ρ = 0, ESS = C·N). Tolerance (Sokal 1989, "Monte Carlo methods in statistical
  mechanics", eq. 3.19): an autocorrelation time summed over a window of M lags from C·N draws has relative
  variance Var(τ̂)/τ² ≈ 2·(2M + 1)/(C·N). Geyer's initial positive sequence stops where the estimated
  autocorrelation sinks into its own noise, whose standard deviation is ≈ √(τ/(C·N)) (Bartlett), i.e. at
  M ≈ ln(√(C·N/τ))/(−ln ρ) lags (M = 2 for iid draws: the first pair is always kept, the second is noise).
  This formula was checked against 50 replicates at C·N = 20,000 (predicted relative sd 0.082, 0.037, 0.022
  for ρ = 0.9, 0.5, 0; observed 0.080, 0.040, 0.021). Every check is within Z = 5 such standard deviations.

* ``rhat`` (split-R̂) on iid Gaussian chains has an exact law: with m = 2C half-chains of n draws, the
  between-half variance B = n·Var(half means) and the within-half variance W (mean of the unbiased half
  variances) satisfy B/W ~ F(m − 1, m(n − 1)) (independent χ² variables), and R̂² = (n − 1)/n + (B/W)/n.
  The test compares thousands of R̂ values with this law (Kolmogorov–Smirnov), and checks R̂ > 1.1 when the
  chains disagree, against a hand computation, shapes and errors.

* ``settling_report`` / ``summarize``: a chain with a leftover transient (a chain started far from the
  posterior, as a sampler run with no burn-in produces, or a synthetic trace with a decaying offset in one
  chain) is flagged and named; stationary chains are reported settled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal, stats

from stagewise.diagnostics import ChainReport, ess, rhat, settling_report, summarize
from stagewise.sampling import SampleTrace, SGLDConfig, sample

DT = torch.float64
Z = 5.0  # width of every statistical check, in standard deviations


def ar1(rho: float, chains: int, draws: int, *rest: int, seed: int = 0) -> torch.Tensor:
    """Stationary Gaussian AR(1) chains x_t = ρ·x_{t−1} + ξ_t, ξ ~ N(0, 1), shape (chains, draws, *rest).

    The first innovation has the stationary variance 1/(1 − ρ²), so every chain starts in its stationary law.
    """
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((chains, *rest, draws))
    xi[..., 0] /= math.sqrt(1 - rho**2)
    x = signal.lfilter([1.0], [1.0, -rho], xi, axis=-1)
    return torch.from_numpy(np.moveaxis(x, -1, 1).copy())


def ess_rel_sd(rho: float, total: int) -> float:
    """Relative standard deviation of the ESS estimate (module docstring: Sokal's window formula)."""
    tau = (1 + rho) / (1 - rho)
    window = 2 if rho == 0 else max(2, math.log(math.sqrt(total / tau)) / -math.log(rho))
    return math.sqrt(2 * (2 * window + 1) / total)


# --------------------------------------------------------------------------------------------------------
# 1. Effective sample size


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_of_ar1_chains_matches_exact_autocorrelation_time(rho):
    """ESS = C·N·(1 − ρ)/(1 + ρ) for AR(1) chains, for each of 2 × 3 independent quantities.

    C·N = 4 × 50,000 = 200,000 draws. Relative tolerance Z·√(2(2M + 1)/(C·N)) (module docstring):
    ρ = 0.9: τ = 19, M ≈ 44 lags, relative sd 0.030, tolerance 15%; ρ = 0.5: M ≈ 8, tolerance 6.5%;
    ρ = 0: M = 2, tolerance 3.5%. The quantities are independent, so each is checked on its own.
    """
    C, N = 4, 50_000
    x = ar1(rho, C, N, 2, 3, seed=int(100 * rho) + 1)
    estimate = ess(x)
    assert estimate.shape == (2, 3) and estimate.dtype == DT
    exact = C * N * (1 - rho) / (1 + rho)
    tol = Z * ess_rel_sd(rho, C * N)
    assert tol < 0.16
    ratio = estimate / exact
    assert torch.all((ratio - 1).abs() < tol), (ratio, tol)


def test_ess_of_iid_draws_is_chains_times_draws_and_shapes_follow_trailing_dims():
    """iid N(0, 1): ESS ≈ C·N (ρ = 0 above: relative sd √(10/(C·N)) = 0.016 at C·N = 40,000, 5σ = 8%).

    Shapes: (C, N) → a 0-d tensor, (C, N, K) → (K,), (C, N, a, b) → (a, b); the values do not depend on how the
    trailing dimensions are arranged.
    """
    C, N = 8, 5_000
    x = torch.randn(C, N, 2, 3, generator=torch.Generator().manual_seed(3), dtype=DT)
    e = ess(x)
    assert e.shape == (2, 3)
    tol = Z * ess_rel_sd(0.0, C * N)
    assert torch.all((e / (C * N) - 1).abs() < tol), (e, tol)
    torch.testing.assert_close(ess(x.reshape(C, N, 6)), e.reshape(6), rtol=1e-12, atol=0)
    scalar = ess(x[:, :, 0, 0])
    assert scalar.shape == () and float(scalar) == pytest.approx(float(e[0, 0]), rel=1e-12)


def test_ess_counts_disagreeing_chains_as_few_draws():
    """Chains with different means (offsets 0, 3, 6, 9 sd): the between-chain variance enters var⁺, so the
    autocorrelations stay near 1 and the ESS collapses to a few percent of C·N (an iid run would give ≈ C·N)."""
    C, N = 4, 2_000
    x = torch.randn(C, N, generator=torch.Generator().manual_seed(4), dtype=DT) + 3.0 * torch.arange(C)[:, None]
    assert float(ess(x)) < 0.05 * C * N


def test_ess_and_rhat_reject_too_few_draws_and_bad_shapes():
    short = torch.randn(4, 3, dtype=DT)
    with pytest.raises(ValueError, match="at least 4 draws"):
        ess(short)
    with pytest.raises(ValueError, match="at least 4 draws"):
        rhat(short)
    for bad in (torch.randn(10, dtype=DT), torch.tensor(1.0, dtype=DT)):
        with pytest.raises(ValueError, match=r"\(chain, draw, \.\.\.\)"):
            ess(bad)
        with pytest.raises(ValueError, match=r"\(chain, draw, \.\.\.\)"):
            rhat(bad)
    # The edge: exactly 4 draws are accepted.
    assert ess(torch.randn(3, 4, dtype=DT)).shape == ()
    assert rhat(torch.randn(3, 4, dtype=DT)).shape == ()


# --------------------------------------------------------------------------------------------------------
# 2. Split-R̂


def test_rhat_of_iid_chains_follows_its_exact_law():
    """R̂² = (n − 1)/n + F/n with F ~ F(m − 1, m(n − 1)) for iid Gaussian draws (module docstring).

    4 chains × 200 draws → m = 8 half-chains of n = 100; 4,000 independent quantities. The Kolmogorov–Smirnov
    statistic of 4,000 draws from the exact law has p-value uniform on (0, 1); the check is p > 1e-4. For scale:
    R̂ from the unsplit chains (m = 4, n = 200) would be a different law, which the same test rejects.
    Every R̂ is below the exact 1 − 1e-6 quantile (so "≈ 1" means < 1.03 here).
    """
    C, N, K = 4, 200, 4_000
    x = torch.randn(C, N, K, generator=torch.Generator().manual_seed(5), dtype=DT)
    r = rhat(x).numpy()
    assert r.shape == (K,)
    m, n = 2 * C, N // 2
    law = stats.f(m - 1, m * (n - 1))

    def cdf(v):
        return law.cdf(n * v**2 - (n - 1))

    assert stats.kstest(r, cdf).pvalue > 1e-4
    # Power: the unsplit statistic (m = C, n = N) computed by hand is rejected by the same test.
    y = x.numpy()
    W = y.var(axis=1, ddof=1).mean(0)
    B = N * y.mean(axis=1).var(axis=0, ddof=1)
    unsplit = np.sqrt((N - 1) / N + B / W / N)
    assert stats.kstest(unsplit, cdf).pvalue < 1e-6
    top = math.sqrt((n - 1) / n + law.ppf(1 - 1e-6) / n)
    assert r.max() < top < 1.03


def test_rhat_equals_hand_computation_and_flags_disagreeing_or_drifting_chains():
    """Split-R̂ by hand (Gelman et al., BDA3 §11.4) on a small array with 7 draws (the middle draw is dropped),
    then R̂ > 1.1 for chains with different means, and for a single chain whose second half moved."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 7, 2, generator=g, dtype=DT)
    y = x.numpy()
    halves = np.concatenate([y[:, :3], y[:, -3:]], axis=0)  # (6, 3, 2)
    n = 3
    W = halves.var(axis=1, ddof=1).mean(0)
    B = n * halves.mean(axis=1).var(axis=0, ddof=1)
    expected = np.sqrt(((n - 1) / n * W + B / n) / W)
    np.testing.assert_allclose(rhat(x).numpy(), expected, rtol=1e-12)

    iid = torch.randn(4, 500, generator=g, dtype=DT)
    assert abs(float(rhat(iid)) - 1) < 0.03
    # One chain of four off by 2 sd: half-chain means (0 ×6, 2 ×2) have variance 6/7, so R̂ ≈ √(1 + 6/7) ≈ 1.36.
    shifted = iid + torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=DT)[:, None]
    assert float(rhat(shifted)) > 1.25
    # One chain whose second half moved by 1 sd (only the split sees it): means 0, 1, R̂ ≈ √(1 + 1/2) ≈ 1.22.
    drifting = iid[:1].clone()
    drifting[:, 250:] += 1.0
    assert float(rhat(drifting)) > 1.15
    assert rhat(torch.randn(4, 20, 2, 3, generator=g, dtype=DT)).shape == (2, 3)


# --------------------------------------------------------------------------------------------------------
# 3. Settling report and summary


def synthetic_trace(loss_trace: torch.Tensor, burnin: int, losses: torch.Tensor | None = None) -> SampleTrace:
    C, steps = loss_trace.shape
    config = SGLDConfig(num_chains=C, num_draws=steps - burnin, num_burnin=burnin)
    return SampleTrace(losses=losses, loss_trace=loss_trace, draw_steps=torch.arange(burnin, steps),
                       init_loss=float(loss_trace[0, 0]), init_observable_losses=None, config=config)


def test_settling_report_flags_the_chain_with_a_transient_and_summarize_names_it():
    """4 chains of stationary AR(1) noise (ρ = 0.5, sd 0.1) around 2.0 for 1,000 steps after a 100-step
    burn-in. Chain 2 carries a decaying offset 3·exp(−t/100) (a chain started far away, still relaxing);
    chain 0 has a huge transient *inside* the burn-in, which must be ignored.

    Null law of the settled chains: z ≈ N(0, 1) (the ESS of 500 draws at τ = 3 is ~170, so its estimate is
    good to ~10%): |z| < 4 with probability 1 − 6e-5 each. Chain 2: its first half is ≈ 3·100/500 = 0.6 higher
    on average against a standard error ≈ 0.1·√(2·3/500) ≈ 0.011 (the offset is < 3e-2 in the second half,
    which sets the error bar): z ≈ −50.
    """
    C, burnin, steps = 4, 100, 1_100
    noise = 0.1 * math.sqrt(1 - 0.25) * ar1(0.5, C, steps, seed=7)  # stationary sd 0.1
    loss = 2.0 + noise
    t = torch.arange(steps - burnin, dtype=DT)
    loss[2, burnin:] += 3.0 * torch.exp(-t / 100)
    loss[0, :burnin] += 50.0 * torch.exp(-torch.arange(burnin, dtype=DT) / 10)
    trace = synthetic_trace(loss, burnin)

    reports = settling_report(trace)
    assert [r.chain for r in reports] == [0, 1, 2, 3] and all(isinstance(r, ChainReport) for r in reports)
    assert [r.settled for r in reports] == [True, True, False, True]
    assert reports[2].drift_z < -20
    assert all(abs(r.drift_z) < 4 for r in reports if r.chain != 2)
    # The half means are the plain means of the two halves after burn-in.
    for r in reports:
        post = loss[r.chain, burnin:]
        assert r.first_half_mean == pytest.approx(float(post[:500].mean()), rel=1e-12)
        assert r.second_half_mean == pytest.approx(float(post[500:].mean()), rel=1e-12)

    text = summarize(trace)
    assert "WARNING: chain(s) [2] did not settle" in text
    assert "all chains settled" not in text
    # A looser threshold lets the same chain pass.
    assert "all chains settled" in summarize(trace, z_threshold=1e3)


def test_sampler_run_without_burnin_is_flagged_and_with_burnin_settles():
    """A real run: plain SGLD on a linear regression (n = 8, d = 3), chains started at w* far from the
    localized posterior mean (initial loss ≈ 48 vs ≈ 2.8 at stationarity). With no burn-in the relaxation
    (time 2/(ε·p_min) ≈ 13 steps per e-fold, p_min ≈ 16) sits in the first half of every chain and every chain
    is flagged; with burn-in 300 (≈ 24 e-folds) every chain is stationary and reported settled. summarize
    then also prints R-hat and ESS of the recorded losses."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(8, 3, generator=g, dtype=DT)
    y = X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + torch.randn(8, generator=g, dtype=DT)

    def loss(w, batch):
        Xb, yb = batch
        return 0.5 * (yb - (Xb * w).sum(-1)) ** 2

    start = torch.tensor([5.0, 5.0, -5.0], dtype=DT)
    common = dict(step_size=0.01, nbeta=20.0, localization=5.0, num_chains=4, num_draws=400, seed=0)
    cold = sample(loss, start, (X, y), (X, y), SGLDConfig(num_burnin=0, **common), progress=False)
    assert cold.loss_trace[:, 0].min() > 10 * cold.loss_trace[:, -100:].mean()  # the premise: a far start
    reports = settling_report(cold)
    assert not any(r.settled for r in reports), reports
    text = summarize(cold)
    assert "WARNING: chain(s) [0, 1, 2, 3] did not settle" in text

    warm = sample(loss, start, (X, y), (X, y), SGLDConfig(num_burnin=300, **common), progress=False)
    assert all(r.settled for r in settling_report(warm))
    text = summarize(warm)
    assert "all chains settled" in text and "WARNING" not in text
    assert "R-hat" in text and "ESS" in text and "4 chains × 400 draws (burn-in 300" in text


def test_settling_report_needs_eight_steps_after_burnin():
    trace = synthetic_trace(torch.randn(2, 17, dtype=DT), burnin=10)
    with pytest.raises(ValueError, match="at least 8 steps after burn-in"):
        settling_report(trace)
    assert len(settling_report(synthetic_trace(torch.randn(2, 18, dtype=DT), burnin=10))) == 2
