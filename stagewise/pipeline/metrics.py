"""metrics.json: the key numbers of a notebook run, with the parameters and versions that made them.

Written through :mod:`stagewise.artifacts` (atomic, mode 0644), like every record the package keeps.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from stagewise.artifacts import to_json, write_json

__all__ = ["RESERVED_KEYS", "to_json", "versions", "write_metrics"]

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


def write_metrics(metrics: Mapping[str, Any], params: Mapping[str, Any],
                  path: str | os.PathLike = "metrics.json") -> Path:
    """Write a notebook's key numbers, its parameters, seed and versions to ``path`` (atomically, mode 0644).

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
    return write_json(record, path)
