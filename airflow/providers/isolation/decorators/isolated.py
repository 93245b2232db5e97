"""Re-export only: what ``task-decorators`` names for ``@task.isolated`` (see isolation/provider_info.py)."""

from __future__ import annotations

from isolation.operators.taskflow import isolated_task

__all__ = ["isolated_task"]
