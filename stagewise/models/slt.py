"""Known-answer models of singular learning theory (chapter 1): 2-D potentials, exact quadrature, reduced-rank
regression.

Potentials are written on ``w[..., i]`` so that one function serves the sampler (a single parameter vector,
mapped over chains) and the quadrature (a whole grid of points at once). The quadrature gives exact
finite-nβ answers to compare sampled estimates with:

    Z(nβ) = ∫ exp(−nβ·K(w)) φ(w) dw,   F(nβ) = −log Z(nβ),   E[nβ·K] = −nβ·d/dnβ log Z,

where φ is a Gaussian of precision γ centred at 0 (the localization term of the sampler, so that sampled
and exact answers refer to the same distribution). As nβ → ∞, F(nβ) ≈ λ·log nβ and E[nβ K] → λ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import Interval, check_fields
from .quadrature import Grid2D, make_grid, refined_axis

__all__ = [
    "Potential",
    "normal_crossing",
    "sum_of_squares",
    "two_minima",
    "Grid2D",
    "refined_axis",
    "make_grid",
    "exact_posterior",
    "posterior_density",
    "ReducedRankRegression",
]

Potential = Callable[[torch.Tensor], torch.Tensor]


def normal_crossing(exponents: Sequence[int]) -> Potential:
    """K(w) = Π_i w_i^(2 k_i) (λ = min 1/(2 k_i)); evaluated on the last axis of w."""
    powers = [2 * int(k) for k in exponents]

    def potential(w: torch.Tensor, batch: object = None) -> torch.Tensor:
        out = torch.ones_like(w[..., 0])
        for i, p in enumerate(powers):
            if p:
                out = out * w[..., i] ** p
        return out

    return potential


def sum_of_squares(dim: int) -> Potential:
    """The regular potential K(w) = Σ_i w_i² (λ = d/2)."""

    def potential(w: torch.Tensor, batch: object = None) -> torch.Tensor:
        return (w[..., :dim] ** 2).sum(-1)

    return potential


def two_minima(center: float = 1.0) -> Potential:
    """K(w) = ‖w − c‖²·(w₁ + c)²·(w₂ + c)⁴ / (2c)⁶ with c = (center, center): zero loss on a regular point at
    (c, c) (locally λ = 1, with K ≈ ‖w − c‖² there) and on the singular cross through (−c, −c) (locally
    λ = 1/4 at its centre)."""
    scale = (2 * center) ** 6

    def potential(w: torch.Tensor, batch: object = None) -> torch.Tensor:
        regular = (w[..., 0] - center) ** 2 + (w[..., 1] - center) ** 2
        singular = (w[..., 0] + center) ** 2 * (w[..., 1] + center) ** 4
        return regular * singular / scale

    return potential


# ----------------------------------------------------------------------------------------------------------
# Exact answers by quadrature on a 2-D grid refined around the singularities (see .quadrature)


def exact_posterior(potential: Potential, nbeta: float, localization: float, grid: Grid2D):
    """Exact free energy F = −log Z and E[nβ·K] under p(w) ∝ exp(−nβ K(w) − (γ/2)‖w‖²)·(γ/2π)^(d/2).

    Returns (free_energy, expected_nbeta_loss). Uses log-sum-exp scaling so large nβ does not underflow.
    """
    with torch.no_grad():
        k = potential(grid.points()).numpy()
    X, Y = np.meshgrid(grid.x, grid.y, indexing="ij")
    log_prior = -0.5 * localization * (X**2 + Y**2) + np.log(localization / (2 * np.pi))
    log_f = -nbeta * k + log_prior
    shift = log_f.max()
    f = np.exp(log_f - shift)
    z = grid.integrate(f)
    free_energy = -(np.log(z) + shift)
    expected = grid.integrate(nbeta * k * f) / z
    return float(free_energy), float(expected)


def posterior_density(potential: Potential, nbeta: float, localization: float, x: np.ndarray, y: np.ndarray):
    """Normalized posterior density on a uniform (x, y) grid, shape (len(y), len(x)) for ``imshow``/``contour``."""
    X, Y = np.meshgrid(x, y, indexing="xy")
    with torch.no_grad():
        k = potential(torch.from_numpy(np.stack([X, Y], axis=-1))).numpy()
    log_f = -nbeta * k - 0.5 * localization * (X**2 + Y**2)
    f = np.exp(log_f - log_f.max())
    return f / (f.sum() * (x[1] - x[0]) * (y[1] - y[0]))


# ----------------------------------------------------------------------------------------------------------
# Reduced-rank regression


@dataclass(frozen=True)
class ReducedRankRegression:
    """y = B·A·x with A ∈ R^{H×M}, B ∈ R^{N×H}; a noiseless teacher of rank 0 (y = 0), so w* = 0 is a true
    minimum of L_n(w) = (1/n)·Σ_i ½‖y_i − B A x_i‖² and λ is given by :func:`stagewise.llc.rrr_llc`.

    Inputs x_i ~ N(0, I_M); ``num_samples`` of them, drawn with ``seed``.
    """

    inputs: int
    hidden: int
    outputs: int
    num_samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        count = Interval(ge=1, integer=True)
        check_fields(self, {"inputs": count, "hidden": count, "outputs": count, "num_samples": count})

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.num_samples, self.inputs, generator=g)
        return x, torch.zeros(self.num_samples, self.outputs)

    def init_params(self) -> dict[str, torch.Tensor]:
        """The checkpoint w* = 0 (the most singular point of the set of true parameters)."""
        return {"A": torch.zeros(self.hidden, self.inputs), "B": torch.zeros(self.outputs, self.hidden)}

    @property
    def num_params(self) -> int:
        return self.hidden * (self.inputs + self.outputs)

    @staticmethod
    def loss(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Per-sample squared error ½‖y − B A x‖², shape (batch,)."""
        x, y = batch
        prediction = x @ params["A"].T @ params["B"].T
        return 0.5 * ((prediction - y) ** 2).sum(-1)
