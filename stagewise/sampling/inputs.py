"""What the sampler accepts, checked before any compute: the checkpoint(s), the data and the loss.

Parameters and data may be torch tensors or numpy arrays (converted with ``torch.as_tensor``, keeping their
dtype); a batch is a tensor, a tuple/list or a dict of them with a leading sample dimension. Every error
names the argument, what was wrong and what is accepted.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.func import functional_call

Params = dict[str, torch.Tensor]
Batch = Any  # a tensor, a tuple of tensors or a dict of tensors with a leading sample dimension, or None
LossFn = Callable[[Any, Batch], torch.Tensor]


def module_loss_fn(
    module: torch.nn.Module,
    per_sample_loss: Callable[[Callable[..., Any], Batch], torch.Tensor],
) -> tuple[Params, LossFn]:
    """Turn an ``nn.Module`` into (parameters w*, loss of parameters) for :func:`~stagewise.sampling.sample`.

    ``per_sample_loss(forward, batch)`` receives ``forward(*args, **kwargs)``, which runs the module with the
    parameters being sampled (through ``torch.func.functional_call``), and returns per-sample losses.
    Buffers are held fixed at their current values; they follow the parameters to the sampler's device (one
    copy per device, made on first use).
    """
    params = {name: p.detach().clone() for name, p in module.named_parameters()}
    buffers = {name: b.detach() for name, b in module.named_buffers()}
    placed: dict[torch.device, dict[str, torch.Tensor]] = {}

    def buffers_on(p: Params) -> dict[str, torch.Tensor]:
        if not buffers or not p:
            return buffers
        device = next(iter(p.values())).device
        if device not in placed:
            placed[device] = {k: b.to(device) for k, b in buffers.items()}
        return placed[device]

    def loss_fn(p: Params, batch: Batch) -> torch.Tensor:
        def forward(*args: Any, **kwargs: Any) -> Any:
            return functional_call(module, (p, buffers_on(p)), args, kwargs)

        return per_sample_loss(forward, batch)

    return params, loss_fn


def _tensor(value: Any) -> Any:
    return torch.as_tensor(value) if isinstance(value, np.ndarray) else value


def _check_finite(tensor: torch.Tensor, what: str, hint: str) -> None:
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(f"{what} holds {int(bad.sum())} NaN or infinite value(s), the first at index {first}; "
                             f"{hint}")


def as_params(params: Any, name: str = "params") -> tuple[Params, bool]:
    """The checkpoint w* as a dict of detached tensors, and whether it was one tensor (then keyed "w").

    Accepts a floating-point tensor or numpy array, or a non-empty dict of them; every entry must be finite
    and non-empty.
    """
    hint = "the checkpoint w* must be finite"
    if isinstance(params, (torch.Tensor, np.ndarray)):
        entries, single = {"w": _tensor(params)}, True
    elif isinstance(params, Mapping) and params and all(isinstance(v, (torch.Tensor, np.ndarray))
                                                        for v in params.values()):
        entries, single = {k: _tensor(v) for k, v in params.items()}, False
    else:
        raise TypeError(f"{name} must be a tensor, a numpy array or a non-empty dict of them (the checkpoint w*); "
                        f"got {type(params).__name__}")
    for key, value in entries.items():
        label = name if single else f"{name}[{key!r}]"
        if not value.is_floating_point():
            raise TypeError(f"{label} has dtype {value.dtype}; accepted: a floating-point dtype (SGLD moves it)")
        if value.numel() == 0:
            raise ValueError(f"{label} is empty (shape {tuple(value.shape)}); accepted: at least one parameter")
        _check_finite(value, label, hint)
    return {k: v.detach() for k, v in entries.items()}, single


def stack_checkpoints(checkpoints: Sequence[Any]) -> tuple[Params, bool]:
    """K checkpoints (each as for :func:`as_params`) stacked on a new leading dimension: (K, *shape) each."""
    if isinstance(checkpoints, (torch.Tensor, np.ndarray, Mapping)) or not isinstance(checkpoints, Sequence):
        raise TypeError("checkpoints must be a list of checkpoints (each a tensor or a dict of tensors); "
                        f"got {type(checkpoints).__name__}")
    if not checkpoints:
        raise ValueError("checkpoints must hold at least one set of parameters")
    pairs = [as_params(p, f"checkpoints[{k}]") for k, p in enumerate(checkpoints)]
    first, single = pairs[0]
    for k, (entries, one) in enumerate(pairs[1:], start=1):
        if one != single or list(entries) != list(first):
            raise ValueError(f"checkpoints[{k}] has parameters {list(entries)}, checkpoints[0] has {list(first)}; "
                             "every checkpoint must have the same parameter names (in the same order) and shapes")
        for key, value in entries.items():
            ref = first[key]
            if value.shape != ref.shape or value.dtype != ref.dtype or value.device != ref.device:
                label = "" if single else f"[{key!r}]"
                raise ValueError(
                    f"checkpoints[{k}]{label} has shape {tuple(value.shape)}, dtype {value.dtype}, device "
                    f"{value.device}; checkpoints[0]{label} has {tuple(ref.shape)}, {ref.dtype}, {ref.device}: "
                    "every checkpoint must have the same parameter shapes, dtypes and devices")
    return {key: torch.stack([entries[key] for entries, _ in pairs]) for key in first}, single


def leaves(data: Batch) -> list[torch.Tensor]:
    """The tensors of a batch (non-tensor entries of a tuple or dict are passed through untouched)."""
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [v for v in data.values() if isinstance(v, torch.Tensor)]
    if isinstance(data, (tuple, list)):
        return [v for v in data if isinstance(v, torch.Tensor)]
    return []


def prepare_batch(data: Batch, name: str) -> tuple[Batch, int]:
    """A batch with numpy arrays converted to tensors, and its number of samples n (the leading dimension).

    Rejects a batch with no tensor, tensors without or with different leading dimensions, n = 0, and NaN or
    infinite values.
    """
    if isinstance(data, np.ndarray):
        data = torch.as_tensor(data)
    elif isinstance(data, Mapping):
        data = {k: _tensor(v) for k, v in data.items()}
    elif isinstance(data, (tuple, list)):
        data = type(data)(_tensor(v) for v in data)
    found = leaves(data)
    if not found:
        raise TypeError(f"{name} must be a tensor, a numpy array, or a tuple, list or dict holding at least one, "
                        f"each with a leading sample dimension; got {type(data).__name__}")
    if any(leaf.dim() == 0 for leaf in found):
        raise ValueError(f"every tensor in {name} needs a leading sample dimension; got a 0-d tensor")
    sizes = [leaf.shape[0] for leaf in found]
    if len(set(sizes)) > 1:
        raise ValueError(f"every tensor in {name} must have the same leading (sample) dimension; got {sizes}")
    if sizes[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); accepted: at least one sample")
    for k, leaf in enumerate(found):
        _check_finite(leaf, name if len(found) == 1 else f"{name} (tensor {k})",
                      "clean the data before sampling (a NaN in the data would stop the chains at step 0)")
    return data, sizes[0]


def to_device(data: Batch, device: torch.device, dtype: torch.dtype | None = None) -> Batch:
    """Every tensor of a batch on ``device`` (floating-point ones also in ``dtype`` when given); one copy each."""
    def move(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        return v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)

    if isinstance(data, torch.Tensor):
        return move(data)
    if isinstance(data, Mapping):
        return {k: move(v) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(move(v) for v in data)
    return data


def num_samples(data: Batch) -> int:
    return leaves(data)[0].shape[0]


def _take(tensor: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # index_select on the flat index is much cheaper than advanced indexing with a 2-D index tensor.
    flat = tensor.index_select(0, idx.reshape(-1).to(tensor.device))
    return flat.reshape(*idx.shape, *tensor.shape[1:])


def index(data: Batch, idx: torch.Tensor) -> Batch:
    """Select samples ``idx`` (any shape) from every tensor of ``data``."""
    if isinstance(data, torch.Tensor):
        return _take(data, idx)
    if isinstance(data, Mapping):
        return {k: (_take(v, idx) if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    return type(data)(_take(v, idx) if isinstance(v, torch.Tensor) else v for v in data)


def check_per_sample(output: Any, count: int, fn: str, batch: str) -> None:
    """Require ``output`` to be a tensor of per-sample values, shape (count, ...)."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"{fn} must return a tensor of per-sample losses; got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != count:
        raise ValueError(
            f"{fn} must return per-sample losses, shape ({count}, ...) for the {count} samples of {batch}; "
            f"got shape {tuple(output.shape)}. Return the losses before averaging (the sampler takes the mean; "
            "the BIF needs one loss per sample)")
