"""XCom round trip: host -> isolated (XComArg and ti.xcom_pull) -> host."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes


def produce() -> dict[str, int]:
    return {"n": 21}


def consume(result: dict, extra: dict) -> str:
    return f"doubled={result['doubled']} extra={extra['seen']}"


with DAG("e2e_roundtrip", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    produced = PythonOperator(task_id="produce", python_callable=produce)
    isolated = IsolatedOperator(
        task_id="isolated",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.round_trip,
        op_kwargs={"value": produced.output},
        xcom_inputs=["produce"],
    )
    PythonOperator(
        task_id="consume",
        python_callable=consume,
        op_kwargs={"result": isolated.output, "extra": isolated.output["extra"]},
    )
