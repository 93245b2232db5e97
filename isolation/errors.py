"""The one exception hierarchy of ``isolation``.

::

    IsolationError                    root; ``diagnostics()`` says what to do
    ├── EnvelopeRejected              an envelope failed to open (one type, a reason code)
    ├── KeysetError                   a keyset file or key lookup is unusable
    │   └── RotationError             a rotation step would break open envelopes
    ├── PayloadError                  a value cannot travel in an envelope
    ├── ConfigurationError            settings, environments, keyring paths
    │   ├── WarmServerUnavailable     host: no usable warm server; the task starts cold
    │   ├── UnsupportedFunction       host: a ``@task.isolated`` function cannot be sealed
    │   └── InvalidOperatorArguments  host, DAG parse: the wrapped operator does not take an
    │                                 argument; also Airflow's TypeError
    ├── IsolationViolation            isolated code tried to call back into Airflow
    ├── NotProvided                   runtime: a connection or variable the envelope lacks
    │   ├── XComNotProvided           an ``xcom_pull`` of an XCom the host did not send
    │   └── ContextNotAvailable       a context key the envelope cannot carry (also a KeyError)
    ├── OperatorLoadError             runtime: the operator cannot be imported or built
    ├── ModuleScopeName               runtime: a sealed function used a name of its DAG file
    ├── DeferralNotSupported          runtime: the operator tried to defer
    ├── ResultError                   runtime: a result value cannot travel back as JSON
    ├── TaskTerminated                runtime: the task was stopped by a signal
    └── IsolatedTaskError             the isolated task ended badly (host side)
        ├── IsolatedTaskFailed        carries the isolated exception's type names and message
        │   └── IsolatedTaskFailedNoRetry   one Airflow never retries; on the host also
        │                                   Airflow's AirflowFailException
        ├── IsolatedTaskRejected
        └── IsolatedTaskViolation     never retried; on the host also AirflowFailException

Messages never contain payload content: connection fields, variable values and
operator arguments may be secrets.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigurationError",
    "ContextNotAvailable",
    "EnvelopeRejected",
    "IsolatedTaskError",
    "IsolatedTaskFailed",
    "IsolatedTaskFailedNoRetry",
    "IsolatedTaskRejected",
    "IsolatedTaskViolation",
    "IsolationError",
    "IsolationViolation",
    "DeferralNotSupported",
    "InvalidOperatorArguments",
    "KeysetError",
    "ModuleScopeName",
    "NotProvided",
    "OperatorLoadError",
    "PayloadError",
    "RejectReason",
    "ResultError",
    "RotationError",
    "TaskTerminated",
    "UnsupportedFunction",
    "WarmServerUnavailable",
    "XComNotProvided",
]


class IsolationError(Exception):
    """Root of every error this project raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """The message plus what the user can do about it."""
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class RejectReason(str, enum.Enum):
    """Machine-readable reason an envelope was refused (stable strings)."""

    BAD_FORMAT = "bad-format"
    UNSUPPORTED_VERSION = "unsupported-version"
    TOO_LARGE = "too-large"
    UNKNOWN_KEY = "unknown-key"
    REVOKED_KEY = "revoked-key"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_AUDIENCE = "wrong-audience"
    WRONG_SUBJECT = "wrong-subject"
    DECRYPT_FAILED = "decrypt-failed"
    BAD_PAYLOAD = "bad-payload"


_REJECT_HINTS: dict[RejectReason, str] = {
    RejectReason.BAD_FORMAT: "the envelope is damaged or not an isolation envelope; reseal it",
    RejectReason.UNSUPPORTED_VERSION: "upgrade apache-airflow-providers-isolation in the environment",
    RejectReason.TOO_LARGE: "pass fewer or smaller connections, variables or arguments",
    RejectReason.UNKNOWN_KEY: "put the host's current public signer keyset into this environment's keys "
    "directory as signers.json (docs/keys.md), or check the environment name",
    RejectReason.REVOKED_KEY: "the key was revoked; reseal with the current primary key",
    RejectReason.BAD_SIGNATURE: "the envelope was altered or signed by an untrusted host",
    RejectReason.EXPIRED: "the envelope outlived its lifetime; retry the task or raise the lifetime",
    RejectReason.NOT_YET_VALID: "the clocks of host and environment disagree; fix clock sync",
    RejectReason.WRONG_AUDIENCE: "the envelope was sealed for another environment",
    RejectReason.WRONG_SUBJECT: "the envelope was sealed for another task instance",
    RejectReason.DECRYPT_FAILED: "the environment's private key does not match; redeploy its keys",
    RejectReason.BAD_PAYLOAD: "host and environment disagree on the payload schema; align versions",
}


class EnvelopeRejected(IsolationError):
    """An envelope could not be opened. The only error ``open_envelope`` raises."""

    def __init__(self, reason: RejectReason, detail: str = "", *, key_id: str | None = None) -> None:
        self.reason = reason
        self.key_id = key_id
        text = f"envelope rejected ({reason.value})"
        if detail:
            text += f": {detail}"
        if key_id:
            text += f" [key {key_id}]"
        super().__init__(text, hint=_REJECT_HINTS.get(reason, ""))


class KeysetError(IsolationError):
    """A keyset is malformed, inconsistent, or lacks the key asked for."""


class RotationError(KeysetError):
    """A rotation step was refused because it could make valid envelopes fail."""


class PayloadError(IsolationError):
    """A value cannot be carried in an envelope (type, size or nesting)."""


class ConfigurationError(IsolationError):
    """Settings, environment definitions or keyring locations are unusable."""


class WarmServerUnavailable(ConfigurationError):
    """No warm server can take this task (missing, stale, not ours, hung, failed before it started).

    The local backend catches it and starts the task cold, saying why in one log line.
    """


class UnsupportedFunction(ConfigurationError):
    """Host: a function given to ``@task.isolated`` cannot travel as sealed source.

    Raised when the function is decorated (lambdas, closures, generators, ``async def``)
    or when its source is read (no source file, a syntax the host cannot parse).
    """


class IsolationViolation(IsolationError):
    """Isolated code attempted a call back into Airflow that the contract forbids.

    ``action`` names what was refused. Where the runtime knows what the operator was
    doing (triggering a DAG run, reading other tasks' states), ``message`` and ``hint``
    say so and where to do it instead (``isolation.runtime.contract``).
    """

    contract = "isolation no-callback contract"

    def __init__(self, action: str, *, message: str | None = None, hint: str | None = None) -> None:
        super().__init__(
            message
            or f"{action} is forbidden inside an isolated task ({self.contract}): the isolated "
            "environment has no access to Airflow's database, API or supervisor",
            hint=hint or "return the value as XCom and let a host-side task write it",
        )
        self.action = action


class NotProvided(IsolationError):
    """Runtime: the task asked for a connection or variable the envelope does not carry.

    The runtime raises it mixed with Airflow's own "not found" exception type, so
    operators that handle a missing connection or variable keep working.
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind} {name!r} was not provided to this isolated task",
            hint=f"list it in the IsolatedOperator's {kind}s= argument so the host seals it into the envelope",
        )
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return self.message


class XComNotProvided(NotProvided):
    """Runtime: ``xcom_pull`` asked for an XCom the host did not send (``options.strict_xcom_pull``).

    The host sends the XComs the task declares (``xcom_inputs=``) or that discovery finds;
    anything else would silently be ``None`` (or the caller's default) in isolation while
    the host has a value. The fix is in the message: the message alone crosses back to
    the host.
    """

    def __init__(
        self,
        task_id: str | None,
        key: str,
        *,
        own_task: str,
        map_index: int | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        elsewhere: bool = False,
    ) -> None:
        if elsewhere:
            what = f"XCom {key!r} of task {task_id!r} of another DAG or run"
            declare = "pull it in a host task of this DAG and pass it on as an argument (upstream.output)"
        elif task_id is None:
            what = f"XCom {key!r} of any task (xcom_pull without task_ids, as in Airflow 2)"
            declare = f"pass task_ids= and declare it with xcom_inputs=[('<task_id>', {key!r})] on the IsolatedOperator"
        else:
            what = f"XCom {key!r} of task {task_id!r}"
            entry = repr(task_id) if key == "return_value" else repr(f"{task_id}:{key}")
            declare = f"declare it with xcom_inputs=[{entry}] on the IsolatedOperator"
        details = [f"map index {map_index}" if map_index is not None else ""]
        details += [f"dag {dag_id!r}" if dag_id else "", f"run {run_id!r}" if run_id else ""]
        extra = ", ".join(d for d in details if d)
        fix = f"{declare}, or pass lenient_xcom_pull=True for Airflow's lenient default (None, or the default= given)"
        IsolationError.__init__(
            self,
            f"{what}{f' ({extra})' if extra else ''} was not sent to the isolated task {own_task!r} (the host "
            f"sends only the XComs a task declares, so whether it exists is not known here): {fix}",
            hint=fix,
        )
        self.kind = "XCom"
        self.name = f"{task_id}:{key}"
        self.task_id = task_id
        self.key = key


class ContextNotAvailable(NotProvided, KeyError):
    """Runtime: a context key this Airflow version offers but the envelope cannot carry.

    Raised where Airflow would return the key's value (``context["k"]``, ``{{ k }}``).
    It is also a ``KeyError``, so ``context.get("k")`` and code that handles a missing key
    (written for the Airflow major that lacks it) still take their fallback.
    """

    def __init__(self, key: str, reason: str) -> None:
        IsolationError.__init__(
            self,
            f"context key {key!r} is not available in isolation: {reason}",
            hint="compute it from the context keys that are carried, or run this part in a host task",
        )
        self.kind = "context key"
        self.name = key


class DagRunFieldNotCarried(NotProvided, AttributeError):  # type: ignore[misc]  # both have .name
    """Runtime: a field of Airflow's dag run that the envelope does not carry (``dag_run.run_after``).

    An ``AttributeError`` too, so ``getattr(dag_run, "x", default)`` takes its fallback.
    """

    def __init__(self, field: str) -> None:
        fix = f"read dag_run.{field} in a host task and pass it to this task as an XCom or argument"
        IsolationError.__init__(self, f"dag_run.{field} is not carried into isolation: {fix}", hint=fix)
        self.kind = "dag run field"
        self.name = field


class OperatorLoadError(IsolationError):
    """Runtime: the wrapped operator could not be imported or built from its arguments."""


class ModuleScopeName(IsolationError):
    """Runtime: a sealed ``@task.isolated`` function used a name of its DAG file's module scope.

    The function runs in a fresh module holding only its own source: the DAG file's
    imports, constants and helpers are not there.
    """

    def __init__(self, name: str, function: str, where: str = "") -> None:
        at = f" ({where})" if where else ""
        fix = f"import {name} inside the function, or pass it as an argument"
        # The fix is in the message: the message alone is what crosses back to the host.
        super().__init__(
            f"name {name!r} is not defined in the isolated function {function!r}{at}: it runs in a "
            f"fresh module without the DAG file's module scope (its imports, constants and helpers); {fix}",
            hint=fix,
        )
        self.name = name
        self.function = function


class DeferralNotSupported(IsolationError):
    """Runtime: the wrapped operator deferred; there is no triggerer inside isolation."""

    def __init__(self, detail: str = "") -> None:
        text = "deferral is not supported inside isolation"
        super().__init__(
            f"{text}: {detail}" if detail else text,
            hint="run the operator with deferrable=False (and sensors in poke mode)",
        )


class ResultError(IsolationError):
    """Runtime: a return value or pushed XCom cannot be written as JSON."""


class TaskTerminated(IsolationError):
    """Runtime: SIGTERM or SIGINT arrived; the operator's ``on_kill`` has run."""


class InvalidOperatorArguments(ConfigurationError, TypeError):
    """Host, at DAG parse: the wrapped operator, as installed on the host, takes no such argument.

    A ``TypeError`` too, the type Airflow 3 raises for an operator's invalid arguments, so
    the DAG file fails to import as it would with the operator used directly.
    """


class IsolatedTaskError(IsolationError):
    """Host side: the isolated task did not succeed."""


class IsolatedTaskFailed(IsolatedTaskError):
    """The wrapped operator raised or the runtime failed.

    When the isolated side reported its exception, the message is ``"OriginalType: message"``
    (what ``on_failure_callback`` shows as ``context["exception"]``), ``isolated_type`` is
    the original class name and ``isolated_types`` the module-qualified names of its class
    hierarchy (its MRO), so callbacks can tell what really failed. ``where`` says in which
    environment; :meth:`diagnostics` puts it in front of the message.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        where: str = "",
        isolated_type: str | None = None,
        isolated_types: tuple[str, ...] = (),
        isolated_message: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.where = where
        self.isolated_type = isolated_type
        self.isolated_types = isolated_types
        self.isolated_message = isolated_message

    def diagnostics(self) -> str:
        text = super().diagnostics()
        return f"{self.where}: {text}" if self.where else text


class IsolatedTaskFailedNoRetry(IsolatedTaskFailed):
    """The isolated task failed in a way Airflow fails without retry.

    ``AirflowFailException`` or ``AirflowSensorTimeout`` in isolation, or an operator the
    environment cannot build from its import path and arguments. The host raises it mixed
    with Airflow's ``AirflowFailException`` (this module imports no Airflow), so Airflow's
    task runner does not retry it.
    """


class IsolatedTaskRejected(IsolatedTaskError):
    """The environment refused the envelope."""


class IsolatedTaskViolation(IsolatedTaskError):
    """The isolated task broke the no-callback contract.

    Never retried: the same code meets the same refusal on every try. The host raises it
    mixed with Airflow's ``AirflowFailException``, as for :class:`IsolatedTaskFailedNoRetry`.
    """
