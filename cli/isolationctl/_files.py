"""Files the CLI writes: atomically (never half-written), with the mode they need, errors as one line."""

from __future__ import annotations

from pathlib import Path

from isolation._atomic import write_atomic as _write_atomic
from isolationctl._ui import fail


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """:func:`isolation._atomic.write_atomic`, creating the folder, failing with one clear line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _write_atomic(path, text, mode=mode)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or type(exc).__name__}", hint="check that the folder is writable")
