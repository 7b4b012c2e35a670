"""The notebook pipeline: parameter validation, running notebooks, metrics files, sweeps, studies, the book.

Used by the chapters (``validate_parameters`` and its rules, ``write_metrics``) and by ``python -m stagewise``.
Nothing of the science lives here, and the science never imports it.
"""

from .metrics import versions, write_metrics
from .params import (File, Folder, Interval, OneOf, Optional, Parameter, ParameterError, Parameters, Pattern,
                     Satisfies, Span, parse_value, validate_parameters)
from .runner import NotebookError, NotebookFailed, parameter_table, resolve_notebook, run_notebook
