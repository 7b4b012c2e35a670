"""Points and spans on a curve over checkpoints: crossings, sign changes and flips, peaks and declines, windows.

See :mod:`stagewise.curves` for the conventions (steps, values, standard errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "check_curve", "finite_curve", "first_crossing", "half_rise_step", "interpolate_at",
           "peak_and_decline", "peak_window", "rise_window", "sign_change_step", "sign_flip_step"]


# --------------------------------------------------------------------------------------------------------
# Input checks and interpolation


def check_curve(steps, values, name: str = "values", *, stderr=None, minimum: int = 2, trailing: bool = False):
    """(steps (K,), values (K,) — (K, ...) with ``trailing`` —, stderr shaped like values or zeros) as float
    arrays: the input check of every rule of :mod:`stagewise.curves`; names what is wrong."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    shape_ok = y.shape[:1] == x.shape if trailing else y.shape == x.shape
    if x.ndim != 1 or not shape_ok or len(x) < minimum:
        raise ValueError(f"steps and {name}: 1-d arrays of the same length ≥ {minimum} (got shapes {x.shape} and "
                         f"{y.shape})")
    if not np.all(np.isfinite(x)) or np.any(np.diff(x) <= 0):
        raise ValueError("steps must increase strictly and be finite")
    s = np.zeros_like(y) if stderr is None else np.asarray(stderr, dtype=float)
    if s.shape != y.shape:
        raise ValueError(f"stderr: one per checkpoint, shape {y.shape} (got {s.shape})")
    return x, y, s


def interpolate_at(x: np.ndarray, y: np.ndarray, k: int, level: float) -> float:
    """The x between points k and k + 1 at which the straight line through them takes ``level``."""
    if y[k + 1] == y[k]:
        return float(x[k])
    return float(x[k] + (level - y[k]) / (y[k + 1] - y[k]) * (x[k + 1] - x[k]))


# --------------------------------------------------------------------------------------------------------
# Crossings


def first_crossing(steps, values, target):
    """The first step at which ``values`` reach ``target`` (≥), interpolated linearly; NaN where they never do.

    ``values``: (K,) or (K, ...), every trailing entry a curve of its own; ``target``: a number or an array
    broadcastable to ``values.shape[1:]``. A curve that starts at or above its target gives steps[0]. Returns a
    float for a (K,) curve, else an array shaped ``values.shape[1:]``.
    """
    x, y, _ = check_curve(steps, values, trailing=True)
    level = np.broadcast_to(np.asarray(target, dtype=float), y.shape[1:])
    above = y >= level
    first = above.argmax(axis=0)
    lower = np.clip(first - 1, 0, None)
    take = lambda k: np.take_along_axis(y, k[None], axis=0)[0]  # noqa: E731
    y0, y1 = take(lower), take(first)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(y1 > y0, (level - y0) / (y1 - y0), 0.0)
    out = np.where(first > 0, x[lower] + fraction * (x[first] - x[lower]), x[0])
    out = np.where(above.any(axis=0), out, np.nan)
    return float(out) if out.ndim == 0 else out


def half_rise_step(steps, values) -> float | None:
    """The step at which ``values`` (K,) first reach half-way from their plateau to their maximum; None without
    a rise.

    The plateau is the minimum over the first quarter of the checkpoints (where a curve that rises later still
    sits); the crossing is :func:`first_crossing` of that half-way level.
    """
    x, y, _ = check_curve(steps, values)
    base = y[: max(1, len(y) // 4)].min()
    top = y.max()
    if not top > base:
        return None
    return first_crossing(x, y, base + (top - base) / 2)


# --------------------------------------------------------------------------------------------------------
# Signs


def sign_change_step(steps, values, stderr=None, z: float = 2.0) -> float | None:
    """The first training step at which ``values`` (K,) change sign (either way), or None when they never do.

    Only checkpoints with |value| > z · stderr have a sign (stderr None: every nonzero value has one). The change
    is between the first two consecutive signed checkpoints of opposite signs; the step returned is the zero of the
    straight line between the last checkpoint of that stretch not yet on the new side and the next one (linearly
    interpolated, so it lies between checkpoints; the checkpoint itself when its value is exactly 0).
    """
    x, y, s = check_curve(steps, values, stderr=stderr)
    signed = np.flatnonzero((np.abs(y) > z * s) & (y != 0))
    for a, b in zip(signed[:-1], signed[1:]):
        if np.sign(y[a]) != np.sign(y[b]):
            k = b - 1
            while np.sign(y[k]) == np.sign(y[b]):  # back to the last checkpoint not on the new side (k ≥ a)
                k -= 1
            if y[k] == 0:
                return float(x[k])
            return float(x[k] + y[k] / (y[k] - y[k + 1]) * (x[k + 1] - x[k]))
    return None


def sign_flip_step(steps, values, stderr=None, z: float = 2.0) -> float | None:
    """The step at which ``values`` (K,) turn from their early negative phase to positive, or None without such
    a flip: the BIF's "i helps j, then harms j" at a transition.

    The flip is the first upward zero crossing after the curve's lowest point before its positive peak
    (interpolated linearly). None when the curve is never negative before its peak, or never positive; with
    ``stderr``, when that lowest point is not below −z·stderr or that peak not above z·stderr. (Unlike
    :func:`sign_change_step`, early wiggles around zero before the negative phase do not count.)
    """
    x, y, s = check_curve(steps, values, stderr=stderr)
    top = int(np.argmax(y))
    low = int(np.argmin(y[: top + 1]))
    if y[low] >= 0 or y[top] <= 0 or -y[low] <= z * s[low] or y[top] <= z * s[top]:
        return None
    k = low + int(np.argmax(y[low: top + 1] > 0))  # the first positive checkpoint after the minimum
    return interpolate_at(x, y, k - 1, 0.0)


# --------------------------------------------------------------------------------------------------------
# Peaks


def peak_and_decline(steps, values, stderr=None, since: float | None = None, z: float = 2.0) -> dict:
    """Where ``values`` (K,) peak (among the checkpoints at steps ≥ ``since``) and how far they fall after.

    Returns peak_step, peak, last (the value at the last checkpoint), decline = (peak − last) / |peak| (0 when
    the peak is the last checkpoint) and declined: whether peak − last exceeds z standard errors of the difference
    (√(stderr_peak² + stderr_last²); with stderr None, whether it is positive).
    """
    x, y, s = check_curve(steps, values, stderr=stderr)
    keep = np.flatnonzero(x >= (x[0] if since is None else since))
    if not len(keep):
        raise ValueError(f"since = {since} (accepted: at most the last step {x[-1]:g})")
    k = int(keep[np.argmax(y[keep])])
    drop = y[k] - y[-1]
    return {"peak_step": int(x[k]) if float(x[k]).is_integer() else float(x[k]), "peak": float(y[k]),
            "last": float(y[-1]), "decline": float(drop / abs(y[k])) if y[k] != 0 else 0.0,
            "declined": bool(drop > z * np.hypot(s[k], s[-1]))}


# --------------------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Window:
    """Steps [start, end) of training (start < end, both ≥ 0), in optimizer steps."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.end, int) and 0 <= self.start < self.end):
            raise ValueError(f"window ({self.start!r}, {self.end!r}) (accepted: integers 0 ≤ start < end)")

    @property
    def length(self) -> int:
        return self.end - self.start

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end}


def finite_curve(steps, values, name: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """:func:`check_curve` for rules that need K ≥ 3 finite values: (steps, values)."""
    x, y, _ = check_curve(steps, values, name, minimum=3)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name}: every value finite (got {int((~np.isfinite(y)).sum())} NaN or infinite)")
    return x, y


def peak_window(steps, values, fraction: float = 0.5) -> Window:
    """The window around the maximum of ``values`` (K,) where they are ≥ floor + fraction·(peak − floor).

    The floor is the smaller of the curve's minima before and after its peak (for a bump on a flat baseline: the
    baseline). Edges are interpolated linearly between checkpoints, then widened to whole steps.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction = {fraction!r} (accepted: a number in (0, 1))")
    x, y = finite_curve(steps, values)
    k = int(np.argmax(y))
    floor = min(y[: k + 1].min(), y[k:].min())
    if not y[k] > floor:
        raise ValueError("values: the curve is flat, it has no peak")
    level = floor + fraction * (y[k] - floor)
    below_left = np.flatnonzero(y[:k] < level)
    start = interpolate_at(x, y, int(below_left[-1]), level) if len(below_left) else x[0]
    below_right = np.flatnonzero(y[k:] < level)
    end = interpolate_at(x, y, k + int(below_right[0]) - 1, level) if len(below_right) else x[-1]
    return Window(int(math.floor(start)), max(int(math.ceil(end)), int(math.floor(start)) + 1))


def rise_window(steps, values, low: float = 0.1, high: float = 0.9) -> Window:
    """The steps over which ``values`` (K,) first rise from ``low`` to ``high`` of the way from plateau to maximum.

    The plateau is the minimum of the curve before its maximum. Both crossings are the first after the plateau's
    lowest point (:func:`first_crossing` of the curve from there).
    """
    if not 0 < low < high < 1:
        raise ValueError(f"low = {low!r}, high = {high!r} (accepted: 0 < low < high < 1)")
    x, y = finite_curve(steps, values)
    top = int(np.argmax(y))
    bottom = int(np.argmin(y[: top + 1]))
    if not y[top] > y[bottom]:
        raise ValueError("values: the curve never rises")
    edges = [first_crossing(x[bottom:], y[bottom:], y[bottom] + f * (y[top] - y[bottom])) for f in (low, high)]
    start = int(math.floor(edges[0]))
    return Window(start, max(int(math.ceil(edges[1])), start + 1))


