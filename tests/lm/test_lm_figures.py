"""stagewise.lm.figures: every figure of chapter 6 draws from small known inputs, with labelled axes and units,
no twin axes, horizontal class labels on the class matrices, and the values written in their cells."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from stagewise.curves import WindowMean  # noqa: E402
from stagewise.lm import figures  # noqa: E402

NAMES = ("word_start", "word_part", "word_end", "left_delimiter", "right_delimiter", "formatting", "induction")
STEPS = np.array([280, 1834, 2500, 3500, 4500, 6000, 8000, 10000, 12000])


def labelled(fig):
    """Every axes with data has both axis labels (or is a heat map whose ticks name its rows and columns)."""
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.has_data():
            continue
        assert ax.get_xlabel() or ax.get_xticklabels(), ax
        assert ax.get_ylabel() or [t.get_text() for t in ax.get_yticklabels()], ax
    return True


def test_class_matrices_have_large_cells_horizontal_labels_and_values():
    rng = np.random.default_rng(0)
    matrices = {f"moment {k}": rng.normal(0, 1e-3, (7, 7)) for k in range(3)}
    fig = figures.class_matrices_figure(matrices, NAMES)
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 3
    for ax in heat:
        assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())  # horizontal labels
        assert len(ax.texts) == 49  # the value of every cell written in it
        width, height = ax.get_window_extent().width, ax.get_window_extent().height
        assert width / 7 >= 0.5 * fig.dpi  # cells at least half an inch wide
    assert any("10⁻³" in ax.get_ylabel() for ax in fig.axes)  # the colour bar's unit
    plt.close(fig)
    normalized = figures.class_matrices_figure(matrices, NAMES, normalized=True)
    assert all("−" in t.get_text() or "." in t.get_text() for ax in normalized.axes for t in ax.texts)
    plt.close(normalized)


def test_trajectories_have_no_twin_axes_and_units():
    pairs = [("induction", "induction"), ("left_delimiter", "right_delimiter")]
    values = {p: -np.linspace(1e-4, 5e-3, len(STEPS)) for p in pairs}
    errors = {p: np.full(len(STEPS), 2e-4) for p in pairs}
    fig = figures.class_trajectories_figure(STEPS, pairs, values, errors, STEPS, np.linspace(0, 0.7, len(STEPS)),
                                            4161)
    assert len(fig.axes) == 3  # the score on its own axes above one panel per pair; no twinx
    assert fig.axes[0].get_ylabel() == "best score (0–1)"
    assert all("nats²" in ax.get_ylabel() for ax in fig.axes[1:2]) and labelled(fig)
    plt.close(fig)


def test_verdict_and_recipe_figures():
    windows = {"peak window": WindowMean((9000, 10000), (9000, 10000), 5e-3, 3e-4),
               "late window": WindowMean((11000, 12000), (11000, 12000), 4e-3, 3e-4)}
    values = np.linspace(1e-4, 5e-3, len(STEPS))
    fig = figures.verdict_figure(STEPS, values, values / 10, [10000, 12000], values[-2:], values[-2:] / 10,
                                 windows, 4161, "−BIF(induction → induction)")
    assert "(10⁻³ nats²)" in fig.axes[0].get_ylabel() and labelled(fig)
    assert len(fig.legends) == 1
    plt.close(fig)
    table = pd.DataFrame({"induction_step": [4000, 3800], "peak": [5e-3, 4e-3], "peak_stderr": [3e-4, 3e-4],
                          "late": [4e-3, 4e-3], "late_stderr": [3e-4, 3e-4], "decline": [0.2, 0.0],
                          "decline_stderr": [0.05, 0.05]}, index=["a", "b"])
    fig = figures.recipe_figure(table)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"] and labelled(fig)
    plt.close(fig)
    missing = figures.recipe_figure(None)
    assert "make study NAME=lm_pythia_recipe" in missing.axes[0].texts[0].get_text()
    plt.close(missing)


@pytest.mark.parametrize("formation", [4161, None])
def test_token_and_training_figures(formation):
    fig = figures.token_classes_figure(["a", "␣b", "c"], np.eye(7, 3, dtype=bool), NAMES)
    assert labelled(fig)
    plt.close(fig)
    fig = figures.training_loss_figure(np.linspace(4, 1, 500), formation)
    assert fig.axes[0].get_ylabel() == "loss (nats per token)"
    plt.close(fig)
    fig = figures.token_matrix_figure(np.eye(3), ["a", "b", "c"], [False, True, False], "t", 0.5)
    bold = [t.get_fontweight() for t in fig.axes[0].get_xticklabels()]
    assert bold == ["normal", "bold", "normal"]
    plt.close(fig)
