"""``e2e_latest_only`` on a daily data-interval timetable, which Airflow 2's LatestOnlyOperator
reads as Airflow 3's does (Airflow 3's default cron timetable has zero-length intervals)."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.latest_only import LatestOnlyOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from isolation import IsolatedOperator

LATEST_ONLY = {
    "legacy": "airflow.operators.latest_only.LatestOnlyOperator",
    "modern": "airflow.providers.standard.operators.latest_only.LatestOnlyOperator",
}

DAILY = CronDataIntervalTimetable("@daily", "UTC")

with DAG("e2e_latest_only_interval", schedule=DAILY, start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
    LatestOnlyOperator(task_id="ctrl_latest") >> EmptyOperator(task_id="ctrl_after")
    for env, path in LATEST_ONLY.items():
        IsolatedOperator(task_id=f"{env}_latest", operator=path, environment=env) >> EmptyOperator(
            task_id=f"{env}_after"
        )
