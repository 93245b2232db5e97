"""The task context, rebuilt from the envelope with typed values.

Airflow's own task instance and dag run are database rows (Airflow 2) or clients of
the supervisor (Airflow 3); here they are small stand-ins that carry the identity
the host sealed, serve ``xcom_pull`` from the XCom inputs the host resolved, and
record ``xcom_push`` for the result.

Every key the environment's Airflow puts into a task's context is either carried
(computed from the envelope as that Airflow version computes it) or stands for an
:class:`Unavailable` placeholder: ``context["k"]`` raises
:class:`~isolation.errors.ContextNotAvailable` at once, ``{{ k }}`` as soon as the
template uses it. docs/runtime.md lists which keys are which.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from isolation.errors import ContextNotAvailable, DagRunFieldNotCarried, XComNotProvided

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
        # True of every run a task runs in: it is running, so it has not ended.
        self.state = "running"
        self.end_date = None

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not set above: Airflow's other fields are not carried.
        from isolation.runtime import compat

        if name in compat.dag_run_fields():
            raise DagRunFieldNotCarried(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<IsolatedDagRun {self.dag_id} @ {self.run_id}>"


@dataclass(frozen=True)
class _Sent:
    """One XCom value this task can pull: sent by the host, or pushed by the task itself."""

    task_id: str
    map_index: int
    value: Any


@dataclass(frozen=True)
class _Where:
    """The DAG and run an ``xcom_pull`` names (None: this task's own)."""

    dag_id: str | None
    run_id: str | None


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

    def _missing(self, task_id: str | None, key: str, map_index: int | None, default: Any, where: _Where) -> Any:
        if self._strict:
            # Only this run's XComs can be declared: another DAG's or run's are never sent.
            elsewhere = (where.dag_id or self.dag_id) != self.dag_id or (where.run_id or self.run_id) != self.run_id
            raise XComNotProvided(
                task_id,
                key,
                own_task=self.task_id,
                map_index=map_index,
                dag_id=where.dag_id,
                run_id=where.run_id,
                elsewhere=elsewhere,
            )
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
        where = _Where(dag_id, run_id)
        if isinstance(map_indexes, int):
            return self._at_index(found, task_id, key, map_indexes, default=default, where=where)
        if map_indexes is not None:
            return [self._at_index(found, task_id, key, i, default=default, where=where) for i in list(map_indexes)]
        if not found:
            missing = self._missing(task_id, key, None, default, where)
            # Airflow 3 ignores ``default`` when no map index is asked for: it returns None.
            return None if self._airflow_3 else missing
        if all(x.map_index < 0 for x in found):
            return found[0].value
        # A mapped upstream: the indexes that pushed a value, in order, as Airflow returns them.
        values = [x.value for x in sorted(found, key=lambda x: x.map_index) if x.value is not None]
        if self._airflow_3 and len(values) <= 1:
            return values[0] if values else None  # Airflow 3 unwraps a lone value
        return values

    def _at_index(
        self, found: list[_Sent], task_id: str | None, key: str, index: int, *, default: Any, where: _Where
    ) -> Any:
        match = next((x for x in found if x.map_index == index), None)
        if match is None:
            return self._missing(task_id, key, index, default, where)
        # The host sends None for an index that pushed nothing: Airflow returns ``default``.
        return default if match.value is None else match.value


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


# -- keys that cannot be carried -----------------------------------------------------------


class Unavailable:
    """The value of a context key isolation cannot carry: every use raises ContextNotAvailable.

    The context mapping raises on direct access (``context["k"]``); this placeholder is what
    copies of the context hold: ``**context``, ``dict(context)`` and the copy Airflow renders
    templates with. Jinja looks up every name a template mentions before it renders, so a
    key fails only where it is used, not in a branch that is not taken.
    """

    __slots__ = ("_key", "_reason")

    def __init__(self, key: str, reason: str) -> None:
        self._key = key
        self._reason = reason

    def error(self) -> ContextNotAvailable:
        return ContextNotAvailable(self._key, self._reason)

    def __repr__(self) -> str:
        return f"<context key {self._key!r}: not available in isolation>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol probes (__html__, __array__, ...) find nothing
            raise AttributeError(name)
        raise self.error()

    def __copy__(self) -> Unavailable:
        return self

    def __deepcopy__(self, memo: Any) -> Unavailable:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Unavailable, (self._key, self._reason))

    __hash__ = object.__hash__


def _refuse(self: Unavailable, *args: Any, **kwargs: Any) -> NoReturn:
    raise self.error()


# Every way a value is used: text, truth, comparison, arithmetic, container, call.
_USES = (
    "__str__", "__format__", "__bool__", "__len__", "__iter__", "__contains__", "__getitem__", "__call__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__int__", "__float__", "__index__",
    "__fspath__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__floordiv__", "__mod__", "__neg__", "__abs__",
)  # fmt: skip
for _use in _USES:
    setattr(Unavailable, _use, _refuse)


def _check(value: Any) -> Any:
    if type(value) is Unavailable:
        raise value.error()
    return value


@functools.cache
def _mapping_class(airflow_3: bool) -> type:
    """Airflow's own context type (Airflow 3: a dict; Airflow 2: ``airflow.utils.context.Context``,
    whose deprecated keys warn), raising on direct access to an unavailable key."""
    if airflow_3:

        class IsolatedContext(dict):  # type: ignore[type-arg]
            def __getitem__(self, key: Any) -> Any:
                return _check(super().__getitem__(key))

            def get(self, key: Any, default: Any = None) -> Any:
                # Missing, as for Airflow's own optional keys (e.g. ResumableJobMixin probes
                # task_state_store with get and runs without it).
                value = super().get(key, default)
                return default if type(value) is Unavailable else value

            def __copy__(self) -> dict[str, Any]:
                return dict(self)

            def copy(self) -> dict[str, Any]:
                return dict(self)

        return IsolatedContext

    base: Any = importlib.import_module("airflow.utils.context").Context

    class IsolatedContext2(base):  # type: ignore[misc]
        def __getitem__(self, key: str) -> Any:
            return _check(super().__getitem__(key))

        def __copy__(self) -> Any:
            new = base(copy.copy(self._context))
            new._deprecation_replacements = self._deprecation_replacements.copy()
            return new

        def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
            return dict, (list(self._context.items()),)

    return IsolatedContext2


@functools.cache
def _offered_keys(airflow_3: bool) -> frozenset[str]:
    """The context keys this Airflow version declares: ``KNOWN_CONTEXT_KEYS``, or the keys of
    its ``Context`` type (Airflow 3.0 has no such set in the Task SDK)."""
    module = importlib.import_module("airflow.sdk.definitions.context" if airflow_3 else "airflow.utils.context")
    keys: Any = getattr(module, "KNOWN_CONTEXT_KEYS", None)
    if keys is None:
        keys = getattr(getattr(module, "Context", None), "__annotations__", ())
    return frozenset(keys)


_ASSETS = (
    "assets stay on the host: inlets and outlets are the IsolatedOperator's own arguments, and "
    "asset objects do not travel in the envelope"
)
_SUPERVISOR = "it reads and writes through the Airflow 3 supervisor, which isolation cannot reach"
_NOT_SEALED = "the host does not seal it into the envelope (payload schema 2)"
_SCHEMA_1 = "the host sealed payload schema 1, which does not carry it; upgrade the host's isolation"
# Keys no host can fill: the same on every run.
_NEVER: dict[str, str] = {
    "inlets": _ASSETS,
    "outlets": _ASSETS,
    "inlet_events": "asset events are read from Airflow's database or API, which isolation cannot reach",
    "triggering_asset_events": "the asset events that triggered this run are not sealed into the envelope",
    "triggering_dataset_events": "the dataset events that triggered this run are not sealed into the envelope",
    "task_state_store": _SUPERVISOR,
    "asset_state_store": _SUPERVISOR,
    "partition_key": _NOT_SEALED,
    "partition_date": _NOT_SEALED,
    "conf": "the host's Airflow configuration is not carried (it holds secrets); the environment's own "
    "configuration is a private, empty one",
    "prev_execution_date_success": "an Airflow 3 host does not compute it; use prev_data_interval_start_success",
}
_SUCCESS_KEYS = (
    "prev_data_interval_start_success",
    "prev_data_interval_end_success",
    "prev_start_date_success",
    "prev_end_date_success",
)


def _success_keys(payload: Payload, *, with_intervals: bool) -> dict[str, Any]:
    """The latest earlier successful run's dates, as the host's Airflow found them (None: none)."""
    keys = _SUCCESS_KEYS if with_intervals else _SUCCESS_KEYS[2:]
    if payload.schema_version < 2:
        return {k: Unavailable(k, _SCHEMA_1) for k in keys}
    return {k: to_pendulum(getattr(payload.context, k)) for k in keys}


def _date_keys(logical: Any) -> dict[str, Any]:
    ds_nodash = logical.strftime("%Y%m%d")
    ts = logical.isoformat()
    return {
        "logical_date": logical,
        "ds": logical.strftime("%Y-%m-%d"),
        "ds_nodash": ds_nodash,
        "ts": ts,
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": ts.replace("-", "").replace(":", ""),
    }


def _airflow3_keys(payload: Payload, dag_run: IsolatedDagRun) -> dict[str, Any]:
    """What Airflow 3's ``RuntimeTaskInstance.get_template_context`` adds from the run."""
    ctx = payload.context
    values: dict[str, Any] = {
        "task_instance_key_str": f"{ctx.dag_id}__{ctx.task_id}__{ctx.run_id}",
        # The host's IsolatedOperator never reschedules (sensors poke in isolation).
        "task_reschedule_count": 0,
        **_success_keys(payload, with_intervals=False),
    }
    logical = dag_run.logical_date
    if logical is not None:  # logical date and data interval come together, or not at all
        values.update(_date_keys(logical))
        values["task_instance_key_str"] = f"{ctx.dag_id}__{ctx.task_id}__{values['ds_nodash']}"
        values["data_interval_start"] = dag_run.data_interval_start
        values["data_interval_end"] = dag_run.data_interval_end
        values.update(_success_keys(payload, with_intervals=True))
    return values


def _airflow2_keys(payload: Payload, dag_run: IsolatedDagRun) -> dict[str, Any]:
    """What Airflow 2's ``TaskInstance.get_template_context`` computes, from the carried values."""
    ctx = payload.context
    values: dict[str, Any] = {
        "data_interval_start": dag_run.data_interval_start,
        "data_interval_end": dag_run.data_interval_end,
        "test_mode": False,
        # Airflow 2: None for a task that is not mapped; the count of a mapped one is not carried.
        "expanded_ti_count": None if ctx.map_index < 0 else Unavailable("expanded_ti_count", _NOT_SEALED),
        **_success_keys(payload, with_intervals=True),
    }
    logical = dag_run.logical_date
    if logical is None:
        reason = "this run has no logical date (an Airflow 3 run triggered without one); Airflow 2 needs one"
        for key in (*_date_keys_names(), "execution_date", "task_instance_key_str", *_schedule_names()):
            values[key] = Unavailable(key, reason)
        return values
    values.update(_date_keys(logical))
    values["execution_date"] = logical
    values["task_instance_key_str"] = f"{ctx.dag_id}__{ctx.task_id}__{values['ds_nodash']}"
    for name, delta in (("yesterday", -1), ("tomorrow", 1)):
        day = (logical + dt.timedelta(days=delta)).strftime("%Y-%m-%d")
        values[f"{name}_ds"] = day
        values[f"{name}_ds_nodash"] = day.replace("-", "")
    for name, carried in (("prev", ctx.prev_logical_date), ("next", ctx.next_logical_date)):
        values.update(_schedule_keys(name, to_pendulum(carried), payload.schema_version))
    return values


def _date_keys_names() -> tuple[str, ...]:
    return ("logical_date", "ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz")


def _schedule_names() -> tuple[str, ...]:
    return tuple(f"{n}_{k}" for n in ("prev", "next") for k in ("execution_date", "ds", "ds_nodash"))


def _schedule_keys(name: str, when: Any, schema_version: int) -> dict[str, Any]:
    """``prev_``/``next_`` ``execution_date``, ``ds``, ``ds_nodash`` (Airflow 2), from the host's value."""
    keys = [f"{name}_execution_date", f"{name}_ds", f"{name}_ds_nodash"]
    if when is None:
        reason = (
            _SCHEMA_1
            if schema_version < 2
            else f"the host could not compute the {'previous' if name == 'prev' else 'next'} logical date "
            "of this run from the DAG's timetable"
        )
        return {k: Unavailable(k, reason) for k in keys}
    ds = when.strftime("%Y-%m-%d")
    return dict(zip(keys, (when, ds, ds.replace("-", "")), strict=True))


def build_context(payload: Payload, task: Any, dag: Any, record: XComRecord) -> dict[str, Any]:
    """The context dict ``execute`` and template rendering receive."""
    from isolation.runtime import compat

    airflow_3 = compat.AIRFLOW_V3
    ctx = payload.context
    dag_run = IsolatedDagRun(payload)
    ti = IsolatedTaskInstance(payload, task, dag_run, record, airflow_3=airflow_3)
    context: dict[str, Any] = {
        "conn": ConnectionAccessor(compat.BaseHook),
        "dag": dag,
        "dag_run": dag_run,
        "macros": compat.macros(),
        "map_index_template": getattr(task, "map_index_template", None),
        "params": dict(ctx.params),
        "run_id": ctx.run_id,
        "task": task,
        "task_instance": ti,
        "ti": ti,
        "var": {"value": VariableAccessor(compat.Variable, False), "json": VariableAccessor(compat.Variable, True)},
    }
    events = compat.outlet_events()
    if events is not None:
        context["outlet_events"] = events
    context.update(_airflow3_keys(payload, dag_run) if airflow_3 else _airflow2_keys(payload, dag_run))
    offered = _offered_keys(airflow_3)
    for key, reason in _NEVER.items():
        if key in offered:
            context[key] = Unavailable(key, reason)
    return _mapping_class(airflow_3)(context)  # type: ignore[no-any-return]
