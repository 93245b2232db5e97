"""Host-side operators: :class:`IsolatedOperator`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isolation.operators.isolated import IsolatedOperator

__all__ = ["IsolatedOperator"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `isolation.operators.discovery` stays importable without Airflow.
    if name == "IsolatedOperator":
        from isolation.operators.isolated import IsolatedOperator

        return IsolatedOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
