"""Known-answer tests of leave-one-out and window ablations (stagewise/toy/ablation.py)."""

import pytest
import torch

from stagewise import toy

DOG, CAT, SPARROW = 0, 1, 2

# The fixtures `data` (the hierarchy) and `init` (the seeded initialization) come from tests/conftest.py.


@pytest.fixture(scope="module")
def loo(data, init):
    return toy.leave_one_out(init, data)


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


def test_bad_item_indices_name_the_parameter_before_training(data, init):
    config = toy.TrainConfig(num_steps=10, checkpoint_every=5)
    with pytest.raises(ValueError, match=r"items = \[8\]: accepted values are item indices in 0 … 7"):
        toy.leave_one_out(init, data, config, items=[8])
    with pytest.raises(ValueError, match=r"items = \[-1\].*0 … 7"):
        toy.window_ablation(init, data, [(0, 5)], config, items=[-1])
    with pytest.raises(ValueError, match=r"train = \[0, 9\].*0 … 7"):
        toy.finite_difference_influence(init, data, config, train=[0, 9])
    with pytest.raises(ValueError, match=r"query = \[8\].*0 … 7"):
        toy.analytic_influence(data, [0, 5], 0.05, 1e-3, query=[8])
    # A subset of items is leave-one-out for those items only, the same numbers as the full batch.
    some = toy.leave_one_out(init, data, config, items=[5, 2])
    every = toy.leave_one_out(init, data, config)
    assert some.items == (5, 2)
    torch.testing.assert_close(some.delta, every.delta[:, [5, 2]], rtol=1e-9, atol=1e-12)
