"""The notebook pipeline: parameter validation, running notebooks, metrics files, building the book.

Used by the chapters (``validate_parameters``, ``write_metrics``) and by ``python -m stagewise``.
Nothing of the science lives here, and the science never imports it.
"""

from .metrics import versions, write_metrics
from .params import (File, Folder, Interval, OneOf, Optional, Parameter, ParameterError, Parameters, Pattern, Satisfies,
                     Span, parse_value, validate_parameters)
from .runner import NotebookError, NotebookFailed, parameter_table, resolve_notebook, run_notebook

__all__ = [
    "File",
    "Folder",
    "Interval",
    "NotebookError",
    "NotebookFailed",
    "OneOf",
    "Optional",
    "Parameter",
    "ParameterError",
    "Parameters",
    "Pattern",
    "Satisfies",
    "Span",
    "parameter_table",
    "parse_value",
    "resolve_notebook",
    "run_notebook",
    "validate_parameters",
    "versions",
    "write_metrics",
]
