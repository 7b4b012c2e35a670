"""Input validation of the BIF estimators (stagewise.influence): clear errors before any estimate.

NaN or infinite losses, and constant losses in the normalized BIF, would otherwise give silent NaN entries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stagewise.influence import bif, group_bif, token_bif


def losses(chains=2, draws=50, samples=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(chains, draws, samples, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["train_losses", "query_losses"])
def test_non_finite_losses_are_named(bad, where):
    train, query = losses(), losses(seed=1)
    target = train if where == "train_losses" else query
    target[1, 7, 2] = bad
    with pytest.raises(ValueError, match=rf"{where} holds 1 NaN or infinite value\(s\), the first at .* = \(1, 7, 2\)"):
        bif(train, query)
    with pytest.raises(ValueError, match=where):
        bif(train, query, normalized=True)


def test_non_finite_losses_in_token_and_group_bif():
    per_token = losses().reshape(2, 50, 2, 2).clone()
    per_token[0, 3, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="train_losses holds 1 NaN"):
        token_bif(per_token)
    groups = torch.tensor([[[True, False], [True, False]], [[False, True], [False, True]]])
    with pytest.raises(ValueError, match="train_losses holds 1 NaN"):
        group_bif(per_token, groups)


def test_constant_loss_raw_is_zero_normalized_is_an_error():
    train = losses()
    train[:, :, 3] = 0.25  # a sample whose loss never moves
    raw = bif(train)
    assert torch.isfinite(raw).all()
    zeros = torch.zeros(4, dtype=raw.dtype)
    assert torch.equal(raw[3], zeros) and torch.equal(raw[:, 3], zeros)
    with pytest.raises(ValueError, match=r"train_losses: the loss of sample\(s\) \[3\] is the same at every draw"):
        bif(train, normalized=True)
    with pytest.raises(ValueError, match=r"query_losses: the loss of sample\(s\) \[3\]"):
        bif(losses(seed=2), train, normalized=True)
    # Entries that do vary keep a finite normalized BIF.
    ok = bif(train[:, :, :3], normalized=True)
    assert torch.isfinite(ok).all() and torch.allclose(ok.diagonal(), -torch.ones(3, dtype=ok.dtype))


def test_numpy_losses_are_accepted_and_other_types_are_not():
    train = losses()
    torch.testing.assert_close(bif(train.numpy()), bif(train), rtol=0, atol=0)
    with pytest.raises(TypeError, match="train_losses must be a tensor"):
        bif(train.tolist())
    with pytest.raises(ValueError, match=r"train_losses must have shape \(chain, draw, sample, ...\); got \(50, 4\)"):
        bif(train[0])
