"""Re-export only: ``from airflow.providers.isolation.operators import IsolatedOperator``."""

from __future__ import annotations

from isolation.operators.isolated import IsolatedOperator

__all__ = ["IsolatedOperator"]
