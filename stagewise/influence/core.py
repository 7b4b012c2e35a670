"""The BIF from recorded losses: input checks of (chain, draw, sample, ...) loss arrays, the pooled covariance
and :func:`bif` itself. Sign convention: see :mod:`stagewise.influence`."""

from __future__ import annotations

import torch

__all__ = ["bif", "checked_losses", "nonfinite_error", "pooled_cov", "stack_draws"]


def stack_draws(losses: torch.Tensor) -> torch.Tensor:
    """(chain, draw, ...) → (chain·draw, ...), in float64 for stable covariances."""
    if losses.dim() < 3:
        raise ValueError(f"losses must have shape (chain, draw, sample, ...); got {tuple(losses.shape)}")
    return losses.reshape(losses.shape[0] * losses.shape[1], *losses.shape[2:]).double()


def pooled_cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Covariance of the columns of a (N, I) with those of b (N, J): (I, J), divisor N − 1."""
    n = a.shape[0]
    if n < 2:
        raise ValueError("need at least 2 pooled draws (chains × draws) to estimate a covariance")
    a = a - a.mean(0)
    b = b - b.mean(0)
    return a.T @ b / (n - 1)


def nonfinite_error(name: str, count: int, first: tuple[int, ...]) -> ValueError:
    """The error for ``count`` NaN or infinite losses in ``name``, the first at index ``first``."""
    return ValueError(f"{name} holds {count} NaN or infinite value(s), the first at (chain, draw, sample, ...) = "
                      f"{first}; the BIF needs finite losses (a sampler run that diverges raises SamplerDivergence "
                      "instead of recording them)")


def checked_losses(name: str, losses, *, normalized: bool = False):
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
        raise nonfinite_error(name, int(bad.sum()), tuple(int(i) for i in torch.nonzero(bad)[0]))
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
    train_losses = checked_losses("train_losses", train_losses, normalized=normalized)
    if query_losses is not None:
        query_losses = checked_losses("query_losses", query_losses, normalized=normalized)
    a = stack_draws(train_losses)
    b = a if query_losses is None else stack_draws(query_losses)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError("bif takes (chain, draw, sample) arrays; for per-token losses use token_bif or group_bif")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"train and query losses must come from the same draws: {a.shape[0]} vs {b.shape[0]} pooled draws"
        )
    cov = pooled_cov(a, b)
    if normalized:
        sa = a.std(0, unbiased=True)
        sb = b.std(0, unbiased=True)
        cov = cov / torch.outer(sa, sb)
    return -cov
