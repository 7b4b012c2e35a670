"""Compatibility path: the SLT known-answer models live in :mod:`stagewise.models.slt` (import from there)."""

from .models.slt import *  # noqa: F401,F403
from .models.slt import __all__  # noqa: F401
