"""Downstream decisions on the host: carry the DAG's structure out, apply decisions back.

An operator that decides what runs next (Airflow's SkipMixin family) runs in isolation
against placeholders of this DAG (``isolation.runtime.dagshape``). What it decided comes
back in the result as requests: *skip these tasks* (``SkipMixin.skip``) or *follow these
branches* (``SkipMixin.skip_all_except``). The isolated side is trusted for nothing, so
each request is checked against this host's real DAG, then applied by Airflow's own
SkipMixin, which pushes ``skipmixin_key`` and tells the task runner what to skip.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from typing import Any

from isolation.errors import IsolatedTaskFailed

_SKIP_FAMILY = ("SkipMixin", "BranchMixIn")


def host_class(operator_path: str) -> type | None:
    """The wrapped operator's class as this host has it, or None when it cannot import it."""
    module, _, name = operator_path.replace(":", ".").rpartition(".")
    try:
        # A path spelled for the environment's Airflow may be deprecated here: not this task's news.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = getattr(importlib.import_module(module), name)
    except Exception:  # an operator only the environment has: nothing to learn here
        return None
    return found if isinstance(found, type) else None


def _skip_family(cls: type) -> bool:
    return any(base.__name__ in _SKIP_FAMILY for base in cls.__mro__)


def may_skip(operator_path: str) -> bool:
    """Whether the wrapped operator may skip downstream tasks (unknown here: it may)."""
    cls = host_class(operator_path)
    return cls is None or _skip_family(cls)


def may_decide_downstream(operator_path: str, task: Any) -> bool:
    """Whether the isolated operator needs the DAG's structure: a SkipMixin operator, or
    one this host cannot import (it may be one) that has downstream tasks."""
    cls = host_class(operator_path)
    if cls is None:
        return bool(task.downstream_task_ids)
    return _skip_family(cls)


def dag_shape(task: Any) -> dict[str, Any]:
    """The DAG's tasks, edges, task groups and timetable, as payload schema 2 carries them."""
    dag = task.dag
    tasks = [
        {
            "task_id": t.task_id,
            "downstream": sorted(t.downstream_task_ids),
            "task_group": _group_id(t),
            "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
            "is_setup": bool(getattr(t, "is_setup", False)),
            "is_teardown": bool(getattr(t, "is_teardown", False)),
        }
        for t in dag.tasks
    ]
    groups: list[dict[str, Any]] = []
    _walk_groups(dag.task_group, groups)
    timetable_type, timetable = _timetable(dag)
    return {"tasks": tasks, "task_groups": groups, "timetable_type": timetable_type, "timetable": timetable}


def _group_id(task: Any) -> str | None:
    group = getattr(task, "task_group", None)
    return getattr(group, "group_id", None) if group is not None else None


def _walk_groups(group: Any, out: list[dict[str, Any]]) -> None:
    from airflow.sdk.definitions.taskgroup import TaskGroup

    for child in group.children.values():
        if isinstance(child, TaskGroup):
            out.append({"group_id": child.group_id, "parent": group.group_id})
            _walk_groups(child, out)


def _timetable(dag: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The timetable as Airflow serializes it: the same format every version reads."""
    from isolation.errors import PayloadError
    from isolation.operators._state import to_plain

    timetable = getattr(dag, "timetable", None)
    if timetable is None:
        return None, None
    try:
        try:
            from airflow.serialization.encoders import encode_timetable
        except ImportError:  # Airflow 3.0
            from airflow.serialization.serialized_objects import encode_timetable  # type: ignore[attr-defined]
        encoded = encode_timetable(timetable)
    except Exception:  # a timetable Airflow cannot serialize: say which, the runtime explains
        return f"{type(timetable).__module__}.{type(timetable).__qualname__}", None
    values = {str(k.value if hasattr(k, "value") else k): v for k, v in encoded.items()}
    try:
        fields = to_plain(values.get("__var") or {}, "timetable")
    except PayloadError:
        fields = None
    return str(values.get("__type")), fields


def _refused(operator: Any, task_id: str, why: str) -> IsolatedTaskFailed:
    # The request comes from the environment: bounded, and refused as a whole.
    shown = repr(task_id if len(task_id) <= 80 else task_id[:80] + "...")
    return IsolatedTaskFailed(
        f"the isolated operator of {operator.task_id!r} asked to skip {shown}, {why}: no downstream task was skipped",
        hint="an isolated operator may skip only tasks downstream of its own task",
    )


def _check(operator: Any, decisions: Sequence[Any]) -> None:
    # Branches to follow are checked by SkipMixin.skip_all_except itself, with its message.
    downstream = set(operator.get_flat_relative_ids(upstream=False))
    for decision in decisions:
        if decision.kind == "skip":
            for task_id in decision.task_ids or ():
                if task_id not in downstream:
                    raise _refused(operator, task_id, "which is not downstream of it")


def apply(operator: Any, context: Any, decisions: Sequence[Any], return_value: Any) -> None:
    """Apply the checked decisions with Airflow's SkipMixin, as the operator would on the host.

    SkipMixin ends by raising ``DownstreamTasksSkipped`` for the task runner, which then
    does not push the return value: it is pushed here first, as the isolated task returned it.
    """
    from airflow.providers.standard.utils.skipmixin import SkipMixin
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    _check(operator, decisions)
    ti = context["ti"]

    class HostSkipMixin(SkipMixin):
        # SkipMixin reads the task id (its XCom) and its own helpers from ``self``.
        task_id = operator.task_id

    skipper = HostSkipMixin()  # type: ignore[no-untyped-call]
    skipped: list[Any] = []
    for decision in decisions:
        try:
            if decision.kind == "skip":
                tasks = [operator.dag.get_task(task_id) for task_id in decision.task_ids or ()]
                skipper.skip(ti=ti, tasks=tasks)
            else:
                skipper.skip_all_except(ti, decision.task_ids)
        except DownstreamTasksSkipped as signal:
            skipped += signal.tasks if isinstance(signal.tasks, list) else [signal.tasks]
    if skipped:
        if return_value is not None and getattr(operator, "do_xcom_push", True):
            ti.xcom_push(key="return_value", value=return_value)
        raise DownstreamTasksSkipped(tasks=skipped)  # type: ignore[no-untyped-call]
