"""The per-token BIF, every token against every token: refused before allocating when it cannot fit."""

from __future__ import annotations

import torch

from .core import bif

__all__ = ["TOKEN_BIF_MAX_FRACTION", "token_bif"]

TOKEN_BIF_MAX_FRACTION = 0.5  # token_bif refuses a result larger than this fraction of the free memory


def free_bytes(device: torch.device) -> int:
    """Memory that can still be allocated on ``device`` (CUDA: mem_get_info; CPU: MemAvailable)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def token_bif(
    train_losses: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    *,
    normalized: bool = False,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Per-token BIF between every token of the training sequences and every token of the queries.

    train_losses: (chain, draw, I, T) per-token losses; query_losses: (chain, draw, J, U) or None (= train).
    Returns (I, T, J, U) in float64, on the losses' device. Sign as in :func:`bif`. Memory O(I·T·J·U): a size
    that needs more than ``max_bytes`` (default: half the memory free on the device now) is refused with a
    MemoryError before anything is allocated; for class-level influence use :func:`group_bif`, which never
    builds this matrix (O(draws × tokens + groups²)).
    """
    if train_losses.dim() != 4 or (query_losses is not None and query_losses.dim() != 4):
        raise ValueError(f"token_bif takes (chain, draw, sequence, token) arrays; got {tuple(train_losses.shape)}"
                         + ("" if query_losses is None else f" and {tuple(query_losses.shape)}"))
    c, d, i, t = train_losses.shape
    q = train_losses if query_losses is None else query_losses
    j, u = q.shape[2:]
    need = 8 * (i * t * j * u + c * d * (i * t + j * u))  # the float64 result and the centred losses
    limit = int(TOKEN_BIF_MAX_FRACTION * free_bytes(train_losses.device)) if max_bytes is None else max_bytes
    if need > limit:
        raise MemoryError(
            f"token_bif of {i}×{t} by {j}×{u} tokens needs ≈ {need / 2**30:.2f} GiB, more than the "
            f"{limit / 2**30:.2f} GiB allowed (max_bytes; default half the free memory of {train_losses.device}). "
            "Use group_bif with integer token labels (per-class or per-position groups): it never forms the "
            "token × token matrix, or pass fewer tokens")
    flat = bif(train_losses.reshape(c, d, i * t), q.reshape(c, d, j * u), normalized=normalized)
    return flat.reshape(i, t, j, u)
