"""Bayesian influence functions from recorded losses, and the classical (damped) influence function.

Sign convention (the paper's, PAPER.md §1), used in every function here:

    BIF(z_i, z_j) = −Cov(ℓ_i(w), ℓ_j(w))   over the (localized, tempered) posterior.

**Negative BIF: up-weighting training sample i lowers query j's loss (i helps j); positive: i harms j.**
The *normalized* BIF is −corr(ℓ_i, ℓ_j) ∈ [−1, 1]. (devinterp 2.0.1's ``bif()`` returns +corr: the opposite
sign.)

All estimators take the (chain, draw, sample[, token]) loss arrays recorded by :func:`stagewise.sampling.sample`
and pool chains × draws into one sample of size C·T ("stacked"), with covariance divisor C·T − 1.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .diagnostics import mcse_mean

__all__ = [
    "InfluenceTrajectory",
    "bif",
    "bif_trajectory",
    "bif_stderr",
    "group_bif",
    "group_bif_stderr",
    "group_means",
    "token_bif",
    "classical_influence",
]


def _stack(losses: torch.Tensor) -> torch.Tensor:
    """(chain, draw, ...) → (chain·draw, ...), in float64 for stable covariances."""
    if losses.dim() < 3:
        raise ValueError(f"losses must have shape (chain, draw, sample, ...); got {tuple(losses.shape)}")
    return losses.reshape(losses.shape[0] * losses.shape[1], *losses.shape[2:]).double()


def _cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Covariance of the columns of a (N, I) with those of b (N, J): (I, J), divisor N − 1."""
    n = a.shape[0]
    if n < 2:
        raise ValueError("need at least 2 pooled draws (chains × draws) to estimate a covariance")
    a = a - a.mean(0)
    b = b - b.mean(0)
    return a.T @ b / (n - 1)


def _checked_losses(name: str, losses, *, normalized: bool = False):
    """Input validation of a (chain, draw, sample, ...) loss array, before any estimate.

    Numpy arrays are converted; anything else that is not a tensor is a TypeError. NaN or infinite losses are
    a ValueError (a covariance of them would be NaN). With ``normalized``, a sample whose loss is the same at
    every draw is a ValueError too: its correlation is 0/0 (its raw BIF is 0, which :func:`bif` returns).
    """
    if type(losses).__module__ == "numpy":
        losses = torch.as_tensor(losses)
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (or numpy array) shaped (chain, draw, sample, ...); got "
                        f"{type(losses).__name__}")
    if losses.dim() < 3:
        raise ValueError(f"{name} must have shape (chain, draw, sample, ...); got {tuple(losses.shape)}")
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite value(s), the first at (chain, draw, "
                         f"sample, ...) = {first}; the BIF needs finite losses (a sampler run that diverges raises "
                         "SamplerDivergence instead of recording them)")
    if normalized:
        flat = losses.reshape(losses.shape[0] * losses.shape[1], -1)
        constant = torch.nonzero((flat == flat[:1]).all(0)).flatten().tolist()
        if constant and flat.shape[0] > 1:
            shown = ", ".join(map(str, constant[:10])) + (" …" if len(constant) > 10 else "")
            raise ValueError(f"{name}: the loss of sample(s) [{shown}] is the same at every draw (zero variance), "
                             "so the normalized BIF −corr is undefined for them; use the raw BIF "
                             "(normalized=False), which is 0 for them, or leave those samples out")
    return losses


def bif(
    train_losses: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """Bayesian influence of each training sample i on each query j: −Cov(ℓ_i, ℓ_j), shape (I, J).

    train_losses: (chain, draw, I) per-sample losses of the training samples at each draw.
    query_losses: (chain, draw, J) losses of the queries; None means the training samples themselves (I × I).
    normalized:   return −corr(ℓ_i, ℓ_j) ∈ [−1, 1] instead of −Cov.

    Negative = up-weighting i lowers j's loss (i helps j); positive = i harms j. Chains and draws are pooled.
    Losses must be finite (NaN or inf: ValueError); a sample whose loss never changes has raw BIF 0, and with
    ``normalized`` it is a ValueError (its correlation is 0/0). Numpy arrays are accepted.
    """
    train_losses = _checked_losses("train_losses", train_losses, normalized=normalized)
    if query_losses is not None:
        query_losses = _checked_losses("query_losses", query_losses, normalized=normalized)
    a = _stack(train_losses)
    b = a if query_losses is None else _stack(query_losses)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError("bif takes (chain, draw, sample) arrays; for per-token losses use token_bif or group_bif")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"train and query losses must come from the same draws: {a.shape[0]} vs {b.shape[0]} pooled draws"
        )
    cov = _cov(a, b)
    if normalized:
        sa = a.std(0, unbiased=True)
        sb = b.std(0, unbiased=True)
        cov = cov / torch.outer(sa, sb)
    return -cov


def bif_stderr(
    train_losses: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    *,
    normalized: bool = False,
    num_batches: int | None = None,
) -> torch.Tensor:
    """Standard error of :func:`bif` (raw or ``normalized``), shape (I, J), on the losses' device.

    train_losses: (chain, draw, I), query_losses: (chain, draw, J) or None, as for :func:`bif`.

    Default: the Monte Carlo standard error of each entry from its effective sample size (Vehtari et al. 2021;
    :func:`stagewise.diagnostics.mcse_mean`). To first order the pooled covariance is the mean over all draws of
    f_ij(t) = (ℓ_i(t) − ℓ̄_i)(ℓ_j(t) − ℓ̄_j), and the correlation (delta method) that of
    g_ij = z_i·z_j − r_ij·(z_i² + z_j²)/2 with z the standardized losses; so s.e. = sd(f_ij)/√ESS(f_ij). The ESS
    is that of the split chains, with autocorrelations measured against a variance that includes the spread
    between chains: slow mixing within chains and disagreement between them both widen the error bar. It works
    with one chain. ESS rather than batch means because the ESS adapts to each entry's autocorrelation time
    where a batch size would have to be chosen ≫ τ in advance, and it uses all chains × draws, where the former
    default (sd of per-chain estimates / √chains) had chains − 1 degrees of freedom: with 4 chains, ±2 of
    those standard errors held the truth only ≈ 86% of the time even for independent Gaussian draws.

    Cost: an FFT over the draws for each of the I·J entries, O(C·T·log T·I·J), in blocks of bounded memory (a
    200 × 200 BIF from 4 × 200 draws took ≈ 10 s on a loaded 2-core machine); for very large I·J batch means
    are cheaper.

    num_batches = K: instead, batch means as before this change: K contiguous batches of draws (each across all
    chains; a remainder is dropped), s.e. = std(batch estimates)/√K.
    """
    train_losses = _checked_losses("train_losses", train_losses, normalized=normalized)
    query = train_losses
    if query_losses is not None:
        query = _checked_losses("query_losses", query_losses, normalized=normalized)
    if train_losses.dim() != 3 or query.dim() != 3 or query.shape[:2] != train_losses.shape[:2]:
        raise ValueError(f"bif_stderr takes (chain, draw, sample) arrays with the same chains and draws; got "
                         f"train_losses {tuple(train_losses.shape)} and query_losses {tuple(query.shape)}")
    chains, draws = train_losses.shape[:2]
    if num_batches is None:
        if draws < 4:
            raise ValueError(f"train_losses has {draws} draws per chain: the standard error needs at least 4 "
                             "(or pass num_batches for batch means)")
        return _products_stderr(train_losses.double(), query.double(), normalized=normalized)
    integer = isinstance(num_batches, numbers.Integral) and not isinstance(num_batches, bool)
    if not (integer and 2 <= num_batches <= draws // 2):
        raise ValueError(
            f"num_batches = {num_batches!r}: accepted values are integers 2 … draws/2 = {draws // 2}"
        )
    size = draws // num_batches
    pieces = [
        (train_losses[:, k * size : (k + 1) * size], query[:, k * size : (k + 1) * size])
        for k in range(num_batches)
    ]
    estimates = torch.stack([bif(a, b, normalized=normalized) for a, b in pieces])
    return estimates.std(0, unbiased=True) / math.sqrt(len(pieces))


_STDERR_BLOCK = 1 << 22  # float64 elements of one block of products (32 MiB; the FFT needs a few times that)


def _products_stderr(a: torch.Tensor, b: torch.Tensor, *, normalized: bool) -> torch.Tensor:
    """ESS-based standard error of −Cov(a_i, b_j) (or −corr) for (C, T, I) and (C, T, J) float64 arrays: (I, J).

    The (C, T, i, J) products are formed a block of rows at a time, so memory stays bounded for large I·J.
    """
    c, t, num_i = a.shape
    num_j = b.shape[2]
    s = c * t
    da = a - a.mean((0, 1))
    db = b - b.mean((0, 1))
    if normalized:
        da = da / da.pow(2).sum((0, 1)).div(s - 1).sqrt()
        db = db / db.pow(2).sum((0, 1)).div(s - 1).sqrt()
        r = torch.einsum("cti,ctj->ij", da, db) / (s - 1)
    out = torch.empty(num_i, num_j, dtype=torch.float64, device=a.device)
    rows = max(1, _STDERR_BLOCK // max(1, s * num_j))
    for start in range(0, num_i, rows):  # blocks of rows, never a loop over draws
        stop = min(start + rows, num_i)
        x, y = da[:, :, start:stop, None], db[:, :, None, :]
        block = x * y
        if normalized:
            block = block - r[start:stop] / 2 * (x * x + y * y)
        out[start:stop] = mcse_mean(block)
    return out if normalized else out * (s / (s - 1))  # the covariance's divisor s − 1


TOKEN_BIF_MAX_FRACTION = 0.5  # token_bif refuses a result larger than this fraction of the free memory


def _free_bytes(device: torch.device) -> int:
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
    limit = int(TOKEN_BIF_MAX_FRACTION * _free_bytes(train_losses.device)) if max_bytes is None else max_bytes
    if need > limit:
        raise MemoryError(
            f"token_bif of {i}×{t} by {j}×{u} tokens needs ≈ {need / 2**30:.2f} GiB, more than the "
            f"{limit / 2**30:.2f} GiB allowed (max_bytes; default half the free memory of {train_losses.device}). "
            "Use group_bif with integer token labels (per-class or per-position groups): it never forms the "
            "token × token matrix, or pass fewer tokens")
    flat = bif(train_losses.reshape(c, d, i * t), q.reshape(c, d, j * u), normalized=normalized)
    return flat.reshape(i, t, j, u)


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
    return ValueError(f"{name} holds {count} NaN or infinite value(s), the first at (chain, draw, sample, ...) = "
                      f"{index}; the BIF needs finite losses (a sampler run that diverges raises SamplerDivergence "
                      "instead of recording them)")


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
    shape (a group per token, −1 for none; ``num_groups`` G, default the largest label + 1) or bool masks
    (G, ...) (groups may overlap). query_* likewise (None = the training ones). Returns (G, H) float64 on the
    losses' device. By bilinearity the mean pairwise covariance equals Cov(mean_g ℓ, mean_h ℓ), so only the
    group-mean losses are formed, a block of tokens at a time: time O(draws × tokens + draws × G × H), memory
    O(draws × (G + H) + block), never tokens × tokens. Measured: 10⁶ query tokens in 10³ groups from 4 × 100
    draws in ≈ 5 s and ≈ 0.2 GiB beyond the losses on one CPU thread (benchmarks/results/group_bif.json).
    (This identity holds for covariances, not for correlations: there is no normalized variant.)
    Groups with no member give NaN rows/columns. Sign as in :func:`bif`: negative = up-weighting group g's
    tokens lowers group h's loss (g helps h).
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
                                                       _name="train_losses").reshape(a.shape[0], -1)
    else:
        if query_losses.shape[:2] != train_losses.shape[:2]:
            raise ValueError(f"train and query losses must come from the same chains and draws: "
                             f"{tuple(train_losses.shape[:2])} vs {tuple(query_losses.shape[:2])}")
        groups = train_groups if query_groups is None else query_groups
        b = group_means(query_losses, groups, num_groups=num_groups if query_groups is None else None,
                        _name="query_losses")
        b = b.reshape(a.shape[0], -1)
    return -_cov(a, b)


def group_bif_stderr(
    train_losses: torch.Tensor,
    train_groups: torch.Tensor,
    query_losses: torch.Tensor | None = None,
    query_groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard error of :func:`group_bif`, shape (G, H), arguments as there.

    The group BIF is the covariance of the group-mean losses, so its error is that of :func:`bif_stderr` (the
    ESS-based Monte Carlo error) applied to those means. Groups with no member give NaN.
    """
    if train_losses.dim() < 2 or train_losses.shape[1] < 4:
        raise ValueError(f"train_losses must be shaped (chain, draw, ...) with at least 4 draws; got "
                         f"{tuple(train_losses.shape)}")
    a = group_means(train_losses, train_groups)
    if query_losses is None:
        b = a if query_groups is None else group_means(train_losses, query_groups)
    else:
        b = group_means(query_losses, train_groups if query_groups is None else query_groups)
    return _products_stderr(a, b, normalized=False)


# ------------------------------------------------------------------------------------------------------------
# Classical influence function


def classical_influence(
    loss_fn: Callable,
    params: torch.Tensor,
    train_batch,
    query_batch,
    *,
    damping: float,
) -> torch.Tensor:
    """Damped classical influence −∇ℓ_jᵀ (H + γI)⁻¹ ∇ℓ_i at w*, shape (I, J), with the exact Hessian.

    loss_fn(w, batch) → per-sample losses for a flat parameter vector w (shape (d,)); H is the Hessian of the
    mean training loss L_n on ``train_batch`` (torch.func.hessian), which must fit in memory (d × d).
    Sign as for the BIF: negative = up-weighting i lowers j's loss. For a regular model near a minimum the
    localized posterior is ≈ Gaussian with covariance (nβH + γI)⁻¹, so nβ·BIF(localization γ) ≈ this IF with
    damping γ/nβ.
    """
    if not (isinstance(damping, (int, float)) and damping >= 0 and math.isfinite(damping)):
        raise ValueError(f"damping = {damping!r}: accepted values are finite numbers ≥ 0")
    w = params.detach().double().reshape(-1)
    mean_loss = lambda v: loss_fn(v, train_batch).mean()  # noqa: E731
    hessian = torch.func.hessian(mean_loss)(w)
    train_grads = torch.func.jacrev(lambda v: loss_fn(v, train_batch))(w)  # (I, d)
    query_grads = torch.func.jacrev(lambda v: loss_fn(v, query_batch))(w)  # (J, d)
    system = hessian + damping * torch.eye(w.numel(), dtype=w.dtype, device=w.device)
    solved = torch.linalg.solve(system, train_grads.T)  # (d, I)
    return -(query_grads @ solved).T


# ------------------------------------------------------------------------------------------------------------
# Trajectories over checkpoints


@dataclass
class InfluenceTrajectory:
    """Influence at every checkpoint, labelled (step, i, j).

    steps:   training step of each checkpoint, shape (S,).
    values:  BIF (or group BIF) at each checkpoint, shape (S, I, J); sign as in :func:`bif`.
    stderr:  standard error across chains, shape (S, I, J) (NaN with one chain).
    traces:  the :class:`~stagewise.sampling.SampleTrace` of each checkpoint (for diagnostics), or None.
    """

    steps: torch.Tensor
    values: torch.Tensor
    stderr: torch.Tensor
    traces: list | None = None

    def pair(self, i: int, j: int) -> torch.Tensor:
        """The trajectory of one (i, j) entry over the checkpoints, shape (S,)."""
        return self.values[:, i, j]

    def to_frame(self, names_i: Sequence[str] | None = None, names_j: Sequence[str] | None = None):
        """A long pandas table with columns step, i, j, bif, stderr."""
        import pandas as pd

        s, ni, nj = self.values.shape
        names_i = list(names_i) if names_i is not None else list(range(ni))
        names_j = list(names_j) if names_j is not None else list(range(nj))
        rows = [
            (int(self.steps[k]), names_i[a], names_j[b], float(self.values[k, a, b]), float(self.stderr[k, a, b]))
            for k in range(s)
            for a in range(ni)
            for b in range(nj)
        ]
        return pd.DataFrame(rows, columns=["step", "i", "j", "bif", "stderr"])


def bif_trajectory(
    loss_fn: Callable,
    checkpoints: Sequence[tuple[int, object]],
    data,
    observables,
    config,
    *,
    train: Sequence[int] | None = None,
    query: Sequence[int] | None = None,
    normalized: bool = False,
    groups: torch.Tensor | None = None,
    keep_traces: bool = False,
    batch_checkpoints: bool = False,
    progress: bool = True,
    **sample_kwargs,
) -> InfluenceTrajectory:
    """BIF at every checkpoint of a training run: one call, labelled (step, i, j) out.

    checkpoints: a list of (step, params) pairs (params as for :func:`stagewise.sampling.sample`).
    data, observables, config: as for :func:`~stagewise.sampling.sample` (the same config, hence the same seed,
    at every checkpoint). ``train`` / ``query`` select rows / columns among the observables (default: all).
    ``groups``: bool (G, sample, ...) masks or integer labels (sample, ...) → group × group influence
    (:func:`group_bif`) instead of sample × sample. Values and errors are on the traces' device (the CPU unless
    ``trace_device=None`` is passed through to the sampler).
    Sign as in :func:`bif`. Each checkpoint's sampler run is independent, so a divergence names its step.
    ``batch_checkpoints=True`` runs all checkpoints' chains in one batched pass
    (:func:`~stagewise.sampling.sample_many`): much faster for small models, K times the memory.
    """
    from tqdm import tqdm  # plain text bars: tqdm.auto needs ipywidgets in notebooks

    from .sampling import SamplerDivergence, sample, sample_many

    if not checkpoints:
        raise ValueError("checkpoints must hold at least one (step, params) pair")
    if batch_checkpoints:
        try:
            all_traces = sample_many(loss_fn, [p for _, p in checkpoints], data, observables, config,
                                     progress=progress, **sample_kwargs)
        except SamplerDivergence as error:
            steps_named = sorted({int(checkpoints[c // config.num_chains][0]) for c in error.chains})
            raise SamplerDivergence(error.chains, error.step, f"{error.reason} (checkpoint steps {steps_named})",
                                    error.trace) from error
    steps, values, errors, traces = [], [], [], []
    for index, (step, params) in enumerate(tqdm(checkpoints, desc="checkpoints",
                                                disable=not progress or batch_checkpoints)):
        if batch_checkpoints:
            trace = all_traces[index]
        else:
            try:
                trace = sample(loss_fn, params, data, observables, config, progress=False, **sample_kwargs)
            except SamplerDivergence as error:
                raise SamplerDivergence(error.chains, error.step, f"{error.reason} at checkpoint step {step}",
                                        error.trace) from error
        losses = trace.losses
        chains = losses.shape[0]
        if groups is not None:  # the group means once; the group BIF is −Cov of them (chains pooled or one by one)
            means = group_means(losses, groups.to(losses.device))
            value = -_cov(means.reshape(-1, means.shape[-1]), means.reshape(-1, means.shape[-1]))
            per_chain = torch.stack([-_cov(means[c], means[c]) for c in range(chains)])
            stderr = per_chain.std(0, unbiased=True) / math.sqrt(chains) if chains > 1 else value * math.nan
        else:
            a = losses if train is None else losses[:, :, list(train)]
            b = losses if query is None else losses[:, :, list(query)]
            value = bif(a, b, normalized=normalized)
            stderr = bif_stderr(a, b, normalized=normalized) if chains > 1 else value * math.nan
        steps.append(int(step))
        values.append(value)
        errors.append(stderr)
        if keep_traces:
            traces.append(trace)
    return InfluenceTrajectory(torch.tensor(steps), torch.stack(values), torch.stack(errors),
                               traces if keep_traces else None)
