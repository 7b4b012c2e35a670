"""Localized SGLD and RMSProp-preconditioned SGLD, with chains batched in one pass.

The sampler draws from the localized, tempered posterior around a checkpoint ``w*``

    p(w) ∝ exp(−nβ·L_n(w) − (γ/2)·‖w − w*‖²)

with the updates of the paper's §2 (ε = ``step_size``, γ = ``localization``, nβ = ``nbeta``):

    plain:    w ← w − (ε/2)·[nβ·g + γ·(w − w*)] + √ε·ξ
    RMSProp:  w ← w − (ε/2)·G·[nβ·g + γ·(w − w*)] + √(ε·G)·ξ,   G = 1/(√V + eps),  V ← α·V + (1 − α)·g²

where g is the gradient of the mean mini-batch loss and ξ ~ N(0, I). By default (``rmsprop_adapt="burnin"``)
V is averaged during burn-in only and G is then frozen: with a fixed G the update is a preconditioned Langevin
step whose stationary law is the posterior up to an O(ε) step-size bias (the Euler scheme's, with effective step
ε·G; :func:`stagewise.diagnostics.step_size_check` measures it). ``rmsprop_adapt="always"``
keeps adapting G at every step, as devinterp does; without the correction term a state-dependent G needs, that
chain samples a biased law (see :class:`SGLDConfig`).

A model is a *loss of its parameters*: ``loss_fn(params, batch) -> per-sample losses``, where ``params`` is
a tensor or a dict of tensors (an ``nn.Module`` becomes one through :func:`module_loss_fn`). Chains are a
leading dimension of every parameter tensor; the loss is mapped over it with ``torch.func.vmap``, or looped
over views of it (``SGLDConfig.batching``), and one backward pass advances all chains. At every draw the
per-sample losses on a fixed set of *observables* are recorded, giving the (chain, draw, sample[, ...]) array
that the influence and LLC estimators consume. A non-finite loss or parameter stops the run with
:class:`SamplerDivergence`, which names the chains and the step; nothing is dropped silently.

Two levels of use: :func:`sample` / :func:`sample_many` run whole chains and return a :class:`SampleTrace`
(:func:`sample_coupled` runs chains at ε and ε/2 on the same noise, for the step-size check); the kernel
:class:`SGLD` (BlackJAX-style, :mod:`stagewise.sampling.kernel`) advances a :class:`SamplerState` one step at a
time, for custom loops::

    config = SGLDConfig(num_chains=4, num_burnin=100, batch_size=32, preconditioner="rmsprop")
    kernel = SGLD(loss_fn, config)
    state = kernel.init(w_star)
    for _ in range(config.num_steps):
        state, info = kernel.step(state, data)   # info.loss, info.nonfinite_loss, info.nonfinite_params

Every setting lives in :class:`SGLDConfig`. Everything of a run lives on one device (``SGLDConfig(device=...)``:
"cpu", "cuda", "cuda:N", "auto"), resolved once when the chains are initialised: the checkpoint, data and
observables are moved there once, each chain draws its noise there from its own generator, the losses are written
into buffers there and the divergence flag is read every ``check_every`` steps, so nothing synchronises the host
inside the step loop on a GPU.
"""

from .coupled import CoupledTraces, sample_coupled
from .device import DEVICE_NAME, check_device, resolve_device
from .inputs import module_loss_fn
from .kernel import SGLD, SamplerState, StepInfo
from .runner import SampleTrace, SamplerDivergence, sample, sample_many
from .settings import SGLDConfig

__all__ = [
    "DEVICE_NAME",
    "SGLD",
    "CoupledTraces",
    "SGLDConfig",
    "SampleTrace",
    "SamplerDivergence",
    "SamplerState",
    "StepInfo",
    "check_device",
    "module_loss_fn",
    "resolve_device",
    "sample",
    "sample_coupled",
    "sample_many",
]
