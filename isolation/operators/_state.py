"""Turn the host's Airflow state into payload pieces: plain values, context, secrets.

Everything here runs at execute time on the host. Values are converted to what the
envelope codec carries (stdlib datetimes, lists, callables by import path); anything
else fails with a :class:`PayloadError` that names the argument, never its value.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from isolation.errors import PayloadError
from isolation.transport import CallableRef, ConnectionSpec, TaskContext


def plain_datetime(value: dt.datetime) -> dt.datetime:
    """A stdlib datetime equal to ``value`` (pendulum's subclass would not round-trip)."""
    offset = value.utcoffset()
    tz = dt.timezone(offset) if offset is not None else None
    if offset == dt.timedelta(0):
        tz = dt.timezone.utc
    return dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=tz
    )


def to_plain(value: Any, where: str, resolve: Callable[[Any], Any] | None = None) -> Any:
    """A copy of ``value`` in codec types; ``resolve`` replaces XComArg-like objects first."""
    if resolve is not None:
        value = resolve(value)
    if value is None or isinstance(value, (bool, int, float, str, bytes, dt.timedelta, CallableRef)):
        return value
    if isinstance(value, dt.datetime):
        return plain_datetime(value)
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(f"{where} has a non-string key of type {type(key).__name__}")
            out[key] = to_plain(item, f"{where}[{key!r}]", resolve)
        return out
    # Any sequence but text: a list, a tuple, Airflow's LazyXComSequence (a mapped task's outputs).
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return [to_plain(item, f"{where}[{i}]", resolve) for i, item in enumerate(value)]
    if isinstance(value, (types.FunctionType, type)):
        try:
            return CallableRef.from_callable(value)
        except PayloadError as exc:
            raise PayloadError(f"{where}: {exc.message}", hint=exc.hint) from None
    raise PayloadError(
        f"{where} has type {type(value).__module__}.{type(value).__qualname__}, which cannot travel in an envelope",
        hint="pass plain data (str, int, float, bool, None, bytes, list, dict, datetime, date, timedelta), "
        "a module-level function, or an upstream task's output",
    )


def connection_spec(conn: Any) -> ConnectionSpec:
    """Airflow's connection object (Task SDK or ORM), field for field."""
    port = conn.port
    return ConnectionSpec(
        conn_type=conn.conn_type or "",
        description=conn.description or None,
        host=conn.host or None,
        login=conn.login or None,
        password=conn.password or None,
        schema=conn.schema or None,
        port=int(port) if port not in (None, "") else None,
        extra=conn.extra or None,
    )


def task_context(context: Mapping[str, Any], owner: str | None) -> TaskContext:
    """The context subset that crosses the boundary (an allow-list, typed)."""
    ti = context["ti"]
    dag_run = context.get("dag_run")

    def when(key: str) -> dt.datetime | None:
        # Airflow 3 computes the prev_*_success keys lazily (one API call each), here.
        value = context.get(key)
        return plain_datetime(value) if isinstance(value, dt.datetime) else None

    params = context.get("params") or {}
    run_type = _run_type(dag_run)
    start = getattr(dag_run, "start_date", None)
    prev_logical, next_logical = airflow2_schedule(context, run_type)
    return TaskContext(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=ti.map_index if ti.map_index is not None else -1,
        try_number=ti.try_number or 1,
        max_tries=getattr(ti, "max_tries", 0) or 0,
        logical_date=when("logical_date"),
        data_interval_start=when("data_interval_start"),
        data_interval_end=when("data_interval_end"),
        start_date=plain_datetime(start) if isinstance(start, dt.datetime) else None,
        run_type=run_type,
        params=to_plain({key: params[key] for key in params}, "params"),
        dag_run_conf=to_plain(dict(getattr(dag_run, "conf", None) or {}), "dag_run.conf"),
        owner=owner,
        prev_data_interval_start_success=when("prev_data_interval_start_success"),
        prev_data_interval_end_success=when("prev_data_interval_end_success"),
        prev_start_date_success=when("prev_start_date_success"),
        prev_end_date_success=when("prev_end_date_success"),
        prev_logical_date=plain_datetime(prev_logical) if prev_logical is not None else None,
        next_logical_date=plain_datetime(next_logical) if next_logical is not None else None,
    )


def _run_type(dag_run: Any) -> str | None:
    run_type = getattr(dag_run, "run_type", None)
    value = getattr(run_type, "value", run_type)
    return value if isinstance(value, str) else None


def airflow2_schedule(
    context: Mapping[str, Any], run_type: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Airflow 2's ``prev_execution_date`` and ``next_execution_date`` of this run.

    As Airflow 2's ``TaskInstance.get_template_context`` defines them: a manual run's own
    logical date; otherwise the schedule before this run's logical date and the logical date
    the DAG's timetable puts after this run's data interval. None where the timetable cannot
    say (the isolated task then gets "not available" for the key, never a guess).
    """
    logical = context.get("logical_date")
    if not isinstance(logical, dt.datetime):
        return None, None
    if run_type == "manual":
        return logical, logical
    timetable = _core_timetable(context.get("dag"))
    if timetable is None:
        return None, None
    return _previous_schedule(timetable, logical), _next_logical_date(timetable, context)


def _core_timetable(dag: Any) -> Any:
    """The scheduler's timetable of the DAG: the Task SDK's only describes the schedule.

    PRIVATE: ``coerce_to_core_timetable`` is how Airflow itself turns one into the other
    (through its serialization); there is no public way to ask an SDK timetable for a date.
    """
    timetable = getattr(dag, "timetable", None)
    if timetable is None:
        return None
    try:
        from airflow.serialization.encoders import coerce_to_core_timetable

        return coerce_to_core_timetable(timetable)
    except Exception:  # a custom timetable that does not serialize: its dates are not available
        return None


def _previous_schedule(timetable: Any, logical: dt.datetime) -> dt.datetime | None:
    # PRIVATE: _get_prev is what Airflow 2's DAG.previous_schedule asked of its cron and
    # delta timetables; the others (assets, once, custom) have no previous schedule to name.
    get_prev = getattr(timetable, "_get_prev", None)
    if get_prev is None:
        return None
    try:
        value = get_prev(logical)
    except Exception:  # NotImplementedError in the base classes, or a custom timetable's failure
        return None
    return value if isinstance(value, dt.datetime) else None


def _next_logical_date(timetable: Any, context: Mapping[str, Any]) -> dt.datetime | None:
    """What Airflow 2's ``dag.next_dagrun_info(<this run's interval>, restricted=False)`` gives."""
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction

    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if not (isinstance(start, dt.datetime) and isinstance(end, dt.datetime)):
        return None
    try:
        info = timetable.next_dagrun_info(
            last_automated_data_interval=DataInterval(pendulum.instance(start), pendulum.instance(end)),
            restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
        )
    except Exception:  # as Airflow 2 does: a timetable that fails names no next run
        return None
    value = info.logical_date if info is not None else None
    return value if isinstance(value, dt.datetime) else None
