"""Known-answer tests of the deep linear network and its gradient-descent training (stagewise/toy/dln.py)."""

import pytest
import torch

from stagewise import toy

SPARROW = 2

# The fixtures `data` (the hierarchy) and `init` (the seeded initialization) come from tests/conftest.py.


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
