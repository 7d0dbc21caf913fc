"""The command line: the only package that prints or exits. One module a command, each with its parser.

    allobrain-import init MANIFEST
    allobrain-import validate MANIFEST [--report PATH.xlsx]
    allobrain-import run MANIFEST [--dry-run] [--sandbox] ...
    allobrain-import sandbox [--port 8000] ...
    allobrain-import ui [--port 8421] [--folder DIR] ...
    allobrain-import status [MANIFEST]
    allobrain-import results MANIFEST [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import __version__
from ..errors import ImportToolError
from . import init, results_cmd, run, sandbox, status, ui, validate
from .common import err

__all__ = ["build_parser", "main"]

COMMANDS = (init, validate, run, sandbox, status, results_cmd, ui)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="allobrain-import",
        description="Bulk-import call recordings into AlloBrain QM from a CSV or XLSX manifest.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--traceback", action="store_true", help="show a Python traceback on unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in COMMANDS:
        command.register(sub)
    for command_parser in sub.choices.values():  # `run m.csv --traceback` works as well as `--traceback run`
        command_parser.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                                    help="show a Python traceback on unexpected errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImportToolError as exc:
        err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as exc:  # an unexpected bug: one clean line, the traceback only on request
        if args.traceback:
            traceback.print_exc()
        else:
            err(f"unexpected error: {type(exc).__name__}: {exc} (add --traceback to the command for details)")
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
