"""The classical (damped) influence function with the exact Hessian, to compare the BIF with.

For a regular model near a minimum the localized posterior is ≈ Gaussian, and the BIF ≈ this IF (see
:func:`classical_influence`). Sign as for the BIF (:mod:`stagewise.influence`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["classical_influence"]


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
