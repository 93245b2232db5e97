"""What every command shares: exit codes, errors, consoles and JSON output."""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from isolation.errors import ConfigurationError, EnvelopeRejected, IsolationError, KeysetError, RotationError


class ExitCode(enum.IntEnum):
    """The exit codes of every command (the table in docs/cli.md)."""

    OK = 0
    # A check ran and found a problem: doctor, a deploy self-test.
    CHECK_FAILED = 1
    # Click's own code for a bad command line (unknown option, missing argument).
    USAGE = 2
    # The project, an environment or a file is missing or invalid.
    CONFIGURATION = 3
    # A keyset is unreadable, or a key operation was refused as unsafe.
    KEYS = 4
    # An envelope was refused (the reason code is in the message).
    REJECTED = 5
    # Building or installing an environment failed.
    BUILD = 6
    # Interrupted (Ctrl-C): nothing was half-written.
    INTERRUPTED = 130


class CliError(Exception):
    """An error a command reports as one line plus the fix, with its exit code."""

    def __init__(self, message: str, *, hint: str = "", code: ExitCode = ExitCode.CONFIGURATION) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def code_of(error: IsolationError) -> ExitCode:
    if isinstance(error, EnvelopeRejected):
        return ExitCode.REJECTED
    if isinstance(error, (KeysetError, RotationError)):
        return ExitCode.KEYS
    if isinstance(error, ConfigurationError):
        return ExitCode.CONFIGURATION
    return ExitCode.CONFIGURATION


# Data goes to stdout (pipeable), everything a person reads about it to stderr.
def _width(stream: Any) -> int | None:
    # A pipe or a file has no width: do not squeeze tables into 80 columns there.
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return 200


out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def fail(message: str, *, hint: str = "", code: ExitCode = ExitCode.CONFIGURATION) -> NoReturn:
    raise CliError(message, hint=hint, code=code)


def report_error(message: str, hint: str = "") -> None:
    """The one readable line (plus the fix) every failure ends in; never a traceback."""
    lines = [part.strip() for part in message.splitlines() if part.strip()]
    err.print(f"[bold red]error:[/] {_escape(lines[0] if lines else message)}")
    for line in lines[1:]:
        err.print(f"  {_escape(line)}")
    if hint:
        err.print(f"[bold]fix:[/] {_escape(hint)}")


def note(message: str) -> None:
    """A line for the person at the terminal (stderr, so stdout stays data)."""
    err.print(_escape(message))


def done(message: str) -> None:
    err.print(f"[green]✓[/] {_escape(message)}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_escape(message)}")


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, no_wrap: Sequence[str] = ()
) -> None:
    """A table on stdout; ``no_wrap`` columns (ids, paths) are never broken across lines."""
    grid = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    for row in rows:
        grid.add_row(*(_escape("" if cell is None else str(cell), keep_newlines=False) for cell in row))
    out.print(grid)


# Terminal controls and bidirectional overrides: text from an envelope or a file must not
# move the cursor, retitle the terminal or rewrite a line it follows.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NEWLINE = re.compile("\n")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), never sent as is."""
    pattern = _CONTROLS if keep_newlines else re.compile(f"{_CONTROLS.pattern}|{_NEWLINE.pattern}")
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _escape(text: str, *, keep_newlines: bool = True) -> str:
    # Paths and messages may hold "[...]", which Rich would read as markup.
    from rich.markup import escape

    return escape(printable(text, keep_newlines=keep_newlines))
