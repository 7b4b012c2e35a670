"""Small models with known influence (chapter 2): the exact Gaussian case, a regular model and a degenerate one.

- :class:`LinearRegression`: ℓ_i = ½(y_i − x_iᵀw)²; the localized tempered posterior is Gaussian, so the BIF
  is known exactly: each residual r_i = y_i − x_iᵀw is Gaussian with mean m_i and covariance c_ij, so for
  ℓ_i = ½r_i², Cov(ℓ_i, ℓ_j) = ½·c_ij² + m_i·m_j·c_ij (Isserlis' theorem); the BIF is −Cov (the book's notation
  page, book/notation.md).
- :class:`LogisticRegression`: a regular model (positive-definite Hessian at its minimum), where the local BIF
  should agree with the damped classical influence function.
- :class:`RankOneNetwork`: f(x) = b·(aᵀx) fitted to an isotropic teacher whose two singular values are equal.
  Its minima form a continuous family (the learned direction can rotate freely), so the Hessian is singular in
  a direction that individual samples do not respect: the classical IF diverges as damping → 0.

All parameters are flat vectors ``w`` so that the models work with :func:`stagewise.sampling.sample` and
:func:`stagewise.influence.classical_influence` alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import Interval, check_fields

__all__ = ["LinearRegression", "LogisticRegression", "RankOneNetwork"]


@dataclass(frozen=True)
class LinearRegression:
    """Data (X, y) with x ~ N(0, I/d) and y = xᵀw_true + noise; per-sample loss ½(y − xᵀw)²."""

    num_samples: int = 20
    num_features: int = 5
    noise: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        count = Interval(ge=1, integer=True)
        check_fields(self, {"num_samples": count, "num_features": count, "noise": Interval(ge=0)})

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.num_samples, self.num_features, generator=g, dtype=torch.float64)
        x = x / math.sqrt(self.num_features)
        w_true = torch.randn(self.num_features, generator=g, dtype=torch.float64)
        y = x @ w_true + self.noise * torch.randn(self.num_samples, generator=g, dtype=torch.float64)
        return x, y

    @staticmethod
    def loss(w: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return 0.5 * (y - (x * w).sum(-1)) ** 2

    def exact_posterior(self, nbeta: float, localization: float, center: torch.Tensor):
        """Mean and covariance of p(w) ∝ exp(−nβ·L_n(w) − (γ/2)‖w − w*‖²) (Gaussian): precision
        P = (nβ/n)·XᵀX + γI, mean P⁻¹((nβ/n)·Xᵀy + γw*)."""
        x, y = self.data()
        n = self.num_samples
        precision = nbeta / n * x.T @ x + localization * torch.eye(self.num_features, dtype=x.dtype)
        cov = torch.linalg.inv(precision)
        mean = cov @ (nbeta / n * x.T @ y + localization * center.to(x.dtype))
        return mean, cov

    def exact_bif(self, nbeta: float, localization: float, center: torch.Tensor) -> torch.Tensor:
        """Exact BIF = −Cov(ℓ_i, ℓ_j) between all training samples, (n, n): −(½c_ij² + m_i m_j c_ij)."""
        x, y = self.data()
        mean, cov = self.exact_posterior(nbeta, localization, center)
        m = y - x @ mean  # residual means
        c = x @ cov @ x.T  # residual covariance
        return -(0.5 * c**2 + torch.outer(m, m) * c)

    def euler_bif(self, nbeta: float, localization: float, center: torch.Tensor, step_size: float,
                  preconditioner: torch.Tensor | None = None) -> torch.Tensor:
        """Exact BIF (n, n) of the law the full-batch SGLD chain samples at step size ε, bias included.

        With a fixed diagonal preconditioner G (None: plain SGLD, G = 1) the chain u ← (I − (ε/2)·G·P)·u +
        √(εG)·ξ around the posterior mean μ is Gaussian AR(1); in v = G^(−1/2)·u it has the symmetric matrix
        A = G^(1/2)·P·G^(1/2) = Σ_k a_k·q_k·q_kᵀ and the stationary covariance Σ_k q_k·q_kᵀ/(a_k·(1 − ε·a_k/4))
        (stable while ε·a_max < 4), so S_ε = G^(1/2)·Σ_v·G^(1/2) and the BIF follows by Isserlis' theorem as in
        :meth:`exact_bif`. ``preconditioner``: (d,) or one per chain (C, d); chains with different G sample
        different laws and their pooled draws a mixture, whose covariance adds the spread of the chains' mean
        losses ½(m_i² + c_ii) to the mean of their covariances.
        """
        x, y = self.data()
        mean, cov = self.exact_posterior(nbeta, localization, center)
        precision = torch.linalg.inv(cov)
        d = self.num_features
        g = torch.ones(1, d, dtype=x.dtype) if preconditioner is None else \
            torch.as_tensor(preconditioner, dtype=x.dtype).reshape(-1, d)
        root = g.sqrt()
        a, q = torch.linalg.eigh(root[:, :, None] * precision * root[:, None, :])  # (C, d), (C, d, d)
        if bool((step_size * a >= 4).any()):
            raise ValueError(f"step_size = {step_size!r}: the chain is unstable (ε·a_max = "
                             f"{float(step_size * a.max()):.3g} ≥ 4)")
        inner = q @ torch.diag_embed(1 / (a * (1 - step_size * a / 4))) @ q.transpose(1, 2)
        s = root[:, :, None] * inner * root[:, None, :]  # (C, d, d)
        m = y - x @ mean
        c = x @ s @ x.T  # (C, n, n)
        within = (0.5 * c**2 + m[:, None] * m[None, :] * c).mean(0)
        level = 0.5 * (m**2 + torch.diagonal(c, dim1=1, dim2=2))  # (C, n): each chain's mean losses
        between = (level - level.mean(0)).T @ (level - level.mean(0)) / level.shape[0]
        return -(within + between)

    def least_squares(self) -> torch.Tensor:
        x, y = self.data()
        return torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)


@dataclass(frozen=True)
class LogisticRegression:
    """Binary classification with x ~ N(0, I) and labels from a logistic teacher; loss log(1 + e^(−y·xᵀw))."""

    num_train: int = 100
    num_query: int = 20
    num_features: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        count = Interval(ge=1, integer=True)
        check_fields(self, {"num_train": count, "num_query": count, "num_features": count})

    def data(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """(train, query) batches, each (x, y) with y ∈ {−1, +1}."""
        g = torch.Generator().manual_seed(self.seed)
        n = self.num_train + self.num_query
        x = torch.randn(n, self.num_features, generator=g, dtype=torch.float64)
        w_true = 1.5 * torch.randn(self.num_features, generator=g, dtype=torch.float64)
        p = torch.sigmoid(x @ w_true)
        y = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < p, 1.0, -1.0).to(torch.float64)
        return (x[: self.num_train], y[: self.num_train]), (x[self.num_train :], y[self.num_train :])

    @staticmethod
    def loss(w: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.softplus(-y * (x * w).sum(-1))

    def fit(self, steps: int = 50) -> torch.Tensor:
        """The maximum-likelihood w* by Newton's method (the loss is strictly convex here)."""
        train, _ = self.data()
        w = torch.zeros(self.num_features, dtype=torch.float64)
        mean_loss = lambda v: self.loss(v, train).mean()  # noqa: E731
        for _ in range(steps):
            g = torch.func.grad(mean_loss)(w)
            h = torch.func.hessian(mean_loss)(w)
            w = w - torch.linalg.solve(h, g)
            if float(g.norm()) < 1e-12:
                break
        return w


@dataclass(frozen=True)
class RankOneNetwork:
    """f(x) = b·(aᵀx), w = (a, b) ∈ R⁴, fitted to the identity map on inputs spread evenly around the circle.

    The teacher has two equal singular values, so a rank-one network can learn either direction: its minima
    are a = u·s, b = u/s for every unit u (a circle of directions, times the rescaling symmetry). Each sample
    x_i pulls the learned direction towards itself, so per-sample gradients have a component along the
    rotation, where the full-data Hessian is zero: the classical influence diverges like 1/damping.
    """

    num_samples: int = 8

    def __post_init__(self) -> None:
        check_fields(self, {"num_samples": Interval(ge=3, integer=True)})  # ≥ 3 points: isotropic data

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        angles = torch.arange(self.num_samples, dtype=torch.float64) * (2 * math.pi / self.num_samples)
        x = torch.stack([angles.cos(), angles.sin()], dim=-1) * math.sqrt(2.0)  # Σ_xx = I exactly
        return x, x.clone()

    @staticmethod
    def loss(w: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        a, b = w[..., :2], w[..., 2:]
        hidden = (x * a).sum(-1, keepdim=True)
        return 0.5 * ((y - hidden * b) ** 2).sum(-1)

    def minimum(self, angle: float = 0.3) -> torch.Tensor:
        """A minimum of the full-data loss: the direction u = (cos θ, sin θ) learned with a = b = u."""
        u = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
        return torch.cat([u, u])
