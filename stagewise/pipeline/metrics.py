"""metrics.json: the key numbers of a notebook run, with the parameters and versions that made them, and the one
way to name a number inside it.

A key path is the keys from the top joined by dots, a list item by its index, ``*`` for every item of a list or
value of a mapping: ``llc.1.rel_error``, ``llc.*.rel_error``, ``sign_flip_step.bif``. A key that itself holds dots
(``degenerate_bif_max.0.1``) is matched as written. The bounds of ``notebooks/expected.yaml``, the headline
numbers of ``book/numbers.yml`` and the columns of a sweep's or study's table all use these paths.
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

__all__ = ["RECORD_KEYS", "flatten", "lookup", "versions", "write_metrics"]

#: Keys that metrics.json uses for the record itself; a chapter's key numbers may not use them.
RECORD_KEYS = ("parameters", "seed", "versions")


def versions() -> dict[str, str]:
    """Versions of python, the platform and the packages that shape the numbers (without importing them)."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("stagewise", "torch", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = getattr(sys.modules.get(package), "__version__", "not installed")
    return found


def write_metrics(metrics: Mapping[str, Any], params: Mapping[str, Any],
                  path: str | os.PathLike = "metrics.json") -> Path:
    """Write a notebook's key numbers (top-level keys, numbers or arrays), its parameters (what
    :func:`~stagewise.pipeline.validate_parameters` returned), seed and versions to ``path``, atomically."""
    params = to_json(dict(params))
    clash = sorted(set(metrics) & set(RECORD_KEYS))
    if clash:
        raise ValueError(f"metric names {clash} are reserved in metrics.json (reserved: {sorted(RECORD_KEYS)})")
    return write_json({**to_json(dict(metrics)), "parameters": params, "seed": params.get("seed"),
                       "versions": versions()}, path)


def lookup(data: Any, path: str) -> list[tuple[str, Any]]:
    """Every (concrete path, value) that ``path`` names in ``data`` (``*`` expanded); empty when it names nothing."""

    def walk(value: Any, parts: list[str], shown: str) -> list[tuple[str, Any]]:
        if not parts:
            return [(shown, value)]
        join = (lambda key: f"{shown}.{key}" if shown else str(key))
        if isinstance(value, Mapping):
            if parts[0] == "*":
                return [hit for key, item in value.items() for hit in walk(item, parts[1:], join(key))]
            for n in range(len(parts), 0, -1):  # the longest run of parts that is one key: "0.1" before "0"
                if ".".join(parts[:n]) in value:
                    return walk(value[".".join(parts[:n])], parts[n:], join(".".join(parts[:n])))
        elif isinstance(value, list):
            if parts[0] == "*":
                return [hit for i, item in enumerate(value) for hit in walk(item, parts[1:], join(i))]
            if parts[0].lstrip("-").isdigit() and -len(value) <= int(parts[0]) < len(value):
                return walk(value[int(parts[0])], parts[1:], join(int(parts[0]) % len(value)))
        return []

    return walk(data, path.split("."), "")


def flatten(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Every number, string, boolean and null of a metrics dict by its key path (``llc.1.rel_error``); the record
    keys (parameters, seed, versions) are left out."""
    flat: dict[str, Any] = {}

    def walk(value: Any, shown: str) -> None:
        items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else None
        if items is None:
            flat[shown] = value
            return
        for key, item in items:
            walk(item, f"{shown}.{key}" if shown else str(key))

    walk({k: v for k, v in metrics.items() if k not in RECORD_KEYS}, "")
    return flat
