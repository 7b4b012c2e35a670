"""Saved sampler traces: one safetensors file of tensors and one JSON file of settings per checkpoint, so that any
estimator (BIF, its error, group BIF, LLC) can be recomputed without sampling again. Nothing is pickled."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from stagewise.artifacts import load_safetensors, read_json, write_json, write_safetensors
from stagewise.sampling import SampleTrace, SGLDConfig

__all__ = ["load_trace", "load_traces", "save_trace"]

_TENSORS = ("losses", "loss_trace", "draw_steps", "init_observable_losses")


def save_trace(trace: SampleTrace, stem: str | Path, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``trace`` as ``<stem>.safetensors`` (its tensors) and ``<stem>.json`` (settings, L_n(w*), ``meta``),
    each atomically. Returns both paths."""
    stem = Path(stem)
    tensors = {k: getattr(trace, k) for k in _TENSORS if getattr(trace, k) is not None}
    tensors_path = write_safetensors(stem.with_suffix(".safetensors"), tensors)
    record = {"config": asdict(trace.config), "init_loss": trace.init_loss, "dims": list(trace.dims),
              "meta": meta or {}}
    return tensors_path, write_json(record, stem.with_suffix(".json"))


def load_trace(stem: str | Path) -> tuple[SampleTrace, dict[str, Any]]:
    """The trace saved by :func:`save_trace` at ``stem`` and its ``meta``. A missing or unreadable pair raises
    FileNotFoundError or ValueError naming the file."""
    stem = Path(stem)
    record = read_json(stem.with_suffix(".json"))
    if not isinstance(record, dict) or "config" not in record:
        raise FileNotFoundError(f"no readable trace record {stem.with_suffix('.json')}")
    tensors = load_safetensors(stem.with_suffix(".safetensors"))
    try:
        trace = SampleTrace(losses=tensors.get("losses"), loss_trace=tensors["loss_trace"],
                            draw_steps=tensors["draw_steps"], init_loss=float(record["init_loss"]),
                            init_observable_losses=tensors.get("init_observable_losses"),
                            config=SGLDConfig(**record["config"]), dims=tuple(record["dims"]))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{stem}: not a trace saved by stagewise.attribute ({error})") from None
    return trace, record.get("meta", {})


def load_traces(folder: str | Path) -> dict[int, SampleTrace]:
    """Every trace saved in ``folder`` (an ``influence`` output folder, or its ``traces/``), by training step.

    Recompute any estimator from them without sampling: ``stagewise.influence.bif(trace.losses[:, :, i], …)``,
    ``stagewise.llc.estimate_llc(trace)``, or :func:`stagewise.attribute.trajectory_from_traces`.
    """
    folder = Path(folder)
    if (folder / "traces").is_dir():
        folder = folder / "traces"
    found = {}
    for record in sorted(folder.glob("step-*.json")):
        trace, meta = load_trace(record.with_suffix(""))
        found[int(meta.get("step", record.stem.split("-")[-1]))] = trace
    if not found:
        raise FileNotFoundError(f"no saved traces (step-*.json and .safetensors) in {folder}")
    return dict(sorted(found.items()))


def trace_to_cpu(trace: SampleTrace) -> SampleTrace:
    trace = trace.to("cpu")
    trace.preconditioner = None  # parameter-sized: not needed by any estimator, not saved
    return trace
