"""Airflow work that needs the host: refused with what the operator was doing, and where it belongs.

The guards of :mod:`isolation.runtime.compat` refuse every way back into Airflow. Some
Airflow behaviour meets them, or misses them, in ways a DAG author cannot read, so this
module turns each into an :class:`~isolation.errors.IsolationViolation` (exit code 4, which
the host never retries) naming the operator and the host-side alternative:

- **Queries of other tasks and runs.** Airflow 3's Task SDK asks its supervisor
  (``ti.get_ti_count``, ``get_task_states``, ``get_dr_count``, ``get_dagrun_state``,
  ``get_previous_dagrun``, ...); Airflow 2's task instance and dag run ask the database
  (``ti.get_previous_ti``, ``dag_run.get_task_instances``, ...). The stand-ins of
  :mod:`isolation.runtime.context` would raise AttributeError; :func:`attach_queries`
  gives them a refusal for exactly the query methods the running Airflow's own classes have.
- **Signals of the task runner.** Airflow's task runner acts on some exceptions after
  ``execute`` (``DagRunTriggerException``: trigger a DAG run; ``TaskAwaitingInput``: wait
  for a human; ``AirflowRescheduleException``: run again later). There is no task runner
  here to act on them. (Skip and deferral have their own handling.)
- **Operators that are host work by nature.** Any refusal while TriggerDagRunOperator or
  ExternalTaskSensor runs is reported as theirs, on Airflow 2 (where the database guard
  refuses them) as on Airflow 3 (where they query or signal). Two are refused before they
  run: ExternalTaskMarker, which Airflow reads on the host when tasks are cleared (in
  isolation it would succeed and do nothing), and the human-in-the-loop operators, whose
  request for input goes through Airflow's API (their task instance's id, which the
  stand-in does not have, comes first).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from isolation.errors import IsolationViolation
from isolation.runtime import compat

__all__ = ["HOST_ONLY", "HOST_OPERATORS", "SIGNALS", "attach_queries", "executing"]

log = logging.getLogger("isolation.runtime")

_ON_HOST = "run it on the host, outside IsolatedOperator"
_AS_XCOM = "read it in a task on the host, outside IsolatedOperator, and pass it to this task as an XCom (xcom_inputs=)"
_POKE = "there is no scheduler inside isolation: run the sensor with mode='poke'"
_SEE = "docs/howto-local.md, 'What works in isolation, and what differs', lists what needs the host"


@dataclass(frozen=True)
class HostWork:
    """What an operator cannot do from isolation, and where it belongs instead."""

    cannot: str
    instead: str


# By class name anywhere in the operator's MRO: Airflow 2 core and the standard provider
# each define these in a module of their own, and subclasses do the same work.
HOST_OPERATORS: Mapping[str, HostWork] = {
    "TriggerDagRunOperator": HostWork(
        "cannot trigger a DAG run from isolation", f"{_ON_HOST}, downstream of the isolated task"
    ),
    "ExternalTaskSensor": HostWork(
        "cannot read the state of another DAG's tasks or runs from isolation",
        f"{_ON_HOST}, upstream of the isolated task",
    ),
}
# Refused before they run: nothing they could do in isolation is what the DAG author meant.
HOST_ONLY: Mapping[str, HostWork] = {
    "ExternalTaskMarker": HostWork(
        "has no effect in isolation",
        "Airflow reads it on the host when tasks are cleared; put it in the DAG itself, outside IsolatedOperator",
    ),
    "HITLOperator": HostWork("cannot ask a human for input from isolation", _ON_HOST),
}
SIGNALS: Mapping[str, HostWork] = {
    "DagRunTriggerException": HOST_OPERATORS["TriggerDagRunOperator"],
    "TaskAwaitingInput": HostWork("cannot wait for human input from isolation", _ON_HOST),
    "AirflowRescheduleException": HostWork("cannot ask the scheduler to run it again later from isolation", _POKE),
}

# What each query reads. Airflow 3's RuntimeTaskInstance and Airflow 2's TaskInstance share
# some names; each stand-in gets only those its running Airflow has.
TASK_INSTANCE_QUERIES: Mapping[str, str] = {
    "get_ti_count": "count task instances",
    "get_task_states": "read task states",
    "get_dr_count": "count DAG runs",
    "get_dagrun_state": "read a DAG run's state",
    "get_previous_dagrun": "read the previous DAG run",
    "get_previous_ti": "read the previous task instance",
    "get_task_breadcrumbs": "read the task instances of a DAG run",
    "get_dag": "read another DAG's details",
    "get_first_reschedule_date": "read this task's reschedule history",
    "get_relevant_upstream_map_indexes": "count an upstream task's mapped instances",
    "get_previous_execution_date": "read the previous DAG run's date",
    "get_previous_start_date": "read the previous task instance's start date",
    "get_num_running_task_instances": "count running task instances",
    "are_dependents_done": "read the states of downstream tasks",
    "get_task_instance": "read another task instance",
    "get_rendered_template_fields": "read stored rendered template fields",
    "current_state": "read this task instance's state",
    "refresh_from_db": "read this task instance from the database",
    "set_state": "change this task instance's state",
}
DAG_RUN_QUERIES: Mapping[str, str] = {
    "get_task_instances": "read the DAG run's task instances",
    "get_task_instance": "read a task instance of the DAG run",
    "get_previous_dagrun": "read the previous DAG run",
    "get_previous_scheduled_dagrun": "read the previous scheduled DAG run",
    "refresh_from_db": "read this DAG run from the database",
}

# Where a query's answer belongs instead, when not in an XCom from a host task.
_QUERY_INSTEAD: Mapping[str, str] = {"get_first_reschedule_date": _POKE}
_THE_TASK = "the isolated task"
# The class name of the operator being executed, for refusals that do not know their task.
_running: list[str] = []


def _violation(operator: str, work: HostWork, refused: str) -> IsolationViolation:
    message = f"{operator} {work.cannot} ({IsolationViolation.contract}; refused: {refused}): {work.instead}"
    return IsolationViolation(refused, message=message, hint=_SEE)


def _refused(violation: IsolationViolation) -> IsolationViolation:
    # Logged as well as raised, as the guards do: an operator that catches it would hide it.
    log.warning("refused: %s (no-callback contract)", violation.action)
    return violation


def _query(name: str, what: str, owner: str) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        task = getattr(self, "task", None)
        operator = type(task).__name__ if task is not None else (_running[-1] if _running else _THE_TASK)
        work = HostWork(f"cannot {what} from isolation", _QUERY_INSTEAD.get(name, _AS_XCOM))
        raise _refused(_violation(operator, work, f"{owner}.{name}()"))

    refuse.__name__ = name
    refuse.__doc__ = f"Refused in isolation: would {what} through Airflow."
    return refuse


def _attach(stand_in: type, real: type | None, queries: Mapping[str, str], owner: str) -> None:
    if real is None:
        return
    for name, what in queries.items():
        # What the stand-in serves itself (from the envelope) is never replaced.
        if hasattr(real, name) and not hasattr(stand_in, name):
            setattr(stand_in, name, _query(name, what, owner))


def attach_queries(task_instance: type, dag_run: type) -> None:
    """Give the context's stand-ins a refusal for each query their Airflow counterparts have."""
    real_task_instance, real_dag_run = compat.real_run_classes()
    _attach(task_instance, real_task_instance, TASK_INSTANCE_QUERIES, "ti")
    _attach(dag_run, real_dag_run, DAG_RUN_QUERIES, "dag_run")


def _match(task: Any, table: Mapping[str, HostWork]) -> HostWork | None:
    for klass in type(task).__mro__:
        if klass.__name__ in table and klass.__module__.startswith("airflow."):
            return table[klass.__name__]
    return None


def _signal_text(name: str, exc: BaseException) -> str:
    target = getattr(exc, "trigger_dag_id", None)
    return f"{name} for DAG {target!r}" if target else name


@contextlib.contextmanager
def executing(task: Any) -> Iterator[None]:
    """Around ``pre_execute``/``execute``/``post_execute``: report host work as such."""
    operator = type(task).__name__
    host_only = _match(task, HOST_ONLY)
    if host_only is not None:
        raise _refused(_violation(operator, host_only, "running it in an isolated task"))
    host_work = _match(task, HOST_OPERATORS)
    signals = compat.runner_signals()
    caught = tuple(signals.values())
    _running.append(operator)
    try:
        yield
    except IsolationViolation as exc:
        if host_work is None:
            raise
        raise _violation(operator, host_work, exc.action) from exc
    except caught as exc:
        name = next(n for n, cls in signals.items() if isinstance(exc, cls))
        raise _refused(_violation(operator, host_work or SIGNALS[name], _signal_text(name, exc))) from exc
    finally:
        _running.pop()
