"""Files the CLI writes: atomically (never half-written) and with the mode they need."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from isolationctl._ui import fail


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` through a fresh temporary file and a rename.

    An interrupted write (Ctrl-C, a full disk) leaves the old file, or none, never half
    of the new one; the file never exists with a wider mode than ``mode``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", hint="check that the folder exists and is writable")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            fail(f"cannot write {path}: {exc.strerror}", hint="check that the folder is writable")
        raise
    return path
