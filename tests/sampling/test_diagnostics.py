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

* ``rhat(method="split")`` (the classic split-R̂) on iid Gaussian chains has an exact law: with m = 2C half-chains of n draws, the
  between-half variance B = n·Var(half means) and the within-half variance W (mean of the unbiased half
  variances) satisfy B/W ~ F(m − 1, m(n − 1)) (independent χ² variables), and R̂² = (n − 1)/n + (B/W)/n.
  The test compares thousands of R̂ values with this law (Kolmogorov–Smirnov), and checks R̂ > 1.1 when the
  chains disagree, against a hand computation, shapes and errors.

* Rank normalization, bulk/tail ESS, rank-normalized split-R̂ and the Monte Carlo standard error of the mean
  (Vehtari et al. 2021) agree with arviz-stats (the reference implementation, pinned in requirements.lock) to
  rounding on arrays that exercise every branch: iid, strongly autocorrelated and anti-correlated chains,
  heavy tails, disagreeing chains, ties, odd and minimal draw counts, one chain. On their own: the folded
  (tail) part of R̂ flags chains that differ only in spread, which the classic split-R̂ cannot see; the bulk
  ESS of heavy-tailed draws stays near the ESS of the underlying Gaussian chain; the MCSE of AR(1) chains
  matches the exact √(τ/(C·N))·sd.

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

from stagewise.diagnostics import ChainReport, ess, mcse_mean, rhat, settling_report, summarize
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


@pytest.mark.parametrize("method", ["mean", "bulk"])
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_of_ar1_chains_matches_exact_autocorrelation_time(rho, method):
    """ESS = C·N·(1 − ρ)/(1 + ρ) for AR(1) chains, for each of 2 × 3 independent quantities.

    C·N = 4 × 50,000 = 200,000 draws. Relative tolerance Z·√(2(2M + 1)/(C·N)) (module docstring):
    ρ = 0.9: τ = 19, M ≈ 44 lags, relative sd 0.030, tolerance 15%; ρ = 0.5: M ≈ 8, tolerance 6.5%;
    ρ = 0: M = 2, tolerance 3.5%. The quantities are independent, so each is checked on its own. The bulk ESS
    rank-normalizes first; for Gaussian draws the normal scores are the standardized draws up to O(1/√(C·N)),
    so the same law holds.
    """
    C, N = 4, 50_000
    x = ar1(rho, C, N, 2, 3, seed=int(100 * rho) + 1)
    estimate = ess(x, method)
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
    r = rhat(x, "split").numpy()
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
    # The rank-normalized R̂ (the default) of the same iid draws is ≈ 1 too: each of its two parts is a split-R̂
    # of near-Gaussian scores, so it is the larger of two values of nearly this law.
    ranked = rhat(x).numpy()
    assert ranked.max() < 1.03 and np.median(ranked) > np.median(r)


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
    np.testing.assert_allclose(rhat(x, "split").numpy(), expected, rtol=1e-12)

    iid = torch.randn(4, 500, generator=g, dtype=DT)
    for method in ("split", "rank"):
        assert abs(float(rhat(iid, method)) - 1) < 0.03
        # One chain of four off by 2 sd: half-chain means (0 ×6, 2 ×2) have variance 6/7, so R̂ ≈ √(1 + 6/7)
        # ≈ 1.36 (on the rank scale the offset chain's scores are squeezed a little, hence the lower bound).
        shifted = iid + torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=DT)[:, None]
        assert float(rhat(shifted, method)) > 1.2
        # One chain whose second half moved by 1 sd (only the split sees it): means 0, 1, R̂ ≈ √(1 + 1/2) ≈ 1.22.
        drifting = iid[:1].clone()
        drifting[:, 250:] += 1.0
        assert float(rhat(drifting, method)) > 1.15
        assert rhat(torch.randn(4, 20, 2, 3, generator=g, dtype=DT), method).shape == (2, 3)
    with pytest.raises(ValueError, match=r"method = 'bulk': accepted values are 'rank', 'split'"):
        rhat(iid, "bulk")


# --------------------------------------------------------------------------------------------------------
# 3. Rank normalization, bulk/tail ESS, MCSE: against arviz-stats and known answers


def reference_arrays() -> dict[str, np.ndarray]:
    """(chain, draw, quantity) arrays that exercise every branch of the estimators."""
    rng = np.random.default_rng(11)
    return {
        "iid": rng.standard_normal((4, 100, 5)),
        "ar1 0.9, odd draws": ar1(0.9, 4, 301, 5, seed=12).numpy(),
        "anti-correlated": ar1(-0.6, 4, 100, 3, seed=13).numpy(),
        "heavy tails t(1.5)": rng.standard_t(1.5, size=(3, 57, 5)),
        "chains disagree": rng.standard_normal((4, 200, 3)) + 0.5 * np.arange(4)[:, None, None],
        "ties": rng.integers(0, 4, size=(4, 40, 3)).astype(float),
        "five draws": rng.standard_normal((2, 5, 3)),
        "four draws": rng.standard_normal((3, 4, 3)),
        "one chain": ar1(0.5, 1, 200, 3, seed=14).numpy(),
    }


@pytest.mark.parametrize("name", list(reference_arrays()))
def test_diagnostics_match_arviz_stats(name):
    """Bulk, tail (5%/95%) and mean ESS, MCSE of the mean, rank-normalized and classic split-R̂, to rounding."""
    array_stats = pytest.importorskip("arviz_stats.base").array_stats
    x = reference_arrays()[name]
    t = torch.from_numpy(x)
    a = np.moveaxis(x, 2, 0)  # arviz's array interface: (..., chain, draw)
    for method in ("bulk", "mean"):
        np.testing.assert_allclose(ess(t, method).numpy(), array_stats.ess(a, method=method), rtol=1e-10)
    np.testing.assert_allclose(ess(t, "tail").numpy(), array_stats.ess(a, method="tail", prob=(0.05, 0.95)),
                               rtol=1e-10)
    np.testing.assert_allclose(mcse_mean(t).numpy(), array_stats.mcse(a, method="mean"), rtol=1e-10)
    if x.shape[0] > 1:  # arviz defines R̂ for two chains or more only
        for method in ("rank", "split"):
            np.testing.assert_allclose(rhat(t, method).numpy(), array_stats.rhat(a, method=method), rtol=1e-10)


def test_rank_rhat_flags_chains_that_differ_only_in_spread():
    """Four chains with mean 0, one of them with sd 3. The classic split-R̂ compares means only: ≈ 1. The folded
    part of the rank R̂ compares |x − median|, whose chain means differ (0.80 vs 2.4 for N(0, 1) vs N(0, 9)):
    it is far above the 1.01 threshold."""
    g = torch.Generator().manual_seed(15)
    x = torch.randn(4, 1000, generator=g, dtype=DT) * torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=DT)[:, None]
    assert float(rhat(x, "split")) < 1.01
    assert float(rhat(x)) > 1.1


def test_bulk_ess_is_robust_to_heavy_tails():
    """x = z³·|z|³ of Gaussian AR(1) chains z (ρ = 0.5): a monotone map, so the ranks, and hence the bulk ESS, are
    those of z, exactly, and it meets the AR(1) answer C·N(1 − ρ)/(1 + ρ) within the tolerance above; x itself has
    tails so heavy (kurtosis > 100) that variance-based summaries of it are unstable."""
    C, N, rho = 4, 20_000, 0.5
    z = ar1(rho, C, N, 3, seed=16)
    x = z**3 * z.abs() ** 3
    torch.testing.assert_close(ess(x, "bulk"), ess(z, "bulk"), rtol=1e-12, atol=0)
    kurtosis = ((x - x.mean((0, 1))) ** 4).mean((0, 1)) / x.var((0, 1)) ** 2
    assert torch.all(kurtosis > 100)
    exact = C * N * (1 - rho) / (1 + rho)
    assert torch.all((ess(x, "bulk") / exact - 1).abs() < Z * ess_rel_sd(rho, C * N))


def test_tail_ess_of_iid_draws_and_mcse_of_ar1_chains():
    """iid: the quantile indicators are iid Bernoulli, tail ESS ≈ C·N. AR(1) with unit innovations: the mean of
    C·N draws has variance τ·σ²/(C·N) with σ² = 1/(1 − ρ²) and τ = (1 + ρ)/(1 − ρ), so the MCSE is
    √(τ/(C·N))/√(1 − ρ²); its relative error is half that of the ESS. One chain works too."""
    g = torch.Generator().manual_seed(17)
    C, N = 4, 10_000
    iid = torch.randn(C, N, 3, generator=g, dtype=DT)
    tail = ess(iid, "tail")
    assert tail.shape == (3,) and torch.all((tail / (C * N) - 1).abs() < Z * ess_rel_sd(0.0, C * N))
    assert torch.all(ess(iid, "tail", prob=0.25) > 0.8 * C * N)
    for chains, rho in ((4, 0.9), (1, 0.5)):
        x = ar1(rho, chains, 50_000, 3, seed=18)
        exact = math.sqrt((1 + rho) / (1 - rho) / (chains * 50_000) / (1 - rho**2))
        tol = Z * ess_rel_sd(rho, chains * 50_000) / 2
        assert torch.all((mcse_mean(x) / exact - 1).abs() < tol), (mcse_mean(x), exact, tol)


def test_ess_rejects_unknown_methods_and_probabilities():
    x = torch.randn(2, 10, dtype=DT)
    with pytest.raises(ValueError, match=r"method = 'median': accepted values are 'bulk', 'tail', 'mean'"):
        ess(x, "median")
    for prob in (0.0, 1.0, -0.1, "0.05"):
        with pytest.raises(ValueError, match=r"prob = .*accepted values are numbers in \(0, 1\)"):
            ess(x, "tail", prob=prob)


def test_diagnostics_create_no_tensor_off_the_input_device():
    """On the meta device (shapes only, no data) any operation that mixes in a CPU tensor raises, so this checks
    that every intermediate of the estimators lives on the input's device, as on a GPU; results stay there."""
    x = torch.empty(4, 100, 2, 3, dtype=DT, device="meta")
    for out in (ess(x), ess(x, "tail"), ess(x, "mean"), mcse_mean(x), rhat(x), rhat(x, "split")):
        assert out.device.type == "meta" and out.shape == (2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_diagnostics_run_on_the_device_of_their_input():
    x = ar1(0.5, 4, 1000, 3, seed=19)
    for fn in (lambda v: ess(v), lambda v: ess(v, "tail"), lambda v: ess(v, "mean"), mcse_mean, rhat,
               lambda v: rhat(v, "split")):
        on_device = fn(x.cuda())
        assert on_device.is_cuda
        torch.testing.assert_close(on_device.cpu(), fn(x), rtol=1e-10, atol=0)


# --------------------------------------------------------------------------------------------------------
# 4. Settling report and summary


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
    assert "rank-normalized split R-hat" in text and "bulk ESS" in text and "tail ESS" in text


def test_settling_report_needs_eight_steps_after_burnin():
    trace = synthetic_trace(torch.randn(2, 17, dtype=DT), burnin=10)
    with pytest.raises(ValueError, match="at least 8 steps after burn-in"):
        settling_report(trace)
    assert len(settling_report(synthetic_trace(torch.randn(2, 18, dtype=DT), burnin=10))) == 2
