"""Group influence: the mean loss of each group of tokens at every draw, and the group × group BIF and its
standard error from those means, computed a block of tokens at a time (never tokens × tokens)."""

from __future__ import annotations

import math

import torch

from .core import nonfinite_error, pooled_cov
from .stderr import products_stderr

__all__ = ["group_bif", "group_bif_stderr", "group_means"]


_GROUP_BLOCK = 1 << 23  # losses per block of the group reduction (32 MiB in float32)


def _nonfinite_error(name: str, losses: torch.Tensor, width: int) -> ValueError:
    """The error for non-finite losses: how many (counted a block at a time) and the first one's index."""
    c, d = losses.shape[:2]
    flat = losses.reshape(c * d, -1)
    count, first = 0, None
    for start in range(0, flat.shape[1], width):
        bad = ~torch.isfinite(flat[:, start:start + width])
        count += int(bad.sum())
        if first is None and bool(bad.any()):
            cols = torch.nonzero(bad.any(0)).flatten()
            col = int(cols[0])
            row = int(torch.nonzero(bad[:, col])[0])
            first = (start + col, row)
    col, row = first
    index = (row // d, row % d, *(int(i) for i in torch.unravel_index(torch.tensor(col), losses.shape[2:])))
    return nonfinite_error(name, count, index)


def _group_sums(flat: torch.Tensor, labels: torch.Tensor | None, masks: torch.Tensor | None, num_groups: int,
                losses: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of the losses over each group's tokens, (N, G) float64, and the group sizes (G,).

    ``flat`` is (N draws, T tokens). Tokens are taken a block at a time: memory O(N·(G + block)). Each block
    is centred by its per-token mean over the draws in its own dtype, so float32 sums keep the fluctuations
    between draws accurate (the covariances need only those); the fluctuations are summed per group with
    ``index_add`` (labels) or a matmul (masks) and accumulated in float64, and the sums of the token means are
    added back in float64. Non-finite losses are a ValueError naming the first.
    """
    n, tokens = flat.shape
    total = torch.zeros(n, num_groups, dtype=torch.float64, device=flat.device)
    level = torch.zeros(num_groups, dtype=torch.float64, device=flat.device)
    width = max(1, _GROUP_BLOCK // max(1, n))
    work = flat.dtype if flat.dtype in (torch.float32, torch.float64) else torch.float32
    for start in range(0, tokens, width):
        block = flat[:, start:start + width].to(work)
        if not bool(torch.isfinite(block).all()):
            raise _nonfinite_error(name, losses, width)
        means = block.double().mean(0)
        block = block - means.to(work)
        if labels is not None:
            part = labels[start:start + width]
            keep = part >= 0
            whole = bool(keep.all())
            sums = torch.zeros(n, num_groups, dtype=work, device=flat.device)
            sums.index_add_(1, part if whole else part[keep], block if whole else block[:, keep])
            level.index_add_(0, part if whole else part[keep], means if whole else means[keep])
        else:
            member = masks[:, start:start + width]
            sums = block @ member.to(work).T
            level += member.double() @ means
        total += sums
    if labels is not None:
        sizes = torch.bincount(labels[labels >= 0], minlength=num_groups)[:num_groups]
    else:
        sizes = masks.sum(1, dtype=torch.long)
    return total + level, sizes


def _group_spec(groups, trailing: tuple[int, ...], num_groups: int | None, name: str):
    """(labels (T,) long or None, masks (G, T) bool or None, G) from bool masks (G, ...) or integer labels (...)."""
    if type(groups).__module__ == "numpy":
        groups = torch.as_tensor(groups)
    if not isinstance(groups, torch.Tensor):
        raise TypeError(f"{name} must be a bool tensor of group masks (G, ...) or an integer tensor of labels "
                        f"shaped like the losses' trailing dimensions; got {type(groups).__name__}")
    tokens = math.prod(trailing)
    if groups.dtype == torch.bool:
        masks = groups.reshape(groups.shape[0], -1)
        if masks.shape[1] != tokens:
            raise ValueError(f"group masks cover {masks.shape[1]} tokens but the losses have {tokens} per draw")
        if num_groups is not None and num_groups != masks.shape[0]:
            raise ValueError(f"num_groups = {num_groups!r} but {name} holds {masks.shape[0]} masks")
        return None, masks, masks.shape[0]
    if groups.is_floating_point() or groups.is_complex():
        raise TypeError(f"{name} has dtype {groups.dtype}; accepted: bool masks (G, ...) or integer labels")
    if tuple(groups.shape) != tuple(trailing):
        raise ValueError(f"{name}: integer labels must have the losses' trailing shape {tuple(trailing)}; got "
                         f"{tuple(groups.shape)}")
    labels = groups.reshape(-1).long()
    top = int(labels.max()) + 1 if labels.numel() else 0
    count = top if num_groups is None else num_groups
    if not (isinstance(count, int) and count >= 1) or int(labels.min()) < -1 or top > count:
        raise ValueError(f"{name}: labels must lie in -1 … num_groups − 1 (−1 = in no group); got "
                         f"{int(labels.min())} … {top - 1} with num_groups = {num_groups!r}")
    return labels, None, count


def group_means(losses: torch.Tensor, groups: torch.Tensor, *, num_groups: int | None = None,
                _name: str = "losses") -> torch.Tensor:
    """Mean loss of each group's tokens at every draw, (chain, draw, G) float64.

    ``groups``: bool membership masks (G, ...) with the losses' trailing shape (groups may overlap), or integer
    labels with the losses' trailing shape, one group per token in 0 … G − 1 and −1 for none (G =
    ``num_groups``, default the largest label + 1). A group with no member gives NaN. Computed a block of
    tokens at a time (see :func:`group_bif`), never as a dense float64 (G × tokens) matrix.
    """
    if not isinstance(losses, torch.Tensor) or losses.dim() < 3:
        raise ValueError("losses must be a tensor shaped (chain, draw, ...)")
    c, d = losses.shape[:2]
    labels, masks, count = _group_spec(groups, tuple(losses.shape[2:]), num_groups, "groups")
    labels = None if labels is None else labels.to(losses.device)
    masks = None if masks is None else masks.to(losses.device)
    sums, sizes = _group_sums(losses.reshape(c * d, -1), labels, masks, count, losses, _name)
    return (sums / sizes.to(torch.float64)).reshape(c, d, count)  # 0/0 → NaN for empty groups


def group_bif(
    train_losses: torch.Tensor,
    train_groups: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    query_groups: torch.Tensor | None = None,
    *,
    num_groups: int | None = None,
) -> torch.Tensor:
    """Group × group BIF: the mean of −Cov(ℓ_a, ℓ_b) over all token pairs a ∈ group g, b ∈ group h.

    train_losses: (chain, draw, ...) per-token losses; train_groups: integer labels with the losses' trailing
    shape (a group per token, −1 for none; ``num_groups`` G, default the largest label + 1, applies to the query
    labels too) or bool masks (G, ...) (groups may overlap). query_* likewise (None = the training ones). Returns
    (G, H) float64 on the losses' device. By bilinearity the mean pairwise covariance equals Cov(mean_g ℓ, mean_h
    ℓ), so only the group-mean losses are formed, a block of tokens at a time: time O(draws × tokens + draws × G ×
    H), memory O(draws × (G + H) + block), never tokens × tokens. Measured: 10⁶ query tokens in 10³ groups from 4 ×
    100 draws in ≈ 5 s and ≈ 0.2 GiB beyond the losses on one CPU thread (benchmarks/results/group_bif.json). (This
    identity holds for covariances, not for correlations: there is no normalized variant.) Groups with no member
    give NaN rows/columns. Sign as in :func:`bif`: negative = up-weighting group g's tokens lowers group h's loss (g
    helps h).
    """
    for name, value in (("train_losses", train_losses), ("query_losses", query_losses)):
        if value is not None and type(value).__module__ == "numpy":
            raise TypeError(f"{name}: pass a torch tensor (torch.as_tensor) to group_bif")
        if value is not None and (not isinstance(value, torch.Tensor) or value.dim() < 3):
            raise ValueError(f"{name} must be a tensor shaped (chain, draw, ...); got "
                             f"{tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__}")
    a = group_means(train_losses, train_groups, num_groups=num_groups, _name="train_losses")
    a = a.reshape(-1, a.shape[-1])
    if query_losses is None:
        b = a if query_groups is None else group_means(train_losses, query_groups,
                                                       num_groups=_query_count(query_groups, num_groups),
                                                       _name="train_losses").reshape(a.shape[0], -1)
    else:
        if query_losses.shape[:2] != train_losses.shape[:2]:
            raise ValueError(f"train and query losses must come from the same chains and draws: "
                             f"{tuple(train_losses.shape[:2])} vs {tuple(query_losses.shape[:2])}")
        b = group_means(query_losses, train_groups if query_groups is None else query_groups,
                        num_groups=_query_count(query_groups, num_groups), _name="query_losses")
        b = b.reshape(a.shape[0], -1)
    return -pooled_cov(a, b)


def _query_count(query_groups, num_groups: int | None) -> int | None:
    """The G for the query side: ``num_groups`` unless the query groups are masks (which carry their own count)."""
    is_masks = isinstance(query_groups, torch.Tensor) and query_groups.dtype == torch.bool
    return None if is_masks else num_groups


def group_bif_stderr(
    train_losses: torch.Tensor,
    train_groups: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    query_groups: torch.Tensor | None = None,
    *,
    num_groups: int | None = None,
) -> torch.Tensor:
    """Standard error of :func:`group_bif`, shape (G, H), arguments as there.

    The group BIF is the covariance of the group-mean losses, so its error is that of :func:`bif_stderr` (the
    ESS-based Monte Carlo error, defined with one chain too) applied to those means. Groups with no member give
    NaN.
    """
    if train_losses.dim() < 2 or train_losses.shape[1] < 4:
        raise ValueError(f"train_losses must be shaped (chain, draw, ...) with at least 4 draws; got "
                         f"{tuple(train_losses.shape)}")
    a = group_means(train_losses, train_groups, num_groups=num_groups)
    count = _query_count(query_groups, num_groups)
    if query_losses is None:
        b = a if query_groups is None else group_means(train_losses, query_groups, num_groups=count)
    else:
        b = group_means(query_losses, train_groups if query_groups is None else query_groups, num_groups=count)
    return products_stderr(a, b, normalized=False)
