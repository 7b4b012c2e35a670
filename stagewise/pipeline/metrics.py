"""metrics.json: the key numbers of a notebook run, with the parameters and versions that made them."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RESERVED_KEYS", "to_json", "versions", "write_json_atomic", "write_metrics"]

#: Keys that metrics.json uses for the record itself; a chapter's key numbers may not use them.
RESERVED_KEYS = frozenset({"parameters", "seed", "versions"})


def versions() -> dict[str, str]:
    """Versions of python, the platform and the packages that shape the numbers (without importing them)."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("stagewise", "torch", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(package)
            found[package] = getattr(module, "__version__", "not installed")
    return found


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: numpy / torch scalars become numbers, arrays and tensors nested lists.

    Mappings keep their keys (as strings), tuples and sets become lists. Non-finite floats stay
    NaN / Infinity (Python's json reads them back).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    # torch tensors and numpy arrays / scalars, recognised without importing either library
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return to_json(value.tolist())
    if hasattr(value, "item"):
        return to_json(value.item())
    raise TypeError(f"cannot write {type(value).__name__} to metrics.json: convert it to numbers first")


def write_json_atomic(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_metrics(metrics: Mapping[str, Any], params: Mapping[str, Any],
                  path: str | os.PathLike = "metrics.json") -> Path:
    """Write a notebook's key numbers, its parameters, seed and versions to ``path`` (atomically).

    The key numbers are top-level keys (``metrics.json["llc"]``, as the chapters and issues name them), next to
    the reserved keys ``parameters``, ``seed`` and ``versions``. ``metrics`` maps names to numbers (or arrays:
    written as lists); ``params`` is what :func:`~stagewise.pipeline.validate_parameters` returned.
    Returns the path written.
    """
    params = to_json(dict(params))
    clash = sorted(set(metrics) & RESERVED_KEYS)
    if clash:
        raise ValueError(f"metric names {clash} are reserved in metrics.json (reserved: {sorted(RESERVED_KEYS)})")
    record = {
        **to_json(dict(metrics)),
        "parameters": params,
        "seed": params.get("seed"),
        "versions": versions(),
    }
    return write_json_atomic(record, path)
