"""Templating in isolation (Airflow 2): ds, params, var, conn, xcom_pull, XComArg."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes

with DAG("e2e_templating", schedule=None, start_date=dt.datetime(2024, 1, 1), params={"who": "param-value"}) as dag:
    upstream = PythonOperator(task_id="upstream", python_callable=lambda: "upstream-value")
    IsolatedOperator(
        task_id="render",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=probes.echo,
        op_kwargs={
            "values": {
                "ds": "{{ ds }}",
                "who": "{{ params.who }}",
                "plain": "{{ var.value.e2e_plain }}",
                "json": "{{ var.json.e2e_json.k }}",
                "conn_host": "{{ conn['my.conn-1'].host }}",
                "conn_login": "{{ conn.get('my.conn-1').login }}",
                "pulled": "{{ ti.xcom_pull(task_ids='upstream') }}",
                "xcomarg": upstream.output,
                "dag": "{{ dag.dag_id }}/{{ task.task_id }}",
            }
        },
    )
