"""Notebook parameters: declared in a cell tagged ``parameters``, checked before any compute.

A chapter declares its parameters as typed, commented assignments::

    profile: str = "full"  # "full" for the book, "quick" for tests and the classroom
    nbeta: float = 100.0  # inverse temperature nβ of the tempered posterior

and validates them in the very next cell::

    params = validate_parameters(globals(), profile=OneOf("full", "quick"), nbeta=Interval(gt=0))

The same type and name checks (:func:`check_parameters`) also run in ``python -m stagewise run``
before a kernel starts, against the declarations parsed from the notebook (:func:`parse_parameters_cell`).
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import re
import tokenize
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Interval",
    "OneOf",
    "Parameter",
    "ParameterError",
    "Parameters",
    "check_parameters",
    "parse_parameters_cell",
    "parse_value",
    "validate_parameters",
]

#: Types a parameter may hold: what papermill can inject as a Python literal.
PLAIN_TYPES = (bool, int, float, str, type(None), list, tuple, dict)

#: Names IPython puts in a kernel's namespace that are not parameters.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open", "display"})

_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": tuple, "dict": dict}


class ParameterError(ValueError):
    """One or more notebook parameters are unknown, of the wrong type or out of range.

    ``problems`` lists one message per problem; ``str(error)`` joins them, one per line.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Interval:
    """Accept numbers in an interval: ``Interval(gt=0)``, ``Interval(ge=1, le=8, integer=True)``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False

    def describe(self) -> str:
        parts = [f"{op} {bound}" for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if bound is not None]
        text = " and ".join(parts) if parts else "any number"
        return f"integers {text}" if self.integer else text

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.integer and value != int(value):
            return False
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))


class OneOf:
    """Accept one of a fixed set of values: ``OneOf("full", "quick")``."""

    def __init__(self, *values: Any):
        if not values:
            raise TypeError("OneOf needs at least one accepted value")
        self.values = values

    def __repr__(self) -> str:
        return f"OneOf({', '.join(map(repr, self.values))})"

    def describe(self) -> str:
        return ", ".join(map(repr, self.values))

    def accepts(self, value: Any) -> bool:
        # bool == int in Python (True == 1): compare types too, so OneOf(0, 1) refuses True.
        return any(value == v and type(value) is type(v) for v in self.values)


@dataclass(frozen=True)
class Folder:
    """Accept the path of an existing folder (or, with ``allow_empty``, the empty string for a default)."""

    allow_empty: bool = True

    def describe(self) -> str:
        return "an existing folder" + (' or "" for the default' if self.allow_empty else "")

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if value == "":
            return self.allow_empty
        return Path(value).expanduser().is_dir()


@dataclass(frozen=True)
class File:
    """Accept the path of an existing file (or, with ``allow_empty``, the empty string for "none")."""

    allow_empty: bool = True

    def describe(self) -> str:
        return "an existing file" + (' or "" for none' if self.allow_empty else "")

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if value == "":
            return self.allow_empty
        return Path(value).expanduser().is_file()


@dataclass(frozen=True)
class Pattern:
    """Accept a string that matches the regular expression ``regex`` in full; ``description`` names the form."""

    regex: str
    description: str

    def describe(self) -> str:
        return self.description

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None


Rule = Interval | OneOf | Folder | File | Pattern


# ------------------------------------------------------------------------------------- type checks


def _resolve_type(annotation: Any) -> Any:
    """The runtime type of an annotation (a type, or its source text as in ``"float"``)."""
    if isinstance(annotation, str):
        text = annotation.strip()
        if text in _TYPE_NAMES:
            return _TYPE_NAMES[text]
        if text in ("None", "Any", ""):
            return None if text == "None" else Any
        try:
            return eval(text, {"typing": typing, **_TYPE_NAMES, "Any": Any, "Optional": typing.Optional})  # noqa: S307
        except Exception:  # an annotation we cannot evaluate: accept any plain value
            return Any
    return annotation


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _convert(value: Any, annotation: Any) -> tuple[bool, Any]:
    """(ok, converted value) for one value against one declared type.

    int is accepted for float (and converted); an integral float is accepted for int (and
    converted); bool is never accepted as a number, nor a number as bool.
    """
    kind = _resolve_type(annotation)
    if kind is Any:
        return True, value
    if kind is None or kind is type(None):
        return value is None, value
    origin = typing.get_origin(kind)
    if origin is typing.Union or (origin is not None and type(kind).__name__ == "UnionType"):
        for option in typing.get_args(kind):
            ok, converted = _convert(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is not None:  # list[int], dict[str, float]: check the container only
        kind = origin
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, float(value)
    if kind is int:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is tuple and isinstance(value, list):  # papermill and JSON have no tuples
        return True, tuple(value)
    if isinstance(kind, type):
        return isinstance(value, kind), value
    return True, value


def check_parameters(declared: Mapping[str, Any], values: Mapping[str, Any],
                     rules: Mapping[str, Rule] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Check ``values`` against ``declared`` types and optional ``rules``.

    ``declared`` maps each parameter to its annotation (a type or its source text). Returns the
    converted values and a list of problems (empty when everything is fine). Values whose name is
    not declared are reported as unknown parameters.
    """
    problems: list[str] = []
    converted: dict[str, Any] = {}
    accepted = ", ".join(sorted(declared))
    for name, value in values.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"unknown parameter {name!r} ({hint}accepted parameters: {accepted})")
            continue
        ok, new = _convert(value, declared[name])
        if not ok:
            problems.append(f"parameter {name!r} = {value!r} has the wrong type: "
                            f"expected {_type_name(_resolve_type(declared[name]))}, got {type(value).__name__}")
            continue
        rule = (rules or {}).get(name)
        if rule is not None and not rule.accepts(new):
            problems.append(f"parameter {name!r} = {new!r} is out of range: accepted values are {rule.describe()}")
            continue
        converted[name] = new
    return converted, problems


# ---------------------------------------------------------------------------------- in the notebook


class Parameters(Mapping):
    """The validated parameters of a notebook: a read-only mapping, also readable as attributes."""

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("notebook parameters are read-only; change them in the parameters cell or with -p")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "Parameters(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| `{k}` | `{v!r}` |" for k, v in self._values.items())
        return f"| parameter | value |\n|---|---|\n{rows}"


def validate_parameters(namespace: dict[str, Any], **rules: Rule) -> Parameters:
    """Validate a notebook's parameters; call it in the cell right after the parameters cell.

    ``namespace`` is the notebook's ``globals()``: the declared parameters are its
    ``__annotations__`` (the typed assignments of the parameters cell); names papermill injected
    that were not declared are unknown parameters. Each declared parameter needs a rule
    (:class:`Interval` or :class:`OneOf`) and each rule a declared parameter. Raises
    :class:`ParameterError` listing every problem at once; otherwise writes converted values
    (e.g. ``300`` -> ``300.0`` for a float) back into ``namespace`` and returns them.
    """
    declared = dict(namespace.get("__annotations__", {}))
    author = [f"parameter {name!r} is declared in the parameters cell but has no rule in validate_parameters()"
              for name in declared if name not in rules]
    author += [f"validate_parameters() has a rule for {name!r}, which the parameters cell does not declare "
               f"(declare it as `{name}: <type> = <default>  # <help>`)" for name in rules if name not in declared]
    if author:
        raise ParameterError(author)

    values = {name: namespace[name] for name in declared if name in namespace}
    problems = [f"parameter {name!r} is declared but has no value" for name in declared if name not in namespace]
    extra = {name: value for name, value in namespace.items()
             if not name.startswith("_") and name not in declared and name not in IPYTHON_NAMES
             and isinstance(value, PLAIN_TYPES)}
    converted, found = check_parameters(declared, {**extra, **values}, rules)
    problems += found
    if problems:
        raise ParameterError(problems)
    namespace.update(converted)
    return Parameters({name: converted[name] for name in declared})


# ------------------------------------------------------------------------------ the parameters cell


class Parameter(typing.NamedTuple):
    """One declared parameter as written in the parameters cell (type and default are source text)."""

    name: str
    type: str
    default: str
    help: str


def parse_parameters_cell(source: str) -> list[Parameter]:
    """The parameters declared in a parameters cell's source, in order.

    Every top-level statement must be an annotated assignment ``name: type = default  # help``;
    anything else raises :class:`ParameterError`, since neither the runner nor papermill could
    read it.
    """
    tree = ast.parse(source)
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    parameters, problems = [], []
    for node in tree.body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            default = ast.get_source_segment(source, node.value) or ""
            if "\n" in default:  # a multi-line list or dict: shown on one line
                default = ast.unparse(node.value)
            parameters.append(Parameter(node.target.id, ast.unparse(node.annotation), default,
                                        comments.get(node.end_lineno, "")))
        else:
            problems.append(f"the parameters cell may hold only `name: type = default  # help` lines; "
                            f"line {node.lineno} is {lines[node.lineno - 1].strip()!r}")
    if problems:
        raise ParameterError(problems)
    return parameters


def parse_value(text: str) -> Any:
    """A ``-p name value`` value, read as papermill's command line does.

    int, then float, then ``True``/``False``/``None``, else the string itself.
    """
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)
