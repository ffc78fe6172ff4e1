"""Command line: `python -m ofa_engine COMMAND ...`.

`main` builds one subparser per registered command (`cli.args.register`, one module per group
of commands). Commands raise `ValueError` / `OSError` for anything the user got wrong: `main`
prints `error: <message>` to stderr and returns 2, never a traceback. An export that fails its
verification returns 1 with its message; anything else is a bug and keeps its traceback.

Nothing in the engine imports this package: the CLI is a leaf.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..runtime.export import ExportVerificationError
from ..runtime.quantize import QuantizationRefusedError
from . import core, devices, predictors, search  # noqa: F401  (each registers its commands)
from .args import COMMANDS, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    # argparse would print usage and call sys.exit; raising lets `main` report it like any
    # other user error and return the code (tests call `main` in-process).
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ofa_engine",
                     description="Once-for-All supernet engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return COMMANDS.get(args.command).run(args)
    except SystemExit as exc:   # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except (ValueError, OSError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (ExportVerificationError, QuantizationRefusedError) as exc:   # not the user's fault, not a crash
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: '{exc.filename}'"
    return str(exc)
