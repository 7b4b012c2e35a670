"""Compatibility path: the phase decomposition and its models live in :mod:`stagewise.models.phases` (import from
there)."""

from .models.phases import *  # noqa: F401,F403
from .models.phases import __all__  # noqa: F401
