"""Notebook parameters: declared in a cell tagged ``parameters``, checked by the very next cell.

A chapter declares its parameters as typed, commented assignments::

    nbeta: float = 100.0  # inverse temperature nβ of the tempered posterior

and validates them in the very next cell::

    params = validate_parameters(globals(), nbeta=Interval(gt=0))

``python -m stagewise run`` runs exactly these two cells with the values it will inject, before a kernel starts
(:mod:`stagewise.pipeline.precheck`); the listing of a notebook's parameters is papermill's own inspection
(:func:`stagewise.pipeline.runner.parameter_table`).
"""

from __future__ import annotations

import ast
import difflib
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from stagewise.config import ConfigError, File, Folder, Interval, OneOf, Optional, Pattern, Rule, Satisfies, Span

__all__ = ["File", "Folder", "Interval", "OneOf", "Optional", "Parameter", "ParameterError", "Parameters",
           "Pattern", "Satisfies", "Span", "check_parameters", "default_value", "parse_value", "validate_parameters"]

#: Types a parameter may hold: what papermill can inject as a Python literal.
PLAIN_TYPES = (bool, int, float, str, type(None), list, tuple, dict)

#: Names IPython puts in a kernel's namespace that are not parameters.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open", "display"})


class ParameterError(ConfigError):
    """One or more notebook parameters are unknown, of the wrong type or out of range.

    ``problems`` lists one message per problem; ``str(error)`` joins them, one per line. A
    :class:`stagewise.config.ConfigError`, so one ``except`` catches a bad parameter and a bad config alike.
    """


class Parameter(typing.NamedTuple):
    """One declared parameter as papermill's inspection reads it (type and default are source text)."""

    name: str
    type: str
    default: str
    help: str


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _convert(value: Any, kind: Any) -> tuple[bool, Any]:
    """(ok, converted value) for one value against one declared type (the annotation's runtime object).

    int is accepted for float (and converted); an integral float is accepted for int (and converted); bool is
    never accepted as a number, nor a number as bool; a list for a tuple (papermill and JSON have no tuples).
    """
    if kind is Any or isinstance(kind, str):  # an annotation we cannot check: any plain value
        return True, value
    if kind is None or kind is type(None):
        return value is None, value
    origin = typing.get_origin(kind)
    if origin is typing.Union or type(kind).__name__ == "UnionType":
        for option in typing.get_args(kind):
            ok, converted = _convert(value, option)
            if ok:
                return True, converted
        return False, value
    kind = origin or kind  # list[int], dict[str, float]: the container only
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is tuple and isinstance(value, list):
        return True, tuple(value)
    return (isinstance(value, kind), value) if isinstance(kind, type) else (True, value)


def check_parameters(declared: Mapping[str, Any], values: Mapping[str, Any],
                     rules: Mapping[str, Rule] | None = None) -> tuple[dict[str, Any], list[str]]:
    """``values`` against the ``declared`` types (name -> annotation) and optional ``rules``: the converted values
    and a list of problems (empty when everything is fine); a name not declared is an unknown parameter."""
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
                            f"expected {_type_name(declared[name])}, got {type(value).__name__}")
        elif name in (rules or {}) and not rules[name].accepts(new):
            problems.append(f"parameter {name!r} = {new!r} is out of range (accepted: {rules[name].describe()})")
        else:
            converted[name] = new
    return converted, problems


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


def checked_namespace(namespace: dict[str, Any], rules: Mapping[str, Rule]) -> Parameters:
    """The declared parameters of ``namespace`` (its ``__annotations__``) checked against their types and
    ``rules``; names injected that were not declared are unknown parameters. Raises :class:`ParameterError`
    listing every problem; otherwise writes the converted values back into ``namespace`` and returns them."""
    declared = dict(namespace.get("__annotations__", {}))
    values = {name: namespace[name] for name in declared if name in namespace}
    problems = [f"parameter {name!r} is declared but has no value" for name in declared if name not in namespace]
    extra = {name: value for name, value in namespace.items()
             if not name.startswith("_") and name not in declared and name not in IPYTHON_NAMES
             and isinstance(value, PLAIN_TYPES)}
    converted, found = check_parameters(declared, {**extra, **values}, rules)
    if problems + found:
        raise ParameterError(problems + found)
    namespace.update(converted)
    return Parameters({name: converted[name] for name in declared})


def validate_parameters(namespace: dict[str, Any], **rules: Rule) -> Parameters:
    """Validate a notebook's parameters; call it in the cell right after the parameters cell.

    ``namespace`` is the notebook's ``globals()``. Each declared parameter needs a rule (:class:`Interval`,
    :class:`OneOf`, ...) and each rule a declared parameter. Raises :class:`ParameterError` listing every problem
    at once; otherwise writes converted values (``300`` -> ``300.0`` for a float) back and returns them.
    """
    declared = namespace.get("__annotations__", {})
    author = [f"parameter {name!r} is declared in the parameters cell but has no rule in validate_parameters()"
              for name in declared if name not in rules]
    author += [f"validate_parameters() has a rule for {name!r}, which the parameters cell does not declare "
               f"(declare it as `{name}: <type> = <default>  # <help>`)" for name in rules if name not in declared]
    if author:
        raise ParameterError(author)
    return checked_namespace(namespace, rules)


def parse_value(text: str) -> Any:
    """A ``-p name value`` value, read as papermill's command line does, and a list as Python writes one.

    int, then float, then ``True``/``False``/``None``; a text in brackets that is a Python list literal
    (``[1000.0, 3000.0]``) is that list; else the string itself.
    """
    if text.strip().startswith("[") and text.strip().endswith("]"):
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            return text
        return value if isinstance(value, list) else text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def default_value(parameter: Parameter) -> Any:
    """A parameter's default as a Python value (its source text when not a literal)."""
    try:
        return ast.literal_eval(parameter.default)
    except (ValueError, SyntaxError):
        return parameter.default
