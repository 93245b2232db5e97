"""Exit codes of the runtime: the one table the host maps to task outcomes (docs/runtime.md)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    FAILED = 1
    CONFIGURATION = 2
    REJECTED = 3
    VIOLATION = 4
    SKIPPED = 99

    @property
    def outcome(self) -> str:
        """The ``outcome`` field of the result file for this code."""
        return _OUTCOMES[self]


_OUTCOMES = {
    ExitCode.SUCCESS: "success",
    ExitCode.FAILED: "failed",
    ExitCode.CONFIGURATION: "failed",
    ExitCode.REJECTED: "rejected",
    ExitCode.VIOLATION: "violation",
    ExitCode.SKIPPED: "skipped",
}
