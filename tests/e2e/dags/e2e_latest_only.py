"""LatestOnlyOperator in isolation and on the host (``ctrl_``), on a daily schedule.

The test runs this DAG as a manual run, a scheduled run long past, and the scheduled run
of today: the operator reads the run's type and interval and the DAG's timetable.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.latest_only import LatestOnlyOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator

LATEST_ONLY = {
    "legacy": "airflow.operators.latest_only.LatestOnlyOperator",
    "modern": "airflow.providers.standard.operators.latest_only.LatestOnlyOperator",
}

with DAG("e2e_latest_only", schedule="@daily", start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
    LatestOnlyOperator(task_id="ctrl_latest") >> EmptyOperator(task_id="ctrl_after")
    for env, path in LATEST_ONLY.items():
        IsolatedOperator(task_id=f"{env}_latest", operator=path, environment=env) >> EmptyOperator(
            task_id=f"{env}_after"
        )
