"""Transitions read from curves over checkpoints (chapter 8): fastest change, influence peaks, change points,
and how detections match known transitions. See :mod:`stagewise.curves` for the rules in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .points import finite_curve

__all__ = ["DIRECTIONS", "LOSS_RULE", "change_points", "detect_signals", "detection_summary", "influence_activity",
           "loss_transitions", "match_transitions", "peak_transitions", "rate_transitions", "robust_noise",
           "smooth_curve"]


#: Which way a curve must move at a transition: "down" (a falling loss), "up" (a rising LLC) or "both".
DIRECTIONS = ("down", "up", "both")

#: The loss rule on a per-step loss: smoothed over 5 steps, peaks of −dL/dt with ≥ 2 % of the largest rate.
LOSS_RULE = {"smooth": 5.0, "min_prominence": 0.02}


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} = {value!r}: accepted values are finite numbers {'≥' if allow_zero else '>'} 0")
    return float(value)


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= value < 1:
        raise ValueError(f"{name} = {value!r}: accepted values are numbers in [0, 1)")
    return float(value)


def smooth_curve(steps, values, smooth: float) -> np.ndarray:
    """Gaussian-kernel smoothing on a (possibly uneven) grid: Σ_m w_km·y_m / Σ_m w_km, w = exp(−Δt²/2s²), (K,).

    ``smooth``: the kernel's standard deviation s, in steps (0: no smoothing).
    """
    x, y = finite_curve(steps, values)
    s = _positive("smooth", smooth, allow_zero=True)
    if s == 0:
        return y.copy()
    w = np.exp(-0.5 * ((x[:, None] - x[None, :]) / s) ** 2)
    return (w @ y) / w.sum(1)


def _vertex(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """x of the vertex of the parabola through points k − 1, k, k + 1 (k itself at an end or when flat)."""
    if k == 0 or k == len(x) - 1:
        return float(x[k])
    x0, x1, x2 = x[k - 1: k + 2]
    y0, y1, y2 = y[k - 1: k + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    if a >= 0:  # not a maximum of the parabola: keep the grid point
        return float(x1)
    return float(np.clip(-b / (2 * a), x0, x2))


def _peaks(x: np.ndarray, y: np.ndarray, min_prominence: float) -> np.ndarray:
    """Interior peaks of y above zero with prominence ≥ ``min_prominence`` × max(y), at their parabola vertices.

    The first and last checkpoints are never peaks: a change that starts or ends outside the grid cannot be
    located on it.
    """
    from scipy.signal import find_peaks

    top = float(y.max())
    if top <= 0:
        return np.empty(0)
    found, _ = find_peaks(y, prominence=max(min_prominence * top, np.finfo(float).tiny))
    found = found[y[found] > 0]
    return np.array([_vertex(x, y, int(k)) for k in found])


def rate_transitions(steps, values, *, smooth: float = 0.0, direction: str = "down",
                     min_prominence: float = 0.05) -> np.ndarray:
    """Steps where ``values`` (K,) changes fastest in ``direction``: peaks of the smoothed rate, (M,) ascending.

    ``smooth``: Gaussian kernel width in steps (0: none); ``direction``: "down" (peaks of −dy/dt), "up" (of
    dy/dt) or "both" (of |dy/dt|); ``min_prominence``: a peak's prominence as a fraction of the largest rate,
    in [0, 1). Located to sub-grid precision (parabola through the peak and its neighbours).
    """
    x, y = finite_curve(steps, values)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction = {direction!r}: accepted values are {', '.join(map(repr, DIRECTIONS))}")
    prominence = _fraction("min_prominence", min_prominence)
    rate = np.gradient(smooth_curve(x, y, smooth), x)
    rate = {"down": -rate, "up": rate, "both": np.abs(rate)}[direction]
    return _peaks(x, rate, prominence)


def loss_transitions(loss) -> np.ndarray:
    """Steps where a per-step loss (T + 1,) (steps 0 … T) falls fastest: :func:`rate_transitions` with
    :data:`LOSS_RULE`, (M,) ascending, located to sub-step precision."""
    loss = np.asarray(loss, dtype=float)
    return rate_transitions(np.arange(len(loss)), loss, **LOSS_RULE)


def peak_transitions(steps, values, *, smooth: float = 0.0, min_prominence: float = 0.1) -> np.ndarray:
    """Steps of the prominent peaks of ``values`` (K,) itself, after smoothing (see :func:`rate_transitions`)."""
    x, y = finite_curve(steps, values)
    prominence = _fraction("min_prominence", min_prominence)
    return _peaks(x, smooth_curve(x, y, smooth), prominence)


def influence_activity(values) -> np.ndarray:
    """Root mean square of the off-diagonal entries of an influence trajectory (S, N, N) at each checkpoint, (S,)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 3 or v.shape[1] != v.shape[2] or v.shape[1] < 2:
        raise ValueError(f"values: a (checkpoint, N, N) array with N ≥ 2 (got shape {v.shape})")
    off = ~np.eye(v.shape[1], dtype=bool)
    return np.sqrt((v[:, off] ** 2).mean(1))


def robust_noise(values) -> float:
    """Noise level σ of a curve from its first differences, robust to a few jumps: median|Δy| / (0.6745·√2)."""
    y = np.asarray(values, dtype=float)
    if y.ndim != 1 or len(y) < 3:
        raise ValueError(f"values: a 1-d array of length ≥ 3 (got shape {y.shape})")
    return float(np.median(np.abs(np.diff(y))) / (0.6745 * math.sqrt(2)))


def change_points(steps, values, *, noise=None, penalty: float | None = None, min_size: int = 2) -> np.ndarray:
    """Change points of a piecewise-constant fit to a noisy curve (K,), exact optimal partitioning, (M,) ascending.

    Minimises Σ_k ((y_k − m(k))/σ_k)² + penalty·(segments − 1), m the weighted mean of each segment.
    ``noise``: σ_k, a scalar or (K,) standard errors (> 0), or None for :func:`robust_noise` of the curve;
    ``penalty``: cost of a change, default 3·ln K; ``min_size``: fewest checkpoints in a segment (≥ 1). Each
    change is reported halfway between the last step of a segment and the first of the next.
    """
    x, y = finite_curve(steps, values)
    k = len(x)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or not 1 <= min_size <= k:
        raise ValueError(f"min_size = {min_size!r}: accepted values are integers in 1 … {k}")
    if noise is None:
        sigma = np.full(k, robust_noise(y))
    else:
        sigma = np.asarray(noise, dtype=float)
        if sigma.shape not in ((), (k,)):
            raise ValueError(f"noise: a number or one standard error per checkpoint, shape ({k},) "
                             f"(got shape {sigma.shape})")
        sigma = np.broadcast_to(sigma, (k,)).copy()
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        if noise is None:  # a curve flat to numerical precision: no noise to measure changes against
            sigma = np.full(k, max(float(np.abs(y).max()), 1.0) * 1e-12)
        else:
            raise ValueError("noise: every standard error finite and > 0")
    beta = 3.0 * math.log(k) if penalty is None else _positive("penalty", penalty, allow_zero=True)
    w = 1.0 / sigma**2
    # Prefix sums give the cost of any segment [a, b) in O(1): Σw·y² − (Σw·y)²/Σw.
    cw, cwy, cwy2 = (np.concatenate([[0.0], np.cumsum(a)]) for a in (w, w * y, w * y * y))

    def cost(a: int, b: int) -> float:
        sw, swy = cw[b] - cw[a], cwy[b] - cwy[a]
        return float(cwy2[b] - cwy2[a] - swy * swy / sw)

    best = np.full(k + 1, np.inf)
    best[0] = -beta  # the first segment pays no change penalty
    start = np.zeros(k + 1, dtype=int)
    for b in range(min_size, k + 1):
        for a in range(0, b - min_size + 1):
            if a != 0 and a < min_size:
                continue
            value = best[a] + beta + cost(a, b)
            if value < best[b]:
                best[b], start[b] = value, a
    bounds, b = [], k
    while b > 0:
        a = start[b]
        if a > 0:
            bounds.append(a)
        b = a
    return np.array([(x[a - 1] + x[a]) / 2 for a in sorted(bounds)])


def match_transitions(detected: Sequence[float], known: Sequence[float], tolerance: float) -> list[float | None]:
    """For each known transition, the signed error (detected − known, steps) of its match, or None.

    Matching is one to one and only within ``tolerance`` steps: as many known transitions as possible are
    matched, and among such matchings the one with the smallest total |error| is taken (an assignment problem,
    solved exactly). Detections left over are false positives (len(detected) − number matched).
    """
    from scipy.optimize import linear_sum_assignment

    tol = _positive("tolerance", tolerance)
    d = np.asarray([float(v) for v in detected])
    q = np.asarray([float(v) for v in known])
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(q))):
        raise ValueError("detected and known: finite steps")
    errors: list[float | None] = [None] * len(q)
    if len(d) == 0 or len(q) == 0:
        return errors
    gap = np.abs(d[None, :] - q[:, None])  # (known, detected)
    # A pair beyond the tolerance costs more than all allowed pairs together, so the assignment first matches as
    # many as it can and only then minimises the total error.
    too_far = (min(len(d), len(q)) + 1) * tol
    rows, cols = linear_sum_assignment(np.where(gap <= tol, gap, too_far))
    for i, j in zip(rows, cols):
        if gap[i, j] <= tol:
            errors[i] = float(d[j] - q[i])
    return errors




def detect_signals(loss, *, bif=None, llc=None, digits: int = 1) -> dict[str, list[float]]:
    """Every rule of chapter 8 on one run's records: {signal: detected steps, ascending, rounded to ``digits``}.

    loss: the training loss at every step 0 … T, (T + 1,) (nats): "loss", :func:`rate_transitions` with
    :data:`LOSS_RULE`. bif: optional (steps (S,), values (S, N, N)), a BIF trajectory: "bif", the peaks of its
    :func:`influence_activity` (10 % prominence). llc: optional (steps (K,), estimates (K,)), the LLC curve:
    "llc", where it rises fastest (Gaussian smoothing of half the median checkpoint spacing, 5 % prominence),
    and "llc_change_points", :func:`change_points` of a piecewise-constant fit (noise from the curve). The keys
    come in this order: loss, bif, llc, llc_change_points (each only when its record is given).
    """
    loss = np.asarray(loss, dtype=float)
    found = {"loss": loss_transitions(loss)}
    if bif is not None:
        steps, values = bif
        found["bif"] = peak_transitions(steps, influence_activity(values))
    if llc is not None:
        steps, estimates = (np.asarray(a, dtype=float) for a in llc)
        spacing = float(np.median(np.diff(steps))) if len(steps) > 1 else 0.0
        found["llc"] = rate_transitions(steps, estimates, direction="up", smooth=spacing / 2)
        found["llc_change_points"] = change_points(steps, estimates)
    return {k: [round(float(v), digits) for v in f] for k, f in found.items()}


def detection_summary(detected: Sequence[float], known: Sequence[float], tolerance: float) -> dict:
    """How well ``detected`` steps recover ``known`` ones, matched by :func:`match_transitions` within ``tolerance``.

    Returns {"per_stage": the signed error of each known transition (steps, None: unmatched), "matched": how
    many known transitions were matched, "max_abs": the largest |error| among them (None when none is),
    "unmatched_detections": detections left without a known transition (false positives)}.
    """
    errors = match_transitions(detected, known, tolerance)
    matched = [e for e in errors if e is not None]
    return {"per_stage": errors, "matched": len(matched),
            "max_abs": max((abs(e) for e in matched), default=None),
            "unmatched_detections": len(detected) - len(matched)}
