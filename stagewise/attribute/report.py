"""What an ``influence`` run writes: the table, the diagnostics, the trajectory figure, run.json and the traces.
Every file is written atomically into a folder that was new or empty (nothing is overwritten)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from stagewise import plotting
from stagewise.artifacts import write_bytes, write_json, write_safetensors

from .traces import save_trace

__all__ = ["trajectory_figure", "versions", "write_outputs"]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("stagewise", "torch", "numpy", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


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


def write_outputs(result, out: Path, groups=None) -> dict[str, Path]:
    """Write ``result`` (an :class:`~stagewise.attribute.Attribution`) into ``out``; returns {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "table": write_bytes(result.table.to_csv(index=False).encode(), out / "influence.csv"),
        "diagnostics": write_bytes(result.diagnostics.to_csv(index=False).encode(), out / "diagnostics.csv"),
    }
    fig = trajectory_figure(result.table, result.diagnostics)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    files["figure"] = write_bytes(buffer.getvalue(), out / "influence.png")
    labels = dict(zip(result.diagnostics["step"], result.diagnostics["checkpoint"]))
    for step, trace in result.traces.items():
        save_trace(trace, out / "traces" / f"step-{step}", {"step": int(step), "label": labels.get(step)})
    if groups is not None:
        write_safetensors(out / "traces" / "groups.safetensors", {"groups": groups})
    files["traces"] = out / "traces"
    record = {**result.settings, "versions": versions(),
              "diagnostics": result.diagnostics.replace({np.nan: None}).to_dict(orient="records")}
    files["run"] = write_json(record, out / "run.json")
    return files
