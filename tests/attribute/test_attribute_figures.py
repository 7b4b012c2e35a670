"""stagewise.attribute.figures: the class × class influence figure draws every (i, j) trajectory of a table in the
panel of its influenced class, with labelled axes and a legend, and names what is wrong with a table it cannot
draw."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from stagewise.attribute.figures import class_influence_figure

matplotlib.use("Agg")


def _table():
    rows = []
    for step in (30, 10, 20):  # unsorted on purpose
        for i in ("frequent", "rare"):
            for j in ("frequent", "rare"):
                value = -step / 10 if i == j else step / 100
                rows.append({"step": step, "i": i, "j": j, "bif": value, "stderr": 0.5 if i == j else np.nan})
    return pd.DataFrame(rows)


def test_one_panel_per_influenced_class_with_every_source():
    fig = class_influence_figure(_table())
    on_frequent, on_rare = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["influence on frequent", "influence on rare"]
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in on_rare.get_legend().get_texts()] == ["frequent → rare", "rare → rare"]
    lines = [line for line in on_frequent.lines if line.get_marker() == "o"]
    assert lines[0].get_xdata().tolist() == [10, 20, 30]  # sorted by step
    assert lines[0].get_ydata().tolist() == [-1.0, -2.0, -3.0]  # frequent → frequent
    assert lines[1].get_ydata().tolist() == [0.1, 0.2, 0.3]
    band = on_frequent.collections[0].get_paths()[0].vertices[:, 1]  # ±2 × 0.5 around the self-influence
    assert band.min() == pytest.approx(-4.0) and band.max() == pytest.approx(0.0)
    plt.close(fig)


def test_a_table_it_cannot_draw_is_named():
    with pytest.raises(ValueError, match="stderr"):
        class_influence_figure(_table().drop(columns="stderr"))
    with pytest.raises(ValueError, match="no rows"):
        class_influence_figure(_table().iloc[:0])
    with pytest.raises(TypeError, match="DataFrame"):
        class_influence_figure(_table().to_dict())
    with pytest.raises(ValueError, match="k = 0"):
        class_influence_figure(_table(), k=0)
