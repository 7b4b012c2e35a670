"""Bad input to the sampler is reported before any compute, naming the argument and what is accepted.

Each case also checks that ``loss_fn`` was never called on the bad input (no step was taken), or, for a loss
that is not per sample, that the error comes from the first evaluation at w*, before the first step.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from stagewise.config import ConfigError
from stagewise.sampling import SGLDConfig, sample, sample_many

DT = torch.float64


def data(n=12, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    return X, X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + torch.randn(n, generator=g, dtype=DT)


class CountingLoss:
    """ℓ_i = ½(y_i − x_iᵀw)², counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, w, batch):
        self.calls += 1
        X, y = batch
        return 0.5 * (y - (X * w).sum(-1)) ** 2


CFG = SGLDConfig(step_size=1e-3, nbeta=10.0, localization=10.0, num_chains=2, num_draws=3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data_and_observables_are_named(bad):
    X, y = data()
    X_bad = X.clone()
    X_bad[4, 1] = bad
    loss = CountingLoss()
    message = r"data \(tensor 0\) holds 1 NaN or infinite value\(s\), the first at index \(4, 1\)"
    with pytest.raises(ValueError, match=message) as info:
        sample(loss, torch.zeros(3, dtype=DT), (X_bad, y), config=CFG, progress=False)
    assert "diverged" not in str(info.value)  # not reported as a divergence at step 0
    with pytest.raises(ValueError, match=r"observables \(tensor 1\) holds 1 NaN"):
        y_bad = y.clone()
        y_bad[0] = bad
        sample(loss, torch.zeros(3, dtype=DT), (X, y), observables=(X, y_bad), config=CFG, progress=False)
    assert loss.calls == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_checkpoint_is_named(bad):
    X, y = data()
    loss = CountingLoss()
    w = torch.zeros(3, dtype=DT)
    w[2] = bad
    with pytest.raises(ValueError, match=r"params holds 1 NaN or infinite value\(s\).*w\* must be finite") as info:
        sample(loss, w, (X, y), config=CFG, progress=False)
    assert "diverged" not in str(info.value)

    def dict_loss(p, batch):
        return loss(p["w"] + p["b"], batch)

    with pytest.raises(ValueError, match=r"params\['b'\] holds 1 NaN"):
        sample(dict_loss, {"w": torch.zeros(3, dtype=DT), "b": w}, (X, y), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"checkpoints\[1\] holds 1 NaN"):
        sample_many(loss, [torch.zeros(3, dtype=DT), w], (X, y), config=CFG, progress=False)
    assert loss.calls == 0


def test_empty_or_malformed_data():
    X, y = data()
    loss = CountingLoss()
    w = torch.zeros(3, dtype=DT)
    with pytest.raises(ValueError, match=r"data is empty \(0 samples\); accepted: at least one sample"):
        sample(loss, w, (X[:0], y[:0]), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"observables is empty"):
        sample(loss, w, (X, y), observables=(X[:0], y[:0]), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"same leading \(sample\) dimension; got \[12, 11\]"):
        sample(loss, w, (X, y[:11]), config=CFG, progress=False)
    with pytest.raises(TypeError, match=r"data must be a tensor, a numpy array, or a tuple, list or dict"):
        sample(loss, w, "not data", config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"observable_chunk = 0"):
        sample(loss, w, (X, y), observables=(X, y), config=CFG, observable_chunk=0, progress=False)
    assert loss.calls == 0


def test_bad_params_and_arguments():
    X, y = data()
    loss = CountingLoss()
    with pytest.raises(TypeError, match=r"params must be a tensor, a numpy array or a non-empty dict .* got list"):
        sample(loss, [0.0, 0.0, 0.0], (X, y), config=CFG, progress=False)
    with pytest.raises(TypeError, match=r"params must be .* got dict"):
        sample(loss, {}, (X, y), config=CFG, progress=False)
    with pytest.raises(TypeError, match=r"params has dtype torch.int64; accepted: a floating-point dtype"):
        sample(loss, torch.zeros(3, dtype=torch.long), (X, y), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"params is empty \(shape \(0,\)\)"):
        sample(loss, torch.zeros(0, dtype=DT), (X, y), config=CFG, progress=False)
    with pytest.raises(TypeError, match=r"config must be an SGLDConfig or None; got dict"):
        sample(loss, torch.zeros(3, dtype=DT), (X, y), config={"step_size": 1e-3}, progress=False)
    with pytest.raises(TypeError, match=r"loss_fn must be callable"):
        sample("mse", torch.zeros(3, dtype=DT), (X, y), config=CFG, progress=False)
    assert loss.calls == 0


def test_sample_many_checkpoints_must_match():
    X, y = data()
    loss = CountingLoss()
    a = {"w": torch.zeros(3, dtype=DT), "b": torch.zeros(1, dtype=DT)}

    def dict_loss(p, batch):
        return loss(p["w"] + p["b"], batch)

    renamed = {"w": torch.zeros(3, dtype=DT), "bias": torch.zeros(1, dtype=DT)}
    with pytest.raises(ValueError, match=r"checkpoints\[1\] has parameters \['w', 'bias'\], "
                                         r"checkpoints\[0\] has \['w', 'b'\]"):
        sample_many(dict_loss, [a, renamed], (X, y), config=CFG, progress=False)
    reshaped = {"w": torch.zeros(3, dtype=DT), "b": torch.zeros(2, dtype=DT)}
    with pytest.raises(ValueError, match=r"checkpoints\[2\]\['b'\] has shape \(2,\), "
                                         r".*checkpoints\[0\]\['b'\] has \(1,\)"):
        sample_many(dict_loss, [a, a, reshaped], (X, y), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"checkpoints\[1\] has shape \(3,\), dtype torch.float32"):
        sample_many(loss, [torch.zeros(3, dtype=DT), torch.zeros(3)], (X, y), config=CFG, progress=False)
    with pytest.raises(ValueError, match=r"checkpoints\[1\] has parameters"):
        sample_many(loss, [torch.zeros(3, dtype=DT), {"w": torch.zeros(3, dtype=DT)}], (X, y), config=CFG,
                    progress=False)
    with pytest.raises(ValueError, match=r"checkpoints must hold at least one"):
        sample_many(loss, [], (X, y), config=CFG, progress=False)
    with pytest.raises(TypeError, match=r"checkpoints must be a list of checkpoints"):
        sample_many(loss, torch.zeros(2, 3, dtype=DT), (X, y), config=CFG, progress=False)
    assert loss.calls == 0


def test_a_scalar_loss_with_data_is_rejected_before_the_first_step():
    X, y = data()
    calls = []

    def mean_loss(w, batch):  # the mean instead of per-sample losses
        calls.append(1)
        X, y = batch
        return (0.5 * (y - (X * w).sum(-1)) ** 2).mean()

    with pytest.raises(ValueError, match=r"loss_fn must return per-sample losses, shape \(12, \.\.\.\) for the 12 "
                                         r"samples of the data; got shape \(\)"):
        sample(mean_loss, torch.zeros(3, dtype=DT), (X, y), config=CFG, progress=False)
    assert len(calls) == 2  # the first pass on one sample, one evaluation at w*, no step
    # With mini-batches the check is on the first batch-sized piece of the data.
    with pytest.raises(ValueError, match=r"shape \(5, \.\.\.\) for the 5 samples of the data; got shape \(\)"):
        sample(mean_loss, torch.zeros(3, dtype=DT), (X, y), config=SGLDConfig(batch_size=5, num_draws=2),
               progress=False)

    def per_sample_train_only(w, batch):
        X, y = batch
        out = 0.5 * (y - (X * w).sum(-1)) ** 2
        return out if X.shape[0] == 12 else out.sum()

    with pytest.raises(ValueError, match=r"for the 4 samples of the observables; got shape \(\)"):
        sample(per_sample_train_only, torch.zeros(3, dtype=DT), (X, y), observables=(X[:4], y[:4]), config=CFG,
               progress=False)
    # Without data a scalar potential is what is expected.
    trace = sample(lambda w, _b: (w**2).sum(), torch.zeros(3, dtype=DT), config=CFG, progress=False)
    assert trace.loss_trace.shape == (2, 3)


def test_numpy_params_and_data_are_converted():
    X, y = data()
    loss = CountingLoss()
    cfg = SGLDConfig(step_size=1e-2, nbeta=10.0, localization=3.0, num_chains=3, num_draws=5, batch_size=4, seed=3)
    from_torch = sample(loss, torch.zeros(3, dtype=DT), (X, y), observables=(X[:5], y[:5]), config=cfg,
                        progress=False)
    from_numpy = sample(loss, np.zeros(3), (X.numpy(), y.numpy()), observables=[X[:5].numpy(), y[:5].numpy()],
                        config=cfg, progress=False)
    assert from_numpy.losses.dtype == DT
    torch.testing.assert_close(from_numpy.losses, from_torch.losses, rtol=0, atol=0)
    both = sample_many(loss, [np.zeros(3), np.ones(3)], (X.numpy(), y.numpy()),
                       config=cfg, progress=False)
    assert len(both) == 2 and both[0].loss_trace.shape == (3, 5)


def test_numpy_scalars_are_numbers_and_bools_are_not():
    cfg = SGLDConfig(num_chains=np.int64(4), num_draws=np.int32(10), step_size=np.float32(0.5), nbeta=np.float64(3),
                     batch_size=np.int64(2), seed=np.uint8(7))
    assert cfg.num_chains == 4 and type(cfg.num_chains) is int and type(cfg.num_draws) is int
    assert type(cfg.step_size) is float and cfg.step_size == 0.5 and type(cfg.seed) is int
    json.dumps(asdict(cfg))  # metrics files: plain Python numbers only
    for field, value in [("num_chains", True), ("num_chains", np.bool_(True)), ("num_draws", np.float64(3.0)),
                         ("step_size", np.bool_(True)), ("num_chains", np.int64(0))]:
        with pytest.raises(ConfigError, match=rf"{field} = "):
            SGLDConfig(**{field: value})


def test_rmsprop_adapt_is_validated():
    with pytest.raises(ConfigError, match=r"rmsprop_adapt = 'never' \(accepted: 'burnin' or 'always'\)"):
        SGLDConfig(rmsprop_adapt="never")
    with pytest.raises(ConfigError, match=r"num_burnin = 0 \(accepted: an integer ≥ 1 with preconditioner='rmsprop' "
                                          r"and rmsprop_adapt='burnin'.*or set rmsprop_adapt='always'\)"):
        SGLDConfig(preconditioner="rmsprop")
    assert SGLDConfig(preconditioner="rmsprop", num_burnin=1).freezes_preconditioner
    assert not SGLDConfig(preconditioner="rmsprop", rmsprop_adapt="always").freezes_preconditioner
    assert not SGLDConfig(preconditioner="none").freezes_preconditioner  # plain SGLD needs no burn-in
    # A negative burn-in is reported once, as the integer range it breaks.
    with pytest.raises(ConfigError) as info:
        SGLDConfig(preconditioner="rmsprop", num_burnin=-1)
    assert str(info.value).count("num_burnin") == 1 and "an integer ≥ 0" in str(info.value)
