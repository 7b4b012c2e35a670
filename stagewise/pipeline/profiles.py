"""Profiles as parameter files: a chapter's parameters cell holds the full profile's values, a profile overrides some.

A profile other than ``full`` is a folder of papermill parameter files, one per chapter::

    notebooks/profiles/quick/01_slt.yaml      # num_chains: 16, num_draws: 1000, ...

so ``papermill -f notebooks/profiles/quick/01_slt.yaml`` runs the same values as
``python -m stagewise run 01 --profile quick``. A chapter without a file in a profile's folder runs its
defaults in that profile. Values given with ``-p`` override the profile's. ``python -m stagewise params 01
--profile quick`` prints what will run and where each value comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .params import ParameterError

__all__ = ["DEFAULT_PROFILE", "PROFILES_DIR", "ProfileError", "available_profiles", "profile_file",
           "profile_values", "resolve_values"]

#: The profile of the parameters cells themselves (the book's).
DEFAULT_PROFILE = "full"
#: Where profile folders live, inside the notebooks folder.
PROFILES_DIR = "profiles"


class ProfileError(ParameterError):
    """An unknown profile, or a profile file that is not a flat mapping of parameter names to plain values."""


def available_profiles(notebooks_dir: str | Path = "notebooks") -> list[str]:
    """``full`` and every folder under ``notebooks/profiles/``, sorted."""
    folder = Path(notebooks_dir) / PROFILES_DIR
    found = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [DEFAULT_PROFILE, *[name for name in found if name != DEFAULT_PROFILE]]


def profile_file(source: str | Path, profile: str) -> Path:
    """The parameter file of chapter ``source`` (``notebooks/01_slt.md``) in ``profile`` (it may not exist)."""
    source = Path(source)
    return source.parent / PROFILES_DIR / profile / f"{source.stem}.yaml"


def profile_values(source: str | Path, profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """The values ``profile`` gives chapter ``source``: empty for ``full`` or when the chapter has no file."""
    source = Path(source)
    if profile == DEFAULT_PROFILE:
        return {}
    accepted = available_profiles(source.parent)
    if profile not in accepted:
        raise ProfileError(f"profile = {profile!r} (accepted: {' or '.join(map(repr, accepted))}; a profile is a "
                           f"folder of parameter files under {source.parent / PROFILES_DIR}/)")
    path = profile_file(source, profile)
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not readable as YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise ProfileError(f"{path}: a profile file is a flat mapping of parameter names to values, "
                           f"like papermill's -f files (got {type(data).__name__})")
    return dict(data)


def resolve_values(source: str | Path, profile: str, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict]:
    """(values to inject, where each came from): the profile's values overridden by ``given`` (``-p``)."""
    values = profile_values(source, profile)
    origin = {name: f"profile {profile}" for name in values}
    values.update(given)
    origin.update({name: "-p" for name in given})
    return values, origin
