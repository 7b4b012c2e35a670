"""The book's figure and table helpers: tables never hide a nonzero value, integers stay integers."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from stagewise import plotting
from stagewise.plotting import format_number, show_table


@pytest.mark.parametrize("value, text", [
    (2000, "2000"), (np.int64(16), "16"), (2000.0, "2000"), (0, "0"), (0.0, "0"),
    (0.0001, "0.000100"), (2e-4, "0.000200"), (1e-5, "1.00×10⁻⁵"), (-3e-7, "-3.00×10⁻⁷"),
    (9.9996e-5, "0.000100"), (9.94e-5, "9.94×10⁻⁵"), (0.24812, "0.248"), (0.99999, "1.00"), (1.5, "1.50"), (1234.567, "1235"), (2.5e7, "25000000"),
    (2.5e7 + 0.5, "2.50×10⁷"),
    (float("nan"), "–"), (None, "–"), (True, "True"), ("dog", "dog"), (float("inf"), "∞"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def _parsed(text: str) -> float:
    text = text.replace("%", "").replace("−", "-")
    if "×10" in text:
        mantissa, exponent = text.split("×10")
        return float(mantissa) * 10.0 ** int(exponent.translate(str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")))
    return float(text)


@pytest.mark.parametrize("digits", [1, 2, 3, 5])
def test_no_nonzero_value_shows_as_zero_and_relative_error_is_bounded(digits):
    rng = np.random.default_rng(0)
    values = np.concatenate([10.0 ** rng.uniform(-12, 12, 400), -(10.0 ** rng.uniform(-12, 12, 100))])
    for value in values:
        text = format_number(value, digits)
        assert _parsed(text) != 0, (value, text)
        # significant digits are kept (rounding may carry one more place, e.g. 9.996 -> 10.00)
        assert math.isclose(_parsed(text), value, rel_tol=0.51 * 10.0 ** (1 - digits)), (value, text)


def test_show_table_columns_step_sizes_and_integers():
    table = pd.DataFrame({"step_size": [1e-4, 2e-4, 0.02 / 10_000], "a0": [3.1e-6, 2.2e-6, 1.9e-7],
                          "chains": [16, 16, 32], "steps": [2000.0, 400.0, 1600.0], "name": ["a", "b", "c"]})
    shown = show_table(table)
    assert list(shown["step_size"]) == ["0.000100", "0.000200", "2.00×10⁻⁶"]
    assert list(shown["a0"]) == ["3.10×10⁻⁶", "2.20×10⁻⁶", "1.90×10⁻⁷"]
    assert list(shown["chains"]) == ["16", "16", "32"]
    assert list(shown["steps"]) == ["2000", "400", "1600"]  # integral floats print as integers
    assert list(shown["name"]) == ["a", "b", "c"]
    html = shown.to_html()
    assert "e+03" not in html and "0.0<" not in html and "e-0" not in html  # no hyphen to break a cell at


def test_show_table_gives_a_column_of_similar_floats_one_number_of_decimals():
    shown = show_table(pd.DataFrame({"final": [3.87, 1.0, 0.99999, 1.0000001], "mixed": [1, 0.5, "x", None],
                                     "wide": [0.5, 12000.0, 3.25, 1.0]}))
    assert list(shown["final"]) == ["3.87", "1.00", "1.00", "1.00"]
    assert list(shown["mixed"]) == ["1", "0.500", "x", "–"]  # mixed types: cell by cell
    assert list(shown["wide"]) == ["0.500", "12000", "3.25", "1"]  # a range over 10⁴: cell by cell
    zeros = show_table(pd.DataFrame({"x": [0.0, 0.25, 0.125]}))
    assert list(zeros["x"]) == ["0", "0.250", "0.125"]


def test_show_table_formats_fall_back_instead_of_hiding_a_value():
    shown = show_table(pd.DataFrame({"error": [0.123, 0.00004], "share": [0.5, 1e-5]}),
                       {"error": "{:.2f}", "share": "{:.1%}"})
    assert list(shown["error"]) == ["0.12", "4.00×10⁻⁵"]
    assert list(shown["share"]) == ["50.0%", "0.00100%"]


def test_show_table_mixed_series_and_index():
    metrics = pd.Series({"chains": 16, "draws": 1000, "llc_max_rel_error": 0.0312, "seconds": 69.43})
    shown = show_table(metrics)
    assert shown.columns.tolist() == ["value"]
    assert shown.loc["chains", "value"] == "16" and shown.loc["draws", "value"] == "1000"
    assert shown.loc["llc_max_rel_error", "value"] == "0.0312"
    # a key-numbers table kept as objects: counts stay counts beside errors of similar size (16, not 16.000)
    key_numbers = show_table(pd.Series({"chains": 16, "draws": 500, "sign_agreement": 0.721, "speedup": 7.596},
                                       dtype=object, name="value"))
    assert key_numbers["value"].tolist() == ["16", "500", "0.721", "7.60"]
    records = show_table([{"x": 1.0}, {"x": 0.5}], index=False)
    assert records.index.tolist() == [1, 2] and records["x"].tolist() == ["1.000", "0.500"]


def test_show_table_rejects_bad_input():
    with pytest.raises(ValueError, match="formats: no column"):
        show_table(pd.DataFrame({"a": [1]}), {"b": "{:.2f}"})
    with pytest.raises(ValueError, match="format 'two'"):
        show_table(pd.DataFrame({"a": [1.5]}), {"a": "two"})
    with pytest.raises(ValueError, match="digits"):
        format_number(1.5, digits=0)


def test_band_and_stage_lines_draw_what_they_say():
    fig, ax = plt.subplots()
    x = np.arange(5.0)
    line = plotting.band(ax, x, x ** 2, np.full(5, 0.5), "C0", label="mean", band_label="± 2 s.e.")
    assert np.allclose(line.get_ydata(), x ** 2)
    (poly,) = ax.collections
    ys = poly.get_paths()[0].vertices[:, 1]
    assert math.isclose(ys.min(), -1.0) and math.isclose(ys.max(), 17.0)  # 0 − 2·0.5 and 16 + 2·0.5
    plotting.stage_lines(ax, [1.0, 3.0], ["r", "g"], label="stages")
    vertical = [l for l in ax.lines if l is not line]
    assert [l.get_xdata()[0] for l in vertical] == [1.0, 3.0]
    assert sorted(ax.get_legend_handles_labels()[1]) == ["mean", "stages", "± 2 s.e."]
    with pytest.raises(ValueError, match="one shape"):
        plotting.band(ax, x, x[:3], x, "C0")
    with pytest.raises(ValueError, match="colors"):
        plotting.stage_lines(ax, [1, 2, 3], ["r"])
    plt.close(fig)


def test_save_can_close_the_figure(tmp_path):
    plotting.set_style()
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 3))
    ax.plot([0, 1])
    path = plotting.save(fig, "line", tmp_path, close=True)
    assert path == tmp_path / "line.png" and path.stat().st_size > 1000
    assert not plt.fignum_exists(fig.number)
    fig2, _ = plt.subplots()
    plotting.save(fig2, "open", tmp_path)
    assert plt.fignum_exists(fig2.number)  # the old behaviour stays the default
    plt.close(fig2)


def test_say_wraps_each_line_to_the_column(capsys):
    plotting.say("word " * 40 + "\nshort line\n\nlast")
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert max(len(line) for line in lines) <= 76 and lines[-3:] == ["short line", "", "last"]


def test_heatmap_draws_the_grid_in_order_labels_cells_and_marks_a_setting():
    table = pd.DataFrame({"gamma": [1000.0, 100.0, 1000.0, 100.0, 300.0, 300.0],
                          "eps": [1e-4, 1e-4, 3e-4, 3e-4, 1e-4, 3e-4],
                          "corr": [0.5, 0.2, 0.6, np.nan, 0.3, 0.4]})
    fig, ax = plt.subplots()
    image = plotting.heatmap(table, "eps", "gamma", "corr", ax, marked=(3e-4, 1000), label="median corr (none)",
                             nan_text="failed", xlabel="step size ε", ylabel="localization γ")
    shown = image.get_array()  # rows: γ = 100, 300, 1000 upwards; columns: ε = 1e-4, 3e-4
    assert np.allclose(shown.filled(-1), [[0.2, -1], [0.3, 0.4], [0.5, 0.6]]) and shown.mask[0, 1]
    texts = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert ((1, 0), "failed") in texts and ((0, 2), "0.50") in texts and ((1, 2), "0.60") in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0001", "0.0003"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["100", "300", "1000"]
    assert ax.get_xlabel() == "step size ε" and ax.get_ylabel() == "localization γ"
    corners = {p.get_xy() for p in ax.patches}
    assert corners == {(0.5, 1.5)}  # the cell ε = 3e-4 (column 1), γ = 1000 (row 2), outlined twice
    (bar,) = [a for a in fig.axes if a is not ax]
    assert bar.get_ylabel() == "median corr (none)"
    plt.close(fig)


def test_heatmap_rejects_repeated_cells_missing_columns_and_marks_off_the_grid():
    table = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 1.0], "v": [0.1, 0.2]})
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="several rows"):
        plotting.heatmap(pd.concat([table, table]), "x", "y", "v", ax)
    with pytest.raises(ValueError, match="no column"):
        plotting.heatmap(table, "x", "y", "w", ax)
    with pytest.raises(ValueError, match="not on the grid"):
        plotting.heatmap(table, "x", "y", "v", ax, marked=(3.0, 1.0))
    plt.close(fig)


@pytest.mark.parametrize(
    ("value", "options", "text"),
    [
        (3976, {}, "3,976"),
        (3976.0, {}, "3,976"),  # a step computed as a float is still a step
        (np.int64(12000), {}, "12,000"),
        (16.0, {}, "16"),
        (4.0, {}, "4"),
        (412.463384, {}, "412"),
        (0.0634, {"percent": True}, "6.34%"),
        (0.5, {"percent": True}, "50%"),
        (-230, {}, "−230"),
        (-0.37, {"digits": 2}, "−0.37"),
        (1.5e-5, {}, "1.50×10⁻⁵"),
        (-1.5e-5, {}, "−1.50×10⁻⁵"),
        (0.54, {"signed": True, "digits": 2}, "+0.54"),
        (-0.54, {"signed": True, "digits": 2}, "−0.54"),
    ],
)
def test_prose_number_one_rule(value, options, text):
    assert plotting.prose_number(value, **options) == text


@pytest.mark.parametrize("value", [None, True, "3", [1]])
def test_prose_number_rejects_what_is_not_a_number(value):
    with pytest.raises(TypeError, match="not a real number"):
        plotting.prose_number(value)
