"""Nonlinear networks on the hierarchy: backprop against autograd, batched LOO against one-at-a-time, BIF, LLC."""

from dataclasses import replace

import pytest
import torch

from stagewise import nonlinear as nl
from stagewise import toy
from stagewise.influence import bif_trajectory
from stagewise.sampling import SGLDConfig

DATA = toy.hierarchical_dataset()
SHORT = toy.TrainConfig(num_steps=60, checkpoint_every=20)


def _random_params(seed=0, widths=(8, 16, 15), scale=0.5):
    return toy.init_params(toy.DLNConfig(widths=widths, init_scale=scale, seed=seed))


def test_linear_activation_is_the_toy_network():
    init = toy.init_params(toy.DLNConfig(seed=3))
    config = toy.TrainConfig(num_steps=300, checkpoint_every=50)
    ours, theirs = nl.leave_one_out(init, DATA, config, activation="linear"), toy.leave_one_out(init, DATA, config)
    torch.testing.assert_close(ours.delta, theirs.delta, rtol=0, atol=1e-14)
    torch.testing.assert_close(nl.train(init, DATA, config, activation="linear").loss,
                               toy.train(init, DATA, config).loss, rtol=0, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("widths", [(8, 16, 15), (8, 6, 5, 15)])
def test_one_step_is_gradient_descent_on_the_weighted_objective(activation, widths):
    params = _random_params(widths=widths)
    beta = torch.rand(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lr = 0.05
    run = nl.train_runs(params, DATA, toy.TrainConfig(lr=lr, num_steps=1, checkpoint_every=1), beta,
                        activation=activation)
    for r in range(3):
        def objective(p):
            return (beta[r] * nl.per_item_losses(p, DATA.batch, activation)).sum() / 8

        grads = torch.func.grad(objective)(params)
        for name in params:
            torch.testing.assert_close(run.checkpoints[name][1, r], params[name] - lr * grads[name],
                                       rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(run.loss[r, 0], objective(params))


def test_forward_matches_a_plain_module():
    params = _random_params()
    x = DATA.inputs
    expected = torch.relu(x @ params["W1"].T) @ params["W2"].T
    torch.testing.assert_close(nl.forward(params, x, "relu"), expected)
    batched = {k: torch.stack([v, 2 * v]) for k, v in params.items()}
    assert nl.per_item_losses(batched, DATA.batch, "tanh").shape == (2, 8)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_batched_leave_one_out_equals_separate_retrainings(activation):
    inits = [toy.init_params(toy.DLNConfig(seed=s, init_scale=0.1)) for s in (0, 1)]
    fulls, loos = nl.leave_one_out_many(inits, DATA, SHORT, activation=activation, items=[0, 5])
    for init, full, loo in zip(inits, fulls, loos):
        alone = nl.train(init, DATA, SHORT, activation=activation)
        torch.testing.assert_close(full.item_losses_at_checkpoints, alone.item_losses_at_checkpoints,
                                   rtol=1e-12, atol=1e-14)
        for k, i in enumerate([0, 5]):
            beta = torch.ones(1, 8, dtype=torch.float64)
            beta[0, i] = 0.0
            without = nl.train_runs(init, DATA, SHORT, beta, activation=activation).item_losses_at_checkpoints[:, 0]
            torch.testing.assert_close(loo.delta[:, k], alone.item_losses_at_checkpoints - without,
                                       rtol=1e-12, atol=1e-14)
        assert loo.items == (0, 5) and loo.delta.shape == (4, 2, 8)


def test_bif_trajectories_equal_bif_trajectory_of_each_run():
    init = toy.init_params(toy.DLNConfig(seed=0, init_scale=0.1))
    run = nl.train(init, DATA, SHORT, activation="tanh")
    config = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=1000.0, num_chains=2, num_draws=30,
                        num_burnin=10, seed=4)
    ours = nl.bif_trajectories([run], DATA, config, activation="tanh", normalized=True)[0]
    theirs = bif_trajectory(nl.loss_fn("tanh"), run.checkpoint_list(), DATA.batch, DATA.batch, config,
                            normalized=True, batch_checkpoints=True, progress=False)
    torch.testing.assert_close(ours.values, theirs.values)
    torch.testing.assert_close(ours.stderr, theirs.stderr)
    torch.testing.assert_close(ours.values, ours.values.transpose(1, 2))  # a covariance is symmetric
    both = nl.bif_trajectories([run, run], DATA, config, activation="tanh", steps=[20, 60])
    assert [b.values.shape for b in both] == [(2, 8, 8), (2, 8, 8)] and both[0].steps.tolist() == [20, 60]


@pytest.mark.slow
def test_llc_of_a_regular_model_is_its_gaussian_value():
    # One layer, W (3 × 4), fitted to one-hot items: L_n is quadratic with Hessian h·I, h = 1/N, so the localized
    # posterior is Gaussian and nβ·(E[L_n] − L_n*) = (d/2)·nβh/(nβh + γ) exactly (d/2 = 6 as γ → 0).
    x = torch.eye(4, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    init = toy.init_params(toy.DLNConfig(widths=(4, 3), init_scale=0.1, seed=0))
    run = nl.train(init, (x, y), toy.TrainConfig(lr=1.0, num_steps=200, checkpoint_every=100), activation="linear")
    assert float(run.loss[-1]) < 1e-20
    nbeta, gamma, h = 100.0, 1.0, 0.25
    # ε·(nβh + γ) = 0.05: the Euler scheme's variance bias is about 1%; seeds 0–4 of a 16 × 300 run at ε = 3e-3
    # were within 8% (s.e. 3.5%)
    config = SGLDConfig(step_size=2e-3, nbeta=nbeta, localization=gamma, num_chains=16, num_draws=400,
                        num_burnin=100, seed=0)
    steps, estimates = nl.llc_curve(run, (x, y), config, activation="linear", steps=[200])
    exact = 6.0 * nbeta * h / (nbeta * h + gamma)
    assert steps.tolist() == [200]
    assert estimates[0].estimate == pytest.approx(exact, rel=0.12)
    assert abs(estimates[0].estimate - exact) < 4 * estimates[0].stderr + 0.02 * exact


def test_llc_curve_is_estimate_llc_of_each_checkpoint():
    run = nl.train(toy.init_params(toy.DLNConfig(seed=0)), DATA, SHORT, activation="relu")
    config = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=2, num_draws=20, seed=1)
    steps, estimates = nl.llc_curve(run, DATA, config, activation="relu")
    assert steps.tolist() == [0, 20, 40, 60] and len(estimates) == 4
    _, again = nl.llc_curve(run, DATA, config, activation="relu", steps=[0, 20, 40, 60])
    assert [e.estimate for e in estimates] == [e.estimate for e in again]  # seeded


@pytest.mark.parametrize("call, message", [
    (lambda: nl.forward(_random_params(), DATA.inputs, "sigmoid"), "activation"),
    (lambda: nl.loss_fn("gelu"), "activation"),
    (lambda: nl.train_runs(_random_params(), DATA, SHORT, torch.ones(2, 7)), "beta"),
    (lambda: nl.leave_one_out_many([], DATA, SHORT), "inits"),
    (lambda: nl.leave_one_out(_random_params(), DATA, SHORT, items=[9]), "items"),
    (lambda: nl.bif_trajectories([nl.train(_random_params(), DATA, SHORT)], DATA,
                                 replace(toy.PLAIN_SGLD, num_draws=2), steps=[7]), "not checkpoints"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_agreement_scores_of_a_trajectory_with_itself_and_its_negative():
    steps = torch.arange(0, 100, 10)
    values = torch.randn(10, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).numpy()
    same = nl.agreement_scores(values, values, steps.numpy())
    assert same == {"corr_median": pytest.approx(1.0), "rank_corr_median": pytest.approx(1.0),
                    "sign_agreement": 1.0, "peak_offset_median": 0.0}
    flipped = nl.agreement_scores(-values, values, steps.numpy())
    assert flipped["corr_median"] == pytest.approx(-1.0) and flipped["sign_agreement"] == 0.0
