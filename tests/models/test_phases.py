"""Known-answer tests of the phase decomposition (law of total covariance) and the two models with phases
(stagewise/models/phases.py)."""

import numpy as np
import pytest
import torch

from stagewise.models.phases import (ScalarLinearNetwork, TwoClusterPrototype, decompose, mixture_decomposition,
                                     phase_moments, uniform_axis)
from stagewise.sampling import SGLDConfig, sample_many


def test_identity_exact_on_draws_with_three_phases():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 4)) + rng.integers(0, 3, size=(500, 1))
    labels = rng.integers(0, 3, size=500)
    d = decompose(values, labels)
    np.testing.assert_allclose(d.total, np.cov(values.T, bias=True), atol=1e-13)
    assert d.identity_error < 1e-13
    assert d.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(d.bif_total, -d.total)


def test_two_phase_between_term_is_product_of_mean_gaps():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(300, 3))
    labels = (rng.random(300) < 0.3).astype(int)
    d = decompose(values, labels)
    gap = d.means[0] - d.means[1]
    pi_u, pi_v = d.weights
    np.testing.assert_allclose(d.between, pi_u * pi_v * np.outer(gap, gap), atol=1e-14)


def test_point_mass_phases_have_only_between_covariance():
    # phase U: losses always (0, 1); phase V: always (1, 0); π_U = 1/4 → Cov = 3/16·[[1, −1], [−1, 1]]
    values = np.array([[0.0, 1.0]] * 1 + [[1.0, 0.0]] * 3)
    d = decompose(values, np.array([0, 1, 1, 1]))
    np.testing.assert_allclose(d.within, 0.0, atol=1e-15)
    np.testing.assert_allclose(d.total, 3 / 16 * np.array([[1, -1], [-1, 1]]), atol=1e-15)
    assert d.bif_total[0, 1] > 0  # the phases disagree on the two samples: each harms the other


def test_between_term_peaks_at_half():
    means = np.array([[0.0], [1.0]])
    covs = np.zeros((2, 1, 1))
    pis = np.linspace(0.01, 0.99, 99)
    between = [mixture_decomposition([p, 1 - p], means, covs).between[0, 0] for p in pis]
    assert pis[int(np.argmax(between))] == pytest.approx(0.5)
    assert max(between) == pytest.approx(0.25)


def test_reweighting_with_given_phase_weights():
    rng = np.random.default_rng(2)
    values = rng.normal(size=(400, 2))
    labels = np.repeat([0, 1], 200)
    d = decompose(values, labels, phase_weights=[0.2, 0.8])
    w, mu, cov = phase_moments(values, labels)
    np.testing.assert_allclose(d.within, 0.2 * cov[0] + 0.8 * cov[1])
    np.testing.assert_allclose(d.between, 0.16 * np.outer(mu[0] - mu[1], mu[0] - mu[1]))
    with pytest.raises(ValueError, match="no points"):
        decompose(values[:200], labels[:200], phase_weights=[0.2, 0.8])


def test_prototype_quadrature_matches_independent_riemann_sum():
    model = TwoClusterPrototype()
    d = model.exact(1.4, 20.0, 1.0)
    assert d.identity_error < 1e-13
    w = np.linspace(-8, 8, 200_001)
    y = model.data().numpy()
    losses = 1 - np.exp(-((w[:, None] - y) ** 2) / (2 * model.width**2))
    beta = model.sample_weights(1.4).numpy()
    log_p = -20.0 * (losses * beta).mean(1) - 0.5 * w**2
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    mean = p @ losses
    cov = (losses - mean).T @ ((losses - mean) * p[:, None])
    np.testing.assert_allclose(d.total, cov, atol=1e-9)
    _, _, boundary = model.basins(1.4, 20.0, 1.0, w)
    assert d.weights[0] == pytest.approx(p[w <= boundary].sum(), abs=1e-4)  # boundaries differ by a node


def test_prototype_weight_moves_the_mass_and_flips_a_pair():
    model = TwoClusterPrototype()
    pi_u = [model.exact(r, 20.0, 1.0).weights[0] for r in (0.6, 1.4, 2.4)]
    assert pi_u[0] > 0.99 and 0.3 < pi_u[1] < 0.7 and pi_u[2] < 0.01
    # left-cluster pair (0, 2): compete within the left basin, cooperate at the transition
    assert model.exact(0.6, 20.0, 1.0).bif_total[0, 2] > 0
    assert model.exact(1.45, 20.0, 1.0).bif_total[0, 2] < 0


def test_sweep_loss_is_separable():
    model = TwoClusterPrototype()
    rhos = [0.8, 1.5]
    loss = model.sweep_loss(rhos, 20.0, 1.0)
    w = torch.tensor([-0.9, 0.7], dtype=torch.float64, requires_grad=True)
    data = (model.data(), model.sweep_weights(rhos))
    loss(w, data).mean().backward()
    for r, rho in enumerate(rhos):
        wr = w.detach()[r].clone().requires_grad_(True)
        single = (model.sample_weights(rho) * model.loss(wr.reshape(1), model.data())).mean()
        single = single + 1.0 * wr**2 / (2 * 20.0)
        single.backward()
        assert w.grad[r].item() == pytest.approx(wr.grad.item())
    obs = model.sweep_observable(w.detach(), model.data())
    assert obs.shape == (6, 2) and torch.equal(obs[-1], w.detach())


@pytest.mark.slow
def test_sgld_in_both_basins_reweighted_matches_exact():
    model = TwoClusterPrototype()
    rhos, nbeta = [1.0, 1.45], 20.0
    axis, _ = uniform_axis(6.0, 6001)
    basins = np.array([model.basins(r, nbeta, 1.0, axis) for r in rhos])
    config = SGLDConfig(step_size=0.002, nbeta=nbeta, localization=0.0, num_chains=16, num_draws=1500,
                        num_burnin=300, seed=0)
    starts = [torch.from_numpy(basins[:, 0]), torch.from_numpy(basins[:, 1])]
    traces = sample_many(model.sweep_loss(rhos, nbeta, 1.0), starts, (model.data(), model.sweep_weights(rhos)),
                         model.data(), config, observable_fn=model.sweep_observable, progress=False)
    for r, rho in enumerate(rhos):
        exact = model.exact(rho, nbeta, 1.0)
        draws = torch.cat([t.losses[..., r] for t in traces]).numpy()
        labels = (draws[..., -1] > basins[r, 2]).astype(int)
        start = np.repeat([0, 1], 16)[:, None] * np.ones_like(labels)
        keep = labels == start
        est = decompose(draws[..., :-1][keep], labels[keep], phase_weights=exact.weights)
        assert np.abs(est.total - exact.total).max() < 0.15 * np.abs(exact.total).max()


def test_scalar_network_trains_to_the_slope_and_decomposes():
    net = ScalarLinearNetwork(x=(1.0, 0.8, 1.2), y=(1.1, 0.7, 1.3))
    path = net.train((0.01, 0.012), lr=0.05, steps=2000)
    assert path[-1, 0] * path[-1, 1] == pytest.approx(net.slope, rel=1e-6)
    d = net.local_decomposition(path[-1], 20.0, 20.0, half_width=2.0, size=201)
    assert d.identity_error < 1e-13 and d.weights[1] > 0.95


def test_scalar_network_prior_only_moments():
    # nβ = 0: (a, b) ~ N(center, I/γ), so with x = 1, y = 0: E[ℓ] = ½·E[a²]·E[b²] = ½(μa² + σ²)(μb² + σ²)
    net = ScalarLinearNetwork(x=(1.0,), y=(0.0,))
    gamma, center = 4.0, (0.5, -0.3)
    d = net.local_decomposition(center, 0.0, gamma, half_width=4.0, size=801)
    s2 = 1 / gamma
    expected = 0.5 * (center[0] ** 2 + s2) * (center[1] ** 2 + s2)
    assert float(d.weights @ d.means[:, 0]) == pytest.approx(expected, rel=1e-8)
