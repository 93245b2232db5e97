"""A long isolated task that the kill test terminates from outside."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes

with DAG("e2e_kill", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    IsolatedOperator(
        task_id="long",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=probes.sleep_with_child,
        op_kwargs={"seconds": 300},
    )
