"""Replacing a file whole or not at all: the one atomic write every part of the project uses."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: str | os.PathLike[str], text: str, *, mode: int = 0o644, staging: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``text`` to ``path`` through a fresh temporary file, fsync, chmod and a rename.

    A reader sees the old file or the new one, never half of one; an interruption leaves
    no temporary file behind. ``mkstemp`` creates the temporary file exclusively with mode
    0600, never through a symbolic link planted at a predictable name, so the content never
    exists with a wider mode than ``mode``. The temporary file is made in ``staging``
    (default: the target's folder; it must be on the same file system). Raises ``OSError``.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=staging or target.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    return target
