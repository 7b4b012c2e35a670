"""Monte Carlo standard errors of the BIF: from each entry's effective sample size, or from batch means."""

from __future__ import annotations

import math
import numbers

import torch

from ..chains import mcse_mean
from .core import bif, checked_losses

__all__ = ["bif_stderr", "combination_stderr", "products_stderr"]


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
    :func:`stagewise.chains.mcse_mean`). To first order the pooled covariance is the mean over all draws of
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
    train_losses = checked_losses("train_losses", train_losses, normalized=normalized)
    query = train_losses
    if query_losses is not None:
        query = checked_losses("query_losses", query_losses, normalized=normalized)
    if train_losses.dim() != 3 or query.dim() != 3 or query.shape[:2] != train_losses.shape[:2]:
        raise ValueError(f"bif_stderr takes (chain, draw, sample) arrays with the same chains and draws; got "
                         f"train_losses {tuple(train_losses.shape)} and query_losses {tuple(query.shape)}")
    chains, draws = train_losses.shape[:2]
    if num_batches is None:
        if draws < 4:
            raise ValueError(f"train_losses has {draws} draws per chain: the standard error needs at least 4 "
                             "(or pass num_batches for batch means)")
        return products_stderr(train_losses.double(), query.double(), normalized=normalized)
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


def products_stderr(a: torch.Tensor, b: torch.Tensor, *, normalized: bool) -> torch.Tensor:
    """ESS-based standard error of −Cov(a_i, b_j) (or −corr) for (C, T, I) and (C, T, J) float64 arrays: (I, J).

    The (C, T, i, J) products are formed a block of rows at a time, so memory stays bounded for large I·J. No
    input checks: :func:`bif_stderr` and :func:`stagewise.influence.group_bif_stderr` make them.
    """
    if not normalized:
        return combination_stderr([(1.0, a, b)])
    c, t, num_i = a.shape
    s = c * t
    da = a - a.mean((0, 1))
    db = b - b.mean((0, 1))
    da = da / da.pow(2).sum((0, 1)).div(s - 1).sqrt()
    db = db / db.pow(2).sum((0, 1)).div(s - 1).sqrt()
    r = torch.einsum("cti,ctj->ij", da, db) / (s - 1)
    return _blocked_mcse(num_i, b.shape[2], s, a.device, lambda start, stop: _correlation_terms(da, db, r, start, stop))


def combination_stderr(terms) -> torch.Tensor:
    """ESS-based standard error of Σ_k w_k·Cov(a_k, b_k), (I, J), for terms (w_k, a_k, b_k) of paired draws.

    Every a_k is (C, T, I) and every b_k (C, T, J) float64, recorded at the same chains and draws (e.g. two
    coupled runs at step sizes ε and ε/2, whose Richardson–Romberg combination 2·Cov_{ε/2} − Cov_ε is such a
    sum). Each pooled covariance is to first order the mean of the products f_k(t) = (a_k − ā_k)(b_k − b̄_k), so
    the combination is the mean of Σ_k w_k·f_k(t) and its error is :func:`stagewise.chains.mcse_mean` of
    that series (times the covariances' divisor correction s/(s − 1)): draws that move together in the terms
    cancel. The sign is that of the covariances (a BIF's error is the same). No input checks.
    """
    terms = [(float(w), a - a.mean((0, 1)), b - b.mean((0, 1))) for w, a, b in terms]
    _, a0, b0 = terms[0]
    c, t, num_i = a0.shape
    s = c * t

    def block(start: int, stop: int) -> torch.Tensor:
        return sum(w * da[:, :, start:stop, None] * db[:, :, None, :] for w, da, db in terms)

    return _blocked_mcse(num_i, b0.shape[2], s, a0.device, block) * (s / (s - 1))


def _correlation_terms(da, db, r, start, stop) -> torch.Tensor:
    """The delta-method series of the correlations of rows start … stop − 1 (see :func:`bif_stderr`)."""
    x, y = da[:, :, start:stop, None], db[:, :, None, :]
    return x * y - r[start:stop] / 2 * (x * x + y * y)


def _blocked_mcse(num_i: int, num_j: int, s: int, device, block) -> torch.Tensor:
    """mcse_mean of the (C, T, rows, J) series ``block(start, stop)``, a block of rows at a time: (I, J)."""
    out = torch.empty(num_i, num_j, dtype=torch.float64, device=device)
    rows = max(1, _STDERR_BLOCK // max(1, s * num_j))
    for start in range(0, num_i, rows):  # blocks of rows, never a loop over draws
        stop = min(start + rows, num_i)
        out[start:stop] = mcse_mean(block(start, stop))
    return out
