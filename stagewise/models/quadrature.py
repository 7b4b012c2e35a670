"""Trapezoid quadrature for the exact answers of the known-answer models: 1-D axes and 2-D tensor grids.

Nodes are float64 numpy arrays; weights are the trapezoid rule's on the same nodes, so Σ_k w_k·f(x_k)
approximates ∫ f over [x_0, x_{−1}].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["trapezoid_weights", "uniform_axis", "refined_axis", "Grid2D", "make_grid"]


def trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Trapezoid weights of sorted 1-D nodes (n,): half of each neighbouring gap, shape (n,)."""
    nodes = np.asarray(nodes, dtype=np.float64)
    if nodes.ndim != 1 or nodes.size < 2 or not (np.diff(nodes) > 0).all():
        raise ValueError(f"nodes must be ≥ 2 strictly increasing numbers in one dimension; got shape {nodes.shape}")
    w = np.zeros_like(nodes)
    dx = np.diff(nodes)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def uniform_axis(half_width: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes on [−half_width, half_width] and trapezoid weights. Smooth integrands with Gaussian tails: the
    trapezoid rule converges faster than any power of the spacing."""
    if not half_width > 0:
        raise ValueError(f"half_width = {half_width!r}: accepted values are numbers > 0")
    if not (isinstance(size, (int, np.integer)) and size >= 2):
        raise ValueError(f"size = {size!r}: accepted values are integers ≥ 2")
    x = np.linspace(-half_width, half_width, size)
    return x, trapezoid_weights(x)


def refined_axis(half_width: float, focus: Sequence[float] = (0.0,), finest: float = 1e-7, size: int = 500):
    """1-D nodes on [−half_width, half_width], log-spaced towards each point in ``focus`` (down to ``finest``),
    with trapezoid weights. Singular potentials concentrate mass at scales nβ^(−1/2k), far below a uniform grid."""
    nodes = [np.linspace(-half_width, half_width, size)]
    for c in focus:
        offsets = np.geomspace(finest, 2 * half_width, size)
        nodes += [c - offsets, c + offsets, np.array([c])]
    x = np.unique(np.clip(np.concatenate(nodes), -half_width, half_width))
    return x, trapezoid_weights(x)


@dataclass(frozen=True)
class Grid2D:
    """A tensor-product quadrature grid: nodes (x, y) and trapezoid weights (wx, wy) per axis."""

    x: np.ndarray
    y: np.ndarray
    wx: np.ndarray
    wy: np.ndarray

    def points(self) -> torch.Tensor:
        """All nodes as a float64 tensor of shape (len(x), len(y), 2)."""
        X, Y = np.meshgrid(self.x, self.y, indexing="ij")
        return torch.from_numpy(np.stack([X, Y], axis=-1))

    def integrate(self, values: np.ndarray) -> float:
        """Σ_ab wx_a·values_ab·wy_b for values (len(x), len(y)) on the nodes."""
        return float(self.wx @ values @ self.wy)


def make_grid(half_width: float = 6.0, focus: Sequence[float] = (0.0,), size: int = 500) -> Grid2D:
    """The same :func:`refined_axis` on both axes."""
    x, wx = refined_axis(half_width, focus, size=size)
    return Grid2D(x, x.copy(), wx, wx.copy())
