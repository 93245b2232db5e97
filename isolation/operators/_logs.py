"""The isolated task's output as host log records: each at its level, one timestamp per line.

The runtime writes every record as ``[time] LEVEL logger: message`` on one stream
(its standard output and error are one stream: see docs/runtime.md, "Logs"). The host
logs a record at its own level without the isolated timestamp (the host's log adds its
own). A line that is not a record is raw output on that stream (``print``, a child
process, a traceback): it continues the record before it at that record's level when
that was a warning or an error, so a traceback stays together at ERROR; otherwise it is
logged at WARNING, as Airflow logs a task's standard error above INFO. The local
backend's own ``isolation: ...`` lines are INFO (``isolation: WARNING: ...`` a warning).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

_RECORD = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)?\] (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<rest>.*)",
    re.DOTALL,
)
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_BACKEND = "isolation: "
_BACKEND_WARNING = "isolation: WARNING: "


class _Logger(Protocol):
    def log(self, level: int, event: Any, *args: Any, **kw: Any) -> Any: ...


class IsolatedLog:
    """Forwards lines of one isolated run to ``logger`` (after ``mask``)."""

    def __init__(self, logger: _Logger, mask: Callable[[str], str] = str) -> None:
        self._logger = logger
        self._mask = mask
        self._continues: int | None = None

    def level_of(self, line: str) -> tuple[int, str]:
        """The level a line is logged at, and its text without the isolated timestamp."""
        match = _RECORD.match(line)
        if match is not None:
            level = _LEVELS[match.group("level")]
            self._continues = level if level >= logging.WARNING else None
            return level, match.group("rest")
        if line.startswith(_BACKEND_WARNING):
            return logging.WARNING, line
        if line.startswith(_BACKEND):
            self._continues = None
            return logging.INFO, line
        return (self._continues or logging.WARNING), line

    def __call__(self, line: str) -> None:
        level, text = self.level_of(line)
        self._logger.log(level, "%s", self._mask(text))
