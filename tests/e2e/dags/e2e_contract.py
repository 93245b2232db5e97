"""Airflow work that needs the host, wrapped in IsolatedOperator, in an Airflow 2.11 and an Airflow 3.3 environment.

Every task has retries=1: a contract violation is never retried. The ``ctrl_`` twins run the
same operators on the host, where they work: ``ctrl_trigger`` triggers a run of this DAG
(left queued: ``dag.test()`` runs only its own run) and ``ctrl_sensor`` waits for
``ctrl_trigger`` of this same run. Each task's on_failure_callback prints what
``context["exception"]`` is.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from isolation import IsolatedOperator
from isolation.errors import IsolatedTaskViolation

TRIGGER = "airflow.providers.standard.operators.trigger_dagrun.TriggerDagRunOperator"
SENSOR = "airflow.providers.standard.sensors.external_task.ExternalTaskSensor"
WAIT_FOR_CTRL_TRIGGER = {
    "external_dag_id": "e2e_contract",
    "external_task_id": "ctrl_trigger",
    "poke_interval": 0.5,
    "timeout": 60,
    "mode": "poke",
}


def record(context: Any) -> None:
    exc = context["exception"]
    seen = {
        "task": context["ti"].task_id,
        "type": type(exc).__name__,
        "violation": isinstance(exc, IsolatedTaskViolation),
        "airflow_fail": isinstance(exc, AirflowFailException),
    }
    print("E2E-CALLBACK " + json.dumps(seen), flush=True)


ONE_RETRY = {"retries": 1, "retry_delay": dt.timedelta(0), "on_failure_callback": record}

with DAG("e2e_contract", schedule=None, start_date=dt.datetime(2024, 1, 1), default_args=ONE_RETRY) as dag:
    ctrl_trigger = TriggerDagRunOperator(task_id="ctrl_trigger", trigger_dag_id="e2e_contract")
    ctrl_trigger >> ExternalTaskSensor(task_id="ctrl_sensor", **WAIT_FOR_CTRL_TRIGGER)
    for environment in ("legacy", "modern"):
        IsolatedOperator(
            task_id=f"trigger_{environment}",
            operator=TRIGGER,
            environment=environment,
            trigger_dag_id="e2e_contract",
        )
        # Downstream of ctrl_trigger, so on the host it would find it done at once.
        ctrl_trigger >> IsolatedOperator(
            task_id=f"sensor_{environment}",
            operator=SENSOR,
            environment=environment,
            **WAIT_FOR_CTRL_TRIGGER,
        )
