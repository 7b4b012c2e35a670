"""What an ``influence`` run writes: the table, the diagnostics, the trajectory figure, run.json and the traces.
Every file is written atomically into a folder that was new or empty (nothing is overwritten)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from stagewise.artifacts import write_bytes, write_json, write_safetensors

from .figures import trajectory_figure
from .traces import save_trace

__all__ = ["versions", "write_outputs"]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("stagewise", "torch", "numpy", "transformers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


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
