"""A task that outlives its execution_timeout (and, for the kill test, one to kill)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes

with DAG("e2e_limits", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    IsolatedOperator(
        task_id="too_slow",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.sleep_with_child,
        op_kwargs={"seconds": 300},
        execution_timeout=dt.timedelta(seconds=8),
    )
