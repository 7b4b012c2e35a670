"""The kernel of the sampler (``SGLD(loss_fn, config)``: init / step / observe, and its pieces) and how sample()
is built on it.

Checked: a hand-written loop of ``kernel.step`` reproduces ``sample`` exactly (full batch, mini-batches, RMSProp
adapting then frozen); ``step`` is pure and replayable (its input state is unchanged, and the same state gives
the same step again, random draws included: the random state lives in the state); the mini-batch is drawn inside
``step`` from each chain's own stream, batch indices before noise; the preconditioner freezes exactly after the
last burn-in step and then never moves; the generator is the documented one; the step's info flags name the
chains whose loss or parameters went non-finite.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stagewise.sampling import SGLD, SamplerState, SGLDConfig, StepInfo, sample, sample_many
from stagewise.sampling.kernel import (chain_seed, draw_noise, gradients, make_generators, nonfinite_params,
                                       observe)
from stagewise.sampling.update import rmsprop_preconditioner

DT = torch.float64


def regression(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=DT)
    return X, X @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + torch.randn(n, generator=g, dtype=DT)


def loss(w, batch):
    X, y = batch
    return 0.5 * (y - (X * w).sum(-1)) ** 2


def record_w(w, _batch):
    return w


def manual_run(config, data, w_star):
    """init + step, as a user would write it; returns the positions after every step, (chain, step, d)."""
    kernel = SGLD(loss, config)
    state = kernel.init(w_star)
    positions, losses = [], []
    for _ in range(config.num_steps):
        state, info = kernel.step(state, data)
        assert isinstance(info, StepInfo)
        assert not info.nonfinite_loss.any() and not info.nonfinite_params.any()
        positions.append(state.params["w"])
        losses.append(info.loss)
    return torch.stack(positions, 1), torch.stack(losses, 1), state


@pytest.mark.parametrize("batch_size, preconditioner", [(None, "none"), (4, "none"), (4, "rmsprop"), (None, "rmsprop")])
def test_a_loop_of_steps_reproduces_sample(batch_size, preconditioner):
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=3, num_draws=6, num_burnin=3,
                     batch_size=batch_size, preconditioner=preconditioner, seed=7)
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    trace = sample(loss, wstar, (X, y), config=cfg, observable_fn=record_w, progress=False)
    positions, losses, final = manual_run(cfg, (X, y), wstar)
    assert torch.equal(trace.losses, positions[:, trace.draw_steps])
    assert torch.equal(trace.loss_trace, losses)
    assert final.step == cfg.num_steps
    if preconditioner == "rmsprop":
        assert torch.equal(trace.preconditioner, final.precond["w"])


@pytest.mark.parametrize("batch_size, preconditioner, batching", [(4, "rmsprop", "vmap"), (None, "none", "loop"),
                                                                   (4, "none", "loop")])
def test_step_is_replayable(batch_size, preconditioner, batching):
    """The same state gives the same new state and info, however often and in whatever order it is stepped."""
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=3, num_burnin=2,
                     batch_size=batch_size, preconditioner=preconditioner, batching=batching, seed=4)
    kernel = SGLD(loss, cfg)
    states = [kernel.init(torch.tensor([0.1, 0.2, 0.3], dtype=DT))]
    infos = []
    for _ in range(5):
        state, info = kernel.step(states[-1], (X, y))
        states.append(state)
        infos.append(info)
    for t in (3, 0, 3, 1):  # replay old states, out of order, after the run went on
        again, info = kernel.step(states[t], (X, y))
        assert torch.equal(again.params["w"], states[t + 1].params["w"])
        assert torch.equal(info.loss, infos[t].loss)
        assert all(torch.equal(a, b) for a, b in zip(again.rng, states[t + 1].rng))
        assert again.step == states[t + 1].step
    # a second kernel with the same settings (e.g. in another process) continues the same chains
    other, _ = SGLD(loss, cfg).step(states[4], (X, y))
    assert torch.equal(other.params["w"], states[5].params["w"])
    # and the draws differ from step to step: the random state advances
    assert not torch.equal(states[2].params["w"] - states[1].params["w"], states[1].params["w"] - states[0].params["w"])


def test_a_step_that_fails_while_drawing_leaves_the_next_step_right():
    """The scratch generators skip restoring a state they already hold; a step that raises after drawing some
    numbers (here while indexing malformed data with the drawn batch indices) must not leave them counted as
    holding the state it started from."""
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=3, batch_size=4, seed=6)
    kernel = SGLD(loss, cfg)
    w0 = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    t1, _ = kernel.step(kernel.init(w0), (X, y))
    t2, _ = kernel.step(t1, (X, y))  # the reference
    s1, _ = kernel.step(kernel.init(w0), (X, y))
    with pytest.raises(RuntimeError, match="index_select"):
        kernel.step(s1, (X, y, torch.tensor(1.0)))  # the indices are drawn, then the 0-d tensor cannot be indexed
    s2, _ = kernel.step(s1, (X, y))
    assert torch.equal(s2.params["w"], t2.params["w"])
    assert all(torch.equal(a, b) for a, b in zip(s2.rng, t2.rng))


def test_the_minibatch_is_drawn_inside_step_from_each_chains_stream():
    """Per step each chain draws randint(n, (batch_size,)) and then randn(D) from its own generator; with
    batch_size ≥ n the step takes the full data and draws no indices."""
    X, y = regression()
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=2, batch_size=4, seed=9)
    state, info = SGLD(loss, cfg).step(SGLD(loss, cfg).init(wstar), (X, y))
    generators = make_generators(cfg.seed, cfg.num_chains)
    idx = [torch.randint(10, (4,), generator=g) for g in generators]
    xi = torch.stack([torch.randn(3, generator=g, dtype=DT) for g in generators])
    expected_loss = torch.stack([loss(wstar, (X[i], y[i])).mean() for i in idx])
    torch.testing.assert_close(info.loss, expected_loss, rtol=0, atol=0)
    grads = torch.stack([torch.func.grad(lambda w, i=i: loss(w, (X[i], y[i])).mean())(wstar) for i in idx])
    expected = wstar - 0.01 * (5.0 * grads + 0.0) + 0.02 ** 0.5 * xi  # w = w*: no localization term yet
    torch.testing.assert_close(state.params["w"], expected, rtol=1e-14, atol=1e-14)
    for size in (10, None):  # the full data: no indices drawn, the noise is each stream's first randn
        full = replace(cfg, batch_size=size)
        state, info = SGLD(loss, full).step(SGLD(loss, full).init(wstar), (X, y))
        xi = torch.stack([torch.randn(3, generator=g, dtype=DT) for g in make_generators(cfg.seed, 2)])
        g_full = torch.func.grad(lambda w: loss(w, (X, y)).mean())(wstar)
        torch.testing.assert_close(state.params["w"], wstar - 0.01 * 5.0 * g_full + 0.02 ** 0.5 * xi,
                                   rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(info.loss, loss(wstar, (X, y)).mean().expand(2), rtol=0, atol=0)


def test_step_is_pure_and_the_preconditioner_freezes_after_burnin():
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=2, num_draws=4, num_burnin=3,
                     preconditioner="rmsprop", rmsprop_alpha=0.5, seed=1)
    kernel = SGLD(loss, cfg)
    state = kernel.init(torch.zeros(3, dtype=DT))
    assert isinstance(state, SamplerState) and state.step == 0 and state.precond is None
    assert state.square_avg is None and len(state.rng) == 2
    assert state.params["w"].shape == (2, 3) and state.tensor_params
    history = [state]
    for _ in range(cfg.num_steps):
        before = {k: v.clone() for k, v in history[-1].params.items()}
        rng_before = [r.clone() for r in history[-1].rng]
        new, _ = kernel.step(history[-1], (X, y))
        assert torch.equal(history[-1].params["w"], before["w"])  # the old state is untouched
        assert all(torch.equal(a, b) for a, b in zip(history[-1].rng, rng_before))
        history.append(new)
    # V adapts during the 3 burn-in steps; G is frozen from the V after step 3 and V stays as it was.
    for t in range(1, 3):
        assert history[t].precond is None
        assert not torch.equal(history[t].square_avg["w"], history[t + 1].square_avg["w"])
    frozen = rmsprop_preconditioner(history[3].square_avg, cfg.rmsprop_eps)
    torch.testing.assert_close(history[3].precond["w"], 1 / (history[3].square_avg["w"].sqrt() + 0.1), rtol=0, atol=0)
    for later in history[4:]:
        assert torch.equal(later.precond["w"], frozen["w"])
        assert torch.equal(later.square_avg["w"], history[3].square_avg["w"])
    # With rmsprop_adapt="always" nothing freezes.
    always = SGLD(loss, replace(cfg, rmsprop_adapt="always"))
    s = always.init(torch.zeros(3, dtype=DT))
    for _ in range(5):
        s, _ = always.step(s, (X, y))
    assert s.precond is None


def test_a_step_by_hand_from_the_pieces():
    """gradients + noise + the frozen update formula give exactly one step."""
    X, y = regression()
    cfg = SGLDConfig(step_size=0.05, nbeta=4.0, localization=2.0, num_chains=3, num_burnin=1,
                     preconditioner="rmsprop", seed=2)
    wstar = torch.tensor([0.3, -0.1, 0.2], dtype=DT)
    kernel = SGLD(loss, cfg)
    state, _ = kernel.step(kernel.init(wstar), (X, y))  # the burn-in step: G is now frozen
    G = state.precond["w"]
    grads, values = gradients(loss, state.params, (X, y), tensor_params=True)
    torch.testing.assert_close(values, torch.stack([loss(w, (X, y)).mean() for w in state.params["w"]]))
    generators = make_generators(cfg.seed, 3)
    for g in generators:  # the burn-in step's noise
        torch.randn(3, generator=g, dtype=DT)
    xi = torch.stack([torch.randn(3, generator=g, dtype=DT) for g in generators])
    new, info = kernel.step(state, (X, y))
    w = state.params["w"]
    expected = w - 0.025 * G * (4.0 * grads["w"] + 2.0 * (w - wstar)) + (0.05 * G).sqrt() * xi
    torch.testing.assert_close(new.params["w"], expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(info.loss, values, rtol=0, atol=0)


def test_init_many_and_observe_match_sample_many():
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=2, num_draws=3, seed=3)
    centers = [torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)]
    traces = sample_many(loss, centers, (X, y), observables=(X[:4], y[:4]), config=cfg, progress=False)
    kernel = SGLD(loss, cfg)
    state = kernel.init_many(centers)  # chain k·C + c: chain c's stream
    assert torch.equal(state.center["w"], torch.tensor([[0.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3], dtype=DT))
    assert all(torch.equal(a, b) for a, b in zip(state.rng[2:], state.rng[:2]))
    recorded = []
    for _ in range(cfg.num_steps):
        state, _ = kernel.step(state, (X, y))
        recorded.append(kernel.observe(state, (X[:4], y[:4])))
    recorded = torch.stack(recorded, 1)  # (4 chains, 3 draws, 4 samples)
    assert torch.equal(torch.cat([t.losses for t in traces]), recorded)
    chunked = observe(loss, state.params, (X[:4], y[:4]), tensor_params=True, chunk=3)
    torch.testing.assert_close(chunked, recorded[:, -1], rtol=0, atol=0)
    in_config = SGLD(loss, replace(cfg, observable_chunk=3)).observe(state, (X[:4], y[:4]))
    torch.testing.assert_close(in_config, recorded[:, -1], rtol=0, atol=0)


def test_info_flags_the_chains_whose_loss_or_parameters_are_not_finite():
    """A loss that is NaN at one checkpoint (square root of a negative weight) flags exactly that checkpoint's chains, in
    the loss before the step and in the parameters after it; finite chains are not flagged."""
    X, y = regression()

    def sqrt_loss(w, batch):
        return torch.sqrt(w[0]) * batch[0][:, 0] ** 2 + 0.0 * w.sum()

    cfg = SGLDConfig(step_size=1e-3, nbeta=1.0, localization=1.0, num_chains=2, seed=0)
    kernel = SGLD(sqrt_loss, cfg)
    state = kernel.init_many([torch.ones(3, dtype=DT), -torch.ones(3, dtype=DT)])
    state, info = kernel.step(state, (X, y))
    assert info.nonfinite_loss.tolist() == [False, False, True, True]
    assert info.nonfinite_params.tolist() == [False, False, True, True]
    assert info.loss.shape == (4,) and info.nonfinite_loss.dtype == torch.bool
    bad = {"w": torch.tensor([[0.0, 0.0], [0.0, float("inf")], [0.0, 0.0]], dtype=DT)}
    assert nonfinite_params(bad).tolist() == [False, True, False]
    nan_loss = SGLD(lambda w, _: (w * torch.tensor([float("nan"), 0.0], dtype=DT)).sum(), replace(cfg, num_chains=3))
    _, info = nan_loss.step(nan_loss.init(torch.zeros(2, dtype=DT)), None)
    assert info.nonfinite_loss.tolist() == [True, True, True]


def test_one_generator_per_chain_seeded_from_seed_and_chain():
    gens = make_generators(5, 3)
    assert len(gens) == 3 and all(g.device.type == "cpu" for g in gens)
    assert len({chain_seed(5, c) for c in range(3)} | {chain_seed(6, c) for c in range(3)}) == 6
    first = torch.randn(4, generator=gens[1])
    assert torch.equal(first, torch.randn(4, generator=torch.Generator().manual_seed(chain_seed(5, 1))))
    repeated = make_generators(5, 3, repeat=2)  # chain k·3 + c gets chain c's stream
    assert [g.initial_seed() for g in repeated] == [g.initial_seed() for g in make_generators(5, 3)] * 2
    with pytest.raises(ValueError, match="one generator per chain"):
        draw_noise({"w": torch.zeros(3, 2, dtype=DT)}, make_generators(5, 2))
    state = SGLD(loss, SGLDConfig(num_chains=3, seed=5)).init(torch.zeros(3, dtype=DT))
    assert all(torch.equal(s, g.get_state()) for s, g in zip(state.rng, make_generators(5, 3)))


def test_a_chain_does_not_depend_on_the_other_chains():
    """Chain c of a run with 2 chains is chain c of a run with 5 (mini-batches and RMSProp included), and
    sample_many's chains at checkpoint k are sample's chains there."""
    X, y = regression()
    common = dict(step_size=0.02, nbeta=5.0, localization=1.0, num_draws=6, num_burnin=2, batch_size=4,
                  preconditioner="rmsprop", seed=3)
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    two = sample(loss, wstar, (X, y), config=SGLDConfig(num_chains=2, **common), observable_fn=record_w,
                 progress=False)
    five = sample(loss, wstar, (X, y), config=SGLDConfig(num_chains=5, **common), observable_fn=record_w,
                  progress=False)
    torch.testing.assert_close(five.losses[:2], two.losses, rtol=1e-13, atol=1e-13)
    many = sample_many(loss, [wstar, -wstar], (X, y), config=SGLDConfig(num_chains=2, **common),
                       observable_fn=record_w, progress=False)
    torch.testing.assert_close(many[0].losses, two.losses, rtol=1e-13, atol=1e-13)
    alone = sample(loss, -wstar, (X, y), config=SGLDConfig(num_chains=2, **common), observable_fn=record_w,
                   progress=False)
    torch.testing.assert_close(many[1].losses, alone.losses, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("batch_size", [None, 4])
def test_looped_chains_equal_vmapped_chains(batch_size):
    X, y = regression()
    common = dict(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=3, num_draws=5, num_burnin=2,
                  batch_size=batch_size, preconditioner="rmsprop", seed=8)
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    runs = {b: sample(loss, wstar, (X, y), observables=(X[:4], y[:4]), config=SGLDConfig(batching=b, **common),
                      progress=False) for b in ("vmap", "loop", "auto")}
    for b in ("loop", "auto"):
        torch.testing.assert_close(runs[b].losses, runs["vmap"].losses, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(runs[b].loss_trace, runs["vmap"].loss_trace, rtol=1e-12, atol=1e-14)
    w = {"w": torch.randn(3, 3, dtype=DT)}
    (gv, vv), (gl, vl) = (gradients(loss, w, (X, y), tensor_params=True, loop=lp) for lp in (False, True))
    torch.testing.assert_close(gl["w"], gv["w"], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(vl, vv, rtol=1e-13, atol=1e-14)
