"""Operators that decide what runs next, in isolation and on the host (``ctrl_`` twins).

Each case is built twice in the same DAG, with the same downstream shape: once wrapped by
an IsolatedOperator in each environment (``legacy``: Airflow 2, ``modern``: Airflow 3),
once as the plain operator on the host. The test compares the downstream states.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.datetime import BranchDateTimeOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator
from airflow.providers.standard.operators.weekday import BranchDayOfWeekOperator
from airflow.sdk import DAG, TaskGroup, task

from isolation import IsolatedOperator
from isolation.example_dags import probes

ENVIRONMENTS = ("legacy", "modern")
PREFIXES = ("ctrl_", *(f"{env}_" for env in ENVIRONMENTS))
# The host's class, and the path each environment's Airflow names it by (the runtime also
# maps Airflow 2's airflow.operators.* to Airflow 3's standard provider).
KINDS: dict[str, tuple[type, str]] = {
    "short_circuit": (ShortCircuitOperator, "airflow.operators.python.ShortCircuitOperator"),
    "branch": (BranchPythonOperator, "airflow.operators.python.BranchPythonOperator"),
    "datetime": (BranchDateTimeOperator, "airflow.operators.datetime.BranchDateTimeOperator"),
    "weekday": (BranchDayOfWeekOperator, "airflow.operators.weekday.BranchDayOfWeekOperator"),
}
EVERY_DAY = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def decider(prefix: str, name: str, kind: str, **kwargs: Any) -> Any:
    """The deciding task: the plain operator for ``ctrl_``, else an IsolatedOperator."""
    task_id = f"{prefix}{name}"
    cls, path = KINDS[kind]
    if prefix == "ctrl_":
        return cls(task_id=task_id, **kwargs)
    return IsolatedOperator(task_id=task_id, operator=path, environment=prefix.rstrip("_"), **kwargs)


def pick(target: str) -> str:
    return target


def keep_going(flag: bool) -> bool:
    return flag


def taskflow(prefix: str, name: str, kind: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``@task.branch`` / ``@task.short_circuit`` for ``ctrl_``, else their ``@task.isolated_*`` forms."""
    task_id = f"{prefix}{name}"
    if prefix == "ctrl_":
        return getattr(task, kind)(task_id=task_id, **kwargs)(fn)(*args).operator
    env = prefix.rstrip("_")
    return getattr(task, f"isolated_{kind}")(task_id=task_id, environment=env, **kwargs)(fn)(*args).operator


def empty(prefix: str, name: str, **kwargs: Any) -> EmptyOperator:
    return EmptyOperator(task_id=f"{prefix}{name}", **kwargs)


with DAG("e2e_branching", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    for p in PREFIXES:
        # ShortCircuit false, ignoring trigger rules: everything downstream is skipped.
        sc = decider(p, "sc_false", "short_circuit", python_callable=probes.given, op_args=[False])
        a = empty(p, "sc_false_a")
        sc >> a >> empty(p, "sc_false_b")
        a >> empty(p, "sc_false_join", trigger_rule="all_done")
        # ShortCircuit false, respecting trigger rules: only the direct downstream is skipped.
        sc = decider(
            p,
            "sc_direct",
            "short_circuit",
            python_callable=probes.given,
            op_args=[0],
            ignore_downstream_trigger_rules=False,
        )
        sc >> empty(p, "sc_direct_a") >> empty(p, "sc_direct_b", trigger_rule="all_done")
        sc >> empty(p, "sc_direct_c")
        # ShortCircuit true: everything runs.
        sc = decider(p, "sc_true", "short_circuit", python_callable=probes.given, op_args=["yes"])
        sc >> empty(p, "sc_true_a") >> empty(p, "sc_true_b")
        # A branch to one task, to two, and to a task group (its roots are followed).
        br = decider(p, "br_one", "branch", python_callable=probes.given, op_args=[f"{p}br_one_a"])
        join = empty(p, "br_one_join", trigger_rule="none_failed_min_one_success")
        br >> [empty(p, "br_one_a"), empty(p, "br_one_b")] >> join
        br >> join
        br = decider(p, "br_two", "branch", python_callable=probes.given, op_args=[[f"{p}br_two_a", f"{p}br_two_b"]])
        br >> [empty(p, "br_two_a"), empty(p, "br_two_b"), empty(p, "br_two_c")]
        br = decider(p, "br_group", "branch", python_callable=probes.given, op_args=[f"{p}br_group_g"])
        with TaskGroup(f"{p}br_group_g") as group:
            empty(p, "in") >> empty(p, "after")
        br >> [group, empty(p, "br_group_other")]
        # BranchDateTimeOperator inside its window, BranchDayOfWeekOperator on any day.
        br = decider(
            p,
            "br_datetime",
            "datetime",
            follow_task_ids_if_true=f"{p}br_datetime_in",
            follow_task_ids_if_false=f"{p}br_datetime_out",
            target_lower=dt.datetime(2000, 1, 1),
            target_upper=dt.datetime(2100, 1, 1),
        )
        br >> [empty(p, "br_datetime_in"), empty(p, "br_datetime_out")]
        br = decider(
            p,
            "br_weekday",
            "weekday",
            follow_task_ids_if_true=[f"{p}br_weekday_on"],
            follow_task_ids_if_false=[f"{p}br_weekday_off"],
            week_day=EVERY_DAY,
            use_task_logical_date=True,
        )
        br >> [empty(p, "br_weekday_on"), empty(p, "br_weekday_off")]
        # The TaskFlow spellings: @task.branch and @task.short_circuit (direct downstream only).
        br = taskflow(p, "tf_branch", "branch", pick, f"{p}tf_branch_a")
        br >> [empty(p, "tf_branch_a"), empty(p, "tf_branch_b")]
        sc = taskflow(p, "tf_sc", "short_circuit", keep_going, False, ignore_downstream_trigger_rules=False)
        sc >> empty(p, "tf_sc_a") >> empty(p, "tf_sc_b", trigger_rule="all_done")
        # A branch to a task that does not exist fails as it does on the host.
        br = decider(p, "br_invalid", "branch", python_callable=probes.given, op_args=["no_such_task"])
        br >> empty(p, "br_invalid_a")
