"""Re-export only: what ``task-decorators`` names for ``@task.isolated``, ``@task.isolated_branch`` and
``@task.isolated_short_circuit`` (see isolation/provider_info.py)."""

from __future__ import annotations

from isolation.operators.taskflow import isolated_branch_task, isolated_short_circuit_task, isolated_task

__all__ = ["isolated_branch_task", "isolated_short_circuit_task", "isolated_task"]
