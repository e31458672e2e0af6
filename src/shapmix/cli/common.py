"""What the subcommands share: the help layout, how a subcommand is registered, and the errors
the command reports without a traceback."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any, Callable

from ..errors import CheckpointError, ConfigError, DatasetFormatError

__all__ = [
    "EXIT_FAILED_RUNS",
    "EXIT_OK",
    "EXIT_USER_ERROR",
    "USER_ERRORS",
    "Handler",
    "add_command",
    "formatter",
    "positive_int",
    "report_user_error",
]

EXIT_OK = 0
EXIT_FAILED_RUNS = 1
"""``shapmix bench``: at least one run of the grid failed (the others were trained);
``shapmix predict``: some files were skipped (the others were predicted)."""
EXIT_USER_ERROR = 2
"""A bad option, config or input file (argparse uses the same status for bad arguments)."""
USER_ERRORS = (ConfigError, DatasetFormatError, CheckpointError, FileNotFoundError)
"""Errors of the user's making: printed as ``shapmix COMMAND: error: ...``, no traceback."""
HELP_POSITION = 32
"""Column where option help starts in ``--help`` (argparse's default 24 wraps most options)."""

Handler = Callable[[argparse.Namespace], int]
"""A subcommand's handler: the parsed arguments in, the exit status out."""


def formatter(prog: str) -> argparse.HelpFormatter:
    """The help layout of every command: descriptions and examples printed as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=HELP_POSITION)


def add_command(
    subparsers: Any, name: str, handler: Handler, help: str, description: str | None = None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Register subcommand ``name`` (its handler is called with the parsed arguments)."""
    parser = subparsers.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=formatter)
    parser.set_defaults(handler=handler)
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def report_user_error(command: str, error: Exception) -> int:
    """Print ``shapmix COMMAND: error: MESSAGE`` (no traceback) and return :data:`EXIT_USER_ERROR`."""
    print(f"shapmix {command}: error: " + textwrap.indent(str(error), "  ").lstrip(), file=sys.stderr)
    return EXIT_USER_ERROR
