"""Known-answer tests of the trapezoid axes and grids (stagewise/models/quadrature.py)."""

import math

import numpy as np
import pytest

from stagewise.models.quadrature import make_grid, refined_axis, trapezoid_weights, uniform_axis


def test_trapezoid_is_exact_for_linear_functions_on_uneven_nodes():
    x = np.array([-1.0, -0.3, 0.1, 0.15, 2.0])
    w = trapezoid_weights(x)
    assert w.sum() == pytest.approx(3.0, abs=1e-15)
    assert w @ (2 * x + 1) == pytest.approx((2.0**2 + 2.0) - (1.0 - 1.0), abs=1e-14)  # ∫ 2x + 1 = x² + x


def test_uniform_axis_integrates_a_gaussian_to_rounding():
    x, w = uniform_axis(6.0, 601)
    assert x[0] == -6.0 and x[-1] == 6.0 and len(x) == 601
    assert w[0] == pytest.approx(w[1] / 2, rel=1e-12)
    # ∫ e^(−x²/2) over ±6 = √(2π)·erf(6/√2); what is left is the endpoint term h²/12·[f′] ≈ 3e-12 (measured 2.4e-12).
    assert w @ np.exp(-0.5 * x**2) == pytest.approx(math.sqrt(2 * math.pi) * math.erf(6 / math.sqrt(2)), rel=1e-11)


def test_refined_axis_resolves_a_narrow_peak():
    # ∫ exp(−x²/(2s²)) dx = s·√(2π) for s = 1e-4, far below a uniform spacing of 0.024: uniform nodes get 0
    # (500 nodes, 0 not among them) or ≈ 96× too much (501); the log-spaced nodes (ratio ≈ 1.038 between
    # neighbours) get it to 2.3e-4 (measured).
    s = 1e-4
    exact = s * math.sqrt(2 * math.pi)
    for size in (500, 501):
        x, w = uniform_axis(6.0, size)
        assert abs(w @ np.exp(-0.5 * (x / s) ** 2) / exact - 1) > 0.9
    x, w = refined_axis(6.0, focus=(0.0,))
    assert w @ np.exp(-0.5 * (x / s) ** 2) == pytest.approx(exact, rel=1e-3)
    grid = make_grid(6.0, focus=(0.0,))
    values = np.exp(-0.5 * (grid.points().numpy() ** 2).sum(-1) / s**2)
    assert grid.integrate(values) == pytest.approx(exact**2, rel=2e-3)


def test_bad_axes_name_the_parameter():
    with pytest.raises(ValueError, match="size = 1: accepted values are integers ≥ 2"):
        uniform_axis(6.0, 1)
    with pytest.raises(ValueError, match="half_width = 0.0: accepted values are numbers > 0"):
        uniform_axis(0.0, 10)
    with pytest.raises(ValueError, match="strictly increasing"):
        trapezoid_weights(np.array([0.0, 0.0, 1.0]))
