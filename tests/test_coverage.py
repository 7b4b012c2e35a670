"""Coverage of the standard errors: over many independent runs with a known answer, how often ±2 s.e. holds it.

A standard error is only useful if the interval estimate ± 2 s.e. contains the truth about 95% of the time. Each
test makes R = 400 independent runs of C = 4 chains (the default chain count) as one sampler call with R·C
chains: the chains of a call are independent and identically distributed, so chains r·C … r·C + 3 form run r.
It counts the runs whose interval contains the exact answer and requires a coverage ≥ 90% (regular cases) or
≥ 85% (the singular one).

The binomial band. If the interval covers with probability p, the covered count is Binomial(R, p): at R = 400
its sd is 1.1% for p = 0.95. An exact ±2 s.e. interval covers 95.4% for Gaussian estimates; an estimated s.e.
covers a little less. Measured with these seeds: 94.5% (regular quadratic; 94.5–96.3% over four other seeds),
92.6% / 92.5% (raw / normalized BIF), 92.0% on the crossing, whose s.e. is ≈ 10% low and noisy because its
chains are only ~8 relaxation times long. The thresholds sit about 4 sd or more below those values. The former s.e. (sd of
the 4 per-chain estimates / √4) has 3 degrees of freedom: even for Gaussian chain means ±2 of it covers only
P(|t₃| < 2) = 86.1%. Measured on the same runs: 87.3% (84–90% over the other seeds), 85.2% / 85.9%, 84.5%; and
its intervals are erratic: the largest |error|/s.e. over the 400 runs was 8–49 against 4–5 for the new one.

The known answers are exact at the sampler's finite step size where that is possible:
- a regular quadratic: the plain-SGLD Euler chain is Gaussian AR(1) with stationary variance 1/(p(1 − εp/4));
- Bayesian linear regression: the Euler chain has the stationary covariance Σ_k v_k v_kᵀ/(p_k(1 − εp_k/4)) in
  the eigenbasis of the precision P, so the BIF follows from Isserlis' theorem (tests/influence/test_influence.py);
- the normal crossing w₁²w₂⁴: the continuous-time answer by quadrature (tests/test_llc.py); there the Euler and
  burn-in bias (measured +0.0014 ± 0.0009 over 4,000 chains at these settings) is 0.06 of one run's s.e.
"""

from __future__ import annotations

import math

import pytest
import torch

from stagewise.diagnostics import mcse_mean
from stagewise.influence import bif, bif_stderr, group_bif_stderr
from stagewise.llc import estimate_llc
from stagewise.sampling import SampleTrace, SGLDConfig, sample

from test_llc import normal_crossing_expectation

DT = torch.float64
RUNS, CHAINS = 400, 4


def runs_of(x: torch.Tensor) -> torch.Tensor:
    """(R·C, T, ...) from one sampler call → (C, T, R, ...): the runs on the quantity axes, so that each run's
    diagnostics use its own C chains only (every estimator here treats quantities separately)."""
    per_run = x.reshape(RUNS, CHAINS, *x.shape[1:])
    return per_run.movedim(0, 2)


def run_trace(trace: SampleTrace, r: int) -> SampleTrace:
    """Run r of a batched call as its own trace."""
    rows = slice(r * CHAINS, (r + 1) * CHAINS)
    losses = None if trace.losses is None else trace.losses[rows]
    return SampleTrace(losses, trace.loss_trace[rows], trace.draw_steps, trace.init_loss, None, trace.config)


def coverage(error: torch.Tensor, stderr: torch.Tensor) -> float:
    return float((error.abs() <= 2 * stderr).double().mean())


# --------------------------------------------------------------------------------------------------------
# The LLC


def llc_runs(loss, w_star: torch.Tensor, config: SGLDConfig) -> dict[str, torch.Tensor]:
    """Per-run LLC estimates with the new and the former standard errors; the new ones equal estimate_llc."""
    trace = sample(loss, w_star, config=config, progress=False)
    series = config.nbeta * (trace.loss_trace[:, config.num_burnin:] - trace.init_loss)  # (R·C, T)
    x = runs_of(series)  # (C, T, R)
    out = {"estimate": x.mean((0, 1)), "stderr": mcse_mean(x),
           "former": x.mean(1).std(0, unbiased=True) / math.sqrt(CHAINS)}
    for r in range(3):  # the vectorized values are estimate_llc's, run by run
        est = estimate_llc(run_trace(trace, r))
        assert est.estimate == pytest.approx(float(out["estimate"][r]), rel=1e-12)
        assert est.stderr == pytest.approx(float(out["stderr"][r]), rel=1e-10)
    return out


@pytest.mark.slow
def test_llc_stderr_covers_on_a_regular_quadratic():
    """L = ½‖w‖², d = 2, w* = 0, nβ = 1000, γ = 10, ε = 2e-4: p = nβ + γ = 1010, ρ = 1 − εp/2 = 0.9, and the
    Euler chain's E[λ̂] = nβ·d/(2p(1 − εp/4)) = 1.0417 exactly (λ = d/2 = 1 as nβ/γ → ∞ and ε → 0). 1,000 steps
    after a burn-in of 100 (the start w* = μ has the right mean; its variance deficit 0.81¹⁰⁰ ≈ 1e-9 is gone)."""
    d, nbeta, gamma, eps = 2, 1000.0, 10.0, 2e-4
    p = nbeta + gamma
    exact = nbeta * d / (2 * p * (1 - eps * p / 4))
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=RUNS * CHAINS,
                        num_draws=2000, num_burnin=100, seed=41)
    out = llc_runs(lambda w, _b=None: 0.5 * (w * w).sum(), torch.zeros(d, dtype=DT), config)
    error = out["estimate"] - exact
    new, former = coverage(error, out["stderr"]), coverage(error, out["former"])
    assert new >= 0.90, (new, former)


@pytest.mark.slow
def test_llc_stderr_covers_on_a_normal_crossing():
    """L = w₁²w₂⁴ at w* = 0, nβ = 10, γ = 1, ε = 2e-3, 4,000 steps after a burn-in of 1,000: E[nβL] = 0.1734 by
    quadrature (λ = 1/4 as nβ → ∞; at nβ/γ³ = 10 the posterior is already far from Gaussian: the regular
    answer would be d/2 = 1). The per-chain values are skewed and heavy-tailed, and the slowest relaxation
    (along the valleys, ≈ 1/(εγ) = 500 steps) is long; one run's s.e. is ≈ 0.025."""
    nbeta, gamma, eps = 10.0, 1.0, 2e-3
    exact = normal_crossing_expectation(nbeta, gamma)
    assert exact == pytest.approx(0.1734, abs=1e-4)
    config = SGLDConfig(step_size=eps, nbeta=nbeta, localization=gamma, num_chains=RUNS * CHAINS,
                        num_draws=4000, num_burnin=1000, seed=42)
    out = llc_runs(lambda w, _b=None: w[0] ** 2 * w[1] ** 4, torch.zeros(2, dtype=DT), config)
    error = out["estimate"] - exact
    # The premise: the mean over all runs is unbiased within its own error (sd over runs / √R ≈ 0.0014).
    spread = out["estimate"].std()
    assert abs(float(error.mean())) < 4 * float(spread) / math.sqrt(RUNS), (float(error.mean()), float(spread))
    new, former = coverage(error, out["stderr"]), coverage(error, out["former"])
    assert new >= 0.85, (new, former)


# --------------------------------------------------------------------------------------------------------
# The BIF


def regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(8, 3, generator=g, dtype=DT)
    y = X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + torch.randn(8, generator=g, dtype=DT)
    return X, y


def squared_error(w, batch):
    X, y = batch
    return 0.5 * (y - (X * w).sum(-1)) ** 2


def exact_euler_bif(X, y, w_star, nbeta, gamma, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """−Cov and −corr of the per-sample losses under the Euler chain's stationary law N(μ, Σ_ε) (module docstring)."""
    n = len(y)
    P = (nbeta / n) * X.T @ X + gamma * torch.eye(X.shape[1], dtype=DT)
    mu = torch.linalg.solve(P, (nbeta / n) * X.T @ y + gamma * w_star)
    p, V = torch.linalg.eigh(P)
    sigma = V @ torch.diag(1 / (p * (1 - eps * p / 4))) @ V.T
    c = X @ sigma @ X.T
    m = y - X @ mu
    cov = 0.5 * c**2 + torch.outer(m, m) * c  # Isserlis: Cov(½r_i², ½r_j²) for Gaussian residuals r
    sd = torch.diagonal(cov).sqrt()
    return -cov, -cov / torch.outer(sd, sd)


def run_covariances(a: torch.Tensor, b: torch.Tensor, normalized: bool) -> torch.Tensor:
    """bif's −Cov (or −corr) over the first two axes of (C, T, R, I) and (C, T, R, J) losses: (R, I, J)."""
    s = a.shape[0] * a.shape[1]
    da, db = a - a.mean((0, 1)), b - b.mean((0, 1))
    if normalized:
        da, db = da / da.std((0, 1), keepdim=True), db / db.std((0, 1), keepdim=True)
    return -torch.einsum("ctri,ctrj->rij", da, db) / (s - 1)


def vectorized_bif_stderr(a: torch.Tensor, b: torch.Tensor, normalized: bool) -> torch.Tensor:
    """bif_stderr's formula for (C, T, R, I) and (C, T, R, J) losses, every run at once: (R, I, J)."""
    s = a.shape[0] * a.shape[1]
    da, db = a - a.mean((0, 1)), b - b.mean((0, 1))
    if not normalized:
        return mcse_mean(da[..., :, None] * db[..., None, :]) * s / (s - 1)
    za, zb = da / da.std((0, 1), keepdim=True), db / db.std((0, 1), keepdim=True)
    r = -run_covariances(a, b, normalized=True)
    zi, zj = za[..., :, None], zb[..., None, :]
    return mcse_mean(zi * zj - r / 2 * (zi * zi + zj * zj))


NBETA, GAMMA, EPS = 8.0, 1.0, 0.05


@pytest.fixture(scope="module")
def regression_runs() -> torch.Tensor:
    """The per-sample losses of 400 runs × 4 chains × 500 draws: (C, T, R, 8) (see the test below)."""
    X, y = regression()
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    config = SGLDConfig(step_size=EPS, nbeta=NBETA, localization=GAMMA, num_chains=RUNS * CHAINS,
                        num_draws=500, num_burnin=200, seed=43)
    return runs_of(sample(squared_error, w_star, (X, y), (X, y), config, progress=False).losses)


def bif_runs(x: torch.Tensor, normalized: bool) -> dict[str, torch.Tensor]:
    """Per-run BIF of samples 0–3 on queries 4–6, its exact value, the new and the former standard errors."""
    X, y = regression()
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    exact = exact_euler_bif(X, y, w_star, NBETA, GAMMA, EPS)[int(normalized)][:4, 4:7]
    a, b = x[..., :4], x[..., 4:7]
    out = {"exact": exact, "estimate": run_covariances(a, b, normalized),
           "stderr": vectorized_bif_stderr(a, b, normalized)}
    per_chain = torch.stack([run_covariances(a[c:c + 1], b[c:c + 1], normalized) for c in range(CHAINS)])
    out["former"] = per_chain.std(0, unbiased=True) / math.sqrt(CHAINS)
    for r in range(3):  # the vectorized values are bif's and bif_stderr's, run by run
        torch.testing.assert_close(out["estimate"][r], bif(a[:, :, r], b[:, :, r], normalized=normalized),
                                   rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(out["stderr"][r], bif_stderr(a[:, :, r], b[:, :, r], normalized=normalized),
                                   rtol=1e-10, atol=0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("normalized", [False, True])
def test_bif_stderr_covers_on_bayesian_linear_regression(regression_runs, normalized):
    """8 samples, 3 features; BIF of training samples 0–3 on queries 4–6 (12 entries) at the least-squares fit,
    nβ = 8, γ = 1, plain full-batch SGLD ε = 0.05 (εp/2 = 0.13 … 0.36 on the three modes), 500 draws after a
    burn-in of 200 (≫ the slowest relaxation, 1/0.13 ≈ 8 steps). Truth: the exact stationary BIF of that chain.
    Coverage over the 400 runs × 12 entries ≥ 90%, and ≥ 85% for every entry on its own (400 runs each)."""
    out = bif_runs(regression_runs, normalized)
    error = out["estimate"] - out["exact"]
    covered = (error.abs() <= 2 * out["stderr"]).double()
    new, old = float(covered.mean()), coverage(error, out["former"])
    assert new >= 0.90, (new, old)
    assert float(covered.mean(0).min()) >= 0.85, covered.mean(0)


# --------------------------------------------------------------------------------------------------------
# The standard-error functions themselves


def test_group_bif_stderr_is_bif_stderr_of_the_group_means():
    """group_bif is the covariance of group-mean losses, so its standard error is bif_stderr of those means
    (groups of one sample's tokens, part of a sample, one token across samples); an empty group gives NaN."""
    g = torch.Generator().manual_seed(45)
    losses = torch.randn(4, 60, 3, 5, generator=g, dtype=DT)
    groups = torch.zeros(3, 3, 5, dtype=torch.bool)
    groups[0, 0, :] = True
    groups[1, 1, :2] = True
    groups[2, :, 4] = True
    means = torch.stack([(losses * m).sum((2, 3)) / m.sum() for m in groups.double()], -1)  # (4, 60, 3)
    torch.testing.assert_close(group_bif_stderr(losses, groups), bif_stderr(means), rtol=1e-12, atol=0)
    torch.testing.assert_close(group_bif_stderr(losses, groups[:2], losses, groups[2:]),
                               bif_stderr(means[..., :2], means[..., 2:]), rtol=1e-12, atol=0)
    empty = groups.clone()
    empty[1] = False
    out = group_bif_stderr(losses, empty)
    assert torch.isnan(out[1]).all() and torch.isnan(out[:, 1]).all() and torch.isfinite(out[0, 0])
    with pytest.raises(ValueError, match="at least 4 draws"):
        group_bif_stderr(losses[:, :3], groups)


def test_normalized_bif_stderr_is_zero_on_the_diagonal_and_scales_like_the_bif():
    """−corr(ℓ_i, ℓ_i) = −1 exactly, so its error is 0 (the delta-method series vanishes); the raw BIF is
    bilinear, so scaling the train losses by 3 scales its error by 3, and the normalized one not at all."""
    g = torch.Generator().manual_seed(46)
    losses = torch.randn(3, 80, 4, generator=g, dtype=DT).cumsum(1)  # strongly autocorrelated
    assert torch.diagonal(bif_stderr(losses, normalized=True)).abs().max() < 1e-12
    query = torch.randn(3, 80, 2, generator=g, dtype=DT) + losses[..., :2]
    torch.testing.assert_close(bif_stderr(3 * losses, query), 3 * bif_stderr(losses, query), rtol=1e-12, atol=0)
    torch.testing.assert_close(bif_stderr(3 * losses, query, normalized=True),
                               bif_stderr(losses, query, normalized=True), rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="same chains and draws"):
        bif_stderr(losses, query[:, :50])


def test_bif_stderr_arithmetic_stays_on_the_input_device():
    """The error computation behind bif_stderr and group_bif_stderr, on the meta device (where mixing in a CPU
    tensor raises; the input checks before it read values, which meta tensors do not have)."""
    from stagewise.influence.stderr import products_stderr

    a = torch.empty(4, 100, 3, dtype=DT, device="meta")
    for normalized in (False, True):
        out = products_stderr(a, a[..., :2], normalized=normalized)
        assert out.device.type == "meta" and out.shape == (3, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_standard_errors_run_on_the_device_of_their_input():
    g = torch.Generator().manual_seed(47)
    losses = torch.randn(4, 200, 6, generator=g, dtype=DT)
    groups = torch.rand(2, 6, generator=g) < 0.5
    groups[:, 0] = True
    for fn in (lambda v: bif_stderr(v), lambda v: bif_stderr(v[..., :3], v[..., 3:], normalized=True),
               lambda v: group_bif_stderr(v, groups.to(v.device))):
        on_device = fn(losses.cuda())
        assert on_device.is_cuda
        torch.testing.assert_close(on_device.cpu(), fn(losses), rtol=1e-10, atol=1e-15)
    config = SGLDConfig(num_chains=4, num_draws=200)
    trace = SampleTrace(None, losses[..., 0].cuda(), torch.arange(200), 0.0, None, config)
    on_device, on_cpu = estimate_llc(trace), estimate_llc(SampleTrace(None, losses[..., 0], torch.arange(200), 0.0,
                                                                    None, config))
    for field in ("estimate", "stderr", "ess", "rhat"):
        assert getattr(on_device, field) == pytest.approx(getattr(on_cpu, field), rel=1e-10)


# --------------------------------------------------------------------------------------------------------
# Group errors, the trajectory path and a non-Gaussian model


GROUPS = torch.zeros(3, 8, dtype=torch.bool)  # three groups of the 8 samples, two of them overlapping
GROUPS[0, :3], GROUPS[1, 3:6], GROUPS[2, 5:] = True, True, True


def exact_group_bif(exact: torch.Tensor) -> torch.Tensor:
    """The group BIF from the sample BIF: the mean of −Cov(ℓ_a, ℓ_b) over a ∈ g, b ∈ h (bilinearity)."""
    m = GROUPS.double() / GROUPS.sum(1, keepdim=True)
    return m @ exact @ m.T


@pytest.mark.slow
def test_group_bif_stderr_covers_on_bayesian_linear_regression(regression_runs):
    """The 400 runs of the regression above, reduced to three groups of samples: ±2 group_bif_stderr holds the
    exact group BIF (the mean of the exact pairwise entries) in ≥ 90% of runs × entries."""
    X, y = regression()
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    exact = exact_group_bif(exact_euler_bif(X, y, w_star, NBETA, GAMMA, EPS)[0])
    means = regression_runs @ (GROUPS.double() / GROUPS.sum(1, keepdim=True)).T  # (C, T, R, G)
    estimate, stderr = run_covariances(means, means, False), vectorized_bif_stderr(means, means, False)
    for r in range(3):  # the vectorized errors are group_bif_stderr's, run by run
        losses = regression_runs[:, :, r]
        torch.testing.assert_close(stderr[r], group_bif_stderr(losses, GROUPS), rtol=1e-10, atol=0)
    covered = ((estimate - exact).abs() <= 2 * stderr).double()
    print(f"group BIF coverage {float(covered.mean()):.3f}")
    assert float(covered.mean()) >= 0.90, covered.mean(0)


@pytest.mark.slow
def test_bif_trajectory_group_errors_cover_at_every_checkpoint():
    """bif_trajectory(groups=…) over three checkpoints of the regression (w* = 0, half-way to the fit, the fit),
    60 independent calls of 4 chains × 500 draws: its errors (group_bif_stderr's) hold the exact group BIF of each
    checkpoint's Euler chain in ≥ 85% of calls × checkpoints × entries (measured: see the printed share; the
    entries of one call share its chains, so the share varies more than a binomial count of 1,620)."""
    from stagewise.influence import bif_trajectory

    X, y = regression()
    fit = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    checkpoints = [(0, torch.zeros(3, dtype=DT)), (1, fit / 2), (2, fit)]
    exact = torch.stack([exact_group_bif(exact_euler_bif(X, y, w, NBETA, GAMMA, EPS)[0]) for _, w in checkpoints])
    covered = []
    for seed in range(60):
        config = SGLDConfig(step_size=EPS, nbeta=NBETA, localization=GAMMA, num_chains=CHAINS, num_draws=500,
                            num_burnin=100, seed=100 + seed)
        traj = bif_trajectory(squared_error, checkpoints, (X, y), (X, y), config, groups=GROUPS,
                              batch_checkpoints=True, progress=False)
        covered.append(((traj.values - exact).abs() <= 2 * traj.stderr).double())
    share = float(torch.stack(covered).mean())
    print(f"trajectory group coverage {share:.3f}")
    assert share >= 0.85, share


@pytest.mark.slow
def test_bif_stderr_covers_seed_to_seed_differences_on_a_classifier():
    """A non-Gaussian posterior (logistic regression, 3 features, 100 training points, at its fit; nβ = 100,
    γ = 1, ε = 0.002 with ε·λ_max ≈ 0.05): 400 runs of 4 chains × 500 draws, paired (2k, 2k + 1). Both runs
    estimate the same BIF (of training samples 0–3 on queries 0–2), so their difference over
    √(s.e.₁² + s.e.₂²) should be within ±2 about 95% of the time. Measured (module docstring's band applies)."""
    from stagewise.models.bif import LogisticRegression

    model = LogisticRegression(num_train=100, num_query=20, num_features=3, seed=0)
    train, query = model.data()
    observed = (torch.cat([train[0][:4], query[0][:3]]), torch.cat([train[1][:4], query[1][:3]]))
    config = SGLDConfig(step_size=0.002, nbeta=100.0, localization=1.0, num_chains=RUNS * CHAINS, num_draws=500,
                        num_burnin=200, seed=48)
    x = runs_of(sample(model.loss, model.fit(), train, observed, config, progress=False).losses)  # (C, T, R, 7)
    a, b = x[..., :4], x[..., 4:]
    estimate, stderr = run_covariances(a, b, False), vectorized_bif_stderr(a, b, False)
    difference = estimate[0::2] - estimate[1::2]
    joint = (stderr[0::2] ** 2 + stderr[1::2] ** 2).sqrt()
    held = float((difference.abs() <= 2 * joint).double().mean())
    print(f"classifier seed-to-seed coverage {held:.3f}")
    assert held >= 0.90, held
