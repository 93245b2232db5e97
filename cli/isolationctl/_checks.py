"""One result of ``isolationctl doctor``: what was checked, whether it holds, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    area: str  # "keys", "environment legacy", "host", "sandbox"
    name: str  # what was checked, e.g. "signer keyset has exactly one primary"
    ok: bool
    detail: str = ""
    fix: str = ""  # the command (or action) that fixes a failure

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
