"""Figures of an :func:`~stagewise.attribute.influence` result, for a page that reads one (the run's own
``influence.png`` is drawn by :mod:`stagewise.attribute.report`).

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

__all__ = ["class_influence_figure"]

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
