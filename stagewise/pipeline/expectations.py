"""Expected results as data: the bounds each chapter's metrics.json must meet, per profile, and their checker.

The bounds live in ``notebooks/expected.yaml``, one entry per chapter (the notebook's stem) and profile::

    01_slt:
      quick:
        llc_max_rel_error: {max: 0.5, note: "16 chains x 1000 draws: noisy"}
      full:
        llc.*.rel_error: {max: 0.15}
        divergence.step: {min: 1}

A chapter may also list ``goals``: targets the project set but the chapter does not reach (yet). They are
checked with the full profile and reported, and never fail a build; a bound guards what the chapter does achieve::

    04_loo:
      goals:
        bif_loo_corr_median: {min: 0.7, note: "the agreement asked for; the chapter reaches 0.61"}

A key is a path into metrics.json: dots between keys, ``*`` for every element of a list (or value of a mapping),
an integer for one element (``llc.0.rel_error``); a key that itself holds dots (``degenerate_bif_max.0.1``) is
matched as written. A bound is ``min`` and / or ``max`` (inclusive), or ``equals``; ``note`` says why it is set
where it is. A check fails when the key is missing, when ``*`` matches nothing, or when the value is null, NaN,
not a number (for min / max) or out of bounds.

The book builder (:func:`check_book`) checks every executed or cached chapter: in the quick profile a failed
bound fails the build, in the full profile it is reported. Either way the results go to
``build/<profile>/expectations.json``. To check one run folder::

    python -m stagewise.pipeline.expectations runs/01_slt/20250101-120000/metrics.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from stagewise.artifacts import read_json

__all__ = ["EXPECTED_FILE", "REPORT_FILE", "Bound", "Check", "ExpectationError", "check_book", "check_chapter",
           "check_metrics", "load_expectations"]

EXPECTED_FILE = "expected.yaml"  # beside the chapter sources, in the notebooks folder
REPORT_FILE = "expectations.json"  # in the book's staging tree, build/<profile>/
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
    """One checked value: chapter, profile, the concrete key (``llc[1].rel_error``), its value and the bound."""

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
        kind = "goal" if self.goal else "bound"
        return f"{self.chapter} ({self.profile}): {self.key} {shown}, {kind} {self.bound}: {verdict}"


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


def load_expectations(path: str | os.PathLike) -> dict[str, dict[str, dict[str, Bound]]]:
    """The expectations file at ``path`` (YAML), parsed and checked; raises :class:`ExpectationError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ExpectationError(f"{path}: cannot read the expectations ({error})") from error
    return parse_expectations(data, str(path))


def _resolve(data: Any, parts: list[str], shown: str) -> list[tuple[str, Any]]:
    """Every (concrete key, value) that the path ``parts`` names in ``data``; empty when it names nothing."""
    if not parts:
        return [(shown, data)]
    head, rest = parts[0], parts[1:]
    if isinstance(data, Mapping):
        if head == "*":
            return [found for key, value in data.items() for found in _resolve(value, rest, f"{shown}.{key}")]
        for n in range(len(parts), 0, -1):  # the longest run of parts that is one key: "0.1" before "0"
            key = ".".join(parts[:n])
            if key in data:
                return _resolve(data[key], parts[n:], f"{shown}.{key}" if shown else key)
        return []
    if isinstance(data, list):
        if head == "*":
            return [found for i, value in enumerate(data) for found in _resolve(value, rest, f"{shown}[{i}]")]
        if head.lstrip("-").isdigit() and -len(data) <= int(head) < len(data):
            return _resolve(data[int(head)], rest, f"{shown}[{int(head)}]")
    return []


def check_metrics(metrics: Mapping[str, Any], bounds: Mapping[str, Bound], *, chapter: str = "",
                  profile: str = "", goal: bool = False) -> list[Check]:
    """Check ``metrics`` (a parsed metrics.json) against ``bounds`` (key path → :class:`Bound`): every check."""
    checks = []
    for key, bound in bounds.items():
        found = _resolve(metrics, key.split("."), "")
        if not found:
            checks.append(Check(chapter, profile, key, None, str(bound), "missing", goal))
        for concrete, value in found:
            checks.append(Check(chapter, profile, concrete, value, str(bound), bound.failure(value), goal))
    return checks


def check_chapter(chapter: str, metrics_path: str | os.PathLike, expectations: Mapping, profile: str) -> list[Check]:
    """The checks of one chapter's metrics.json for ``profile`` (with the full profile, its goals too).

    A missing or unreadable metrics.json fails every bound.
    """
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


def _write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def check_book(chapters: Sequence[tuple[str, str | os.PathLike]], expectations_file: str | os.PathLike,
               profile: str, report: str | os.PathLike | None = None, *, log=print) -> list[Check]:
    """Check each (chapter stem, metrics.json path) against the bounds in ``expectations_file``.

    Logs every failed check (and goal not reached) and a one-line summary, writes every check to ``report`` (JSON)
    and returns the failed bounds (goals never count). No expectations file: nothing to check (an empty list). Raises :class:`ExpectationError` for a
    malformed file or one that names a chapter not in ``chapters``.
    """
    expectations_file = Path(expectations_file)
    if not expectations_file.is_file():
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
    if report is not None:
        _write_report({"profile": profile, "expectations": str(expectations_file), "checked": len(checks),
                       "failed": [asdict(c) for c in failed], "goals_not_reached": [asdict(c) for c in unreached],
                       "checks": [asdict(c) for c in checks]}, Path(report))
    return failed


def _chapter_of(metrics_path: Path, expectations: Mapping) -> str | None:
    # runs/<chapter>/<timestamp>/metrics.json or build/<profile>/chapters/<chapter>/metrics.json
    for folder in (metrics_path.parent, metrics_path.parent.parent):
        if folder.name in expectations:
            return folder.name
    return None


def main(argv: list[str] | None = None) -> int:
    """Check one metrics.json against its chapter's bounds; exit 1 when one fails, 2 for a usage error."""
    parser = argparse.ArgumentParser(prog="python -m stagewise.pipeline.expectations", description=main.__doc__)
    parser.add_argument("metrics", type=Path, help="a metrics.json, e.g. runs/01_slt/<timestamp>/metrics.json")
    parser.add_argument("--chapter", help="the chapter's stem (default: read from the folder names)")
    parser.add_argument("--profile", choices=PROFILES, help="default: the profile recorded in the run folder's run.json")
    parser.add_argument("--expected", type=Path, default=Path("notebooks") / EXPECTED_FILE,
                        help="the expectations file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        expectations = load_expectations(args.expected)
        metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
    except (ExpectationError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chapter = args.chapter or _chapter_of(args.metrics, expectations)
    run = read_json(args.metrics.with_name("run.json"))  # a run folder records the profile it ran with
    profile = (args.profile or (run.get("profile") if isinstance(run, dict) else None)
               or metrics.get("parameters", {}).get("profile", "full"))
    if chapter not in expectations:
        print(f"error: chapter {chapter!r} has no expectations in {args.expected} (chapters: "
              f"{', '.join(expectations)}); name it with --chapter", file=sys.stderr)
        return 2
    checks = check_chapter(chapter, args.metrics, expectations, profile)
    for check in checks:
        print(check)
    failed = sum(not c.ok and not c.goal for c in checks)
    print(f"{sum(not c.goal for c in checks) - failed} of {sum(not c.goal for c in checks)} bounds met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
