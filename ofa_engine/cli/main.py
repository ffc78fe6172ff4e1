"""Command line: `python -m ofa_engine COMMAND ...`.

`main` builds one subparser per registered command (`cli.args.register`, one module per group
of commands). Commands raise `ValueError` / `OSError` for anything the user got wrong: `main`
prints `error: <message>` to stderr and returns 2, never a traceback. An export that fails its
verification returns 1 with its message; anything else is a bug and keeps its traceback.

Nothing in the engine imports this package: the CLI is a leaf.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Iterator, Sequence

from ..files import exception_reason
from ..runtime.common import ExportVerificationError, QuantizationRefusedError
from . import core, devices, packages, predictors, search  # noqa: F401  (each registers its commands)
from .args import COMMANDS, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    # argparse would print usage and call sys.exit; raising lets `main` report it like any
    # other user error and return the code (tests call `main` in-process).
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with only `command`'s own arguments (the others are
    listed with their help): an argument's default may need a heavy module, and a command
    should not wait for the modules of the others."""
    parser = _Parser(prog="python -m ofa_engine",
                     description="Once-for-All supernet engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, spec in COMMANDS.items():
        subparser = sub.add_parser(name, help=spec.help, description=spec.help)
        if command is None or name == command:
            spec.add_arguments(subparser)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names (its first word that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


# Exit status of a run stopped by SIGTERM / Ctrl-C (128 + the signal's number, as shells report).
EXIT_SIGTERM, EXIT_INTERRUPT = 128 + signal.SIGTERM, 128 + signal.SIGINT


class Terminated(BaseException):
    """SIGTERM arrived: raised from the handler so that every `finally` (the atomic writes'
    cleanup of their temporary files) runs before the process exits."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield   # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 user error, 143 / 130
    stopped by SIGTERM / Ctrl-C, with nothing half-written)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv) or "")
    try:
        with _sigterm_raises():
            args = parser.parse_args(argv)
            return COMMANDS.get(args.command).run(args)
    except SystemExit as exc:   # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except Terminated:
        print("error: stopped by SIGTERM; no partial output was left", file=sys.stderr)
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPT
    except (ValueError, OSError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (RecursionError, OverflowError, MemoryError) as exc:
        # The net under the bounded parsing and validation: an input that still got this far is
        # refused as the user's, not shown as a crash.
        print(f"error: the input is too large or too deeply nested ({type(exc).__name__}: "
              f"{exception_reason(exc)}); see docs/limits.md", file=sys.stderr)
        return EXIT_USAGE
    except (ExportVerificationError, QuantizationRefusedError) as exc:   # not the user's fault, not a crash
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: '{exc.filename}'"
    return str(exc)
