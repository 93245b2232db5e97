"""`isolationctl deploy` (being written)."""

from __future__ import annotations


def deploy() -> None:
    """Not written yet."""
