"""``SGLDConfig(compile=True)``: the compiled step and observables give the eager sampler's draws.

Checked on a tiny two-layer network (an ``nn.Module`` through ``module_loss_fn``, float64): the same seed gives
the same observables' losses and training-loss trace with and without compile, for looped chains with
mini-batches and RMSProp adapted then frozen, and for vmapped chains with plain SGLD; and a first compiled step
whose positions alias the centre w* (a graph traced so can fix w − w* at 0)
still moves the chains as the eager step does. The differences allowed are float64 rounding (the fused kernels
add in another order). Skipped where ``torch.compile`` cannot build kernels (no C++ compiler).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from stagewise.sampling import SGLD, SGLDConfig, module_loss_fn, sample

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile") or shutil.which("c++") is None
                                and shutil.which("g++") is None, reason="torch.compile needs a C++ compiler here")
DT = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)


def problem(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).to(DT)
    X = torch.randn(n, 3, generator=g, dtype=DT)
    y = torch.sin(X.sum(1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=g, dtype=DT)
    params, loss_fn = module_loss_fn(net, lambda forward, b: ((forward(b[0]) - b[1]) ** 2).mean(-1))
    return params, loss_fn, (X, y)


def runs(config, **kw):
    params, loss_fn, data = problem()
    return [sample(loss_fn, params, data, (data[0][:6], data[1][:6]), SGLDConfig(compile=c, **config),
                   progress=False, **kw) for c in (False, True)]


@pytest.mark.parametrize("batching,extra", [
    ("loop", dict(batch_size=8, preconditioner="rmsprop", num_burnin=2)),
    ("vmap", dict()),
])
def test_compiled_sampler_gives_the_eager_draws(batching, extra):
    eager, compiled = runs(dict(step_size=1e-3, nbeta=20.0, localization=5.0, num_chains=2, num_draws=3, seed=3,
                                batching=batching, **extra))
    torch.testing.assert_close(compiled.losses, eager.losses, **TOL)
    torch.testing.assert_close(compiled.loss_trace, eager.loss_trace, **TOL)
    assert (eager.losses[:, -1] != eager.init_observable_losses).any()  # the chains moved
    if extra.get("preconditioner") == "rmsprop":
        for k, v in eager.preconditioner.items():
            torch.testing.assert_close(compiled.preconditioner[k], v, **TOL)


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_first_compiled_step_with_positions_aliasing_the_centre_still_pulls_towards_it(batching):
    torch._dynamo.reset()  # the first trace of the graph is the aliased call itself
    params, loss_fn, data = problem(seed=1)
    config = SGLDConfig(step_size=1e-2, nbeta=1.0, localization=50.0, num_chains=2, batching=batching)
    out = {}
    for c in (False, True):
        cfg = SGLDConfig(**{**config.__dict__, "compile": c})
        kernel = SGLD(loss_fn, cfg)
        state = kernel.init(params)
        state = state._replace(params=state.center)  # the positions are w* itself, not a copy
        for _ in range(3):
            state, _ = kernel.step(state, data)
        out[c] = state
        assert all((state.params[k] != state.center[k]).any() for k in state.params)
    for k in params:
        torch.testing.assert_close(out[True].params[k], out[False].params[k], **TOL)
        assert not torch.equal(out[True].center[k], out[True].params[k])
