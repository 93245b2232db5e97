"""The task context, rebuilt from the envelope with typed values.

Airflow's own task instance and dag run are database rows (Airflow 2) or clients of
the supervisor (Airflow 3); here they are small stand-ins that carry the identity
the host sealed, serve ``xcom_pull`` from the XCom inputs the host resolved, and
record ``xcom_push`` for the result.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from isolation.errors import XComNotProvided

if TYPE_CHECKING:
    from isolation.transport.payload import Payload, XComInput

RETURN_KEY = "return_value"


def to_pendulum(value: dt.datetime | None) -> Any:
    """A pendulum DateTime in UTC (Airflow's type); naive values are taken as UTC."""
    if value is None:
        return None
    import pendulum

    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return pendulum.instance(value).in_timezone("UTC")


@dataclass
class XComRecord:
    """What the operator pushed, in order; ``return_value`` kept apart."""

    pushed: list[tuple[str, Any]] = field(default_factory=list)
    return_value: Any = None
    # The latest value of each key pushed so far: the task's own XComs, which it may pull.
    latest: dict[str, Any] = field(default_factory=dict)

    def push(self, key: str, value: Any) -> None:
        self.latest[key] = value
        if key == RETURN_KEY:
            self.return_value = value
        else:
            self.pushed.append((key, value))


class IsolatedDagRun:
    """The fields of a dag run a task can read."""

    def __init__(self, payload: Payload) -> None:
        ctx = payload.context
        self.dag_id = ctx.dag_id
        self.run_id = ctx.run_id
        self.run_type = ctx.run_type
        self.conf = dict(ctx.dag_run_conf)
        self.logical_date = to_pendulum(ctx.logical_date)
        self.execution_date = self.logical_date
        self.data_interval_start = to_pendulum(ctx.data_interval_start)
        self.data_interval_end = to_pendulum(ctx.data_interval_end)
        self.start_date = to_pendulum(ctx.start_date)
        self.external_trigger = ctx.run_type == "manual"

    def __repr__(self) -> str:
        return f"<IsolatedDagRun {self.dag_id} @ {self.run_id}>"


@dataclass(frozen=True)
class _Sent:
    """One XCom value this task can pull: sent by the host, or pushed by the task itself."""

    task_id: str
    map_index: int
    value: Any


class IsolatedTaskInstance:
    """The task instance API operators use: identity, ``xcom_push`` and ``xcom_pull``.

    ``xcom_pull`` serves the XComs the host sent and those the task pushed itself. One the
    host did not send raises :class:`~isolation.errors.XComNotProvided` when the payload
    asks for strict pulls (schema 2's default), even with a ``default=``: the runtime cannot
    tell an XCom missing on the host from one nobody declared, and a silent default is a
    wrong result when the host has a value. Lenient pulls (schema 1, or the host's
    ``lenient_xcom_pull=True``) return ``default``, as Airflow does for a missing XCom.
    """

    def __init__(
        self,
        payload: Payload,
        task: Any,
        dag_run: IsolatedDagRun,
        record: XComRecord,
        *,
        airflow_3: bool = True,
    ) -> None:
        ctx = payload.context
        self.dag_id = ctx.dag_id
        self.task_id = ctx.task_id
        self.run_id = ctx.run_id
        self.map_index = ctx.map_index
        self.try_number = ctx.try_number
        self.max_tries = ctx.max_tries
        self.logical_date = dag_run.logical_date
        self.execution_date = dag_run.logical_date
        self.start_date = to_pendulum(ctx.start_date)
        self.task = task
        self.dag_run = dag_run
        self.hostname = ""
        self.state = "running"
        self._inputs: list[XComInput] = list(payload.xcom_inputs)
        self._record = record
        self._strict = payload.options.strict_xcom_pull
        self._airflow_3 = airflow_3

    def __repr__(self) -> str:
        return f"<IsolatedTaskInstance {self.dag_id}.{self.task_id} {self.run_id} map_index={self.map_index}>"

    def get_dagrun(self, *args: Any, **kwargs: Any) -> IsolatedDagRun:
        return self.dag_run

    def xcom_push(self, key: str, value: Any, *args: Any, **kwargs: Any) -> None:
        self._record.push(key, value)

    def xcom_pull(
        self,
        task_ids: str | list[str] | tuple[str, ...] | None = None,
        dag_id: str | None = None,
        key: str = RETURN_KEY,
        include_prior_dates: bool = False,
        *,
        map_indexes: int | list[int] | None = None,
        default: Any = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Serve an XCom the host resolved or the task pushed; see the class for a missing one."""
        if task_ids is None and self._airflow_3:  # Airflow 3: this task's own XCom
            task_ids = self.task_id
        if task_ids is None or isinstance(task_ids, str):
            return self._pull_one(
                task_ids, dag_id=dag_id, key=key, map_indexes=map_indexes, default=default, run_id=run_id
            )
        return [
            self._pull_one(t, dag_id=dag_id, key=key, map_indexes=map_indexes, default=default, run_id=run_id)
            for t in task_ids
        ]

    def _candidates(self, task_id: str | None, key: str, dag_id: str | None, run_id: str | None) -> list[_Sent]:
        """The values of ``key`` for ``task_id`` (None: any task, Airflow 2), own pushes first."""
        want_dag = dag_id or self.dag_id
        want_run = run_id or self.run_id
        found: list[_Sent] = []
        own = want_dag == self.dag_id and want_run == self.run_id and task_id in (None, self.task_id)
        if own and key in self._record.latest:
            found.append(_Sent(self.task_id, self.map_index, self._record.latest[key]))
        for x in self._inputs:
            if (
                (task_id is None or x.task_id == task_id)
                and x.key == key
                and (x.dag_id or self.dag_id) == want_dag
                and (x.run_id or self.run_id) == want_run
                and not any(f.task_id == x.task_id and f.map_index == x.map_index for f in found)
            ):
                found.append(_Sent(x.task_id, x.map_index, x.value))
        if task_id is None and found:
            # Airflow 2 returns the latest XCom of any task: the own push, else the first sent.
            first = found[0].task_id
            found = [f for f in found if f.task_id == first]
        return found

    def _missing(self, task_id: str | None, key: str, map_index: int | None, default: Any, **where: Any) -> Any:
        if self._strict:
            raise XComNotProvided(task_id, key, own_task=self.task_id, map_index=map_index, **where)
        return default

    def _pull_one(
        self,
        task_id: str | None,
        *,
        dag_id: str | None,
        key: str,
        map_indexes: int | list[int] | None,
        default: Any,
        run_id: str | None,
    ) -> Any:
        found = self._candidates(task_id, key, dag_id, run_id)
        where = {"dag_id": dag_id, "run_id": run_id}
        if isinstance(map_indexes, int):
            match = next((x for x in found if x.map_index == map_indexes), None)
            return match.value if match else self._missing(task_id, key, map_indexes, default, **where)
        if map_indexes is not None:
            values = []
            for i in list(map_indexes):
                match = next((x for x in found if x.map_index == i), None)
                values.append(match.value if match else self._missing(task_id, key, i, default, **where))
            return values
        if not found:
            return self._missing(task_id, key, None, default, **where)
        if len(found) == 1 and found[0].map_index < 0:
            return found[0].value
        # A mapped upstream: every map index, in order, as Airflow returns it.
        return [x.value for x in sorted(found, key=lambda x: x.map_index)]


class VariableAccessor:
    """``{{ var.value.x }}`` and ``{{ var.json.x }}`` through the public ``Variable.get``."""

    def __init__(self, variable_class: Any, deserialize_json: bool) -> None:
        self._variable = variable_class
        self._json = deserialize_json

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self._variable.get(key, deserialize_json=self._json)

    def __getitem__(self, key: str) -> Any:
        return self._variable.get(key, deserialize_json=self._json)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self._variable.get(key, deserialize_json=self._json)
        except KeyError:
            return default

    def __repr__(self) -> str:
        return "<isolated variables>"


class ConnectionAccessor:
    """``{{ conn.x }}`` through the public ``BaseHook.get_connection``."""

    def __init__(self, hook_class: Any) -> None:
        self._hook = hook_class

    def __getattr__(self, conn_id: str) -> Any:
        if conn_id.startswith("__"):
            raise AttributeError(conn_id)
        return self._hook.get_connection(conn_id)

    def get(self, conn_id: str, default: Any = None) -> Any:
        from isolation.errors import NotProvided

        try:
            return self._hook.get_connection(conn_id)
        except NotProvided:
            return default

    def __repr__(self) -> str:
        return "<isolated connections>"


def build_context(payload: Payload, task: Any, dag: Any, record: XComRecord) -> dict[str, Any]:
    """The context dict ``execute`` and template rendering receive."""
    from isolation.runtime import compat

    ctx = payload.context
    dag_run = IsolatedDagRun(payload)
    ti = IsolatedTaskInstance(payload, task, dag_run, record, airflow_3=compat.AIRFLOW_V3)
    context: dict[str, Any] = {
        "conn": ConnectionAccessor(compat.BaseHook),
        "dag": dag,
        "dag_run": dag_run,
        "data_interval_start": dag_run.data_interval_start,
        "data_interval_end": dag_run.data_interval_end,
        "inlets": list(getattr(task, "inlets", []) or []),
        "outlets": list(getattr(task, "outlets", []) or []),
        "macros": compat.macros(),
        "map_index_template": getattr(task, "map_index_template", None),
        "params": dict(ctx.params),
        "run_id": ctx.run_id,
        "task": task,
        "task_instance": ti,
        "ti": ti,
        "task_instance_key_str": f"{ctx.dag_id}__{ctx.task_id}__{ctx.run_id}",
        "test_mode": False,
        "templates_dict": None,
        "var": {"value": VariableAccessor(compat.Variable, False), "json": VariableAccessor(compat.Variable, True)},
        "expanded_ti_count": None,
    }
    events = compat.outlet_events()
    if events is not None:
        context["outlet_events"] = events
    logical = dag_run.logical_date
    if logical is not None:
        ds_nodash = logical.strftime("%Y%m%d")
        ts = logical.isoformat()
        context.update(
            {
                "logical_date": logical,
                "ds": logical.strftime("%Y-%m-%d"),
                "ds_nodash": ds_nodash,
                "ts": ts,
                "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
                "ts_nodash_with_tz": ts.replace("-", "").replace(":", ""),
                "task_instance_key_str": f"{ctx.dag_id}__{ctx.task_id}__{ds_nodash}",
            }
        )
        if not compat.AIRFLOW_V3:
            context["execution_date"] = logical
    return compat.context_mapping(context)  # type: ignore[no-any-return]
