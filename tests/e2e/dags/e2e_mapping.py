"""Dynamic task mapping over the wrapped operator's own arguments, each beside its host twin (``ctrl_``)."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes

PYTHON = "airflow.operators.python.PythonOperator"
BASH = ["echo a-{{ ti.map_index }}", "echo b-{{ ti.map_index }}"]

with DAG("e2e_mapping", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    numbers = PythonOperator(task_id="numbers", python_callable=probes.echo, op_args=[[[5], [6]]])
    for prefix, cls, extra in (
        ("", IsolatedOperator, {"operator": PYTHON, "environment": "legacy"}),
        ("ctrl_", PythonOperator, {}),
    ):
        cls.partial(task_id=f"{prefix}op_args", python_callable=probes.mapped_report, **extra).expand(
            op_args=[[1], [2], [3]]
        )
        cls.partial(task_id=f"{prefix}op_kwargs", python_callable=probes.mapped_report, **extra).expand(
            op_kwargs=[{"value": "x"}, {"value": "y"}]
        )
        cls.partial(task_id=f"{prefix}upstream", python_callable=probes.mapped_report, **extra).expand(
            op_args=numbers.output
        )
        # expand_kwargs() over the wrapped operator's own names, and .map() over an upstream.
        cls.partial(task_id=f"{prefix}kwargs_list", python_callable=probes.mapped_report, **extra).expand_kwargs(
            [{"op_args": ["k0"]}, {"op_kwargs": {"value": "k1"}}]
        )
        cls.partial(task_id=f"{prefix}mapped_upstream", python_callable=probes.mapped_report, **extra).expand(
            op_args=numbers.output.map(lambda args: [args[0] * 10])
        )
    IsolatedOperator.partial(
        task_id="bash_command", operator="airflow.operators.bash.BashOperator", environment="modern"
    ).expand(bash_command=BASH)
    BashOperator.partial(task_id="ctrl_bash_command").expand(bash_command=BASH)
