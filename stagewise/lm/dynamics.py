"""Reading an influence curve across checkpoints: where it changes sign, where it peaks and how far it falls after.

Both work on one class pair's BIF at the sampled checkpoints (``ClassInfluence.pair`` and ``pair_stderr``) and
count only what stands out of the sampler's noise: a checkpoint whose value lies within ``z`` standard errors of
zero has no sign, and a decline smaller than ``z`` standard errors of the difference is no decline.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["peak_and_decline", "sign_flip_step"]


def _arrays(steps, values, stderr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    s = np.zeros_like(y) if stderr is None else np.asarray(stderr, dtype=float)
    if not (x.ndim == 1 and len(x) >= 2 and y.shape == x.shape and s.shape == x.shape):
        raise ValueError(f"steps, values and stderr need one shape (K,) with K ≥ 2 (got {x.shape}, {y.shape}, "
                         f"{s.shape})")
    if not (np.diff(x) > 0).all():
        raise ValueError("steps must increase")
    return x, y, s


def sign_flip_step(steps: Sequence[float], values: Sequence[float], stderr: Sequence[float] | None = None,
                   z: float = 2.0) -> float | None:
    """The first training step at which ``values`` change sign, or None when they never do.

    Only checkpoints with |value| > z · stderr have a sign (stderr None: every nonzero value has one). The flip is
    between the first two consecutive signed checkpoints of opposite signs; the step returned is the zero of the
    straight line between the last checkpoint of that stretch not yet on the new side and the next one (linearly
    interpolated, so it lies between checkpoints; the checkpoint itself when its value is exactly 0).
    """
    x, y, s = _arrays(steps, values, stderr)
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


def peak_and_decline(steps: Sequence[float], values: Sequence[float], stderr: Sequence[float] | None = None,
                     since: float | None = None, z: float = 2.0) -> dict:
    """Where ``values`` peak (among the checkpoints at steps ≥ ``since``) and how far they fall after.

    Returns peak_step, peak, last (the value at the last checkpoint), decline = (peak − last) / |peak| (0 when
    the peak is the last checkpoint) and declined: whether peak − last exceeds z standard errors of the difference
    (√(stderr_peak² + stderr_last²); with stderr None, whether it is positive).
    """
    x, y, s = _arrays(steps, values, stderr)
    keep = np.flatnonzero(x >= (x[0] if since is None else since))
    if not len(keep):
        raise ValueError(f"since = {since} (accepted: at most the last step {x[-1]:g})")
    k = int(keep[np.argmax(y[keep])])
    drop = y[k] - y[-1]
    return {"peak_step": int(x[k]) if float(x[k]).is_integer() else float(x[k]), "peak": float(y[k]),
            "last": float(y[-1]), "decline": float(drop / abs(y[k])) if y[k] != 0 else 0.0,
            "declined": bool(drop > z * np.hypot(s[k], s[-1]))}
