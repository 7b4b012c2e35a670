"""Command line: ``python -m stagewise {run,book,params}`` (also installed as ``stagewise``).

    python -m stagewise run 01 -p nbeta 300 -p profile quick   # one notebook, new parameters, new folder
    python -m stagewise book --profile full                     # execute the toc's notebooks, build the book
    python -m stagewise params 01                               # the notebook's parameters
"""

from __future__ import annotations

import argparse
import sys

# Exit codes: 1 a notebook or the book build failed, 2 a usage or parameter error.
FAILED, USAGE = 1, 2


def _parameters(pairs: list[list[str]] | None) -> dict:
    from stagewise.pipeline import parse_value

    values = {}
    for name, text in pairs or []:
        values[name] = parse_value(text)
    return values


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
                          notebooks_dir=args.notebooks_dir, log=print)
    print(f"done: results in {folder}/")
    return 0


def _book(args) -> int:
    from stagewise.pipeline.book import build_book

    build_book(args.profile, book_dir=args.book_dir, notebooks_dir=args.notebooks_dir)
    return 0


def _params(args) -> int:
    from stagewise.pipeline import parameter_table, resolve_notebook

    path = resolve_notebook(args.notebook, args.notebooks_dir)
    rows = [("name", "type", "default", "help"), *parameter_table(path)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"parameters of {path} (change them with -p name value):")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


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

    book = commands.add_parser("book", help="execute the toc's notebooks (cached) and build the HTML book strictly")
    book.add_argument("--profile", choices=("full", "quick"), default="full",
                      help="full: book/_build/html; quick: build/quick/_build/html (default: %(default)s)")
    book.add_argument("--book-dir", default="book", help="authored book sources (default: %(default)s)")
    book.set_defaults(handler=_book)

    params = commands.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook", help="a path, a stem (01_slt) or a number (01)")
    params.set_defaults(handler=_params)

    # `-p NAME VALUE` is taken verbatim, so values such as -1e-3 are not mistaken for options.
    argv, pairs = _take_parameters(sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    if pairs:
        if args.command != "run":
            parser.error("-p is an option of `run`")
        args.parameters = (args.parameters or []) + pairs
    from stagewise.pipeline import NotebookError, NotebookFailed, ParameterError
    from stagewise.pipeline.book import BookError

    try:
        return args.handler(args)
    except ParameterError as error:
        problems = error.problems
        print("error: " + (problems[0] if len(problems) == 1 else
                           "invalid parameters:" + "".join(f"\n  - {p}" for p in problems)), file=sys.stderr)
        return USAGE
    except NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE
    except NotebookFailed as failure:
        print(f"error: {failure}", file=sys.stderr)
        return USAGE if failure.ename == "ParameterError" else FAILED
    except BookError as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
