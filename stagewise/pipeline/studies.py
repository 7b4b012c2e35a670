"""Studies: named sweeps over one chapter, declared in ``notebooks/studies.yaml``, run by the sweep engine as
cached build steps; a page reads their tidy results with :func:`stagewise.artifacts.load_study`.

    python -m stagewise study robustness_loo --profile quick     # or: make study NAME=robustness_loo

A study's folder holds ``results.csv`` (one row per run: the swept parameters and seed, status, error, seconds,
attempts and every metric of the chapter by its key path), ``study.json`` (name, the command that reproduces it,
git commit and dirty flag, grid, seeds, the base values, the machine, start, end, seconds, its cache key) and
``runs/``, the sweep folder with every run's executed notebook. (``seconds`` is the wall time from the study's
start, its runs queued among the book's chapters included; ``run_seconds`` the sum of its runs' times.) An in-book study (``in_book: true``) lives in
``build/<profile>/studies/NAME/``; ``make book`` runs its runs as tasks of the build's Dask cluster beside the
chapters, and the pages that read it (``pages``) wait for it. A study that is too slow for the book lives in
``studies/NAME/``, committed (without ``runs/``), and the page reads it as it is. Either way an unchanged study
(same grid, seeds, base values, chapter source and package code) is not run again, and an interrupted one
resumes: the runs that finished are kept.
"""

from __future__ import annotations

import os
import platform
import uuid
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from stagewise.artifacts import REPO, STUDY_FILES, cache_key, read_json, write_bytes, write_json
from .params import default_value
from .profiles import profile_values
from .runner import load_notebook, package_hash, parameter_table, resolve_notebook
from .runs import RunsError
from .sweep import check_grid, create, pending, record, run_task, submit, sweep_table

__all__ = ["STUDIES_FILE", "Study", "StudyError", "StudyPlan", "load_studies", "plan_study", "run_study"]

STUDIES_FILE = "studies.yaml"  # beside the chapter sources, in the notebooks folder
RESULTS, RECORD = STUDY_FILES
FIELDS = {"chapter", "profile", "grid", "seeds", "in_book", "description", "pages", "profiles"}


class StudyError(RunsError):
    """A study that is not declared, or declared wrongly (names the study, the field and the fix)."""


@dataclass(frozen=True)
class Study:
    """One entry of ``notebooks/studies.yaml``: a sweep of ``chapter`` over ``grid`` (and ``seeds``) from the
    values of ``profile``; ``profiles`` gives another grid or seeds for a profile (the quick book's study)."""

    name: str
    chapter: str
    profile: str = "full"
    grid: dict = field(default_factory=dict)
    seeds: int | None = None
    in_book: bool = False
    description: str = ""
    pages: tuple[str, ...] = ()
    profiles: dict = field(default_factory=dict)

    def sweep(self, profile: str) -> tuple[dict, int | None]:
        """(grid, seeds) of the study run with ``profile``: its own, with that profile's overrides."""
        override = self.profiles.get(profile, {})
        return {**self.grid, **override.get("grid", {})}, override.get("seeds", self.seeds)


def load_studies(notebooks_dir: str | Path = "notebooks") -> dict[str, Study]:
    """Every study of ``<notebooks_dir>/studies.yaml`` (none when there is no such file), checked."""
    path = Path(notebooks_dir) / STUDIES_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    studies = {}
    for name, entry in data.items():
        where = f"{path}: {name}"
        if not isinstance(entry, dict) or "chapter" not in entry:
            raise StudyError(f"{where}: a study is a mapping with at least `chapter` and `grid`")
        unknown = set(entry) - FIELDS
        if unknown:
            raise StudyError(f"{where}: unknown field(s) {sorted(unknown)} (accepted: {', '.join(sorted(FIELDS))})")
        grids = [entry.get("grid", {}), *[o.get("grid", {}) for o in (entry.get("profiles") or {}).values()]]
        for grid in grids:
            if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
                raise StudyError(f"{where}: a grid maps each parameter to a non-empty list of values, "
                                 f"e.g. {{step_size: [0.0001, 0.0003]}} (got {grid!r})")
        studies[name] = Study(name=name, chapter=str(entry["chapter"]), profile=entry.get("profile", "full"),
                              grid=entry.get("grid", {}), seeds=entry.get("seeds"),
                              in_book=bool(entry.get("in_book", False)),
                              description=str(entry.get("description", "")).strip(),
                              pages=tuple(entry.get("pages") or ()), profiles=entry.get("profiles") or {})
    return studies


def study_folder(study: Study, profile: str, root: str | Path = REPO) -> Path:
    """Where ``study`` run with ``profile`` writes: ``build/<profile>/studies/NAME`` in the book, else the
    committed ``studies/NAME``."""
    if study.in_book:
        return Path(os.environ.get("STAGEWISE_STUDIES") or Path(root) / "build" / profile / "studies") / study.name
    return Path(root) / "studies" / study.name


@dataclass
class StudyPlan:
    """A study checked and ready: its folder, cache key and the runs still to do (none when ``cached``)."""

    study: Study
    profile: str
    folder: Path
    key: str
    record: dict  # what study.json will hold, but the times and counts
    todo: list[int]
    cached: bool

    def submit(self, client):
        """The study's runs as tasks of ``client``, and a task that writes its results once they finished."""
        runs = submit(client, self.folder / "runs", self.todo)
        return client.submit(finish, str(self.folder), self.record, time.time(), *runs, pure=False,
                             key=f"study-{self.study.name}-{uuid.uuid4().hex[:8]}")

    def run(self) -> dict:
        """The study's runs one after another in this process, then its results."""
        spec = read_json(self.folder / "runs" / "sweep.json")
        start = time.time()
        results = [run_task(i, spec["notebook"], spec["combinations"][i], str(self.folder / "runs"), spec["profile"])
                   for i in self.todo]
        return finish(str(self.folder), self.record, start, *results)


def _git() -> tuple[str, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout
    except OSError:
        return "unknown", True
    return commit.strip() or "unknown", bool(dirty.strip())


def plan_study(name: str | Study, profile: str | None = None, *, notebooks_dir: str | Path = "notebooks",
               root: str | Path = REPO, retries: int = 2) -> StudyPlan:
    """Check study ``name`` as it will run with ``profile`` (default: the study's own) and prepare its folder:
    cached when its results match its cache key; else its sweep folder, resumed when it holds runs of the same
    key, started afresh otherwise. Raises :class:`StudyError` or :class:`ParameterError` before anything runs."""
    studies = load_studies(notebooks_dir)
    if isinstance(name, str):
        if name not in studies:
            raise StudyError(f"no study {name!r} in {Path(notebooks_dir) / STUDIES_FILE} "
                             f"(studies: {', '.join(studies) or 'none'})")
        name = studies[name]
    study, profile = name, profile or name.profile
    path = resolve_notebook(study.chapter, notebooks_dir).resolve()
    nb, base = load_notebook(path), profile_values(path, profile)
    grid, seeds = study.sweep(profile)
    grid = check_grid(nb, path, grid, seeds, base=base)
    key = cache_key({"study": study.name, "grid": grid, "base": base}, path, code=package_hash())
    folder = study_folder(study, profile, root)
    recorded = read_json(folder / RECORD)
    if isinstance(recorded, dict) and recorded.get("key") == key and (folder / RESULTS).is_file():
        return StudyPlan(study, profile, folder, key, recorded, [], cached=True)
    device = {**{p.name: default_value(p) for p in parameter_table(nb)}, **base}.get("device", "cpu")
    command = shlex.join(["python", "-m", "stagewise", "study", study.name,
                          *(["--profile", profile] if profile != study.profile else [])])
    commit, dirty = _git()
    record_ = {"name": study.name, "description": study.description, "chapter": path.stem, "profile": profile,
               "in_book": study.in_book, "command": command, "commit": commit, "dirty": dirty, "grid": grid,
               "seeds": seeds, "parameters": base, "key": key,
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                           "torch": metadata.version("torch"), "device": device}}
    runs = folder / "runs"
    if not (isinstance(recorded, dict) and recorded.get("key") == key and (runs / "sweep.json").is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        create(runs, path, grid, profile, retries, command)
        write_json({**record_, "status": "running"}, folder / RECORD)
    return StudyPlan(study, profile, folder, key, record_, pending(runs), cached=False)


def finish(folder: str, record_: dict[str, Any], start: float, *results: dict) -> dict:
    """Record the finished runs (``results``), then write the study's ``results.csv`` and ``study.json``."""
    folder = Path(folder)
    for result in results:
        record(folder / "runs", result)
    table = sweep_table(folder / "runs")
    names = list(record_["grid"])
    table = table.rename(columns={f"param.{n}": n for n in names})
    drop = {"index", "worker", "folder", "started", "chapter"} | {c for c in table.columns if c.startswith("param.")}
    first = [c for c in (*names, "status", "error", "seconds", "attempts") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in drop and c not in first]]
    write_bytes(table.to_csv(index=False).encode(), folder / RESULTS)
    end = time.time()
    done = {**record_, "status": "done", "runs": len(table), "statuses": table["status"].value_counts().to_dict(),
            "start": datetime.fromtimestamp(start).isoformat(timespec="seconds"),
            "end": datetime.fromtimestamp(end).isoformat(timespec="seconds"), "seconds": round(end - start, 1),
            "run_seconds": round(float(table["seconds"].fillna(0).sum()), 1)}
    write_json(done, folder / RECORD)
    return done


def run_study(name: str, profile: str | None = None, *, workers: int | None = None, scheduler: str | None = None,
              notebooks_dir: str | Path = "notebooks", root: str | Path = REPO, log=print) -> dict:
    """Run study ``name`` (see :func:`plan_study`) on a local Dask cluster of ``workers`` processes or on the
    scheduler at ``scheduler``; returns its study.json record."""
    from .dask_cluster import check_workers, cluster

    check_workers(workers, scheduler)
    plan = plan_study(name, profile, notebooks_dir=notebooks_dir, root=root)
    if plan.cached:
        log(f"study {plan.study.name}: up to date ({plan.folder / RESULTS})")
        return plan.record
    log(f"study {plan.study.name} ({plan.profile}): {len(plan.todo)} run(s) to go -> {plan.folder}/", flush=True)
    with cluster(workers, scheduler, log=log) as client:
        done = plan.submit(client).result()
    log(f"study {plan.study.name}: " + ", ".join(f"{n} {s}" for s, n in done["statuses"].items())
        + f" in {done['seconds']:.0f} s -> {plan.folder / RESULTS}")
    return done
