"""The DAG an isolated operator sees: its own task among placeholders of the real DAG.

Operators that decide what runs next (ShortCircuit, the Branch family, LatestOnly) read
the task's downstream tasks, task groups and the DAG's timetable. The host carries them
in the payload (schema 2, ``dag``); here every other task becomes an ``EmptyOperator``
with the same id, group, trigger rule and edges, so the operator computes the same
decision it would on the host. The decision itself is only a request: the host checks
it against its own DAG before it applies it (docs/runtime.md, "Downstream decisions").
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from typing import TYPE_CHECKING, Any

from isolation.errors import IsolationError, OperatorLoadError
from isolation.runtime import compat

if TYPE_CHECKING:
    from isolation.transport.payload import DagShape, Payload

log = logging.getLogger("isolation.runtime")

# Only Airflow's own timetables are rebuilt: a carried path never imports anything else.
_TIMETABLE_PREFIX = "airflow.timetables."
# schedule=None: what a DAG built without a schedule has anyway.
_NO_SCHEDULE = ".NullTimetable"


class TimetableUnavailable(IsolationError):
    """The DAG's timetable cannot be rebuilt in this environment's Airflow."""


class DagRebuild:
    """The DAG to build the operator in, and where the operator's own task sits in it."""

    def __init__(self, payload: Payload) -> None:
        self.shape: DagShape | None = payload.dag
        self.task_id = payload.context.task_id
        timetable = _timetable(self.shape) if self.shape is not None else None
        extra: dict[str, Any] = {}
        if timetable is not None and not compat.AIRFLOW_V3:
            # Airflow 2 wants a start date with a schedule; this DAG is never scheduled, and
            # the operators that read its timetable ask it without a start date restriction.
            extra["start_date"] = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        self.dag = compat.DAG(dag_id=payload.context.dag_id, schedule=timetable, **extra)
        self._groups: dict[str, Any] = {}
        if self.shape is not None:
            self._add_groups(self.shape)
            self._add_placeholders(self.shape)

    def check_operator(self, cls: type) -> None:
        """Refuse what this Airflow's operator would silently decide differently from the host's."""
        names = {base.__name__ for base in cls.__mro__}
        shape = self.shape
        if compat.AIRFLOW_V3 or "LatestOnlyOperator" not in names or shape is None:
            return
        path = shape.timetable_type or ""
        fields = shape.timetable or {}
        if path.endswith("TriggerTimetable") and not fields.get("interval"):
            raise OperatorLoadError(
                f"Airflow {compat.AIRFLOW_VERSION}'s LatestOnlyOperator never finds a scheduled run latest "
                f"under {path.rpartition('.')[2]} (zero-length data intervals, Airflow 3's default for a cron "
                "schedule): it would skip every downstream task, where Airflow 3's operator does not",
                hint="give the DAG a data-interval schedule (CronDataIntervalTimetable), or run "
                "LatestOnlyOperator in an Airflow 3 environment or on the host",
            )

    def placement(self) -> dict[str, Any]:
        """The operator's own ``task_group=`` argument, when it sits in a group."""
        if self.shape is None:
            return {}
        own = next((t for t in self.shape.tasks if t.task_id == self.task_id), None)
        if own is None or own.task_group is None:
            return {}
        return {"task_group": self._groups[own.task_group]}

    def connect(self, built: Any) -> None:
        """The DAG's edges, once the operator's own task exists."""
        if self.shape is None:
            return
        for task in self.shape.tasks:
            node = self.dag.get_task(task.task_id)
            for downstream in task.downstream:
                if self.dag.has_task(downstream):
                    node.set_downstream(self.dag.get_task(downstream))

    def _add_groups(self, shape: DagShape) -> None:
        task_group_class = compat.task_group_class()
        for group in shape.task_groups:
            parent = self._groups.get(group.parent) if group.parent is not None else None
            self._groups[group.group_id] = task_group_class(
                group_id=group.group_id, dag=self.dag, parent_group=parent, prefix_group_id=False
            )

    def _add_placeholders(self, shape: DagShape) -> None:
        empty = compat.empty_operator_class()
        for task in shape.tasks:
            if task.task_id == self.task_id:
                continue
            kwargs: dict[str, Any] = {"task_id": task.task_id, "dag": self.dag}
            if task.task_group is not None:
                kwargs["task_group"] = self._groups[task.task_group]
            try:
                placeholder = empty(trigger_rule=task.trigger_rule, **kwargs)
            except Exception:  # a rule this Airflow does not know: the placeholder never runs
                placeholder = empty(**kwargs)
            placeholder.is_setup = task.is_setup
            placeholder.is_teardown = task.is_teardown


def _timetable(shape: DagShape) -> Any:
    """The DAG's timetable rebuilt from what the host's Airflow serialized, or a stand-in
    that says why it could not be (an operator that never reads it does not care)."""
    path = shape.timetable_type
    if path is None or path.endswith(_NO_SCHEDULE):
        return None
    why = None
    if not path.startswith(_TIMETABLE_PREFIX):
        why = "only Airflow's own timetables are rebuilt in isolation"
    elif shape.timetable is None:
        why = "the host could not serialize it"
    else:
        try:
            module, _, name = path.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            # Airflow 3.3's Timetable base is a Protocol: ask for the behaviour, not the class.
            if not (isinstance(cls, type) and callable(getattr(cls, "deserialize", None))):
                raise TypeError(f"{path} is not a timetable")
            return cls.deserialize(dict(shape.timetable))  # type: ignore[attr-defined]
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
    log.info("the DAG's timetable %s is not available in isolation (%s)", path, why)
    return _unavailable_timetable(path, why)


def _unavailable_timetable(path: str, why: str) -> Any:
    message = (
        f"the DAG's timetable ({path}) cannot be rebuilt in this environment's Airflow "
        f"{compat.AIRFLOW_VERSION} ({why}), and this operator reads it"
    )
    hint = "use a cron or timedelta schedule, or run this operator on the host"

    class UnavailableTimetable(compat.timetable_class()):  # type: ignore[misc]
        description = f"not available in isolation: {path}"

        def serialize(self) -> dict[str, Any]:
            return {}

        def infer_manual_data_interval(self, **kwargs: Any) -> Any:
            raise TimetableUnavailable(message, hint=hint)

        def next_dagrun_info(self, **kwargs: Any) -> Any:
            raise TimetableUnavailable(message, hint=hint)

    return UnavailableTimetable()
