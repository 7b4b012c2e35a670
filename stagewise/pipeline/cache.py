"""Where cached artifacts (trained checkpoints, sampler results) live, wherever a notebook runs from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]

REPO = Path(__file__).resolve().parents[2]


def cache_dir(*parts: str) -> Path:
    """``$STAGEWISE_CACHE/<parts>``, by default ``<repository>/.cache/<parts>``.

    Notebooks execute in their own output folder, so a relative ``STAGEWISE_CACHE`` is read relative to the
    repository, not to the working directory. Outside a source checkout the default is ``~/.cache/stagewise``.
    """
    root = os.environ.get("STAGEWISE_CACHE")
    in_checkout = (REPO / "pyproject.toml").is_file()
    if root:
        base = Path(root) if Path(root).is_absolute() or not in_checkout else REPO / root
    else:
        base = REPO / ".cache" if in_checkout else Path.home() / ".cache" / "stagewise"
    return base.joinpath(*parts)
