"""One figure style for the whole book, and the few figure and table helpers that chapters share.

Figures are sized for the book's content column (about 750 px wide): at most :data:`COLUMN_WIDTH` inches
wide, so that text of 8 pt or more stays at least 9 px tall on the page. Tables go through
:func:`show_table`, which never rounds a nonzero value to zero and prints integers as integers.
"""

from __future__ import annotations

import functools
import math
import numbers
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

#: Colours of the book: one per recurring role, so a reader can follow a quantity across chapters.
COLORS = {
    "truth": "#222222",
    "estimate": sns.color_palette("deep")[0],
    "plain": sns.color_palette("deep")[0],
    "rmsprop": sns.color_palette("deep")[1],
    "regular": sns.color_palette("deep")[2],
    "singular": sns.color_palette("deep")[3],
    "diverged": sns.color_palette("deep")[3],
    "analytic": sns.color_palette("deep")[4],  # Saxe-mode theory of influence (BIF: estimate, LOO: truth)
}

#: Widest figure (inches) that the book's column shows without shrinking text below ~9 px.
COLUMN_WIDTH = 7.5


def set_style() -> None:
    """The book's seaborn style: white grid, readable fonts, figures sized for a book column."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep", font_scale=1.05)
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.2),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9.5,
            "legend.frameon": True,
            "image.cmap": "viridis",
        }
    )


def save(fig: plt.Figure, name: str, folder: str | Path = ".", *, close: bool = False) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (the run's working directory by default) and return the path.

    ``close=True`` closes the figure after saving, for a chapter that shows the saved file in a MyST
    ``{figure}`` (with its caption and alt text) rather than as the code cell's output.
    """
    path = Path(folder) / f"{name}.png"
    fig.savefig(path)
    if close:
        plt.close(fig)
    return path


def stage_lines(ax: plt.Axes, steps: Sequence[float], colors: Sequence | str = "0.6", *, label: str | None = None,
                **kwargs) -> None:
    """Dotted vertical lines at the stage ``steps`` (training steps); ``colors``: one colour, or one per stage.

    ``label`` names the first line only, so a legend lists the stages once.
    """
    if isinstance(colors, str) or (isinstance(colors, tuple) and len(colors) in (3, 4)
                                   and all(isinstance(c, numbers.Real) for c in colors)):
        colors = [colors] * len(steps)
    if len(colors) < len(steps):
        raise ValueError(f"colors: {len(colors)} given for {len(steps)} stage steps (one colour, or one per step)")
    style = {"ls": ":", "lw": 1.4, "zorder": 1, **kwargs}
    for k, (step, color) in enumerate(zip(steps, colors)):
        ax.axvline(step, color=color, label=label if k == 0 else None, **style)


def band(ax: plt.Axes, x, mean, stderr, color, *, k: float = 2.0, label: str | None = None,
         band_label: str | None = None, **kwargs):
    """Plot ``mean`` with a shaded ±``k``·``stderr`` band (same shapes as ``x``); returns the line.

    ``band_label`` (e.g. "± 2 s.e.") names the band in the legend; ``kwargs`` go to the line.
    """
    x, mean, stderr = (np.asarray(v, dtype=float) for v in (x, mean, stderr))
    if not (x.shape == mean.shape == stderr.shape):
        raise ValueError(f"x, mean and stderr must have one shape, got {x.shape}, {mean.shape}, {stderr.shape}")
    if k <= 0:
        raise ValueError(f"k = {k} must be positive (the band is mean ± k·stderr)")
    ax.fill_between(x, mean - k * stderr, mean + k * stderr, color=color, alpha=0.25, lw=0, label=band_label)
    (line,) = ax.plot(x, mean, color=color, label=label, **kwargs)
    return line


# ----------------------------------------------------------------------------------------------- tables

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _shows_only_zero(text: str) -> bool:
    digits = [c for c in text.split("e")[0].split("×")[0] if c.isdigit()]
    return bool(digits) and all(c == "0" for c in digits)


def _scientific(value: float, digits: int) -> str:
    """1.23×10⁻⁵: no hyphen, so a table cell never breaks inside the number."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def format_number(value, digits: int = 3) -> str:
    """``value`` as a table shows it: integers as integers, other numbers with ``digits`` significant digits.

    Numbers between 10⁻⁴ and 10⁶ are written without an exponent (0.0123, 1235), others as 1.23×10⁻⁵; a
    nonzero number never shows as 0. NaN and None show as "–"; strings and other objects as ``str``.
    """
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits = {digits!r} must be a positive integer")
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    magnitude = math.floor(math.log10(abs(float(f"{value:.{digits - 1}e}"))))  # of the rounded value
    if -4 <= magnitude < 6:
        text = f"{value:.{max(digits - 1 - magnitude, 0)}f}"
        return text if not _shows_only_zero(text) else _scientific(value, digits)
    return _scientific(value, digits)


def prose_number(value, digits: int = 3, *, percent: bool = False, signed: bool = False) -> str:
    """``value`` as the book's prose writes it: the one rule for numbers a reader sees in a sentence.

    Integers, and floats that are whole numbers of 1,000 or more (steps, counts), as integers with thousands
    separators (3,976; a step never prints as 3976.0); other numbers with ``digits`` significant digits as
    :func:`format_number` writes them (0.0123, 4.5, 1.23×10⁻⁵). ``percent=True`` writes a fraction as a
    percentage with ``digits`` significant digits (0.0634 → "6.34%", 0.5 → "50%"). ``signed=True`` puts "+"
    before a positive number; a negative number always gets a true minus sign (−230), never a hyphen.
    """
    if value is None or isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"prose_number: value = {value!r} is not a real number; format text yourself")
    if isinstance(value, np.generic):
        value = value.item()
    if percent:
        text = format_number(100 * float(value), digits)
        text = (text if "×" in text else _trim(text)) + "%"
    elif isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer()
                                                  and abs(value) >= 1000):
        text = f"{int(value):,}"
    else:
        text = format_number(value, digits)
    text = text.replace("-", "−")  # exponents use the superscript minus already
    if signed and value > 0:
        text = "+" + text
    return text


def _trim(text: str) -> str:
    """4.00 → 4, 2.50 → 2.5: a percentage keeps only the digits that carry information."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def glue_text(name: str, value, digits: int = 3, **options) -> str:
    """Format ``value`` with :func:`prose_number` and glue it under ``name`` for the prose
    (``{glue:text}`name` ``); returns the text, so a code cell can print it too."""
    from myst_nb import glue  # only inside a notebook build

    text = prose_number(value, digits, **options)
    glue(name, text, display=False)
    return text


def _plain_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _column_formatter(values: list, digits: int) -> Callable[[object], str]:
    """One number of decimals for a column of floats of similar size (1.00, 3.87, not 1 and 3.87), so that
    digits line up; cell by cell (:func:`format_number`) for integers, mixed columns (a key-numbers table's
    counts beside its errors: 16, not 16.000) and wide ranges."""
    per_cell = functools.partial(format_number, digits=digits)
    numbers_ = [float(v) for v in values if _plain_real(v) and math.isfinite(float(v))]
    others = [v for v in values if not _plain_real(v) and v is not None]
    integers = any(isinstance(v, numbers.Integral) for v in values if _plain_real(v))  # counts stay counts
    if not numbers_ or others or integers or all(x.is_integer() for x in numbers_):
        return per_cell
    nonzero = [abs(x) for x in numbers_ if x != 0]
    low, high = min(nonzero), max(nonzero)
    if low < 1e-4 or high >= 1e6 or high / low > 1e4:
        return per_cell
    low = float(f"{low:.{digits - 1}e}")  # as rounded: 0.99999 needs the decimals of 1.00, not of 0.999
    decimals = max(digits - 1 - math.floor(math.log10(low)), 0)

    def fixed(value):
        if not _plain_real(value) or not math.isfinite(float(value)):
            return format_number(value, digits)
        return "0" if value == 0 else f"{float(value):.{decimals}f}"

    return fixed


def _formatter(spec, digits: int) -> Callable[[object], str]:
    if spec is None:
        return lambda v: format_number(v, digits)
    if callable(spec):
        return spec
    if not isinstance(spec, str) or "{" not in spec:
        raise ValueError(f"format {spec!r}: give a format string such as '{{:.2f}}' or '{{:.1%}}', or a callable")

    def apply(value):
        if value is None or (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
                             and math.isnan(float(value))):
            return "–"
        if not isinstance(value, numbers.Number):
            return str(value)
        text = spec.format(value)
        if value != 0 and _shows_only_zero(text):  # the format would hide a nonzero value: more digits
            return format_number(100 * value, digits) + "%" if "%" in spec else format_number(value, digits)
        return text

    return apply


def show_table(data, formats: Mapping[str, str | Callable] | None = None, *, digits: int = 3,
               index: bool = True) -> pd.DataFrame:
    """A table for the reader: a DataFrame of strings, every cell formatted for display.

    ``data``: a DataFrame, a Series (one column) or anything ``pd.DataFrame`` accepts (records, a dict of
    columns). ``formats`` maps column names to a format string (``"{:.2f}"``, ``"{:.1%}"``) or a callable;
    other columns get ``digits`` significant digits: one number of decimals per column of floats of similar
    size, :func:`format_number` cell by cell otherwise (integers, mixed types, wide ranges, below 10⁻⁴). No
    nonzero value ever shows as 0: a format that would round one to zero falls back to significant digits.
    ``index=False`` replaces the index by row numbers starting at 1. The result is for display only: compute
    with the original numbers.
    """
    if isinstance(data, pd.Series):
        frame = data.to_frame(data.name if data.name is not None else "value")
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.DataFrame(data)
    formats = dict(formats or {})
    unknown = [name for name in formats if name not in frame.columns]
    if unknown:
        raise ValueError(f"formats: no column {unknown} in the table (columns: {list(frame.columns)})")
    out = pd.DataFrame(index=frame.index if index else pd.RangeIndex(1, len(frame) + 1))
    for name in frame.columns:
        values = [v.item() if isinstance(v, np.generic) else v for v in frame[name].tolist()]
        spec = formats.get(name)
        fmt = _formatter(spec, digits) if spec is not None else _column_formatter(values, digits)
        out[name] = [fmt(v) for v in values]
    return out


def say(text: str, width: int = 76) -> None:
    """Print ``text`` wrapped to ``width`` characters (each of its lines on its own), so a printed summary fits
    the book's column."""
    print("\n".join(textwrap.fill(line, width) if line else "" for line in str(text).split("\n")))


# ----------------------------------------------------------------------------------------------- heat maps


def _grid_position(values: list, target, name: str) -> int:
    for k, value in enumerate(values):
        same = (math.isclose(float(value), float(target), rel_tol=1e-9, abs_tol=0.0)
                if _plain_real(value) and _plain_real(target) else value == target)
        if same:
            return k
    raise ValueError(f"marked: {name} = {target!r} is not on the grid ({', '.join(map(str, values))})")


def _tick(value) -> str:
    return f"{value:g}" if _plain_real(value) else str(value)


def heatmap(table: pd.DataFrame, x: str, y: str, value: str, ax: plt.Axes, *, marked: tuple | None = None,
            label: str | None = None, fmt: str = "{:.2f}", cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, nan_text: str = "–", xlabel: str | None = None,
            ylabel: str | None = None):
    """A heat map of ``table[value]`` over the grid of its columns ``x`` and ``y`` (one row per cell), every
    cell labelled with its value (``fmt``); returns the image.

    The grid's values run in increasing order, ``x`` to the right and ``y`` upwards, with tick labels such as
    ``0.0003``; the axes are labelled ``xlabel`` / ``ylabel`` (default: the column names) and the colour bar
    ``label`` (say the units). A cell without a value (NaN, or no row) is light grey and shows ``nan_text``.
    ``marked=(x0, y0)``, a setting on the grid (the book's own), is outlined in black and white. Raises
    ValueError for a missing column, a cell given twice (aggregate first, e.g. ``groupby(...).mean()``) or a
    mark off the grid.
    """
    from matplotlib.patches import Rectangle

    missing = [name for name in (x, y, value) if name not in table.columns]
    if missing:
        raise ValueError(f"heatmap: no column {missing} in the table (columns: {list(table.columns)})")
    if table.duplicated([x, y]).any():
        raise ValueError(f"heatmap: some ({x}, {y}) cells have several rows: one row per cell (aggregate first)")
    grid = table.pivot(index=y, columns=x, values=value).sort_index().sort_index(axis=1)
    xs, ys = grid.columns.tolist(), grid.index.tolist()
    values = grid.to_numpy(dtype=float)
    colormap = mpl.colormaps[cmap].with_extremes(bad="0.88")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=vmin, vmax=vmax, origin="lower",
                      aspect="auto")
    for (row, col), v in np.ndenumerate(values):
        if math.isfinite(v):
            red, green, blue, _ = image.cmap(image.norm(v))
            shade = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
            ax.text(col, row, fmt.format(v), ha="center", va="center", color=shade, fontsize=8.5)
        else:
            ax.text(col, row, nan_text, ha="center", va="center", color="0.3", fontsize=8.5)
    ax.set(xticks=range(len(xs)), xticklabels=[_tick(v) for v in xs], xlabel=x if xlabel is None else xlabel,
           yticks=range(len(ys)), yticklabels=[_tick(v) for v in ys], ylabel=y if ylabel is None else ylabel)
    ax.grid(False)
    if marked is not None:
        corner = (_grid_position(xs, marked[0], x) - 0.5, _grid_position(ys, marked[1], y) - 0.5)
        for color, width, order in (("black", 3.0, 3), ("white", 1.2, 4)):  # drawn whole at the axes' edge
            ax.add_patch(Rectangle(corner, 1, 1, fill=False, ec=color, lw=width, zorder=order, clip_on=False))
    ax.figure.colorbar(image, ax=ax, label=label)
    return image
