"""Influence in the toy model from theory and from the posterior: analytic influence and the BIF over training.

Both in the BIF's sign convention (the book's notation page, book/notation.md): **negative = i helps j**.

- analytic:  dℓ_j(t)/dβ_i at β = 1 from Saxe's mode dynamics (:func:`analytic_influence`; Lee et al. 2025,
  arXiv:2510.12071, the analytic influence of the hierarchical toy model). Same scale as leave-one-out:
  Δ_ij ≈ (1 − 0)·dℓ_j/dβ_i to first order.
- BIF:       −Cov(ℓ_i, ℓ_j) under the localized posterior at each checkpoint (:func:`toy_bif_trajectory`).
  It is a derivative too, of the posterior mean: with p(w) ∝ exp(−(nβ/N)·Σ_i β_i ℓ_i(w) − (γ/2)‖w − w*‖²),
  ∂E[ℓ_j]/∂β_i = −(nβ/N)·Cov(ℓ_i, ℓ_j), i.e. (nβ/N)·BIF. Same sign, a different (local, posterior) quantity:
  compare shapes, signs and the normalized BIF.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..influence import bif_trajectory
from ..sampling import SGLDConfig
from .data import Data, HierarchicalData, as_batch, item_indices
from .dln import TrainingRun, per_item_losses
from .theory import ModeBasis, mode_basis, mode_strength, mode_strength_derivatives


def _mode_coordinates(data: Data, basis: ModeBasis) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_batch(data)
    return x @ basis.v, y @ basis.u  # x̃ (N, r), ỹ (N, r): items in the SVD basis


def _closed_form_perturbation(basis: ModeBasis, t: torch.Tensor, a0: torch.Tensor, lr: float,
                              p_mat: torch.Tensor, q_mat: torch.Tensor) -> torch.Tensor:
    """δW̃(t) = Uᵀ(dW/dβ_p)V in closed form, (S, I, r, r), from P = Uᵀ δΣ_yx V and Q = Vᵀ δΣ_xx V (I, r, r)."""
    s, c = basis.s, basis.c
    g, dg_ds, dg_dc = mode_strength_derivatives(t[:, None], s, a0, lr, c)  # (S, r)
    block_of = torch.empty(s.numel(), dtype=torch.long)
    for b, block in enumerate(basis.blocks):
        block_of[list(block)] = b
    same = block_of[:, None] == block_of[None, :]  # (r, r)
    p_t = p_mat.transpose(-1, -2)
    # Between blocks: the singular vectors rotate (exact SVD perturbation of Σ_yx, generators A and B),
    # δ_jk = A_jk·G_k + G_j·B_jk with P_jk = A_jk s_k + B_jk s_j and A, B skew-symmetric.
    sj, sk = s[:, None], s[None, :]
    denom = torch.where(same, torch.ones_like(sj * sk), sk**2 - sj**2)
    a = torch.where(same, 0.0, (sk * p_mat + sj * p_t) / denom)
    b = torch.where(same, 0.0, -(sj * p_mat + sk * p_t) / denom)
    gj, gk = g[:, None, :, None], g[:, None, None, :]
    delta = a.unsqueeze(0) * gk + gj * b.unsqueeze(0)
    # Within a block (one mode, or several with equal s): the symmetric part of the forcing acts like a change
    # of s (and Q like a change of c) on the whole block; the antisymmetric part is a rotation inside the
    # block, which leaves the block's strength unchanged and gives δ = P_anti·G/s.
    p_sym, p_anti = 0.5 * (p_mat + p_t), 0.5 * (p_mat - p_t)
    inside = (dg_ds[:, None, :, None] * p_sym + dg_dc[:, None, :, None] * q_mat + (g / s)[:, None, :, None] * p_anti)
    return torch.where(same, inside, delta)


def _linearized_perturbation(basis: ModeBasis, t: torch.Tensor, a0: torch.Tensor, lr: float,
                             p_mat: torch.Tensor, q_mat: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
    """δW̃(t) by integrating the linearized balanced dynamics around W = U·G(t)·Vᵀ (RK4), (S, I, r, r).

    dW/dt = lr·[√(WWᵀ)·E + E·√(WᵀW)] with E = Σ_yx − W·Σ_xx (balanced two-layer gradient flow), perturbed by
    δΣ_yx = U P Vᵀ and δΣ_xx = V Q Vᵀ, δW(0) = 0. This is the same first-order theory as the closed form but
    with the input-covariance forcing −G·Q kept between blocks as well.
    """
    s, c = basis.s, basis.c

    def rhs(time: float, d: torch.Tensor) -> torch.Tensor:
        g = mode_strength(time, s, a0, lr, c)  # (r,)
        e = s - c * g
        gj, gk = g[:, None], g[None, :]
        dt_ = d.transpose(-1, -2)
        d1 = (d * gk + gj * dt_) / (gj + gk)  # δ√(WWᵀ)
        d2 = (gj * d + dt_ * gk) / (gj + gk)  # δ√(WᵀW)
        de = p_mat - c * d - gj * q_mat  # δE
        return lr * (d1 * e[None, :] + gj * de + de * gk + e[:, None] * d2)

    steps = t.tolist()
    out = torch.zeros(len(steps), *p_mat.shape, dtype=torch.float64)
    d = torch.zeros_like(p_mat)
    now, k = 0.0, 0
    while k < len(steps) and steps[k] <= 0:
        k += 1
    end = max(steps) if steps else 0.0
    while k < len(steps):
        h = min(dt, steps[k] - now)
        k1 = rhs(now, d)
        k2 = rhs(now + h / 2, d + h / 2 * k1)
        k3 = rhs(now + h / 2, d + h / 2 * k2)
        k4 = rhs(now + h, d + h * k3)
        d = d + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        now += h
        while k < len(steps) and steps[k] <= now + 1e-9:
            out[k] = d
            k += 1
        if now > end:
            break
    return out


def analytic_influence(
    data: Data,
    steps: torch.Tensor | Sequence[int],
    lr: float,
    a0: torch.Tensor | float,
    *,
    train: Sequence[int] | None = None,
    query: Sequence[int] | None = None,
    method: str = "closed_form",
) -> torch.Tensor:
    """dℓ_q(t)/dβ_p at β = 1 from Saxe's mode dynamics (Lee et al. 2025), shape (S, I, J). Negative = p helps q.

    The network is idealized as W(t) = U·G(t)·Vᵀ (balanced, aligned, :func:`mode_strength` with initial
    strengths ``a0``, e.g. :func:`effective_initial_strength`). Up-weighting item p by ε changes
    Σ_yx by ε·y_p x_pᵀ/N and Σ_xx by ε·x_p x_pᵀ/N; in the SVD basis P = ỹ_p x̃_pᵀ/N, Q = x̃_p x̃_pᵀ/N, and

        δW̃ = A·G + G′ + G·B          (between modes of different s: rotation of the singular vectors)
        G′ = ∂G/∂s·sym(P) + ∂G/∂c·Q + G/s·anti(P)      (inside each block of equal singular values)

    with A_jk = (s_k P_jk + s_j P_kj)/(s_k² − s_j²), B_jk = −(s_j P_jk + s_k P_kj)/(s_k² − s_j²) (for symmetric
    P these are the paper's A_jk = B_kj = P_jk/(s_k − s_j)). Degenerate blocks are treated whole: within a block
    the symmetric forcing changes the block's strength exactly as a change of s does, and the antisymmetric part
    only rotates the block (no tie-breaking needed). The influence is dℓ_q/dε = −r_qᵀ δW x_q with r_q the
    residual of the idealized network. Same scale as LOO: Δ_pq ≈ (1 − 0)·dℓ_q/dβ_p to first order.

    method: "closed_form" (the formulas above; the Q-forcing between different blocks, which has no closed
    form, is left out — it vanishes for Q ∝ I) or "linearized" (the same linear theory with every term,
    integrated numerically by RK4 with a step of 1 training step). With one-hot items the Q term is what makes the
    influence vanish at convergence (W* = Yᵀ does not depend on β). Measured against finite differences of
    GD (default toy, all off-diagonal pairs and checkpoints): Pearson r = 0.944 (closed form), 0.962
    (linearized); on the stochastic variant, whose modes are all distinct, 0.75 and 0.94 with 1,000 features
    (0.91 and 0.94 with 100) — there the missing between-mode Q term matters, so prefer "linearized" (≈ 1 s).
    """
    if method not in ("closed_form", "linearized"):
        raise ValueError(f"method = {method!r}: accepted values are 'closed_form' or 'linearized'")
    basis = mode_basis(data)
    x_t, y_t = _mode_coordinates(data, basis)
    n = x_t.shape[0]
    train = list(item_indices(train, n, "train"))
    query = list(item_indices(query, n, "query"))
    t = torch.as_tensor(steps, dtype=torch.float64)
    a0 = torch.as_tensor(a0, dtype=torch.float64).expand(basis.s.shape)
    xp, yp = x_t[train], y_t[train]
    p_mat = yp[:, :, None] * xp[:, None, :] / n  # (I, r, r)
    q_mat = xp[:, :, None] * xp[:, None, :] / n
    if method == "closed_form":
        delta = _closed_form_perturbation(basis, t, a0, lr, p_mat, q_mat)
    else:
        delta = _linearized_perturbation(basis, t, a0, lr, p_mat, q_mat)
    g = mode_strength(t[:, None], basis.s, a0, lr, basis.c)  # (S, r)
    xq, yq = x_t[query], y_t[query]  # (J, r)
    resid = yq[None] - g[:, None, :] * xq[None]  # (S, J, r): r̃_q = ỹ_q − G x̃_q
    # −r̃_qᵀ δ_p x̃_q for every (t, p, q)
    return -torch.einsum("sqj,spjk,qk->spq", resid, delta, xq)


def bif_loss_fn(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-item losses ℓ_i = ½‖y_i − W x_i‖², (N,): the ``loss_fn`` for ``sample`` / ``bif_trajectory``.

    Use ``data.batch`` as both the (full-batch) training data and the observables, and the checkpoints of
    :meth:`TrainingRun.checkpoint_list`.
    """
    return per_item_losses(params, batch)


#: The sampler settings of the toy model in this book: plain SGLD, ε 1e-4, nβ 100, γ 100, 4 chains × 1,000
#: draws after 200 burn-in steps (our reconstruction for the hierarchical toy model of Lee et al. 2025,
#: arXiv:2510.12071; chapter 4 sweeps γ and ε around it).
PLAIN_SGLD = SGLDConfig(step_size=1e-4, nbeta=100.0, localization=100.0, num_chains=4, num_draws=1000,
                        num_burnin=200, preconditioner="none", seed=0)


def toy_bif_trajectory(
    run: TrainingRun,
    data: HierarchicalData,
    config=None,
    *,
    steps: Sequence[int] | None = None,
    normalized: bool = False,
    **kwargs,
):
    """``bif_trajectory`` over the checkpoints of a toy run (``steps``: a subset of them), all 8 × 8 pairs.

    config defaults to :data:`PLAIN_SGLD`. Returns an
    :class:`~stagewise.influence.InfluenceTrajectory` (step, i, j); negative = i helps j.
    """
    checkpoints = run.checkpoint_list()
    if steps is not None:
        wanted = set(int(s) for s in steps)
        missing = wanted - {s for s, _ in checkpoints}
        if missing:
            raise ValueError(f"steps {sorted(missing)} are not checkpoints of the run")
        checkpoints = [(s, p) for s, p in checkpoints if s in wanted]
    return bif_trajectory(bif_loss_fn, checkpoints, data.batch, data.batch, config or PLAIN_SGLD,
                          normalized=normalized, **kwargs)
