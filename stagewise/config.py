"""Validation shared by every configuration dataclass: one error type, one message format.

A config's ``__post_init__`` lists ``(field, ok, accepted)`` checks and calls :func:`check_fields`, which
reports every bad field at once, each with its value and its accepted range, before any compute starts.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class ConfigError(ValueError):
    """A setting outside its accepted range (the message names the field, its value and the range)."""


def is_int(value: Any, minimum: int) -> bool:
    """An integer (not a bool) ≥ ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_fields(obj: Any, checks: Iterable[tuple[str, bool, str]]) -> None:
    """Raise :class:`ConfigError` naming every field of ``obj`` whose check failed, with its accepted values."""
    bad = [f"{name} = {getattr(obj, name)!r} (accepted: {accepted})" for name, ok, accepted in checks if not ok]
    if bad:
        raise ConfigError(f"invalid {type(obj).__name__} setting: " + "; ".join(bad))


def require_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer ≥ ``minimum`` (for plain constructor arguments)."""
    if not is_int(value, minimum):
        raise ConfigError(f"{name} = {value!r}: accepted values are integers ≥ {minimum}")
