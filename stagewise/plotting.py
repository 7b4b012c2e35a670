"""One figure style for the whole book, and the few figure helpers that chapters share."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
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


def save(fig: plt.Figure, name: str, folder: str | Path = ".") -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (the run's working directory by default) and return the path."""
    path = Path(folder) / f"{name}.png"
    fig.savefig(path)
    return path
