"""The step API of the sampler (init / step and its pieces) and how sample() is built on it.

Checked: a hand-written loop of ``init`` + ``step`` reproduces ``sample`` exactly (full batch, mini-batches,
RMSProp adapting then frozen); ``step`` is pure (its input state is unchanged); the preconditioner freezes
exactly after the last burn-in step and then never moves; the generator is the documented one; the divergence
check names the failing chains.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stagewise.sampling import (
    SamplerState,
    SGLDConfig,
    chain_seed,
    draw_batch,
    draw_noise,
    gradients,
    init,
    init_many,
    make_generators,
    nonfinite_chains,
    observe,
    rmsprop_preconditioner,
    sample,
    sample_many,
    step,
)

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


def manual_run(config, data, w_star, n):
    """init + step, as a user would write it; returns the positions after every step, (chain, step, d)."""
    state = init(w_star, config)
    generators = make_generators(config.seed, config.num_chains)
    positions, losses = [], []
    for _ in range(config.num_steps):
        mini = config.batch_size is not None and config.batch_size < n
        batch = draw_batch(data, config.batch_size, generators) if mini else data
        state = step(state, batch, generators, loss, config, batch_per_chain=mini)
        assert nonfinite_chains(state) is None
        positions.append(state.params["w"])
        losses.append(state.loss)
    return torch.stack(positions, 1), torch.stack(losses, 1), state


@pytest.mark.parametrize("batch_size, preconditioner", [(None, "none"), (4, "none"), (4, "rmsprop"), (None, "rmsprop")])
def test_a_loop_of_steps_reproduces_sample(batch_size, preconditioner):
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=3, num_draws=6, num_burnin=3,
                     batch_size=batch_size, preconditioner=preconditioner, seed=7)
    wstar = torch.tensor([0.1, 0.2, 0.3], dtype=DT)
    trace = sample(loss, wstar, (X, y), config=cfg, observable_fn=record_w, progress=False)
    positions, losses, final = manual_run(cfg, (X, y), wstar, 10)
    assert torch.equal(trace.losses, positions[:, trace.draw_steps])
    assert torch.equal(trace.loss_trace, losses)
    assert final.step == cfg.num_steps
    if preconditioner == "rmsprop":
        assert torch.equal(trace.preconditioner, final.precond["w"])


def test_step_is_pure_and_the_preconditioner_freezes_after_burnin():
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=2, num_draws=4, num_burnin=3,
                     preconditioner="rmsprop", rmsprop_alpha=0.5, seed=1)
    state = init(torch.zeros(3, dtype=DT), cfg)
    assert isinstance(state, SamplerState) and state.step == 0 and state.loss is None and state.precond is None
    assert state.params["w"].shape == (2, 3) and state.tensor_params
    generator = make_generators(cfg.seed, cfg.num_chains)
    history = [state]
    for _ in range(cfg.num_steps):
        before = {k: v.clone() for k, v in history[-1].params.items()}
        new = step(history[-1], (X, y), generator, loss, cfg)
        assert torch.equal(history[-1].params["w"], before["w"])  # the old state is untouched
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
    always = replace(cfg, rmsprop_adapt="always")
    s = init(torch.zeros(3, dtype=DT), always)
    for _ in range(5):
        s = step(s, (X, y), generator, loss, always)
    assert s.precond is None


def test_a_step_by_hand_from_the_pieces():
    """gradients + noise + the frozen update formula give exactly one step."""
    X, y = regression()
    cfg = SGLDConfig(step_size=0.05, nbeta=4.0, localization=2.0, num_chains=3, num_burnin=1,
                     preconditioner="rmsprop", seed=2)
    wstar = torch.tensor([0.3, -0.1, 0.2], dtype=DT)
    state = init(wstar, cfg)
    state = step(state, (X, y), make_generators(0, 3), loss, cfg)  # the burn-in step: G is now frozen
    G = state.precond["w"]
    grads, values = gradients(loss, state.params, (X, y), tensor_params=True)
    torch.testing.assert_close(values, torch.stack([loss(w, (X, y)).mean() for w in state.params["w"]]))
    gen_a, gen_b = make_generators(11, 3), make_generators(11, 3)
    new = step(state, (X, y), gen_a, loss, cfg)
    xi = torch.stack([torch.randn(3, generator=g, dtype=DT) for g in gen_b])
    w = state.params["w"]
    expected = w - 0.025 * G * (4.0 * grads["w"] + 2.0 * (w - wstar)) + (0.05 * G).sqrt() * xi
    torch.testing.assert_close(new.params["w"], expected, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(new.loss, values, rtol=0, atol=0)


def test_init_many_and_observe_match_sample_many():
    X, y = regression()
    cfg = SGLDConfig(step_size=0.02, nbeta=5.0, localization=1.0, num_chains=2, num_draws=3, seed=3)
    centers = [torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)]
    traces = sample_many(loss, centers, (X, y), observables=(X[:4], y[:4]), config=cfg, progress=False)
    state = init_many(centers, cfg)
    assert torch.equal(state.center["w"], torch.tensor([[0.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3], dtype=DT))
    generator = make_generators(cfg.seed, cfg.num_chains, repeat=2)  # chain k·C + c: chain c's stream
    recorded = []
    for _ in range(cfg.num_steps):
        state = step(state, (X, y), generator, loss, cfg)
        recorded.append(observe(loss, state.params, (X[:4], y[:4]), tensor_params=True))
    recorded = torch.stack(recorded, 1)  # (4 chains, 3 draws, 4 samples)
    assert torch.equal(torch.cat([t.losses for t in traces]), recorded)
    chunked = observe(loss, state.params, (X[:4], y[:4]), tensor_params=True, chunk=3)
    torch.testing.assert_close(chunked, recorded[:, -1], rtol=0, atol=0)


def test_nonfinite_chains_names_the_chains():
    cfg = SGLDConfig(num_chains=3)
    state = init(torch.zeros(2, dtype=DT), cfg)
    assert nonfinite_chains(state) is None
    bad = state._replace(params={"w": torch.tensor([[0.0, 0.0], [0.0, float("inf")], [0.0, 0.0]], dtype=DT)})
    mask, reason = nonfinite_chains(bad)
    assert mask.tolist() == [False, True, False] and reason == "non-finite parameters"
    bad = state._replace(loss=torch.tensor([float("nan"), 0.0, 0.0], dtype=DT))
    mask, reason = nonfinite_chains(bad)
    assert mask.tolist() == [True, False, False] and reason == "non-finite loss"


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
