"""Compatibility path: the models with known influence live in :mod:`stagewise.models.bif` (import from there)."""

from .models.bif import *  # noqa: F401,F403
from .models.bif import __all__  # noqa: F401
