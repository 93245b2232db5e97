"""Masking of secrets in everything the runtime, the operator and its children print.

Two layers, both with the one masker of :mod:`isolation.masking` (``REDACT``):

- **File descriptors.** Once the envelope is open and the secrets are known,
  :func:`mask_descriptors` points this process's fds 1 and 2 at a pipe. A masker
  thread reads it, masks line by line (:class:`~isolation.masking.LineMasker`) and
  writes to the original standard error (a copy kept aside, closed on exec). So
  ``os.write(2, ...)``, ``sys.__stderr__``, ``sys.__stdout__`` and child processes,
  which inherit fds 1 and 2, all pass through it; standard output and standard error
  become one stream. :func:`release_descriptors` drains it at exit.
- **Python streams.** ``sys.stdout`` and ``sys.stderr`` are replaced, before Airflow is
  imported, by one line-buffered stream that Airflow's logging (stdlib handlers,
  structlog) writes through, whatever its version and configuration. Above masked
  descriptors it is a plain UTF-8 stream on fd 2 (:class:`DescriptorStream`: the
  masking happens once, below); should the descriptors not be masked, it masks itself
  (:class:`RedactingStream`).

Airflow's own masker is told about the secrets as well (see
:mod:`isolation.runtime.compat`), for the places where Airflow redacts values itself
(rendered fields, connection URIs).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from isolation.masking import MASK, LineMasker, SecretMasker

__all__ = [
    "FORMAT",
    "MASK",
    "REDACT",
    "RedactingStream",
    "Redactor",
    "mask_descriptors",
    "redirect_std_streams",
    "release_descriptors",
    "route_logging",
]

# A partial line is held back until its newline so that a secret written in pieces
# is still redacted whole; past this size it is written out anyway.
_MAX_PENDING = 64 * 1024
FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
# How long the exit waits for the masker to see the end of its pipe. Longer only when
# a process the task started still holds fd 1 or 2; what it wrote until then is kept.
_DRAIN_TIMEOUT = 0.5
_READ_CHUNK = 65536


class Redactor(SecretMasker):
    """The runtime's masker: ``add`` secrets, call it on text (see :class:`~isolation.masking.SecretMasker`)."""


REDACT = Redactor()


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before writing them to ``target``."""

    def __init__(self, target: TextIO, redact: Callable[[str], str] = REDACT) -> None:
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
        # Child processes handed this stream write to fd 2 itself: masked by the
        # descriptor masker once it runs (before that, no secret is known to print).
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


class DescriptorStream(io.TextIOWrapper):
    """``sys.stdout`` and ``sys.stderr`` above masked descriptors: UTF-8 lines straight to fd 2.

    UTF-8 whatever the locale, because the descriptor masker matches the secrets' UTF-8
    bytes.
    """

    def __init__(self) -> None:
        raw = io.FileIO(2, "w", closefd=False)
        super().__init__(
            io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True
        )

    def drain(self) -> None:
        self.flush()


def redirect_std_streams() -> RedactingStream | DescriptorStream:
    """Send ``print`` and every Python-level log write through one stderr stream that masks.

    Above masked descriptors (:func:`mask_descriptors`) the stream writes to fd 2 and the
    masker thread masks: masking here too would only do the work twice.
    """
    stream: RedactingStream | DescriptorStream
    stream = DescriptorStream() if _DESCRIPTORS else RedactingStream(sys.__stderr__ or sys.stderr)
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


class _DescriptorMasker:
    """Fds 1 and 2 into a pipe; a thread masks what arrives and writes it to the real stderr."""

    def __init__(self, masker: SecretMasker) -> None:
        self._lines = LineMasker(masker)
        self._lock = threading.Lock()
        # Both ends and the copy of stderr are non-inheritable (os.pipe, os.dup): a child
        # gets only fds 1 and 2, which dup2 makes inheritable.
        self._target = os.dup(2)
        self._read, write = os.pipe()
        try:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    stream.flush()
            os.dup2(write, 1)
            os.dup2(write, 2)
        finally:
            os.close(write)
        self._thread = threading.Thread(target=self._run, name="isolation-log-masker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                chunk = os.read(self._read, _READ_CHUNK)
            except OSError:
                chunk = b""
            with self._lock:
                if not chunk:
                    self._write(self._lines.flush())
                    return
                self._write(self._lines.feed(chunk))

    def _write(self, lines: list[bytes]) -> None:
        data = memoryview(b"".join(lines))
        while data:
            try:
                data = data[os.write(self._target, data) :]
            except OSError:
                return  # the reader is gone; keep draining the pipe so writers never block

    def release(self, timeout: float) -> None:
        """Close this process's write ends, then wait for the masker to write out the rest."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        self._thread.join(timeout)
        if self._thread.is_alive():
            # A process the task started still holds the pipe: end its partial line now.
            with self._lock:
                self._write(self._lines.flush())


# The one descriptor masker of this process, while it runs.
_DESCRIPTORS: list[_DescriptorMasker] = []


def mask_descriptors(masker: SecretMasker = REDACT) -> bool:
    """Route fds 1 and 2 through ``masker`` from now on (once); return whether they are.

    Call it as soon as the secrets are known and before :func:`redirect_std_streams`.
    """
    if not _DESCRIPTORS:
        try:
            _DESCRIPTORS.append(_DescriptorMasker(masker))
        except OSError:
            return False  # no descriptors left: the Python streams still mask
    return True


def release_descriptors(timeout: float = _DRAIN_TIMEOUT) -> None:
    """At exit: flush, stop writing to the pipe, and let the masker write everything out.

    After this, fds 1 and 2 are ``/dev/null``: the process is about to end, and nothing
    it writes later can pass unmasked.
    """
    if not _DESCRIPTORS:
        return
    masked = _DESCRIPTORS.pop()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if stream is not None:
                stream.flush()
    masked.release(timeout)
