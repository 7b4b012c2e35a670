"""Figures of an :func:`~stagewise.attribute.influence` result.

- :func:`trajectory_figure`: the largest (i, j) BIF entries against the training step, and the LLC (the run's
  own ``influence.png``, written by :mod:`stagewise.attribute.report`).
- :func:`class_influence_figure`: a class × class (or group × group) influence table across checkpoints, one
  panel per influenced class j, every class i's BIF on it against the training step with its ±2 s.e. band.

Sign as everywhere in the package: the BIF is −Cov(ℓ_i, ℓ_j), negative when i helps j.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from stagewise import plotting

__all__ = ["class_influence_figure", "trajectory_figure"]

_COLUMNS = ("step", "i", "j", "bif", "stderr")


def class_influence_figure(table: pd.DataFrame, *, k: float = 2.0) -> plt.Figure:
    """One panel per influenced class ``j`` (in the order of first appearance), each with one line per
    influencing class ``i``: its BIF against the training step, with a ±``k``·stderr band (none where the
    standard error is missing). ``table``: an :class:`~stagewise.attribute.Attribution`'s long table, with
    columns step, i, j, bif, stderr (e.g. from ``influence(..., token_classes=...)``)."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: a DataFrame with columns {list(_COLUMNS)}, got {type(table).__name__}")
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table: no column {missing}; pass the .table of an influence(...) result")
    if table.empty:
        raise ValueError("table: no rows; pass the .table of an influence(...) result")
    if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
        raise ValueError(f"k = {k!r}: the band's half-width in standard errors, a positive number")
    targets = list(dict.fromkeys(table["j"]))
    sources = list(dict.fromkeys(table["i"]))
    palette = plotting.sns.color_palette("deep", max(len(sources), 1))
    fig, axes = plt.subplots(1, len(targets), figsize=(plotting.COLUMN_WIDTH, 3.4), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, j in zip(axes[0], targets):
        for color, i in zip(palette, sources):
            rows = table[(table["i"] == i) & (table["j"] == j)].sort_values("step")
            if rows.empty:
                continue
            steps, value = rows["step"].to_numpy(float), rows["bif"].to_numpy(float)
            band = k * np.nan_to_num(rows["stderr"].to_numpy(float))
            ax.fill_between(steps, value - band, value + band, color=color, alpha=0.2, lw=0)
            ax.plot(steps, value, "o-", color=color, ms=4, label=f"{i} → {j}")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set(title=f"influence on {j}", xlabel="training step", ylabel="BIF = −Cov  (negative: i helps j)")
        ax.legend(fontsize=8.5)
    return fig


def trajectory_figure(table: pd.DataFrame, diagnostics: pd.DataFrame, pairs: int = 6) -> plt.Figure:
    """Left: the BIF of the ``pairs`` (i, j) entries largest in size at any checkpoint, against the training
    step, with ±2 s.e. bands. Right: the LLC with ±2 s.e. bands."""
    plotting.set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(plotting.COLUMN_WIDTH, 3.2), width_ratios=(2, 1))
    size = table.assign(size=table["bif"].abs()).groupby(["i", "j"], sort=False)["size"].max()
    chosen = size.sort_values(ascending=False).index[:pairs]
    for k, (i, j) in enumerate(chosen):
        rows = table[(table["i"] == i) & (table["j"] == j)].sort_values("step")
        color = plotting.sns.color_palette("deep")[k % 10]
        left.plot(rows["step"], rows["bif"], "o-", color=color, ms=3, label=f"{i} → {j}")
        band = 2 * rows["stderr"].fillna(0)
        left.fill_between(rows["step"], rows["bif"] - band, rows["bif"] + band, color=color, alpha=0.2, lw=0)
    left.axhline(0, color="0.3", lw=0.8)
    left.set(xlabel="training step", ylabel="BIF = −Cov (negative: i helps j)")
    left.legend(fontsize=8, ncol=2 if len(chosen) > 3 else 1)
    d = diagnostics.sort_values("step")
    color = plotting.COLORS["estimate"]
    right.plot(d["step"], d["llc"], "o-", color=color, ms=3)
    band = 2 * d["llc_stderr"].fillna(0)
    right.fill_between(d["step"], d["llc"] - band, d["llc"] + band, color=color, alpha=0.2, lw=0)
    right.set(xlabel="training step", ylabel="LLC λ̂")
    fig.tight_layout()
    return fig
