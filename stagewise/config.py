"""Validation shared by every configuration dataclass: one error type, one message format.

A config's ``__post_init__`` lists ``(field, ok, accepted)`` checks and calls :func:`check_fields`, which
reports every bad field at once, each with its value and its accepted range, before any compute starts.

Numbers are accepted in any of Python's numeric types: a numpy integer (``np.int64(4)``) is an integer and a
numpy float a number, while a bool is never either. :func:`check_fields` stores numpy scalars of the checked
fields back as plain ``int``/``float``, so a config always prints, compares and serializes (``json``) the same way.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable


class ConfigError(ValueError):
    """A setting outside its accepted range (the message names the field, its value and the range)."""


def is_int(value: Any, minimum: int) -> bool:
    """An integer ≥ ``minimum``: ``int`` or a numpy integer, never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite real number (``int``, ``float``, numpy integer or float), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it stands for; anything else unchanged."""
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float, complex)):
        item = getattr(value, "item", None)
        if callable(item):
            return item()
    return value


def check_fields(obj: Any, checks: Iterable[tuple[str, bool, str]]) -> None:
    """Raise :class:`ConfigError` naming every field of ``obj`` whose check failed, with its accepted values.

    Fields that pass and hold a numpy scalar are stored back as the plain Python scalar (also on frozen
    dataclasses).
    """
    checks = list(checks)
    bad = [f"{name} = {getattr(obj, name)!r} (accepted: {accepted})" for name, ok, accepted in checks if not ok]
    if bad:
        raise ConfigError(f"invalid {type(obj).__name__} setting: " + "; ".join(bad))
    for name, _, _ in checks:
        value = getattr(obj, name)
        plain = _plain(value)
        if plain is not value:
            object.__setattr__(obj, name, plain)


def require_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer ≥ ``minimum`` (for plain constructor arguments)."""
    if not is_int(value, minimum):
        raise ConfigError(f"{name} = {value!r}: accepted values are integers ≥ {minimum}")
