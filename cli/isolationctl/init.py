"""`isolationctl init` (being written)."""

from __future__ import annotations


def init() -> None:
    """Not written yet."""
