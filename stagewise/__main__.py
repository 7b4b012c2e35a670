"""Command line: ``python -m stagewise {run,book,pdf,params,check,runs,collect,numbers,sweep,study,influence}``.

    python -m stagewise run 01 --profile quick -p nbeta 300    # one notebook, new parameters, new folder
    python -m stagewise book --profile full                     # execute the toc's notebooks, build the book
    python -m stagewise params 01 --profile quick               # the values that will run, and their source
    python -m stagewise check runs/01_slt/20261201-101500      # a run's metrics against notebooks/expected.yaml
    python -m stagewise runs list [01] [--status failed]        # the run folders under runs/
    python -m stagewise runs clean runs/01_slt/20261201-101500  # remove the run folders named, nothing else
    python -m stagewise collect 01 --plot llc_max_rel_error:nbeta  # many runs -> one table (and a figure)
    python -m stagewise numbers [--update]                      # README numbers from build/full's metrics
    python -m stagewise sweep 01 -p nbeta 100,300 --seeds 3     # every combination, one run each, on Dask
    python -m stagewise study robustness_loo --profile quick    # a study of notebooks/studies.yaml (cached)
    python -m stagewise pdf --profile full                      # the built book as one printable PDF
    python -m stagewise influence run/checkpoint-* --data train.jsonl --queries q.jsonl --out attribution
"""

from __future__ import annotations

import argparse
from functools import partial
import sys
from pathlib import Path

# Exit codes: 1 a notebook or the book build failed, 2 a usage or parameter error.
FAILED, USAGE = 1, 2


def _parameters(pairs: list[list[str]] | None) -> dict:
    from stagewise.pipeline import parse_value

    return {name: parse_value(text) for name, text in pairs or []}


def _take_parameters(argv: list[str]) -> tuple[list[str], list[list[str]]]:
    rest, pairs, i = [], [], 0
    while i < len(argv):
        if argv[i] in ("-p", "--parameter") and i + 2 < len(argv):
            pairs.append(argv[i + 1:i + 3])
            i += 3
        else:
            rest.append(argv[i])
            i += 1
    return rest, pairs


def _run(args) -> int:
    from stagewise.pipeline import run_notebook

    folder = run_notebook(args.notebook, _parameters(args.parameters), runs_dir=args.runs_dir,
                          notebooks_dir=args.notebooks_dir, log=print, profile=args.profile)
    print(f"done: results in {folder}/")
    return 0


def _book(args) -> int:
    from stagewise.pipeline.book import build_book

    build_book(args.profile, book_dir=args.book_dir, notebooks_dir=args.notebooks_dir, student=args.student,
               workers=args.workers)
    return 0


def _pdf(args) -> int:
    from stagewise.pipeline.pdf import PdfError, build_pdf

    stage = Path("build") / args.profile
    output = Path(args.output) if args.output else (Path(args.book_dir) if args.profile == "full" else stage) / \
        "_build" / "pdf" / "stagewise.pdf"
    try:
        build_pdf(stage, output)
    except PdfError as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED
    return 0


def _sweep(args) -> int:
    from stagewise.pipeline.sweep import parse_grid, run_sweep

    result = run_sweep(args.notebook, parse_grid(args.parameters or []), seeds=args.seeds, runs_dir=args.runs_dir,
                       notebooks_dir=args.notebooks_dir, workers=args.workers, scheduler=args.scheduler,
                       retries=args.retries, plot=args.plot, resume=args.resume, profile=args.profile)
    print(f"done: sweep in {result.folder}/")
    return 0 if (result.table["status"] == "ok").all() else FAILED


def _study(args) -> int:
    from stagewise.pipeline.studies import run_study

    done = run_study(args.name, args.profile, workers=args.workers, scheduler=args.scheduler,
                     notebooks_dir=args.notebooks_dir)
    return 0 if set(done.get("statuses", {"ok": 0})) <= {"ok"} else FAILED


def _check(args) -> int:
    from stagewise.artifacts import read_json
    from stagewise.pipeline.expectations import EXPECTED_FILE, check_chapter, load_expectations

    folder = Path(args.run)
    folder = folder.parent if folder.name == "metrics.json" else folder
    expected = Path(args.notebooks_dir) / EXPECTED_FILE
    expectations = load_expectations(expected)
    run = read_json(folder / "run.json") or {}
    # the run's notebook, else the folder names: runs/<chapter>/<stamp>, build/<profile>/chapters/<chapter>
    chapter = args.chapter or (Path(run["notebook"]).stem if run.get("notebook") else next(
        (f.name for f in (folder, folder.parent) if f.name in expectations), None))
    if chapter not in expectations:
        print(f"error: chapter {chapter!r} has no bounds in {expected} (chapters: {', '.join(expectations)}); "
              "name it with --chapter", file=sys.stderr)
        return USAGE
    profile = args.profile or run.get("profile") or "full"
    checks = check_chapter(chapter, folder / "metrics.json", expectations, profile)
    for check in checks:
        print(check)
    bounds = [c for c in checks if not c.goal]
    failed = sum(not c.ok for c in bounds)
    print(f"{len(bounds) - failed} of {len(bounds)} bounds met")
    return FAILED if failed else 0


def _influence(args) -> int:
    from stagewise.attribute import influence
    from stagewise.config import ConfigError
    from stagewise.pipeline.dask_cluster import ClusterError, cluster
    from stagewise.sampling import SGLDConfig

    try:
        config = SGLDConfig(num_chains=args.num_chains, num_draws=args.num_draws, num_burnin=args.num_burnin,
                            step_size=args.step_size, nbeta=args.nbeta, localization=args.localization,
                            batch_size=args.batch_size, preconditioner=args.preconditioner, seed=args.seed,
                            device=args.device)
        run = partial(influence, args.checkpoints, args.data, args.queries, out=args.out, config=config,
                      steps=args.steps, revisions=args.revisions, token_classes=args.token_classes,
                      max_length=args.max_length, bf16=args.bf16, cache=not args.no_cache,
                      progress=sys.stderr.isatty())
        if args.workers is None and args.scheduler is None:
            result = run()
        else:  # the checkpoints as tasks of the project's Dask engine
            with cluster(args.workers, args.scheduler) as client:
                result = run(client=client)
    except (ConfigError, ValueError, TypeError, FileNotFoundError, FileExistsError, MemoryError, ClusterError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    cached = int(result.diagnostics["cached"].sum())
    print(f"done: {len(result.diagnostics)} checkpoint(s) ({cached} from the cache), {len(result.table)} rows in "
          f"{result.files['table']}")
    return 0


def _params(args) -> int:
    from stagewise.artifacts import to_json
    from stagewise.pipeline.params import default_value
    from stagewise.pipeline.profiles import resolve_values
    from stagewise.pipeline.runner import check_many, load_notebook, parameter_table, resolve_notebook

    path = resolve_notebook(args.notebook, args.notebooks_dir)
    nb = load_notebook(path)
    given, origin = resolve_values(path, args.profile, _parameters(getattr(args, "parameters", None)))
    values = check_many([(nb, path, given)])[0]  # a bad value: exit 2, as `run` would
    table = parameter_table(nb)
    rows = [("name", "type", "value", "from", "help")]
    for p in table:
        value = values[p.name] if p.name in values else default_value(p)
        rows.append((p.name, p.type, repr(to_json(value)), origin.get(p.name, "default"), p.help))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"parameters of {path}, profile {args.profile} (change them with -p name value):")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return 0


def _runs(args) -> int:
    from stagewise.pipeline.runs import clean_runs, find_runs

    if args.action == "list":
        records = find_runs(args.runs_dir, args.target, args.status)
        if not records:
            print(f"no run folders under {args.runs_dir}/" + (f" for {args.target}" if args.target else ""))
        for r in records:
            given = " ".join(f"{k}={v}" for k, v in r.parameters.items())
            took = "" if r.seconds is None else f"{r.seconds:7.1f} s"
            print(f"{r.folder}  {r.status:<11} {took:>9}  {given}")
        return 0
    if not args.target:
        print("error: runs clean: name the run folders to remove (see `runs list`); nothing was removed",
              file=sys.stderr)
        return USAGE
    removed = clean_runs(args.target, args.runs_dir, dry_run=args.dry_run)
    for folder in removed:
        print(("would remove " if args.dry_run else "removed ") + str(folder))
    return 0


def _collect(args) -> int:
    from stagewise.pipeline.runs import RunsError, collect, find_runs, runs_under

    records = []
    for target in args.targets:
        path = Path(target)
        if path.is_dir():  # a run folder, a chapter's or a sweep's folder, or a class's copied folders
            records += runs_under(path)
        else:
            found = find_runs(args.runs_dir, target)
            if not found:
                raise RunsError(f"{target}: neither a folder nor a chapter with runs under {args.runs_dir}/")
            records += found
    records = list({r.folder.resolve(): r for r in records}.values())
    if args.status != "any":
        records = [r for r in records if r.status == args.status]
    written = collect(records, args.out or args.runs_dir, plot=args.plot)
    print(f"collected {len(records)} runs: " + ", ".join(str(p) for p in written.values()))
    return 0


def _numbers(args) -> int:
    from datetime import date

    from stagewise.pipeline import numbers

    chapters = Path(args.build) / "chapters"
    if args.update:
        measured = numbers.update_readme(chapters, args.measured or f"{date.today().isoformat()}, {_machine()}",
                                         readme_path=args.readme, book_dir=args.book_dir,
                                         allow_missing=args.allow_missing)
        print(f"wrote {Path(args.book_dir) / numbers.SNAPSHOT_FILE} and the numbers block of {args.readme}")
    else:
        measured = numbers.measure(numbers.load_spec(args.book_dir), chapters, allow_missing=args.allow_missing)
    for name, value in measured.items():
        print(f"  {name:<34} {value}")
    problems = numbers.drift(measured, args.book_dir) + numbers.check_readme(args.readme, args.book_dir)
    for line in problems:
        print(f"differs: {line}")
    return 0 if args.update or not problems else FAILED


def _machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagewise", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks-dir", default="notebooks", help="where chapter notebooks live (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one notebook with new parameters into runs/<notebook>/<timestamp>/")
    run.add_argument("notebook", help="a path, a stem (01_slt) or a number (01)")
    run.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter; values read as int, float, True/False/None, else string")
    run.add_argument("--runs-dir", default="runs", help="where run folders go (default: %(default)s)")
    run.set_defaults(handler=_run)
    params = commands.add_parser("params", help="a notebook's parameters: the values that will run, and their source")
    params.add_argument("notebook", help="a path, a stem (01_slt) or a number (01)")
    params.set_defaults(handler=_params)
    for sub in (run, params):
        sub.add_argument("--profile", default="full",
                         help="start from this profile's parameter file, notebooks/profiles/<profile>/<chapter>.yaml "
                              "(default: %(default)s, the parameters cell's values)")

    book = commands.add_parser("book", help="execute the toc's notebooks (cached) and build the HTML book strictly")
    book.add_argument("--profile", choices=("full", "quick"), default="full",
                      help="full: book/_build/html; quick: build/quick/_build/html (default: %(default)s)")
    book.add_argument("--book-dir", default="book", help="authored book sources (default: %(default)s)")
    book.add_argument("--student", action="store_true",
                      help="build the student book instead: no solutions; in build/<profile>-student/_build/html")
    book.add_argument("--workers", type=int, help="chapters executed at once, as Dask tasks (default: $BOOK_WORKERS, "
                      "else one per core; 1: one after another)")
    book.set_defaults(handler=_book)

    pdf = commands.add_parser("pdf", help="the built book as one printable PDF (after `book`; headless Chromium)")
    pdf.add_argument("--profile", choices=("full", "quick"), default="full",
                     help="which built book (default: %(default)s): full -> book/_build/pdf/stagewise.pdf, "
                          "quick -> build/quick/_build/pdf/stagewise.pdf")
    pdf.add_argument("--book-dir", default="book", help="authored book sources (default: %(default)s)")
    pdf.add_argument("--output", help="where the PDF goes instead")
    pdf.set_defaults(handler=_pdf)

    runs = commands.add_parser("runs", help="list run folders, or remove the ones you name")
    actions = runs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the run folders, oldest first, with status, time and parameters")
    listing.add_argument("target", nargs="?", help="only this chapter (01 or 01_slt)")
    listing.add_argument("--status", choices=("ok", "failed", "interrupted", "running"), help="only this status")
    cleaning = actions.add_parser("clean", help="remove the run folders named (nothing else, never the book)")
    cleaning.add_argument("target", nargs="*", help="run folders to remove (see `runs list`)")
    cleaning.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    for sub in (listing, cleaning):
        sub.add_argument("--runs-dir", default="runs", help="where run folders are (default: %(default)s)")
        sub.set_defaults(handler=_runs)

    gather = commands.add_parser("collect", help="many run folders (a class's results) -> one table and figure")
    gather.add_argument("targets", nargs="+", help="run folders, folders holding them, or chapters (01)")
    gather.add_argument("--plot", metavar="METRIC:PARAM", help="also draw METRIC against parameter PARAM")
    gather.add_argument("--status", default="ok", choices=("ok", "failed", "interrupted", "running", "any"),
                        help="which runs to collect (default: %(default)s)")
    gather.add_argument("--runs-dir", default="runs", help="where chapters' run folders are (default: %(default)s)")
    gather.add_argument("--out", help="where the collect-<stamp>/ folder goes (default: the runs folder)")
    gather.set_defaults(handler=_collect)

    nums = commands.add_parser("numbers", help="the README's and landing page's numbers, from a build's metrics")
    nums.add_argument("--build", default="build/full", help="the build whose chapters are read (default: %(default)s)")
    nums.add_argument("--update", action="store_true", help="write book/numbers.json and the README's block")
    nums.add_argument("--measured", help="where and how it was measured (default: today, this machine)")
    nums.add_argument("--allow-missing", action="store_true",
                      help="with --update: a chapter the build lacks gives 'not measured' instead of an error")
    nums.add_argument("--readme", default="README.md", help="default: %(default)s")
    nums.add_argument("--book-dir", default="book", help="default: %(default)s")
    nums.set_defaults(handler=_numbers)

    sweep = commands.add_parser("sweep", help="every combination of some values, one run each, as Dask tasks")
    sweep.add_argument("notebook", nargs="?", help="a path, a stem (01_slt) or a number (01); not with --resume")
    sweep.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", metavar=("NAME", "VALUES"),
                       help="a parameter and its values, separated by commas: -p nbeta 100,300")
    sweep.add_argument("--seeds", type=int, help="also run each combination with seed = 0 .. SEEDS-1")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="worker processes of a local Dask cluster (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    sweep.add_argument("--retries", type=int, default=2,
                       help="more tries for a run whose worker died or whose kernel failed (default: %(default)s)")
    sweep.add_argument("--plot", metavar="METRIC:PARAM", help="also draw METRIC against the swept parameter PARAM")
    sweep.add_argument("--resume", metavar="SWEEP_FOLDER", help="run what an interrupted sweep has not finished")
    sweep.add_argument("--runs-dir", default="runs", help="where the sweep folder goes (default: %(default)s)")
    sweep.add_argument("--profile", default="full", help="every run starts from this profile (default: %(default)s)")
    sweep.set_defaults(handler=_sweep)

    study = commands.add_parser("study", help="a study of notebooks/studies.yaml: its sweep, cached, and its "
                                "results.csv and study.json")
    study.add_argument("name", help="the study's name in notebooks/studies.yaml")
    study.add_argument("--profile", help="run it as this profile's book does (default: the study's own)")
    where = study.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="worker processes of a local Dask cluster (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    study.set_defaults(handler=_study)

    check = commands.add_parser("check", help="a run's metrics.json against its chapter's bounds (expected.yaml)")
    check.add_argument("run", help="a run folder (or its metrics.json), e.g. runs/01_slt/20261201-101500")
    check.add_argument("--chapter", help="the chapter's stem (default: the run's notebook, or the folder names)")
    check.add_argument("--profile", choices=("full", "quick"), help="default: the profile recorded in run.json")
    check.set_defaults(handler=_check)

    attribute = commands.add_parser("influence", help="BIF trajectories of your own model across its checkpoints")
    attribute.add_argument("checkpoints", nargs="+", help="save_pretrained folders (Trainer's checkpoint-N), a run "
                           "folder holding them, or a hub name (with --revisions)")
    attribute.add_argument("--data", required=True, help="training data: .jsonl of input_ids (attention_mask "
                           "optional) or .txt (one sequence a line, through the checkpoint's tokenizer)")
    attribute.add_argument("--queries", help="the samples influenced (j), as --data (default: the data itself)")
    attribute.add_argument("--out", required=True, help="a new folder for influence.csv, diagnostics.csv, "
                           "influence.png, run.json and traces/ (an existing non-empty one is refused)")
    attribute.add_argument("--token-classes", help='class × class influence of the query tokens: a JSON file '
                           '{"class name": [token ids], ...}')
    attribute.add_argument("--revisions", nargs="+", help="hub revisions of one hub name (step1000 step2000 ...)")
    attribute.add_argument("--steps", nargs="+", type=int, help="training step of each checkpoint (default: "
                           "trainer_state.json, else the number in the folder's name)")
    attribute.add_argument("--num-chains", type=int, default=4, help="default: %(default)s")
    attribute.add_argument("--num-draws", type=int, default=100, help="default: %(default)s")
    attribute.add_argument("--num-burnin", type=int, default=0, help="default: %(default)s")
    attribute.add_argument("--step-size", type=float, default=1e-4, help="ε (default: %(default)s)")
    attribute.add_argument("--nbeta", type=float, default=100.0, help="nβ (default: %(default)s)")
    attribute.add_argument("--localization", type=float, default=1000.0, help="γ (default: %(default)s)")
    attribute.add_argument("--batch-size", type=int, help="SGLD mini-batch (default: the full data)")
    attribute.add_argument("--preconditioner", choices=("none", "rmsprop"), default="none",
                           help="default: %(default)s")
    attribute.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    attribute.add_argument("--device", help="cpu, cuda, cuda:N, mps or auto (default: the checkpoint's, the CPU)")
    attribute.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward passes, float32 "
                           "accumulation (CUDA only)")
    attribute.add_argument("--max-length", type=int, help="cut tokenized text lines at this many tokens")
    attribute.add_argument("--no-cache", action="store_true", help="neither reuse nor store cached traces")
    spread = attribute.add_mutually_exclusive_group()
    spread.add_argument("--workers", type=int, help="checkpoints as tasks of a local Dask cluster of N processes")
    spread.add_argument("--scheduler", metavar="ADDRESS", help="checkpoints as tasks of a running Dask scheduler")
    attribute.set_defaults(handler=_influence)

    # `-p NAME VALUE` is taken verbatim, so values such as -1e-3 are not mistaken for options.
    argv, pairs = _take_parameters(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    if pairs:
        if args.command not in ("run", "sweep", "params"):
            parser.error("-p is an option of `run`, `sweep` and `params`")
        args.parameters = (getattr(args, "parameters", None) or []) + pairs
    from stagewise.pipeline import NotebookError, NotebookFailed, ParameterError
    from stagewise.pipeline.book import BookError
    from stagewise.pipeline.dask_cluster import ClusterError
    from stagewise.pipeline.expectations import ExpectationError
    from stagewise.pipeline.numbers import NumbersError
    from stagewise.pipeline.precheck import PrecheckFailed
    from stagewise.pipeline.runs import RunsError

    try:
        return args.handler(args)
    except ParameterError as error:
        problems = error.problems
        print("error: " + (problems[0] if len(problems) == 1 else
                           "invalid parameters:" + "".join(f"\n  - {p}" for p in problems)), file=sys.stderr)
        return USAGE
    except NotebookFailed as failure:
        print(f"error: {failure}", file=sys.stderr)
        return USAGE if failure.ename == "ParameterError" else FAILED
    except (NotebookError, RunsError, NumbersError, ClusterError, ExpectationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    except (BookError, PrecheckFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
