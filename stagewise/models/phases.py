"""Influence at phase transitions: the law-of-total-covariance decomposition and two small models with phases.

If the posterior is a mixture of phases k with weights π_k, per-phase means μ_k and covariances C_k of the
per-sample losses, the law of total covariance splits every covariance exactly (the argument of Lee et al. 2025,
arXiv:2510.12071, for why influence peaks and flips sign at phase transitions; chapter 5 of the book):

    Cov(ℓ_i, ℓ_j) = Σ_k π_k·C_k,ij  +  Σ_k π_k·(μ_k,i − μ̄_i)(μ_k,j − μ̄_j)
                  = within + between,   and for two phases U, V:  between = π_U·π_V·Δμ_i·Δμ_j,

with Δμ = μ_U − μ_V. The BIF is −Cov (negative: i helps j), so the same split holds for the BIF with the sign
flipped. Moments here are *population* moments (weights summing to 1, divisor N for N equally weighted draws):
with them the identity is exact to rounding, for quadrature nodes and for sampled draws alike.

Models:

* :class:`TwoClusterPrototype`: one prototype w ∈ R fitted to points in two clusters with a bounded loss
  ℓ_i(w) = 1 − exp(−(w − y_i)²/(2σ²)). Each basin fits one cluster and treats the other as outliers; a weight ρ
  on the right cluster's losses moves the posterior from the left basin (phase U) to the right one (phase V).
* :class:`ScalarLinearNetwork`: the one-mode deep linear network f(x) = b·a·x, trained by gradient descent from a
  small initialization; its local posterior moves from "mode not learned" to "mode learned" during the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .quadrature import uniform_axis

__all__ = [
    "PhaseDecomposition",
    "phase_moments",
    "mixture_decomposition",
    "decompose",
    "uniform_axis",
    "TwoClusterPrototype",
    "ScalarLinearNetwork",
]


@dataclass(frozen=True)
class PhaseDecomposition:
    """Covariances of losses split by phase. Shapes: weights (K,), means (K, I), covariance matrices (I, I).

    ``total`` is computed directly from the whole distribution when one is available (then
    ``total − within − between`` measures the identity's rounding error), else it is within + between.
    Covariances are +Cov; the BIF terms (−Cov, negative = i helps j) are the ``bif_*`` properties.
    """

    weights: np.ndarray
    means: np.ndarray
    within: np.ndarray
    between: np.ndarray
    total: np.ndarray

    @property
    def bif_total(self) -> np.ndarray:
        return -self.total

    @property
    def bif_within(self) -> np.ndarray:
        return -self.within

    @property
    def bif_between(self) -> np.ndarray:
        return -self.between

    @property
    def identity_error(self) -> float:
        """max |total − (within + between)| over all pairs."""
        return float(np.abs(self.total - self.within - self.between).max())


def _as_2d(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2:
        raise ValueError(f"values must have shape (point, sample) or (chain, draw, sample); got {values.shape}")
    return values.reshape(-1, values.shape[-1])


def _weighted_moments(values: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (I,) and population covariance (I, I) of the rows of values under probabilities probs (sum 1)."""
    mean = probs @ values
    centred = values - mean
    return mean, centred.T @ (centred * probs[:, None])


def phase_moments(values, labels, probs=None, num_phases: int | None = None):
    """Per-phase weight, mean and covariance of the losses.

    values: (N, I) losses at N points (grid nodes or draws; (chain, draw, I) is flattened).
    labels: (N,) integer phase of each point, 0 … K−1.
    probs:  (N,) nonnegative mass of each point (quadrature weight × density); None = equal masses 1/N.
    Returns (weights (K,), means (K, I), covariances (K, I, I)); a phase with no mass gets weight 0 and zeros.
    """
    values = _as_2d(values)
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != values.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {values.shape[0]} points")
    probs = np.full(values.shape[0], 1.0) if probs is None else np.asarray(probs, dtype=np.float64).reshape(-1)
    if probs.shape[0] != values.shape[0] or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError("probs must be nonnegative, one per point, with a positive sum")
    probs = probs / probs.sum()
    k = int(labels.max()) + 1 if num_phases is None else num_phases
    size = values.shape[1]
    weights, means, covs = np.zeros(k), np.zeros((k, size)), np.zeros((k, size, size))
    for phase in range(k):
        mask = labels == phase
        mass = probs[mask].sum()
        weights[phase] = mass
        if mass > 0:
            means[phase], covs[phase] = _weighted_moments(values[mask], probs[mask] / mass)
    return weights, means, covs


def mixture_decomposition(weights, means, covariances, total=None) -> PhaseDecomposition:
    """Combine per-phase moments with phase weights π_k (normalized here) into within and between terms.

    within = Σ_k π_k C_k, between = Σ_k π_k (μ_k − μ̄)(μ_k − μ̄)ᵀ (for two phases: π_U π_V Δμ Δμᵀ).
    ``total``: a directly computed covariance to store for the identity check; None = within + between.
    """
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    means, covariances = np.asarray(means, dtype=np.float64), np.asarray(covariances, dtype=np.float64)
    within = np.einsum("k,kij->ij", weights, covariances)
    centred = means - weights @ means
    between = np.einsum("k,ki,kj->ij", weights, centred, centred)
    return PhaseDecomposition(weights, means, within, between, within + between if total is None else total)


def decompose(values, labels, probs=None, *, phase_weights=None, num_phases: int | None = None):
    """Law-of-total-covariance split of the covariance of losses into within- and between-phase terms.

    values, labels, probs: as in :func:`phase_moments`. Without ``phase_weights`` the phase weights are the
    masses of the labelled points and ``total`` is the directly computed covariance (the identity then holds to
    rounding). With ``phase_weights`` (K,), e.g. exact weights from quadrature for draws of chains that cannot
    cross between phases, the per-phase moments are kept and re-weighted; ``total`` is then within + between.
    """
    k = num_phases if num_phases is not None else (None if phase_weights is None else len(phase_weights))
    weights, means, covs = phase_moments(values, labels, probs, k)
    if phase_weights is not None:
        phase_weights = np.asarray(phase_weights, dtype=np.float64)
        empty = (weights == 0) & (phase_weights > 0)
        if empty.any():
            raise ValueError(f"phases {np.flatnonzero(empty).tolist()} have weight but no points to estimate from")
        return mixture_decomposition(phase_weights, means, covs)
    flat = _as_2d(values)
    p = np.full(flat.shape[0], 1.0) if probs is None else np.asarray(probs, dtype=np.float64).reshape(-1)
    total = _weighted_moments(flat, p / p.sum())[1]
    return mixture_decomposition(weights, means, covs, total=total)


# ----------------------------------------------------------------------------------------------------------
# A prototype with two basins


@dataclass(frozen=True)
class TwoClusterPrototype:
    """One prototype w ∈ R fitted to points in two clusters with a bounded (Welsch) loss:

        ℓ_i(w) = 1 − exp(−(w − y_i)² / (2σ²))   ∈ [0, 1),

    close to 0 for a point within σ of the prototype, close to 1 (an outlier, ignored) far from it. The prototype
    can fit the left cluster (phase U, w < boundary) or the right one (phase V), not both. The posterior is

        p_ρ(w) ∝ exp(−nβ·(1/n)·Σ_i β_i ℓ_i(w) − (γ/2)·w²),   β_i = 1 (left cluster), ρ (right cluster),

    so ρ, the weight of the right cluster's data, moves the mass from U to V. Samples are ordered left then right.
    """

    left: tuple[float, ...] = (-1.3, -1.0, -0.7)
    right: tuple[float, ...] = (0.8, 1.2)
    width: float = 0.5

    def __post_init__(self) -> None:
        if not self.left or not self.right:
            raise ValueError("left and right clusters need at least one point each")
        if not max(self.left) < min(self.right):
            raise ValueError(f"every left point must lie left of every right point; got {self.left}, {self.right}")
        if not self.width > 0:
            raise ValueError(f"width = {self.width!r}: accepted values are numbers > 0")

    @property
    def num_samples(self) -> int:
        return len(self.left) + len(self.right)

    def data(self) -> torch.Tensor:
        """The points y_i, shape (n,), float64."""
        return torch.tensor([*self.left, *self.right], dtype=torch.float64)

    def sample_weights(self, rho: float) -> torch.Tensor:
        """β_i: 1 for the left cluster, ρ for the right one, shape (n,)."""
        return torch.tensor([1.0] * len(self.left) + [float(rho)] * len(self.right), dtype=torch.float64)

    def loss(self, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ℓ_i(w). w: (...,) or (..., 1); y: (n,). Returns (..., n)."""
        w = w[..., :1] if w.dim() and w.shape[-1] == 1 else w[..., None]
        return 1.0 - torch.exp(-((w - y) ** 2) / (2 * self.width**2))

    def log_density(self, w: np.ndarray, rho: float, nbeta: float, prior_precision: float) -> np.ndarray:
        """Unnormalized log posterior at the points w (any shape)."""
        with torch.no_grad():
            losses = self.loss(torch.as_tensor(w, dtype=torch.float64), self.data())
        objective = (losses * self.sample_weights(rho)).mean(-1).numpy()
        return -nbeta * objective - 0.5 * prior_precision * np.asarray(w) ** 2

    def basins(self, rho: float, nbeta: float, prior_precision: float, axis: np.ndarray):
        """(w_U, w_V, boundary): the density's highest point left and right of the middle of the cluster gap, and
        its lowest point between them (the phase boundary), located on the nodes ``axis``."""
        log_p = self.log_density(axis, rho, nbeta, prior_precision)
        middle = 0.5 * (max(self.left) + min(self.right))
        w_u = axis[axis < middle][np.argmax(log_p[axis < middle])]
        w_v = axis[axis >= middle][np.argmax(log_p[axis >= middle])]
        between = (axis >= w_u) & (axis <= w_v)
        boundary = axis[between][np.argmin(log_p[between])]
        return float(w_u), float(w_v), float(boundary)

    def sweep_loss(self, rhos: Sequence[float], nbeta: float, prior_precision: float):
        """A loss for :func:`stagewise.sampling.sample` that samples the posteriors of several weights ρ_r at
        once: the parameter is a vector w of one coordinate per ρ_r, and the loss is separable,

            Σ_r [β_i(ρ_r)·ℓ_i(w_r) + γ·w_r²/(2nβ)],

        so the posterior of the vector is the product of the per-ρ posteriors p_ρ_r(w_r) and one batched SGLD
        run (localization 0) samples all of them. Use ``data = (self.data(), self.sweep_weights(rhos))``."""

        def loss(w: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            y, beta = batch  # (batch,), (batch, R)
            per_sample = 1.0 - torch.exp(-((w - y[:, None]) ** 2) / (2 * self.width**2))
            return (beta * per_sample).sum(-1) + prior_precision * (w**2).sum() / (2 * nbeta)

        return loss

    def sweep_weights(self, rhos: Sequence[float]) -> torch.Tensor:
        """β_i(ρ_r), shape (n, R)."""
        return torch.stack([self.sample_weights(r) for r in rhos], dim=1)

    def sweep_observable(self, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Observable for :meth:`sweep_loss`: per-sample losses ℓ_i(w_r) and the positions w_r, shape
        (n + 1, R) (the last row is w), so that every draw can be assigned to the basin it is in."""
        losses = 1.0 - torch.exp(-((w - y[:, None]) ** 2) / (2 * self.width**2))
        return torch.cat([losses, w[None, :]], dim=0)

    def exact(self, rho: float, nbeta: float, prior_precision: float, half_width: float = 6.0,
              size: int = 6001) -> PhaseDecomposition:
        """Exact (quadrature) total, within- and between-phase covariances of the losses, phases split at the
        density minimum between the basins. ``total`` is integrated directly, so ``identity_error`` is the
        rounding error of the identity."""
        axis, quad = uniform_axis(half_width, size)
        log_p = self.log_density(axis, rho, nbeta, prior_precision)
        _, _, boundary = self.basins(rho, nbeta, prior_precision, axis)
        with torch.no_grad():
            losses = self.loss(torch.from_numpy(axis), self.data()).numpy()
        probs = quad * np.exp(log_p - log_p.max())
        return decompose(losses, (axis > boundary).astype(int), probs, num_phases=2)


# ----------------------------------------------------------------------------------------------------------
# The one-mode deep linear network


@dataclass(frozen=True)
class ScalarLinearNetwork:
    """f(x) = b·a·x with two scalar parameters (a, b): the deep linear network of chapters 3–4 cut down to one
    mode. Loss ℓ_i = ½(y_i − b·a·x_i)². The product u = a·b is what is learned; gradient descent from a small
    initialization sits on the plateau u ≈ 0 ("mode not learned"), then rises quickly to u ≈ s ("learned").

    x, y: the training data (n,). Phases of the local posterior: U = {u < threshold·s}, V = {u ≥ threshold·s},
    with s the least-squares slope Σxy/Σx².
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or len(self.x) < 1:
            raise ValueError("x and y need the same, nonzero length")

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.x, dtype=torch.float64), torch.tensor(self.y, dtype=torch.float64)

    @property
    def slope(self) -> float:
        x, y = np.asarray(self.x), np.asarray(self.y)
        return float(x @ y / (x @ x))

    def loss(self, params: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Per-sample losses; params (..., 2) = (a, b); returns (..., n)."""
        x, y = batch
        u = (params[..., 0] * params[..., 1])[..., None]
        return 0.5 * (y - u * x) ** 2

    def train(self, init: Sequence[float], lr: float, steps: int) -> np.ndarray:
        """Full-batch gradient descent on the mean loss; returns the (steps + 1, 2) trajectory of (a, b)."""
        x, y = (np.asarray(v, dtype=np.float64) for v in (self.x, self.y))
        sxx, sxy, n = x @ x, x @ y, len(x)
        path = np.empty((steps + 1, 2))
        path[0] = init
        a, b = init
        for t in range(steps):
            residual = (sxy - a * b * sxx) / n  # −∂L/∂u
            a, b = a + lr * residual * b, b + lr * residual * a
            path[t + 1] = a, b
        return path

    def local_decomposition(self, center: Sequence[float], nbeta: float, localization: float,
                            half_width: float = 3.0, size: int = 401, threshold: float = 0.5):
        """Exact decomposition, by 2-D quadrature, for the local posterior
        p(a, b) ∝ exp(−nβ·L_n(a, b) − (γ/2)·‖(a, b) − center‖²), phases split at u = threshold·s.
        Returns the :class:`PhaseDecomposition` (phase 0 = not learned)."""
        axis, quad = uniform_axis(half_width, size)
        A, B = np.meshgrid(axis + center[0], axis + center[1], indexing="ij")
        points = torch.from_numpy(np.stack([A, B], -1))
        with torch.no_grad():
            losses = self.loss(points, self.data()).numpy().reshape(-1, len(self.x))
        log_p = (-nbeta * losses.mean(-1)
                 - 0.5 * localization * ((A - center[0]) ** 2 + (B - center[1]) ** 2).reshape(-1))
        probs = np.outer(quad, quad).reshape(-1) * np.exp(log_p - log_p.max())
        labels = ((A * B).reshape(-1) >= threshold * self.slope).astype(int)
        return decompose(losses, labels, probs, num_phases=2)
