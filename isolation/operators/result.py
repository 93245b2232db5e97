"""The isolated runtime's result document, read on the host as untrusted input.

The isolated environment is trusted for nothing (see the design's trust table): the
document is size-limited, parsed strictly, and must agree with the exit code. Error
messages about a bad document never quote it.

Two rules keep a result from reaching further than the task's own data:

- **Finite numbers only.** JSON has no NaN or infinity; the literals are not JSON, and a
  number too large for a float (``1e999``) is refused too, naming the return value or the
  XCom key that holds it.
- **Reserved XCom keys** (:func:`reserved_xcom_key`): the host's own namespace, every key
  starting with ``isolation_`` (``isolation_environment`` is the host's report of where
  the task ran), and the keys Airflow itself reads: ``return_value`` (the return value
  travels in ``return_value``), ``skipmixin_key`` (the scheduler skips downstream tasks by
  it), ``past_depends_met`` and the ``_link_`` prefix of operator extra links. Compared
  without case and surrounding whitespace, as some XCom databases compare keys.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isolation.backends.base import MAX_RESULT_BYTES
from isolation.errors import IsolatedTaskFailed

RESULT_FORMAT = "isolation-result/v1"
MAX_XCOMS = 1000
MAX_DEPTH = 64

RESERVED_XCOM_PREFIX = "isolation_"
"""XCom keys the host reserves for itself; a result may not push any key starting so."""
# Keys Airflow reads for its own decisions: XCOM_RETURN_KEY, SkipMixin's XCOM_SKIPMIXIN_KEY,
# the depends_on_past skip marker, and the prefix of BaseOperatorLink.xcom_key.
_AIRFLOW_XCOM_KEYS = {
    "return_value": "the return value travels in return_value",
    "skipmixin_key": "Airflow skips downstream tasks by it",
    "past_depends_met": "Airflow's depends_on_past check reads it",
}
_AIRFLOW_XCOM_PREFIXES = {"_link_": "Airflow stores operator extra links under it"}

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_REJECTED = 3
EXIT_VIOLATION = 4
EXIT_SKIPPED = 99

Outcome = Literal["success", "failed", "skipped", "rejected", "violation"]
OUTCOME_OF_EXIT: dict[int, Outcome] = {
    EXIT_SUCCESS: "success",
    EXIT_FAILED: "failed",
    EXIT_REJECTED: "rejected",
    EXIT_VIOLATION: "violation",
    EXIT_SKIPPED: "skipped",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ResultError(_Model):
    type: str = Field(max_length=200)
    message: str = Field(max_length=64 * 1024)
    # The module-qualified names of the exception's MRO (absent from older runtimes).
    types: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=32)


# A version is shown in the host's log: no spaces, quotes or control characters.
_VERSION = r"^[0-9A-Za-z.+!_-]{1,64}$"


class ResultEnvironment(_Model):
    python: str | None = Field(default=None, pattern=_VERSION)
    airflow: str | None = Field(default=None, pattern=_VERSION)
    name: str | None = Field(default=None, max_length=63)


class ResultXCom(_Model):
    key: str = Field(min_length=1, max_length=512)
    value: Any = None


MAX_DECISIONS = 100
MAX_DECISION_TASKS = 10_000


class ResultDecision(_Model):
    """A SkipMixin call of the isolated operator: a request the host checks, then applies."""

    kind: Literal["skip", "follow"]
    task_ids: list[Annotated[str, Field(max_length=250)]] | None = Field(default=None, max_length=MAX_DECISION_TASKS)


class IsolationResult(_Model):
    """``isolation-result/v1``, as written by ``python -m isolation.runtime``."""

    format: Literal["isolation-result/v1"]
    outcome: Outcome
    return_value: Any = None
    xcoms: list[ResultXCom] = Field(default_factory=list, max_length=MAX_XCOMS)
    error: ResultError | None = None
    environment: ResultEnvironment = Field(default_factory=ResultEnvironment)
    # Absent from older runtimes; only a successful run decides anything downstream.
    downstream: list[ResultDecision] = Field(default_factory=list, max_length=MAX_DECISIONS)


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests no deeper than ``limit`` (JSON is already parsed)."""
    stack = [(value, 0)]
    while stack:
        obj, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, list):
            stack.extend((v, depth + 1) for v in obj)
    return True


def _finite(value: Any) -> bool:
    """Whether no float in ``value`` is infinite or NaN (JSON is already parsed)."""
    stack = [value]
    while stack:
        obj = stack.pop()
        if isinstance(obj, float):
            if not math.isfinite(obj):
                return False
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list):
            stack.extend(obj)
    return True


def reserved_xcom_key(key: str) -> str | None:
    """Why a result may not push the XCom ``key``; None when it may."""
    folded = key.strip().lower()
    if folded.startswith(RESERVED_XCOM_PREFIX):
        return f"keys starting with {RESERVED_XCOM_PREFIX!r} are the host's own"
    if folded in _AIRFLOW_XCOM_KEYS:
        return _AIRFLOW_XCOM_KEYS[folded]
    for prefix, why in _AIRFLOW_XCOM_PREFIXES.items():
        if folded.startswith(prefix):
            return why
    return None


def _key(key: str) -> str:
    # The key is the environment's text: shown so the author finds the push, but bounded.
    return repr(key if len(key) <= 80 else key[:80] + "...")


def _no_constants(name: str) -> Any:
    raise ValueError("non-finite number")


def parse_result(data: bytes, *, environment: str) -> IsolationResult:
    """Validate a result document; a bad one is :class:`IsolatedTaskFailed`, never a traceback."""
    where = f"the result of the isolated task in environment {environment!r}"
    hint = "the environment's isolation runtime may not match this host's version; rebuild the environment"
    if len(data) > MAX_RESULT_BYTES:
        raise IsolatedTaskFailed(f"{where} is larger than {MAX_RESULT_BYTES} bytes", hint="return less data as XCom")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IsolatedTaskFailed(f"{where} is not valid JSON", hint=hint) from None
    if not _depth(document, MAX_DEPTH):
        raise IsolatedTaskFailed(f"{where} nests deeper than {MAX_DEPTH} levels", hint="return flatter XCom values")
    try:
        result = IsolationResult.model_validate(document)
    except ValidationError as exc:
        # Name the fields, never the values: they may be task data.
        fields = sorted({".".join(str(p) for p in err["loc"]) or "(document)" for err in exc.errors()})
        raise IsolatedTaskFailed(f"{where} is malformed (fields: {', '.join(fields)[:300]})", hint=hint) from None
    if result.environment.name not in (None, environment):
        raise IsolatedTaskFailed(f"{where} claims to come from environment {result.environment.name!r}")
    finite = "JSON has no infinity or NaN: return finite numbers, or None or a string in their place"
    if not _finite(result.return_value):
        raise IsolatedTaskFailed(f"{where} has a non-finite number in its return value", hint=finite)
    for xcom in result.xcoms:
        why = reserved_xcom_key(xcom.key)
        if why is not None:
            raise IsolatedTaskFailed(
                f"{where} pushes the reserved XCom key {_key(xcom.key)} ({why})",
                hint="push the value under another key; keys starting with 'isolation_' and Airflow's own "
                "keys are refused",
            )
        if not _finite(xcom.value):
            raise IsolatedTaskFailed(f"{where} has a non-finite number in XCom {_key(xcom.key)}", hint=finite)
    return result
