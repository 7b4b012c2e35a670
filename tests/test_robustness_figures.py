"""Smoke tests of the robustness page's maps (stagewise.robustness_figures): each returns a Figure of two
labelled heat maps, the book's setting outlined, a failed cell shown as such."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from stagewise import robustness_figures


def _cells(y: str, ys):
    rows = [{"step_size": eps, y: v, "mean": 0.1 * k, "spread": 0.01 * k}
            for k, (eps, v) in enumerate((eps, v) for eps in (1e-4, 3e-4) for v in ys)]
    cells = pd.DataFrame(rows)
    cells.loc[0, ["mean", "spread"]] = np.nan  # a failed setting
    return cells


def _check(fig):
    assert isinstance(fig, plt.Figure)
    maps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(maps) == 2
    for ax in maps:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip() and ax.get_title().strip()
        assert "failed" in [text.get_text() for text in ax.texts] or ax is maps[1]
        assert ax.patches, "the book's setting is outlined"
    plt.close(fig)


def test_loo_map():
    fig = robustness_figures.loo_map_figure(_cells("localization", (100.0, 1000.0)), (3e-4, 1000.0), 2, 0.65)
    assert "0.65" in fig.axes[0].get_title()
    _check(fig)


def test_llc_map():
    _check(robustness_figures.llc_map_figure(_cells("nbeta", (1e3, 1e4)), (1e-4, 1e4), 1))


def test_bad_cells_are_named():
    with pytest.raises(ValueError, match="spread"):
        robustness_figures.llc_map_figure(pd.DataFrame({"step_size": [1e-4], "nbeta": [1e4], "mean": [0.1]}),
                                          (1e-4, 1e4), 1)
