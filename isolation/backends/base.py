"""The backend interface: how a sealed task reaches an environment and what comes back.

A backend has one job per task: start ``python -m isolation.runtime`` in the named
environment, hand it the envelope, forward its log lines as they arrive, and report the
exit code and the raw result document. Everything Airflow-specific (secrets, XCom,
outcomes) stays in ``IsolatedOperator``; a backend never sees plaintext task state.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_RESULT_BYTES = 16 * 1024 * 1024
"""A backend reads at most one byte more than this of a result document."""

Sealer = Callable[[str | None], str]
"""Called with the result path the runtime must write to (None: the runtime's default,
``/airflow/xcom/return.json``); returns the envelope text."""
LogSink = Callable[[str], None]
"""Receives each log line of the isolated task (without its newline), live."""
RESUME_METHOD = "resume_isolated"
"""The ``IsolatedOperator`` method a backend's ``TaskDeferred`` names: Airflow calls it when
the trigger fires, and it hands the event to :meth:`Backend.resume`."""


@dataclass(frozen=True)
class RunOutcome:
    """What a backend observed: exit code, the raw result document, the last log lines."""

    exit_code: int
    result: bytes | None
    log_tail: tuple[str, ...] = ()

    @property
    def killed_by(self) -> int | None:
        """The signal number when the runtime was killed by one."""
        return -self.exit_code if self.exit_code < 0 else None


class Backend(abc.ABC):
    """Where isolated tasks run. Construction must do no I/O: it happens at DAG parse."""

    name: str = "backend"
    envelope_lifetime: int = 600
    """Seconds an envelope stays valid: enough to start the runtime, no more."""

    def bind(self, context: object, task_id: str) -> Backend:
        """The backend for one task run, given its Airflow context (default: this one).

        Backends that run the task through an Airflow operator (``kubernetes``) need the
        context; they return a copy, so one instance in a DAG file serves every task.
        """
        return self

    def check(self, environment: str) -> None:  # noqa: B027 - optional hook
        """Fail fast (before any secret is resolved) if ``environment`` cannot run here."""

    def prepare(self, environment: str) -> None:  # noqa: B027 - optional hook
        """Start what :meth:`run` will need, before the host resolves the task's state.

        Called once per task after :meth:`check`; nothing secret is known yet. Whatever
        no run takes is given up by :meth:`release`.
        """

    def release(self) -> None:  # noqa: B027 - optional hook
        """Give up what :meth:`prepare` started; called when the task ends, however it ends."""

    @abc.abstractmethod
    def run(self, environment: str, seal: Sealer, on_log: LogSink) -> RunOutcome:
        """Run one sealed task to its end and return what happened.

        Must leave nothing behind (process, temporary file) whether it returns or raises,
        including when interrupted by a task timeout.
        """

    def resume(self, environment: str, state: Mapping[str, Any], event: Any, on_log: LogSink) -> RunOutcome:
        """Finish a task whose :meth:`run` deferred (raised Airflow's ``TaskDeferred`` naming
        :data:`RESUME_METHOD`), given the names it deferred with and the trigger's event.

        Only backends that defer implement it; the same cleanup rules as :meth:`run` apply.
        """
        from isolation.errors import ConfigurationError

        raise ConfigurationError(f"backend {self.name!r} does not defer, so it cannot resume a task")

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop the running task now; called from ``on_kill`` (a signal handler)."""

    def built_versions(self, environment: str) -> tuple[str | None, str | None] | None:
        """``(python, airflow)`` versions as this backend built ``environment``; None when unknown.

        The host reports these, not what the isolated side claims about itself.
        """
        return None
