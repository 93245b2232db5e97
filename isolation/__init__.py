"""Run any Airflow operator in an isolated environment, state sealed in an envelope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The name's 1.x on the public index is the earlier proof of concept; this is its successor.
# A pre-release until the sandbox work is done: installers never pick it over a final release
# unless asked (--pre), and it still sorts above 1.0.1. Read by hatchling (pyproject.toml).
__version__ = "2.0.0a1"

if TYPE_CHECKING:
    from isolation.operators.isolated import IsolatedOperator
    from isolation.operators.taskflow import isolated_branch_task, isolated_short_circuit_task, isolated_task

__all__ = ["IsolatedOperator", "__version__", "isolated_branch_task", "isolated_short_circuit_task", "isolated_task"]
_TASKFLOW = frozenset({"isolated_task", "isolated_branch_task", "isolated_short_circuit_task"})


def __getattr__(name: str) -> Any:
    # Lazy: the isolated runtime imports `isolation.transport` without Airflow.
    if name == "IsolatedOperator":
        from isolation.operators.isolated import IsolatedOperator

        return IsolatedOperator
    if name in _TASKFLOW:
        from isolation.operators import taskflow

        return getattr(taskflow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
