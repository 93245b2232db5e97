"""Failures Airflow never retries, in isolation and on the host (``ctrl_`` twins), with retries=1.

Each task's on_failure_callback prints what ``context["exception"]`` says, so the test
compares what a callback sees in isolation with what it sees on the host.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from isolation import IsolatedOperator
from isolation.example_dags import probes


def record(context: Any) -> None:
    exc = context["exception"]
    seen = {
        "task": context["ti"].task_id,
        "type": type(exc).__name__,
        "message": str(exc),
        "isolated_type": getattr(exc, "isolated_type", None),
        "isolated_types": list(getattr(exc, "isolated_types", ())),
        "airflow_fail": isinstance(exc, AirflowFailException),
    }
    print("E2E-CALLBACK " + json.dumps(seen), flush=True)


ONE_RETRY = {"retries": 1, "retry_delay": dt.timedelta(0), "on_failure_callback": record}
SENSOR = {"python_callable": probes.never_ready, "timeout": 1, "poke_interval": 0.2, "mode": "poke"}

with DAG("e2e_no_retry", schedule=None, start_date=dt.datetime(2024, 1, 1), default_args=ONE_RETRY) as dag:
    IsolatedOperator(
        task_id="fail",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.fail_for_good,
        op_args=["no-point-retrying"],
    )
    PythonOperator(task_id="ctrl_fail", python_callable=probes.fail_for_good, op_args=["no-point-retrying"])
    IsolatedOperator(
        task_id="sensor_timeout",
        operator="airflow.sensors.python.PythonSensor",
        environment="legacy",
        **SENSOR,
    )
    PythonSensor(task_id="ctrl_sensor_timeout", **SENSOR)
    # The host twin of a kwarg typo fails at parse time, taking this DAG with it: it has none.
    # So does this task's own parse-time check (tests/unit/host/test_host_arguments.py): off
    # here, so that the environment's refusal is what the task shows.
    IsolatedOperator(
        task_id="bad_kwarg",
        operator="airflow.operators.bash.BashOperator",
        environment="legacy",
        bash_command="true",
        bash_comand="true",
        check_arguments=False,
    )
    IsolatedOperator(
        task_id="bad_path",
        operator="airflow.providers.standard.operators.bash.BashOprator",
        environment="modern",
        bash_command="true",
    )
    # A connection passed positionally is not discovered: refused, the same on every try.
    IsolatedOperator(
        task_id="not_sent",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="legacy",
        python_callable=probes.environment_report,
        op_args=["undeclared_conn", "undeclared_variable"],
    )
    # An ordinary failure is still retried, in isolation as on the host.
    IsolatedOperator(
        task_id="retried",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.fail,
        op_args=["try-again"],
    )
    PythonOperator(task_id="ctrl_retried", python_callable=probes.fail, op_args=["try-again"])
