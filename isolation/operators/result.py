"""The isolated runtime's result document, read on the host as untrusted input.

The isolated environment is trusted for nothing (see the design's trust table): the
document is size-limited, parsed strictly, and must agree with the exit code. Error
messages about a bad document never quote it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from isolation.backends.base import MAX_RESULT_BYTES
from isolation.errors import IsolatedTaskFailed

RESULT_FORMAT = "isolation-result/v1"
MAX_XCOMS = 1000
MAX_DEPTH = 64

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


class ResultEnvironment(_Model):
    python: str | None = Field(default=None, max_length=64)
    airflow: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=63)


class ResultXCom(_Model):
    key: str = Field(min_length=1, max_length=512)
    value: Any = None

    @field_validator("key")
    @classmethod
    def _not_return_value(cls, key: str) -> str:
        if key == "return_value":
            raise ValueError("the return value travels in return_value, not as an XCom")
        return key


class IsolationResult(_Model):
    """``isolation-result/v1``, as written by ``python -m isolation.runtime``."""

    format: Literal["isolation-result/v1"]
    outcome: Outcome
    return_value: Any = None
    xcoms: list[ResultXCom] = Field(default_factory=list, max_length=MAX_XCOMS)
    error: ResultError | None = None
    environment: ResultEnvironment = Field(default_factory=ResultEnvironment)


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
    return result
