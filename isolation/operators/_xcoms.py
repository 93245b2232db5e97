"""Resolve, on the host, the XComs an isolated task may pull.

A mapped upstream is sent as one value per map index, so ``ti.xcom_pull(task_ids=...,
map_indexes=i)`` in isolation returns what it returns on the host, and a pull of every index
returns them in map-index order, without the indexes that pushed nothing (as Airflow's does).
Airflow stores no XCom for a None return, so None stands for "pushed nothing".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from isolation.operators import _state


def resolve(ti: Any, wanted: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The ``XComInput`` fields for every ``(task_id, key)`` in ``wanted``, in that order."""
    inputs: list[dict[str, Any]] = []
    for task_id, key in wanted:
        indexes = mapped_indexes(ti, task_id)
        if indexes is None:
            value = ti.xcom_pull(task_ids=task_id, key=key)
            inputs.append({"task_id": task_id, "key": key, "value": _state.to_plain(value, f"XCom {task_id}:{key}")})
            continue
        values = ti.xcom_pull(task_ids=task_id, key=key, map_indexes=indexes, default=None) if indexes else []
        for index, value in zip(indexes, values, strict=True):
            # An index that pushed nothing is sent as None, so the pull is known to be declared.
            where = f"XCom {task_id}:{key}[{index}]"
            inputs.append({"task_id": task_id, "key": key, "map_index": index, "value": _state.to_plain(value, where)})
    return inputs


def mapped_indexes(ti: Any, task_id: str) -> list[int] | None:
    """The map indexes of ``task_id`` in this run if it is mapped (itself or by its group), else None."""
    dag = getattr(getattr(ti, "task", None), "dag", None)
    if dag is None or not dag.has_task(task_id):
        return None  # not a task of this DAG: pulled as Airflow pulls any task
    upstream = dag.get_task(task_id)
    if not getattr(upstream, "is_mapped", False) and upstream.get_closest_mapped_task_group() is None:
        return None
    count = ti.get_ti_count(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id])
    return list(range(count))
