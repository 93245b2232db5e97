"""Bad input, each failing its task at execute time with one clear message."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from isolation import IsolatedOperator

BASH = "airflow.operators.bash.BashOperator"

with DAG("e2e_bad_input", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    IsolatedOperator(task_id="unknown_env", operator=BASH, environment="e2e-not-built", bash_command="true")
    IsolatedOperator(task_id="missing_python", operator=BASH, environment="e2e-no-python", bash_command="true")
    IsolatedOperator(task_id="broken_python", operator=BASH, environment="e2e-broken-python", bash_command="true")
    IsolatedOperator(
        task_id="missing_conn", operator=BASH, environment="legacy", bash_command="true", connections=["e2e_nope"]
    )
    IsolatedOperator(
        task_id="missing_conn_template",
        operator=BASH,
        environment="legacy",
        bash_command="echo {{ conn.e2e_nope2.host }}",
    )
    IsolatedOperator(task_id="missing_keys", operator=BASH, environment="e2e-no-keys", bash_command="true")
    IsolatedOperator(
        task_id="bad_operator",
        operator="airflow.operators.nope.NopeOperator",
        environment="legacy",
        bash_command="true",
    )
