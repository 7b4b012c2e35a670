"""One device for the whole sampling stack, and the estimators on it.

Checked on the CPU (and on CUDA where present; those cases skip otherwise): every tensor of a run lives on the
requested device; no tensor is made without naming its device (a factory-call check under a TorchFunctionMode,
which catches on the CPU the code that would put a tensor on the default device of a GPU run); a seed
reproduces the chains; the deferred divergence check (the device flag read every k steps) names the same chain
and step as the check at every step; "auto" resolves to CUDA when available, else the CPU; bad device names are
a ConfigError naming the parameter and what is accepted; the estimators take device tensors and answer there.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from stagewise.config import ConfigError
from stagewise.diagnostics import ess, rhat, summarize
from stagewise.influence import bif, bif_stderr, group_bif, group_bif_stderr, token_bif
from stagewise.llc import estimate_llc
from stagewise.sampling import SGLD, SamplerDivergence, SGLDConfig, module_loss_fn, resolve_device, sample, sample_many
from stagewise.sampling.device import available_devices

DT = torch.float64
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="CUDA is not available"))]


def regression(n=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=DT)
    return x, x @ torch.tensor([0.5, -1.0, 2.0], dtype=DT) + 0.3 * torch.randn(n, generator=g, dtype=DT)


def loss(w, batch):
    x, y = batch
    return 0.5 * (y - (x * w).sum(-1)) ** 2


def tensors_of(trace):
    out = {"losses": trace.losses, "loss_trace": trace.loss_trace, "init_observable_losses":
           trace.init_observable_losses}
    pre = trace.preconditioner
    out.update({f"preconditioner[{k}]": v for k, v in (pre.items() if isinstance(pre, dict) else
                                                        [("w", pre)] if pre is not None else [])})
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size, batching", [(None, "vmap"), (8, "loop"), (8, "vmap")])
def test_every_tensor_of_a_run_is_on_the_requested_device(device, batch_size, batching):
    x, y = regression()
    cfg = SGLDConfig(step_size=1e-3, nbeta=30.0, localization=1.0, num_chains=3, num_draws=12, num_burnin=4,
                     batch_size=batch_size, preconditioner="rmsprop", batching=batching, device=device, seed=2)
    trace = sample(loss, torch.zeros(3, dtype=DT), (x, y), observables=(x[:5], y[:5]),
                   config=replace(cfg, trace_device=None), progress=False)
    for name, tensor in tensors_of(trace).items():
        assert tensor.device.type == device, name
    assert trace.preconditioner is not None
    on_cpu = trace.to("cpu")
    assert all(t.device.type == "cpu" for t in tensors_of(on_cpu).values())
    default = sample(loss, torch.zeros(3, dtype=DT), (x, y), observables=(x[:5], y[:5]), config=cfg, progress=False)
    assert all(t.device.type == "cpu" for t in tensors_of(default).values())  # trace_device="cpu"
    torch.testing.assert_close(default.losses, on_cpu.losses, rtol=0, atol=0)
    kernel = SGLD(loss, cfg)
    state, info = kernel.step(kernel.init(torch.zeros(3, dtype=DT)), (x.to(device), y.to(device)))
    assert all(v.device.type == device for part in (state.params, state.center, state.square_avg)
               for v in part.values()) and all(v.device.type == device for v in info)
    assert all(r.device.type == "cpu" for r in state.rng)  # generator states are host byte tensors


FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.tensor, torch.randn,
             torch.rand, torch.randint, torch.eye, torch.linspace}


class _NoImplicitDevice(TorchFunctionMode):
    """Records every factory call that neither names a device nor writes into ``out=``."""

    def __init__(self):
        super().__init__()
        self.implicit = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs and "out" not in kwargs:
            self.implicit.append(func.__name__)
        return func(*args, **kwargs)


@pytest.mark.parametrize("batch_size, preconditioner", [(None, "none"), (8, "rmsprop")])
def test_the_step_loop_names_the_device_of_every_tensor_it_makes(batch_size, preconditioner):
    """A factory call without ``device=`` inside a run would land on the CPU during a GPU run (a cross-device
    error or a silent copy at every step). The check sees every such call of the sampler on the CPU."""
    x, y = regression()
    cfg = SGLDConfig(step_size=1e-3, nbeta=30.0, localization=1.0, num_chains=3, num_draws=10, num_burnin=3,
                     batch_size=batch_size, preconditioner=preconditioner, device="cpu", check_every=4)
    w = torch.zeros(3, dtype=DT)
    with _NoImplicitDevice() as mode:
        sample(loss, w, (x, y), observables=(x[:5], y[:5]), config=cfg, progress=False)
    assert mode.implicit == [], mode.implicit


def test_a_seed_reproduces_the_chains_and_another_seed_does_not():
    x, y = regression()
    runs = [sample(loss, torch.zeros(3, dtype=DT), (x, y), observables=(x, y), progress=False,
                   config=SGLDConfig(step_size=1e-3, nbeta=30.0, num_chains=4, num_draws=20, batch_size=6,
                                     device="cpu", seed=s)) for s in (5, 5, 6)]
    assert torch.equal(runs[0].losses, runs[1].losses) and torch.equal(runs[0].loss_trace, runs[1].loss_trace)
    assert not torch.allclose(runs[0].losses, runs[2].losses)


@pytest.mark.parametrize("every", [1, 7, 1000])
def test_the_deferred_divergence_check_names_chain_and_step(every):
    """Chain 2 goes non-finite at step 9 (its loss is NaN once w₀ of chain 2 passes a threshold reached there):
    whether the flag is read every step, every 7 or once at the end, the error names chain 2 and step 9, and
    its trace holds the steps up to 9 and the draws before it."""
    cfg = SGLDConfig(step_size=0.05, nbeta=1.0, localization=1.0, num_chains=4, num_draws=30, seed=3,
                     device="cpu", check_every=every)
    w0 = torch.zeros(2, dtype=DT)

    def base(w, _b=None):
        return 0.5 * (w**2).sum()

    ref = sample(base, w0, config=cfg, observable_fn=lambda w, _: w, progress=False).losses  # (4, 30, 2)
    at_step = torch.cat([torch.zeros(4, 1, dtype=DT), ref[:, :-1, 0]], dim=1)  # w₀ where step t's loss is taken
    values, _ = at_step[:, :10].max(1)
    # a threshold that chain 2 passes first at step 9 and no chain passes before: choose it from the reference
    order = at_step.flatten().argsort(descending=True)
    chain, when = None, None
    for flat in order.tolist():
        c, t = divmod(flat, 30)
        threshold = float(at_step[c, t]) - 1e-12
        first = [(int(torch.nonzero(at_step[k] > threshold)[0]) if (at_step[k] > threshold).any() else 99)
                 for k in range(4)]
        if sorted(first)[0] < sorted(first)[1] and 3 <= min(first) <= 25:
            chain, when = first.index(min(first)), min(first)
            break
    assert chain is not None

    def nan_loss(w, _b=None):
        return torch.where(w[0] > threshold, torch.full_like(w[0], float("nan")), base(w))

    with pytest.raises(SamplerDivergence) as info:
        sample(nan_loss, w0, config=cfg, observable_fn=lambda w, _: w, progress=False)
    err = info.value
    assert err.chains == [chain] and err.step == when and err.reason == "non-finite loss"
    assert f"chain(s) [{chain}] at step {when} of 30" in str(err)
    assert err.trace.loss_trace.shape == (4, when + 1) and err.trace.losses.shape == (4, when, 2)
    torch.testing.assert_close(err.trace.losses, ref[:, :when], rtol=0, atol=0)


def test_auto_and_bad_device_names():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", torch.device("cpu")).type == expected
    assert resolve_device(None, torch.device("cpu")).type == "cpu"
    assert SGLDConfig(device="auto").device == "auto" and "auto" in available_devices()
    for bad in ("gpu", "cuda:x", "CPU", "", 3):
        with pytest.raises(ConfigError, match=r"device = .*accepted: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"):
            SGLDConfig(device=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device = 'cuda'.*no usable CUDA"):
            SGLDConfig(device="cuda")
    else:
        with pytest.raises(ConfigError, match="device = 'cuda:99'"):
            SGLDConfig(device="cuda:99")
    for field, value in (("dtype", "bfloat16"), ("batching", "pmap"), ("check_every", 0), ("observable_chunk", 0),
                         ("trace_device", "gpu")):
        with pytest.raises(ConfigError, match=rf"{field} = "):
            SGLDConfig(**{field: value})


def test_dtype_casts_parameters_and_data_once():
    x, y = regression()
    cfg = SGLDConfig(step_size=1e-3, nbeta=30.0, num_chains=2, num_draws=5, dtype="float32")
    trace = sample(loss, torch.zeros(3, dtype=DT), (x, y), observables=(x[:4], y[:4]), config=cfg, progress=False)
    assert trace.losses.dtype == torch.float32 and trace.loss_trace.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_module_buffers_follow_the_parameters(device):
    module = torch.nn.BatchNorm1d(3).eval()  # running mean/var are buffers
    module.running_mean.fill_(0.5)
    x = torch.randn(20, 3, dtype=torch.float32)
    params, fn = module_loss_fn(module, lambda forward, b: forward(b).pow(2).sum(-1))
    cfg = SGLDConfig(step_size=1e-4, nbeta=10.0, num_chains=2, num_draws=3, device=device)
    trace = sample(fn, params, x, observables=x[:4], config=replace(cfg, trace_device=None), progress=False)
    assert trace.losses.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_estimators_take_device_tensors_and_answer_there(device):
    g = torch.Generator().manual_seed(4)
    losses = torch.randn(3, 40, 4, 5, generator=g, dtype=DT).to(device)
    per_sample = losses.mean(-1)
    labels = torch.tensor([[0, 1, 1, 2, -1]] * 4, device=device)
    masks = torch.stack([labels == k for k in range(3)])
    for out in (bif(per_sample), bif(per_sample, normalized=True), bif_stderr(per_sample), token_bif(losses),
                group_bif(losses, labels), group_bif(losses, masks), group_bif_stderr(losses, masks),
                rhat(per_sample), ess(per_sample)):
        assert out.device.type == device
    torch.testing.assert_close(group_bif(losses, labels).cpu(), group_bif(losses.cpu(), labels.cpu()))
    x, y = regression()
    cfg = SGLDConfig(step_size=1e-3, nbeta=30.0, localization=1.0, num_chains=3, num_draws=20, device=device)
    trace = sample(loss, torch.zeros(3, dtype=DT), (x, y), observables=(x[:5], y[:5]),
                   config=replace(cfg, trace_device=None), progress=False)
    assert estimate_llc(trace).estimate == estimate_llc(trace.to("cpu")).estimate
    assert "R-hat" in summarize(trace)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_the_same_seed_gives_the_same_statistics_on_cpu_and_cuda():
    """Another device's generator gives other chains; their statistics agree (LLC of a regular 3-d model ≈ 1.5)."""
    x, y = regression(n=200)
    w = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    out = {}
    for device in ("cpu", "cuda"):
        cfg = SGLDConfig(step_size=1e-3, nbeta=200.0, localization=1.0, num_chains=16, num_draws=2000,
                         num_burnin=200, device=device)
        out[device] = estimate_llc(sample(loss, w, (x, y), config=cfg, progress=False))
    diff = abs(out["cpu"].estimate - out["cuda"].estimate)
    assert diff < 4 * (out["cpu"].stderr ** 2 + out["cuda"].stderr ** 2) ** 0.5, out
    many = sample_many(loss, [w, w], (x, y), config=SGLDConfig(num_chains=2, num_draws=5, device="cuda"),
                       progress=False)
    assert many[0].loss_trace.device.type == "cpu"
