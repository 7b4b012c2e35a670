"""One validation vocabulary for every setting: configuration dataclasses and chapter parameters alike.

A *rule* says which values a setting accepts and describes them in words::

    Interval(gt=0)                 a finite number > 0
    Interval(ge=1, integer=True)   an integer ≥ 1
    Interval(ge=0, lt=1)           a number in [0, 1)
    Interval(ge=1, integer=True) & Interval(le=8)   both: an integer in [1, 8]
    OneOf("none", "rmsprop")       'none' or 'rmsprop'
    Span(ge=1)                     (min, max) integers with 1 ≤ min ≤ max
    Optional(Interval(ge=1, integer=True))   None or an integer ≥ 1
    Satisfies(predicate, "words")  anything else, described in words

A config's ``__post_init__`` calls :func:`check_fields` with one rule per field, which reports every bad field at
once, each with its value and its accepted values, before any compute starts. A chapter's validation cell gives
the same rules to :func:`stagewise.pipeline.validate_parameters`, and ``python -m stagewise run`` checks them
before a kernel starts.

Numbers are accepted in any of Python's numeric types: a numpy integer (``np.int64(4)``) is an integer and a
numpy float a number, while a bool is never either. :func:`check_fields` stores numpy scalars of the checked
fields back as plain ``int``/``float``, so a config always prints, compares and serializes (``json``) the same way.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ConfigError",
    "File",
    "Folder",
    "Interval",
    "OneOf",
    "Optional",
    "Pattern",
    "Rule",
    "Satisfies",
    "Span",
    "check_fields",
    "check_value",
    "is_int",
    "is_number",
]


class ConfigError(ValueError):
    """Settings outside their accepted ranges; the message names each one, its value and its accepted values.

    ``problems`` lists one message per bad setting.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def is_int(value: Any, minimum: int) -> bool:
    """An integer ≥ ``minimum``: ``int`` or a numpy integer, never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite real number (``int``, ``float``, numpy integer or float), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------------------------- rules


class Rule(Protocol):
    """What a rule offers: whether it accepts a value, and the accepted values in words."""

    def accepts(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Interval:
    """Finite numbers in an interval: ``Interval(gt=0)``, ``Interval(ge=1, le=8, integer=True)``.

    With ``integer=True`` only integers (``int`` or numpy integers) are accepted; a bool never is.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low = (f"[{_bound(self.ge)}" if self.ge is not None else f"({_bound(self.gt)}" if self.gt is not None
               else None)
        high = (f"{_bound(self.le)}]" if self.le is not None else f"{_bound(self.lt)})" if self.lt is not None
                else None)
        if low and high:
            return f"{kind} in {low}, {high}"
        finite = kind if self.integer else "a finite number"
        if low:
            return f"{finite} {'≥' if self.ge is not None else '>'} {low[1:]}"
        if high:
            return f"{finite} {'≤' if self.le is not None else '<'} {high[:-1]}"
        return finite

    def __and__(self, other: Interval) -> Interval:
        """The values both intervals accept, as one interval: a shared range narrowed by a caller's own bounds,
        ``Interval(ge=1, integer=True) & Interval(le=64)`` is ``Interval(ge=1, le=64, integer=True)``."""
        if not isinstance(other, Interval):
            return NotImplemented
        tighter = lambda pick, a, b: b if a is None else a if b is None else pick(a, b)
        gt, ge = tighter(max, self.gt, other.gt), tighter(max, self.ge, other.ge)
        lt, le = tighter(min, self.lt, other.lt), tighter(min, self.le, other.le)
        if gt is not None and ge is not None:  # keep the tighter of the two lower bounds
            gt, ge = (None, ge) if ge > gt else (gt, None)
        if lt is not None and le is not None:
            lt, le = (None, le) if le < lt else (lt, None)
        return Interval(gt=gt, ge=ge, lt=lt, le=le, integer=self.integer or other.integer)

    def accepts(self, value: Any) -> bool:
        if not is_number(value) or (self.integer and not isinstance(value, numbers.Integral)):
            return False
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))


class OneOf:
    """One of a fixed set of values: ``OneOf("full", "quick")``; ``OneOf(True, False)`` for a flag."""

    def __init__(self, *values: Any):
        if not values:
            raise TypeError("OneOf needs at least one accepted value")
        self.values = values

    def __repr__(self) -> str:
        return f"OneOf({', '.join(map(repr, self.values))})"

    def describe(self) -> str:
        words = [repr(v) for v in self.values]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]

    def accepts(self, value: Any) -> bool:
        # bool == int in Python (True == 1): compare types too, so OneOf(0, 1) refuses True.
        return any(value == v and type(value) is type(v) for v in self.values)


@dataclass(frozen=True)
class Span:
    """A ``(min, max)`` tuple of integers with ``ge ≤ min ≤ max``."""

    ge: int = 0

    def describe(self) -> str:
        return f"(min, max) integers with {self.ge} ≤ min ≤ max"

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, tuple) and len(value) == 2 and all(is_int(v, self.ge) for v in value)
                and value[0] <= value[1])


@dataclass(frozen=True)
class Optional:
    """``None`` or a value ``rule`` accepts."""

    rule: Any

    def describe(self) -> str:
        return f"None or {self.rule.describe()}"

    def accepts(self, value: Any) -> bool:
        return value is None or self.rule.accepts(value)


@dataclass(frozen=True)
class Satisfies:
    """Values for which ``predicate(value)`` is true, described by ``description`` (for what no other rule says)."""

    predicate: Callable[[Any], bool]
    description: str

    def describe(self) -> str:
        return self.description

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False


@dataclass(frozen=True)
class Pattern:
    """A string that matches the regular expression ``regex`` in full; ``description`` names the form."""

    regex: str
    description: str

    def describe(self) -> str:
        return self.description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class _ExistingPath:
    """The path of something that exists (or, with ``allow_empty``, the empty string)."""

    allow_empty: bool = True
    kind = "file"  # what the path names, in words
    empty = "none"  # what the empty string stands for

    def describe(self) -> str:
        return f"an existing {self.kind}" + (f' or "" for {self.empty}' if self.allow_empty else "")

    def exists(self, path: Path) -> bool:
        return path.is_file()

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        return self.allow_empty if value == "" else self.exists(Path(value).expanduser())


class Folder(_ExistingPath):
    """The path of an existing folder (or, with ``allow_empty``, the empty string for a default)."""

    kind, empty = "folder", "the default"

    def exists(self, path: Path) -> bool:
        return path.is_dir()


class File(_ExistingPath):
    """The path of an existing file (or, with ``allow_empty``, the empty string for "none")."""


# ---------------------------------------------------------------------------------------------- checks


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it stands for; anything else unchanged."""
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float, complex)):
        item = getattr(value, "item", None)
        if callable(item):
            return item()
    return value


def problem(name: str, value: Any, rule: Rule) -> str:
    """The one message format for a bad setting: ``name = value (accepted: …)``."""
    return f"{name} = {value!r} (accepted: {rule.describe()})"


def check_fields(obj: Any, rules: Mapping[str, Rule], *, what: str | None = None) -> None:
    """Raise :class:`ConfigError` naming every field of ``obj`` its rule refuses, with the accepted values.

    ``what`` names the settings in the message (default: the class name). Fields that pass and hold a numpy
    scalar are stored back as the plain Python scalar (also on frozen dataclasses).
    """
    bad = [problem(name, getattr(obj, name), rule) for name, rule in rules.items()
           if not rule.accepts(getattr(obj, name))]
    if bad:
        raise ConfigError(f"invalid {what or type(obj).__name__} setting: " + "; ".join(bad))
    for name in rules:
        value = getattr(obj, name)
        plain = _plain(value)
        if plain is not value:
            object.__setattr__(obj, name, plain)


def check_value(name: str, value: Any, rule: Rule) -> Any:
    """``value`` (a numpy scalar as a plain one) if ``rule`` accepts it; else :class:`ConfigError` naming it."""
    if not rule.accepts(value):
        raise ConfigError(problem(name, value, rule))
    return _plain(value)
