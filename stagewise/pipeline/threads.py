"""How many threads a chapter may use: from the machine, never a hard-coded count.

The cores this process may run on (``os.sched_getaffinity``, which respects containers and ``taskset``),
capped by ``STAGEWISE_THREADS`` or, failing that, ``OMP_NUM_THREADS`` when set (a Dask worker of a sweep or of
the book build sets them so that parallel chapters do not oversubscribe the cores).
"""

from __future__ import annotations

import os

__all__ = ["available_threads"]


def available_threads() -> int:
    """Threads for a compute-heavy cell: the usable cores, capped by STAGEWISE_THREADS / OMP_NUM_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    for name in ("STAGEWISE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                limit = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a positive integer") from None
            if limit < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
            return max(1, min(cores, limit))
    return max(1, cores)
