"""Saxe's mode dynamics of a two-layer linear network, and its stages: predicted and observed.

With white inputs (Σ_xx = c·I) and a balanced, aligned network, W = U·G(t)·Vᵀ in the SVD basis of
Σ_yx = U·diag(s)·Vᵀ, each mode strength following a sigmoid (:func:`mode_strength`) that rises to s_k/c at
t*_k ≈ ln(s_k/a₀)/(2·lr·s_k): one stage per distinct singular value (Saxe et al. 2019; Lee et al. 2025,
arXiv:2510.12071, the hierarchical toy model). Time is in gradient-descent steps (rate = lr).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import Data, as_batch
from .dln import layer_names


@dataclass
class ModeBasis:
    """The SVD of Σ_yx = U·diag(s)·Vᵀ (thin: rank r) and the input covariance Σ_xx = c·I.

    u: (P, r), s: (r,) descending, v: (N_in, r), c: the scalar input variance (1/N for one-hot inputs).
    blocks: groups of mode indices with equal singular values (relative tolerance 1e-9), in order.
    """

    u: torch.Tensor
    s: torch.Tensor
    v: torch.Tensor
    c: float
    blocks: tuple[tuple[int, ...], ...]


def mode_basis(data: Data) -> ModeBasis:
    """SVD of Σ_yx and the scalar Σ_xx. Raises unless Σ_xx = c·I (the decoupled theory needs it)."""
    x, y = as_batch(data)
    n = x.shape[0]
    sxx = x.T @ x / n
    c = float(sxx.diagonal().mean())
    if not torch.allclose(sxx, c * torch.eye(sxx.shape[0], dtype=sxx.dtype), atol=1e-12):
        raise ValueError("the mode theory needs white inputs (Σ_xx = c·I), e.g. one-hot items")
    u, s, vh = torch.linalg.svd(y.T @ x / n, full_matrices=False)
    r = int((s > 1e-12 * s[0]).sum())
    u, s, v = u[:, :r], s[:r], vh[:r].T
    blocks, current = [], [0]
    for k in range(1, r):
        if abs(float(s[k] - s[current[0]])) <= 1e-9 * float(s[0]):
            current.append(k)
        else:
            blocks.append(tuple(current))
            current = [k]
    blocks.append(tuple(current))
    return ModeBasis(u, s, v, c, tuple(blocks))


def effective_initial_strength(params: dict[str, torch.Tensor], data: Data) -> torch.Tensor:
    """Initial mode strengths a₀ (r,) that a two-layer network from a small random init effectively starts from.

    In the early, linear phase the k-th mode grows as a_k(t) ≈ ¼‖α_k + β_k‖²·e^(2·lr·s_k·t) with α_k = W₂ᵀu_k,
    β_k = W₁v_k at t = 0 (the α − β part decays), so a₀_k = ¼‖α_k + β_k‖². Within a degenerate block the modes
    share one value, the block mean (the block's trace over its size), as the decoupled theory needs.
    """
    names = layer_names(params)
    if len(names) != 2:
        raise ValueError("effective_initial_strength is defined for two-layer networks (W1, W2)")
    basis = mode_basis(data)
    alpha = params["W2"].T @ basis.u  # (h, r)
    beta = params["W1"] @ basis.v  # (h, r)
    a0 = 0.25 * ((alpha + beta) ** 2).sum(0)
    for block in basis.blocks:
        a0[list(block)] = a0[list(block)].mean()
    return a0


def mode_strength(
    t: torch.Tensor | float, s: torch.Tensor | float, g0: torch.Tensor | float, lr: float, c: float = 1.0
) -> torch.Tensor:
    """Saxe's mode dynamics G(t) = (s/c)·e^(2s·lr·t) / (e^(2s·lr·t) − 1 + (s/c)/G(0)) (broadcasting).

    The strength of the mode of W = W₂W₁ along (u_k, v_k) under gradient flow on ½‖y − Wx‖² averaged over the
    data, for a balanced, aligned two-layer network; with Σ_xx = c·I it rises to s/c (the paper writes it for
    c = 1 with time constant τ = 1/lr; Lee et al. 2025, arXiv:2510.12071, the hierarchical toy model). t in steps.
    """
    t, s, g0 = (torch.as_tensor(v, dtype=torch.float64) for v in (t, s, g0))
    return mode_strength_derivatives(t, s, g0, lr, c)[0]


def mode_strength_derivatives(t, s, g0, lr: float, c: float):
    """(G, ∂G/∂s, ∂G/∂c) of :func:`mode_strength` at fixed G(0), tensors broadcasting together."""
    k = s / (c * g0) - 1.0
    e = torch.exp(-2.0 * lr * s * t)
    d = 1.0 + k * e
    g = (s / c) / d
    dd_ds = e / (c * g0) - 2.0 * lr * t * k * e
    dd_dc = -s / (c * c * g0) * e
    dg_ds = (1.0 / c) / d - (s / c) / d**2 * dd_ds
    dg_dc = -(s / c**2) / d - (s / c) / d**2 * dd_dc
    return g, dg_ds, dg_dc


def predicted_stage_steps(data: Data, lr: float, a0: torch.Tensor | float) -> torch.Tensor:
    """Saxe's transition time of each distinct singular value (stage), in steps, shape (num_blocks,).

    t*_k = ln((s_k/c)/a₀ − 1) / (2·lr·s_k): the step at which mode k reaches half its final strength s_k/c
    (≈ (1/lr)·ln(s_k/a₀)/(2 s_k) for c = 1, the paper's form). ``a0`` is a scalar or per-mode (r,), e.g. from
    :func:`effective_initial_strength`.
    """
    basis = mode_basis(data)
    a0 = torch.as_tensor(a0, dtype=torch.float64).expand(basis.s.shape)
    first = [b[0] for b in basis.blocks]
    s = basis.s[first]
    return torch.log(s / (basis.c * a0[first]) - 1.0) / (2.0 * lr * s)
