"""Known secrets in a connection password and a variable, used and echoed in isolation."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.example_dags import probes

with DAG("e2e_leak", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    IsolatedOperator(
        task_id="python_uses_secrets",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=probes.environment_report,
        op_kwargs={"conn_id": "e2e_leaky", "variable": "e2e_leaky_var"},
        connections=["e2e_leaky"],
        variables=["e2e_leaky_var"],
    )
    IsolatedOperator(
        task_id="bash_echoes_secrets",
        operator="airflow.operators.bash.BashOperator",
        environment="legacy",
        bash_command="echo 'pw={{ conn.e2e_leaky.password }} var={{ var.value.e2e_leaky_var }}'",
    )
