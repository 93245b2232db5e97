"""Run any Airflow operator in an isolated environment, state sealed in an envelope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from isolation.operators.isolated import IsolatedOperator

__all__ = ["IsolatedOperator", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: the isolated runtime imports `isolation.transport` without Airflow.
    if name == "IsolatedOperator":
        from isolation.operators.isolated import IsolatedOperator

        return IsolatedOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
