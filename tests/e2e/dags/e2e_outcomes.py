"""Skip, failure and violation, each in isolation, and what they do downstream."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import callables, probes

with DAG("e2e_outcomes", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    skipped = IsolatedOperator(
        task_id="skipped",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=callables.skip_when_nothing_to_do,
    )
    skipped >> EmptyOperator(task_id="after_skip")
    IsolatedOperator(
        task_id="failing",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.fail,
        op_kwargs={"message": "boom-from-isolation-e2e"},
    )
    IsolatedOperator(
        task_id="violating",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=probes.write_variable,
    )
