"""Building the book: execute every notebook of the table of contents, then a strict Jupyter Book build.

``book/`` holds the authored sources (_config.yml, _toc.yml, intro.md, references.bib). A toc
entry that is not an authored page, such as ``chapters/01_slt``, names the notebook
``notebooks/01_slt.md``. For a profile (``full`` for the book, ``quick`` for the tests) the
builder stages a source tree ``build/<profile>/``:

    build/<profile>/_config.yml, _toc.yml, intro.md, ...   copies of book/
    build/<profile>/chapters/01_slt.ipynb                  the executed notebook
    build/<profile>/chapters/01_slt.stamp.json             its cache key and execution time
    build/<profile>/chapters/01_slt/                       its working directory: metrics.json, figures
    build/<profile>/studies/<name>/                        an in-book study (studies.py): results.csv, study.json

    build/<profile>/rerun.md                               generated: every chapter's parameters (rerun.py)
    build/<profile>/_vendor/_static/mathjax/tex-svg-full.js  MathJax, from the npm registry (cached in .cache/npm)
    build/<profile>/_vendor/_static/fonts/*.woff2           the book's fonts, from the npm registry likewise

and builds it with ``jupyter-book build -W -n --keep-going`` (Jupyter Book's own execution is off).
The full book's HTML goes to ``book/_build/html``, the quick one's to ``build/quick/_build/html``.

The book reads offline: MathJax is served from ``_static`` (``sphinx: config: mathjax_path`` in
``_config.yml``; its SVG output needs no web fonts). The text and code fonts (Source Sans 3 and Source Code Pro,
SIL Open Font License) are served from there too, so a page is laid out alike on every machine, whatever fonts
it has installed (``book/_static/stagewise.css`` names them). Both are staged under ``_vendor/`` and copied by
``html_extra_path``, not put in a ``_static`` source folder, where Jupyter Book would add every .js file
to every page a second time. Nothing else of a page loads from the network
(``tests/test_browser.py`` opens every page with the network blocked).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import yaml

from stagewise.artifacts import STUDY_FILES, cache_dir, tree_digest, write_bytes, write_json
from . import numbers
from .clean import clean_notebook, machine_paths, strip_solutions
from .dask_cluster import ClusterError, NotebookJob, execute_notebooks, resolve_workers
from .expectations import EXPECTED_FILE, ExpectationError, check_book
from .rerun import PAGE as RERUN_PAGE, write_rerun_page
from .profiles import profile_values
from .runner import cached_seconds, check_many, load_notebook, resolve_notebook
from .studies import load_studies, plan_study, study_folder

__all__ = ["BookError", "BookResult", "build_book", "toc_files"]

PROFILES = ("full", "quick")
PAGE_SUFFIXES = (".md", ".ipynb", ".rst")

#: MathJax, installed from the npm registry at build time and served from the book's ``_static``.
MATHJAX_VERSION = "3.2.2"
MATHJAX_FILE = "es5/tex-svg-full.js"  # every TeX extension built in, SVG output: no fonts or extensions to fetch
MATHJAX_STATIC = "mathjax/tex-svg-full.js"  # under _static; _config.yml's mathjax_path names the same
#: The book's fonts (npm package -> version and the package's CSS files of the weights and styles the theme
#: uses). Their @font-face rules, every subset (latin, greek, cyrillic, ...) with its unicode-range, are
#: gathered into ``_static/fonts.css``, the woff2 files they name into ``_static/fonts/``.
FONT_PACKAGES = {"@fontsource/source-sans-3": ("5.3.1", ["400.css", "400-italic.css", "600.css", "600-italic.css",
                                                         "700.css", "700-italic.css"]),
                 "@fontsource/source-code-pro": ("5.3.1", ["400.css", "700.css"])}
FONTS_STATIC = "fonts"  # under _static
VENDOR_DIR = "_vendor"  # staged beside the sources; _config.yml's html_extra_path names it


class BookError(Exception):
    """The book could not be built: a notebook failed or the strict HTML build reported problems."""


@dataclass
class BookResult:
    html: Path
    executed: list[tuple[str, float]] = field(default_factory=list)
    cached: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def toc_files(toc: dict) -> list[str]:
    """Every ``root`` / ``file`` entry of a Jupyter Book ``_toc.yml``, in reading order."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    found.append(str(node[key]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return found


def _stage_sources(book_dir: Path, stage: Path) -> None:
    """Copy the authored book sources into the staging tree.

    Unchanged files are left alone; files staged before but since removed from ``book_dir`` are
    removed (a manifest, ``.staged.json``, lists what was copied).
    """
    manifest = stage / ".staged.json"
    try:
        before = set(json.loads(manifest.read_text()))
    except (OSError, ValueError):
        before = set()
    copied = []
    for source in sorted(book_dir.rglob("*")):
        relative = source.relative_to(book_dir)
        if relative.parts[0].startswith("_build") or source.is_dir():
            continue
        copied.append(relative.as_posix())
        target = stage / relative
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for gone in before - set(copied):
        (stage / gone).unlink(missing_ok=True)
    write_json(copied, manifest)


def _tree_hash(stage: Path) -> str:
    """Hash of the staged sources the HTML is built from (not the build output or the manifest)."""
    return tree_digest(stage, [file for file in stage.rglob("*") if file.is_file()
                               and not file.relative_to(stage).parts[0].startswith(("_build", ".staged"))])


def book_repository(book_dir: str | Path = "book") -> str:
    """The repository URL the book is built for: ``$STAGEWISE_REPOSITORY``, else ``repository.url`` of the
    book's ``_config.yml``; "" when neither names one (then the book has no launch or repository buttons)."""
    config = yaml.safe_load((Path(book_dir) / "_config.yml").read_text())
    return os.environ.get("STAGEWISE_REPOSITORY", str((config.get("repository") or {}).get("url") or "")).strip()


def staged_config(book_dir: str | Path = "book") -> dict:
    """The book's ``_config.yml`` as the build uses it: with a repository URL, a repository button and a
    Binder launch button (JupyterLab; the extension points it at the chapter's source); without one, neither,
    so that no button points at a placeholder. Colab is never offered: it cannot open a jupytext source."""
    config = yaml.safe_load((Path(book_dir) / "_config.yml").read_text())
    url = book_repository(book_dir)
    html = config.setdefault("html", {})
    config.pop("launch_buttons", None)
    if url:
        if not url.startswith("https://github.com/") or url.rstrip("/").count("/") != 4:
            raise BookError(f"repository url: expected https://github.com/OWNER/NAME, got {url!r}")
        config.setdefault("repository", {})["url"] = url
        html["use_repository_button"] = True
        config["launch_buttons"] = {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org"}
    else:
        config.pop("repository", None)
        html["use_repository_button"] = False
    return config


def _student_stage(book_dir: Path, stage: Path, chapters, cache, log) -> Path:
    """A copy of the staged book without solutions: ``<stage>-student`` (its own HTML output too)."""
    student = stage.with_name(f"{stage.name}-student")
    _stage_sources(book_dir, student)
    _stage_vendor(student, cache, log)
    removed = 0
    for entry, _ in chapters:
        target = student / f"{entry}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stage / f"{entry}.ipynb", target)
        if (student / entry).exists():
            shutil.rmtree(student / entry)
        if (stage / entry).is_dir():
            shutil.copytree(stage / entry, student / entry)
        removed += strip_solutions(target)
    log(f"student book: {removed} solution block(s) removed")
    return student


def _stage_config(book_dir: Path, stage: Path, profile: str, built: set[str], log) -> None:
    """The staged ``_config.yml``: :func:`staged_config` plus the headline numbers of this build as MyST
    substitutions (the landing page's ``{{ name }}``); a full build reports numbers that differ from the
    README's snapshot (book/numbers.json). Numbers of chapters not in this build (``built`` stems) are left out."""
    config = staged_config(book_dir)
    if (book_dir / numbers.SPEC_FILE).is_file():
        try:
            spec = {k: v for k, v in numbers.load_spec(book_dir).items() if v["chapter"] in built}
            measured = numbers.measure(spec, stage / "chapters")
        except numbers.NumbersError as error:
            raise BookError(f"headline numbers (book/{numbers.SPEC_FILE}): {error}") from None
        parse = config.setdefault("parse", {})
        extensions = parse.setdefault("myst_enable_extensions", [])
        if "substitution" not in extensions:
            extensions.append("substitution")
        parse["myst_substitutions"] = {**parse.get("myst_substitutions", {}), **measured}
        if profile == "full":
            for line in numbers.drift(measured, book_dir):
                log(f"numbers: {line} (after checking, `python -m stagewise numbers --update` updates the README)")
    write_bytes(yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode(), stage / "_config.yml")


def npm_package(name: str, version: str, cache: str | Path | None = None, *, log=print) -> Path:
    """The folder of npm package ``name@version``, installed with npm into ``<cache>/npm/<name>-<version>`` once."""
    prefix = (Path(cache) if cache is not None else cache_dir()) / "npm" / f"{name.replace('/', '+')}-{version}"
    folder = prefix / "node_modules" / name
    if (folder / "package.json").is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise BookError(f"npm is needed to install {name} {version} for the book (it is served offline "
                        "from the book's _static folder): install Node.js and npm, e.g. `apt-get install npm`")
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save",
               "--no-package-lock", "--loglevel=error", f"{name}@{version}"]
    log(f"book: npm install {name}@{version} into {prefix}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not (folder / "package.json").is_file():
        raise BookError(f"`{' '.join(command)}` failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return folder


def mathjax_script(cache: str | Path | None = None, *, log=print) -> Path:
    """MathJax's single-file TeX-to-SVG script (npm package ``mathjax``)."""
    script = npm_package("mathjax", MATHJAX_VERSION, cache, log=log) / MATHJAX_FILE
    if not script.is_file():
        raise BookError(f"mathjax {MATHJAX_VERSION} has no {MATHJAX_FILE}")
    return script


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _font_faces(css: str, package: str) -> tuple[str, list[str]]:
    """``css`` (a fontsource file) with each src reduced to its woff2 file under ``fonts/``; the files named."""
    files = re.findall(r"url\(\./files/([\w.-]+\.woff2)\)", css)
    if not files:
        raise BookError(f"{package}: no woff2 file named in its CSS")
    css = re.sub(r"src:\s*url\(\./files/([\w.-]+\.woff2)\) format\('woff2'\)[^;]*;",
                 lambda m: f"src: url(fonts/{m.group(1)}) format('woff2');", css)
    return css, files


def _stage_vendor(stage: Path, cache: str | Path | None, log) -> None:
    """MathJax and the fonts' files under ``_vendor/_static`` (copied into the HTML's ``_static``); the fonts'
    @font-face rules as ``_static/fonts.css`` (which Jupyter Book links from every page)."""
    static = stage / VENDOR_DIR / "_static"
    _copy_if_changed(mathjax_script(cache, log=log), static / MATHJAX_STATIC)
    rules = ["/* The book's fonts, generated by stagewise.pipeline.book from the fontsource packages (SIL Open Font "
             "License): " + ", ".join(f"{n}@{v}" for n, (v, _) in FONT_PACKAGES.items()) + " */"]
    for name, (version, stylesheets) in FONT_PACKAGES.items():
        folder = npm_package(name, version, cache, log=log)
        for sheet in stylesheets:
            css, files = _font_faces((folder / sheet).read_text(), f"{name}/{sheet}")
            rules.append(css.strip())
            for font in files:
                _copy_if_changed(folder / "files" / font, static / FONTS_STATIC / font)
    write_bytes(("\n\n".join(rules) + "\n").encode(), stage / "_static" / "fonts.css")


def jupyter_book() -> list[str]:
    """The ``jupyter-book`` command of this environment (beside its python), else the one on the PATH."""
    script = Path(sys.executable).with_name("jupyter-book")
    return [str(script)] if script.exists() else ["jupyter-book"]


def _check_expectations(chapters, stage: Path, expected: Path, profile: str, log) -> None:
    """Each chapter's metrics.json against its bounds (expectations.py): quick fails the build, full reports."""
    try:
        failed = check_book([(source.stem, stage / entry / "metrics.json") for entry, source in chapters],
                            expected, profile, log=log)
    except ExpectationError as error:
        raise BookError(str(error)) from None
    if failed and profile == "quick":
        raise BookError(f"{len(failed)} bound(s) of {expected} not met:\n" + "\n".join(f"  {c}" for c in failed))


def build_book(profile: str = "full", *, book_dir: str | Path = "book", notebooks_dir: str | Path = "notebooks",
               stage: str | Path | None = None, path_output: str | Path | None = None,
               cache: str | Path | None = None, student: bool = False, workers: int | None = None,
               log=print) -> BookResult:
    """Execute the toc's notebooks with ``profile`` and build the HTML book strictly.

    ``stage`` defaults to ``build/<profile>``; ``path_output`` (where ``_build/html`` goes) to
    ``book_dir`` for the full book and to the staging tree otherwise; ``cache`` (npm packages) to
    ``.cache`` (or ``$STAGEWISE_CACHE``). ``student``: the same book without the exercises' solutions, built
    from copies of the executed chapters in ``<stage>-student`` (HTML in ``<stage>-student/_build/html``).
    ``workers``: chapters executed at once, as Dask tasks (default ``$BOOK_WORKERS``, else one per core; 1: one
    after another in this process). Raises :class:`BookError`.
    """
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r} (accepted: {', '.join(PROFILES)})")
    stage = Path(stage) if stage is not None else Path("build") / profile
    # where the pages' kernels (and the studies) find the in-book studies: load_study reads it
    with mock.patch.dict(os.environ, {"STAGEWISE_STUDIES": str((stage / "studies").resolve())}):
        return _build(profile, Path(book_dir), Path(notebooks_dir), stage, path_output, cache, student, workers, log)


def _build(profile, book_dir, notebooks_dir, stage, path_output, cache, student, workers, log) -> BookResult:
    start = time.perf_counter()
    path_output = Path(path_output) if path_output is not None else (book_dir if profile == "full" else stage)
    _stage_sources(book_dir, stage)
    _stage_vendor(stage, cache, log)
    toc = yaml.safe_load((book_dir / "_toc.yml").read_text())

    result = BookResult(html=path_output / "_build" / "html")
    jobs = []  # the chapters to execute (not cached)
    chapters = []  # (toc entry, notebook source) of every chapter, for the generated rerun page
    for entry in toc_files(toc):
        if entry == RERUN_PAGE or any((book_dir / entry).with_suffix(s).is_file()
                                      or (book_dir / f"{entry}{s}").is_file() for s in PAGE_SUFFIXES):
            continue  # an authored or generated page
        chapters.append((entry, resolve_notebook(Path(entry).name, notebooks_dir)))
    # every chapter's profile values, checked by its own first cells in one checking process
    checked = check_many([(load_notebook(source), source, profile_values(source, profile))
                          for _, source in chapters])
    # the studies the pages read: in-book ones run beside the chapters (their results in <stage>/studies/)
    studies = {study.name: study for study in load_studies(notebooks_dir).values()
               if set(study.pages) & {source.stem for _, source in chapters}}
    plans = {name: plan_study(study, profile, notebooks_dir=notebooks_dir)
             for name, study in studies.items() if study.in_book}
    for (entry, source), parameters in zip(chapters, checked):
        output, cwd = stage / f"{entry}.ipynb", stage / entry
        read = sorted(name for name, study in studies.items() if source.stem in study.pages)
        # a page's cache key covers what it reads: an in-book study's key, a committed study's files
        data = []
        for name in read:
            files = [study_folder(studies[name], profile) / f for f in STUDY_FILES]
            data += [plans[name].key] if name in plans else [f if f.is_file() else f"no {f}" for f in files]
        data = tuple(data)
        seconds = cached_seconds(source, output, parameters, data)
        if seconds is not None and not any(name in plans and not plans[name].cached for name in read):
            result.cached.append((source.stem, seconds))
            log(f"{source.stem}: cached (last run took {seconds:.1f} s)")
            continue
        jobs.append(NotebookJob(source, output, cwd, parameters, data, tuple(n for n in read if n in plans)))
    for name, plan in plans.items():
        log(f"study {name}: " + (f"cached ({plan.folder})" if plan.cached else f"{len(plan.todo)} run(s) to go"))
    # The chapters are independent: with more than one worker they run as Dask tasks (dask_cluster.py).
    try:
        workers = resolve_workers(workers)
    except ClusterError as error:
        raise BookError(str(error)) from None
    result.executed, failures = execute_notebooks(
        jobs, workers, studies=[plan for plan in plans.values() if not plan.cached],
        label=lambda job: f"running with profile {profile}", log=log)
    if failures:
        raise BookError(f"{len(failures)} notebook(s) failed: " + ", ".join(f.notebook.stem for f in failures))
    paths = machine_paths(stage)
    for entry, _ in chapters:  # what the book shows and offers for download: no stderr, no machine paths
        clean_notebook(stage / f"{entry}.ipynb", paths)
    if student:
        stage = path_output = _student_stage(book_dir, stage, chapters, cache, log)
        result.html = path_output / "_build" / "html"
    _stage_config(book_dir, stage, profile, {source.stem for _, source in chapters}, log)
    if RERUN_PAGE in toc_files(toc):
        write_rerun_page(stage / f"{RERUN_PAGE}.md", chapters)
    _check_expectations(chapters, stage, notebooks_dir / EXPECTED_FILE, profile, log)

    html_stamp = path_output / "_build" / ".stagewise-html.json"
    key = _tree_hash(stage)
    index = result.html / "index.html"
    try:
        up_to_date = index.is_file() and json.loads(html_stamp.read_text()).get("key") == key
    except (OSError, ValueError):
        up_to_date = False
    if up_to_date:
        log(f"html: up to date ({index})")
    else:
        html_stamp.unlink(missing_ok=True)
        html_start = time.perf_counter()
        # --all: a fresh Sphinx environment, so a warning from an unchanged page is reported again.
        command = [*jupyter_book(), "build", str(stage), "--path-output", str(path_output),
                   "-W", "-n", "--keep-going", "--all", "-q"]
        log("html: " + " ".join(command[1:]), flush=True)
        if subprocess.run(command).returncode != 0:
            raise BookError("the strict Jupyter Book build failed (warnings or errors above)")
        # after the build: the book's extension writes generated includes (_scorecard.inc, ...) into the sources
        write_json({"key": _tree_hash(stage)}, html_stamp)
        log(f"html: built in {time.perf_counter() - html_start:.1f} s")
    result.seconds = time.perf_counter() - start
    log(f"book ({profile}): {len(result.executed)} notebook(s) executed, {len(result.cached)} cached; "
        f"total {result.seconds:.1f} s -> {index}")
    return result
