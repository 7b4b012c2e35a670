"""Expected results as data: the bounds each chapter's metrics.json must meet, per profile.

The bounds live in ``notebooks/expected.yaml``, one entry per chapter (the notebook's stem) and profile::

    01_slt:
      quick:
        llc_max_rel_error: {max: 0.5, note: "16 chains x 1000 draws: noisy"}
      full:
        llc.*.rel_error: {max: 0.15}
      goals:
        llc_max_rel_error: {max: 0.05, note: "asked for; not reached"}

A key is a key path into metrics.json (:mod:`stagewise.pipeline.metrics`). A bound is ``min`` and / or ``max``
(inclusive), or ``equals``; ``note`` says why it is set where it is. A check fails when the key is missing, when
``*`` matches nothing, or when the value is null, NaN, not a number (for min / max) or out of bounds. ``goals`` are
targets a chapter does not reach (yet): checked with the full profile and reported, never failing.

``tests/pipeline/test_expected.py`` checks every bound over a built book's metrics (pytest marker ``book``); the
book builder checks them too, and a failed quick bound fails the quick build. One run folder:
``python -m stagewise check runs/01_slt/<stamp>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .metrics import lookup

__all__ = ["EXPECTED_FILE", "Bound", "Check", "ExpectationError", "check_book", "check_chapter", "check_metrics",
           "load_expectations", "parse_expectations"]

EXPECTED_FILE = "expected.yaml"  # beside the chapter sources, in the notebooks folder
PROFILES = ("full", "quick")
GOALS = "goals"  # the pseudo-profile of targets not (yet) reached: checked with the full profile, never failing
_UNSET = object()


class ExpectationError(ValueError):
    """The expectations file is malformed, or names a chapter that is not built."""


@dataclass(frozen=True)
class Bound:
    """What one value must satisfy: min ≤ value ≤ max (either may be None), or value == equals."""

    min: float | None = None
    max: float | None = None
    equals: Any = _UNSET
    note: str = ""

    def __str__(self) -> str:
        if self.equals is not _UNSET:
            return f"= {json.dumps(self.equals)}"
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        return f"≥ {self.min:g}" if self.min is not None else f"≤ {self.max:g}"

    def failure(self, value: Any) -> str | None:
        """Why ``value`` breaks the bound, or None when it meets it."""
        if self.equals is not _UNSET:
            if isinstance(self.equals, bool) or isinstance(value, bool):  # True is not 1 here
                return None if value is self.equals else "differs"
            return None if value == self.equals else "differs"
        if value is None:
            return "is null"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "is not a number"
        if math.isnan(value):
            return "is NaN"
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            return "out of bounds"
        return None


@dataclass(frozen=True)
class Check:
    """One checked value: chapter, profile, the concrete key path (``llc.1.rel_error``), its value and the bound."""

    chapter: str
    profile: str
    key: str
    value: Any
    bound: str
    failure: str | None = None  # None: the bound is met
    goal: bool = False  # a goal (reported, never failing), not a bound

    @property
    def ok(self) -> bool:
        return self.failure is None

    def __str__(self) -> str:
        shown = "missing" if self.failure == "missing" else f"= {json.dumps(self.value)}"
        verdict = "ok" if self.ok else f"{'not reached' if self.goal else 'FAILED'} ({self.failure})"
        return f"{self.chapter} ({self.profile}): {self.key} {shown}, {'goal' if self.goal else 'bound'} " \
               f"{self.bound}: {verdict}"


def _bound(spec: Any, where: str) -> Bound:
    if not isinstance(spec, Mapping) or not spec:
        raise ExpectationError(f"{where}: a bound is a mapping such as {{min: 0, max: 1}} or {{equals: true}} "
                               f"(got {spec!r})")
    unknown = set(spec) - {"min", "max", "equals", "note"}
    if unknown:
        raise ExpectationError(f"{where}: unknown field(s) {sorted(unknown)} (accepted: min, max, equals, note)")
    if "equals" in spec:
        if "min" in spec or "max" in spec:
            raise ExpectationError(f"{where}: `equals` cannot be combined with `min` / `max`")
        return Bound(equals=spec["equals"], note=str(spec.get("note", "")))
    low, high = spec.get("min"), spec.get("max")
    for name, value in (("min", low), ("max", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
            raise ExpectationError(f"{where}: {name} = {value!r} must be a number")
    if low is None and high is None:
        raise ExpectationError(f"{where}: give min, max or equals")
    if low is not None and high is not None and low > high:
        raise ExpectationError(f"{where}: min = {low} is larger than max = {high}")
    return Bound(min=low, max=high, note=str(spec.get("note", "")))


def parse_expectations(data: Any, source: str = "expectations") -> dict[str, dict[str, dict[str, Bound]]]:
    """chapter → profile → key → :class:`Bound`, from the parsed YAML; raises :class:`ExpectationError`."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ExpectationError(f"{source}: a mapping of chapter → profile → key → bound (got {type(data).__name__})")
    parsed: dict[str, dict[str, dict[str, Bound]]] = {}
    for chapter, profiles in data.items():
        if not isinstance(profiles, Mapping):
            raise ExpectationError(f"{source}: {chapter}: a mapping of profile ({', '.join(PROFILES)}) → bounds")
        parsed[str(chapter)] = {}
        for profile, bounds in profiles.items():
            if profile not in (*PROFILES, GOALS):
                raise ExpectationError(f"{source}: {chapter}: unknown profile {profile!r} "
                                       f"(accepted: {', '.join(PROFILES)}, or {GOALS})")
            if not isinstance(bounds, Mapping):
                raise ExpectationError(f"{source}: {chapter}.{profile}: a mapping of metrics key → bound")
            parsed[str(chapter)][profile] = {str(key): _bound(spec, f"{source}: {chapter}.{profile}.{key}")
                                             for key, spec in bounds.items()}
    return parsed


def load_expectations(path: str | Path) -> dict[str, dict[str, dict[str, Bound]]]:
    """The expectations file at ``path`` (YAML), parsed and checked; raises :class:`ExpectationError`."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ExpectationError(f"{path}: cannot read the expectations ({error})") from error
    return parse_expectations(data, str(path))


def check_metrics(metrics: Mapping[str, Any], bounds: Mapping[str, Bound], *, chapter: str = "",
                  profile: str = "", goal: bool = False) -> list[Check]:
    """Check ``metrics`` (a parsed metrics.json) against ``bounds`` (key path → :class:`Bound`): every check."""
    checks = []
    for key, bound in bounds.items():
        found = lookup(metrics, key)
        if not found:
            checks.append(Check(chapter, profile, key, None, str(bound), "missing", goal))
        checks += [Check(chapter, profile, concrete, value, str(bound), bound.failure(value), goal)
                   for concrete, value in found]
    return checks


def check_chapter(chapter: str, metrics_path: str | Path, expectations: Mapping, profile: str) -> list[Check]:
    """The checks of one chapter's metrics.json for ``profile`` (with the full profile, its goals too); a missing
    or unreadable metrics.json fails every bound."""
    sections = [(expectations.get(chapter, {}).get(profile, {}), False)]
    if profile == "full":
        sections.append((expectations.get(chapter, {}).get(GOALS, {}), True))
    if not any(bounds for bounds, _ in sections):
        return []
    try:
        metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        reason = f"no readable metrics.json ({type(error).__name__})"
        return [Check(chapter, profile, key, None, str(bound), reason, goal)
                for bounds, goal in sections for key, bound in bounds.items()]
    return [check for bounds, goal in sections
            for check in check_metrics(metrics, bounds, chapter=chapter, profile=profile, goal=goal)]


def check_book(chapters: Sequence[tuple[str, str | Path]], expectations_file: str | Path, profile: str, *,
               log=print) -> list[Check]:
    """Check each (chapter stem, metrics.json path) against the bounds in ``expectations_file``: logs every failed
    check (and goal not reached) and a one-line summary, returns the failed bounds (goals never count). No such
    file: nothing to check. Raises :class:`ExpectationError` for a malformed file or one that names a chapter not
    in ``chapters``."""
    if not Path(expectations_file).is_file():
        return []
    expectations = load_expectations(expectations_file)
    stems = [stem for stem, _ in chapters]
    unknown = sorted(set(expectations) - set(stems))
    if unknown:
        raise ExpectationError(f"{expectations_file}: no such chapter(s) {unknown} in the book "
                               f"(chapters: {', '.join(stems)})")
    checks = [c for stem, path in chapters for c in check_chapter(stem, path, expectations, profile)]
    bounds = [c for c in checks if not c.goal]
    failed = [c for c in bounds if not c.ok]
    unreached = [c for c in checks if c.goal and not c.ok]
    for check in failed:
        log(f"expectation not met: {check}")
    for check in unreached:
        log(f"goal not reached: {check}")
    log(f"expectations ({profile}): {len(bounds) - len(failed)} of {len(bounds)} bounds met"
        + (f", {len(failed)} failed" if failed else "")
        + (f"; {len(unreached)} of {len(checks) - len(bounds)} goals not reached" if unreached else ""))
    return failed
