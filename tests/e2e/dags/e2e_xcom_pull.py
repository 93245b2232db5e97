"""``ti.xcom_pull`` in isolation, in an Airflow 2 and an Airflow 3 environment, beside host twins.

- ``discovered_*``: the callable's own ``ti.xcom_pull(task_ids="produce")`` is found in its
  source on the host, so that XCom is sent without ``xcom_inputs``.
- ``strict_*``: a pull discovery cannot see (its task id comes from ``params``) fails the
  task, naming the XCom and how to declare it.
- ``lenient_*``: the same with ``lenient_xcom_pull=True`` returns None, as its ``ctrl_`` twin
  on the host does (the task it pulls from pushed nothing).
- ``declared_*``: the same XCom declared in ``xcom_inputs``: sent, and None on the host.
- ``mapped_*``: pulls of a mapped upstream by map index, by several indexes and whole, as
  its ``ctrl_mapped`` twin pulls them on the host; index 1 pushed nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

from isolation import IsolatedOperator
from isolation.example_dags import probes

PYTHON = "airflow.providers.standard.operators.python.PythonOperator"
COMPUTED = {"values": "{{ ti.xcom_pull(task_ids=params.upstream) }}"}


def produce() -> dict[str, int]:
    return {"n": 21}


def nothing() -> None:
    """Returns None: Airflow pushes no XCom for it."""


def square(n: int) -> int | None:
    return None if n == 2 else n * n


def pull_mapped(ti: Any = None) -> dict[str, Any]:
    return {
        "one": ti.xcom_pull(task_ids="mapped_produce", map_indexes=2),
        "absent": ti.xcom_pull(task_ids="mapped_produce", map_indexes=1, default="none pushed"),
        "some": ti.xcom_pull(task_ids="mapped_produce", map_indexes=[2, 0]),
        "all": list(ti.xcom_pull(task_ids="mapped_produce")),
    }


def pull_named(which: str, ti: Any = None) -> dict[str, Any]:
    return {"pulled": ti.xcom_pull(task_ids=which)}


with DAG("e2e_xcom_pull", schedule=None, start_date=dt.datetime(2024, 1, 1), params={"upstream": "quiet"}) as dag:
    produced = PythonOperator(task_id="produce", python_callable=produce)
    quiet = PythonOperator(task_id="quiet", python_callable=nothing)
    PythonOperator(task_id="ctrl_round_trip", python_callable=probes.round_trip, op_kwargs={"value": produced.output})
    PythonOperator(task_id="ctrl_echo", python_callable=probes.echo, op_kwargs=COMPUTED).set_upstream(quiet)
    mapped = PythonOperator.partial(task_id="mapped_produce", python_callable=square).expand(op_args=[[1], [2], [3]])
    task(task_id="ctrl_mapped")(pull_mapped)().operator.set_upstream(mapped)
    task(task_id="ctrl_pull_named")(pull_named)("quiet").operator.set_upstream(quiet)

    for env in ("legacy", "modern"):
        task.isolated(task_id=f"mapped_{env}", environment=env)(pull_mapped)().operator.set_upstream(mapped)
        IsolatedOperator(
            task_id=f"discovered_{env}",
            operator=PYTHON,
            environment=env,
            python_callable=probes.round_trip,
            op_kwargs={"value": produced.output},
        )
        for name, extra in (
            ("strict", {}),
            ("lenient", {"lenient_xcom_pull": True}),
            ("declared", {"xcom_inputs": ["quiet"]}),
        ):
            isolated = IsolatedOperator(
                task_id=f"{name}_{env}",
                operator=PYTHON,
                environment=env,
                python_callable=probes.echo,
                op_kwargs=COMPUTED,
                **extra,
            )
            isolated.set_upstream(quiet)
        for name, extra in (("strict", {}), ("lenient", {"lenient_xcom_pull": True})):
            pulled = task.isolated(task_id=f"{name}_taskflow_{env}", environment=env, **extra)(pull_named)("quiet")
            pulled.operator.set_upstream(quiet)
