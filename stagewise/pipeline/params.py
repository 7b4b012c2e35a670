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
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from stagewise.config import ConfigError, File, Folder, Interval, OneOf, Optional, Pattern, Rule, Satisfies, Span

__all__ = [
    "File",
    "Optional",
    "Pattern",
    "Satisfies",
    "Span",
    "Folder",
    "Interval",
    "OneOf",
    "Parameter",
    "ParameterError",
    "Parameters",
    "check_parameters",
    "default_value",
    "parse_parameters_cell",
    "parse_value",
    "validate_parameters",
]

#: Types a parameter may hold: what papermill can inject as a Python literal.
PLAIN_TYPES = (bool, int, float, str, type(None), list, tuple, dict)

#: Names IPython puts in a kernel's namespace that are not parameters.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open", "display"})

_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": tuple, "dict": dict}


class ParameterError(ConfigError):
    """One or more notebook parameters are unknown, of the wrong type or out of range.

    ``problems`` lists one message per problem; ``str(error)`` joins them, one per line. A
    :class:`stagewise.config.ConfigError`, so one ``except`` catches a bad parameter and a bad config alike.
    """


# ------------------------------------------------------------------------------------- type checks


def _annotation(node: ast.expr) -> Any:
    """The runtime type of an annotation's syntax tree: a plain type's name, ``None``, ``Any``, ``X | Y``,
    ``Optional[X]``, ``Union[...]`` and ``list[...]``-style generics (checked as their container)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        return _resolve_type(node.value)
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    if name is not None:
        if name in _TYPE_NAMES:
            return _TYPE_NAMES[name]
        if name in ("None", "NoneType"):
            return None
        return Any
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_annotation(node.left), _annotation(node.right)]
    if isinstance(node, ast.Subscript):
        base = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", None)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return typing.Optional[_annotation(items[0])]
        if base == "Union":
            return typing.Union[tuple(_annotation(item) for item in items)]
        return _TYPE_NAMES.get(str(base).lower(), Any)  # list[int], Dict[str, float]: the container
    return Any


def _resolve_type(annotation: Any) -> Any:
    """The runtime type of an annotation (a type, or its source text as in ``"float"``), read without running it."""
    if isinstance(annotation, str):
        text = annotation.strip()
        if text in ("Any", ""):
            return Any
        try:
            return _annotation(ast.parse(text, mode="eval").body)
        except SyntaxError:  # an annotation we cannot read: accept any plain value
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
            problems.append(f"parameter {name!r} = {new!r} is out of range (accepted: {rule.describe()})")
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
    """The parameters declared in a parameters cell's source, in order, as papermill's own inspection reads them.

    Every top-level statement must be an annotated assignment ``name: type = default  # help``;
    anything else raises :class:`ParameterError`, since neither the runner nor papermill could
    read it. A default written over several lines is shown on one.
    """
    from nbformat.v4 import new_code_cell
    from papermill.translators import PythonTranslator

    lines = source.splitlines()
    problems = [f"the parameters cell may hold only `name: type = default  # help` lines; "
                f"line {node.lineno} is {lines[node.lineno - 1].strip()!r}" for node in ast.parse(source).body
                if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None)]
    if problems:
        raise ParameterError(problems)
    parameters = []
    for found in PythonTranslator.inspect(new_code_cell(source)):
        default = found.default
        if default[:1] in "[({":  # a container papermill joined from several lines: shown as Python writes it
            try:
                default = ast.unparse(ast.parse(default, mode="eval").body)
            except SyntaxError:
                pass
        parameters.append(Parameter(found.name, found.inferred_type_name, default, found.help))
    return parameters


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
    except ValueError:
        return parameter.default
