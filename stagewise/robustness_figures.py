"""Figures of the robustness page: the maps of a study's metric over a grid of two sampler settings, one
function per figure, each returning a matplotlib ``Figure``.

- :func:`loo_map_figure`: chapter 4's median BIF–LOO correlation over localization γ × step size ε.
- :func:`llc_map_figure`: chapter 1's relative LLC error over inverse temperature nβ × step size ε.

Each is two heat maps (:func:`stagewise.plotting.heatmap`), one above the other for phone width: the mean
over seeds and its range (max − min) over seeds, the book's own setting outlined, a cell where a run failed
grey. ``cells`` has one row per setting with the columns of the two settings, ``mean`` and ``spread`` (NaN
where a run failed, or where one seed leaves no spread); the page computes it from the study's table, these
functions only draw it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from stagewise import plotting

__all__ = ["llc_map_figure", "loo_map_figure"]


def _maps(cells: pd.DataFrame, y: str, marked: tuple[float, float], *, ylabel: str, mean_label: str,
          spread_label: str, title: str, cmap: str, vmax: float | None) -> plt.Figure:
    missing = [name for name in ("step_size", y, "mean", "spread") if name not in cells.columns]
    if missing:
        raise ValueError(f"cells: no column {missing}; one row per setting with step_size, {y}, mean, spread")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.6), layout="constrained")
    plotting.heatmap(cells, "step_size", y, "mean", top, marked=marked, label=mean_label, cmap=cmap,
                     vmin=0, vmax=vmax, nan_text="failed", xlabel="step size ε", ylabel=ylabel)
    plotting.heatmap(cells, "step_size", y, "spread", bottom, marked=marked, label=spread_label,
                     cmap="Greys", vmin=0, vmax=float(np.nanmax([*cells["spread"], 0.01])),
                     xlabel="step size ε", ylabel=ylabel)
    top.set_title(title, fontsize=10.5)
    bottom.set_title("Spread: max − min over seeds", fontsize=10.5)
    return fig


def loo_map_figure(cells: pd.DataFrame, marked: tuple[float, float], seeds: int, limit: float) -> plt.Figure:
    """Chapter 4's map over (step_size, localization): ``marked`` = (ε, γ) of the chapter, ``seeds`` per cell,
    ``limit`` the noise-free γ → ∞ limit (the gradient alignment's correlation), which tops the colour scale."""
    highest = float(np.nanmax([limit, *cells["mean"]])) if len(cells) else None
    return _maps(cells, "localization", marked, ylabel="localization γ",
                 mean_label="median BIF–LOO correlation", spread_label="range over seeds (correlation)",
                 title=f"Mean over {seeds} seed(s)\n(γ → ∞ limit {plotting.format_number(limit, 2)})",
                 cmap="viridis", vmax=highest)


def llc_map_figure(cells: pd.DataFrame, marked: tuple[float, float], seeds: int) -> plt.Figure:
    """Chapter 1's map over (step_size, nbeta): ``marked`` = (ε, nβ) of the chapter, ``seeds`` per cell; the
    metric is the relative error |λ̂ − λ|/λ of the normal crossing's LLC (λ = 1/4), low is good."""
    return _maps(cells, "nbeta", marked, ylabel="inverse temperature nβ",
                 mean_label="relative error |λ̂ − λ| / λ", spread_label="range over seeds (relative error)",
                 title=f"Mean over {seeds} seed(s), λ = 1/4", cmap="viridis_r", vmax=None)
