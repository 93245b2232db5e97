"""Redaction of secrets from everything the runtime and the operator print.

``sys.stdout`` and ``sys.stderr`` are replaced, before Airflow is imported, by
line-buffered streams that replace every secret the envelope provided with
``***`` and write to the process's standard error. Whatever Airflow configures
later (stdlib handlers, structlog) writes through them, so redaction does not
depend on the Airflow version or its logging configuration. Airflow's own masker is
told about the secrets as well (see :mod:`isolation.runtime.compat`), for the places
where Airflow redacts values itself (rendered fields, connection URIs).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

MASK = "***"
# A partial line is held back until its newline so that a secret written in pieces
# is still redacted whole; past this size it is written out anyway.
_MAX_PENDING = 64 * 1024
FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


class Redactor:
    """Replaces known secret strings; longest first so that overlaps mask fully."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        before = len(self._secrets)
        self._secrets.update(v for v in values if v)
        if len(self._secrets) != before:
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


REDACT = Redactor()


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before writing them to ``target``."""

    def __init__(self, target: TextIO, redact: Redactor = REDACT) -> None:
        super().__init__()
        self._target = target
        self._redact = redact
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._target, "errors", None)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Child processes handed this stream write to the real descriptor, unredacted:
        # they never receive secrets from the runtime (see secrets.py).
        return self._target.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            data = self._pending + text
            cut = data.rfind("\n") + 1
            if cut == 0 and len(data) > _MAX_PENDING:
                cut = len(data)
            self._pending = data[cut:]
            if cut:
                self._target.write(self._redact(data[:cut]))
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()

    def drain(self) -> None:
        """Write out a trailing partial line (at exit)."""
        with self._lock:
            if self._pending:
                self._target.write(self._redact(self._pending))
                self._pending = ""
            self._target.flush()


def redirect_std_streams() -> RedactingStream:
    """Send ``print`` and every Python-level log write through one redacting stderr stream."""
    stream = RedactingStream(sys.__stderr__ or sys.stderr)
    sys.stdout = stream
    sys.stderr = stream
    return stream


def route_logging(stream: TextIO | RedactingStream, level: str) -> None:
    """One stderr handler on the root logger; Airflow's task loggers propagate to it.

    Airflow 2 sends task logs to a file handler that needs a task instance to open
    its file, and drops them without one; Airflow 3 formats through structlog. Both
    end up in one plain format on the redacting stream.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith("airflow") and logger.handlers:
            # Filters stay: Airflow 2 finds its secrets masker on the "airflow.task" logger.
            for old in list(logger.handlers):
                logger.removeHandler(old)
            logger.propagate = True
    logging.getLogger("airflow").setLevel(level)
