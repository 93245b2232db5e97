"""`isolationctl doctor` (being written)."""

from __future__ import annotations


def doctor() -> None:
    """Not written yet."""
