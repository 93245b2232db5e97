"""Example: run operators in isolated environments from an Airflow 3 host.

- ``legacy`` (environments/legacy): Airflow 2.11 on Python 3.12 with requests 2.31.0;
- ``modern`` (environments/modern): Airflow 3.3 on Python 3.13 with requests 2.32.3.

Connections and variables are resolved on the host at execute time (any secrets
backend), sealed into the envelope, and served in isolation from memory. Operator
arguments are rendered in isolation by the wrapped operator's own template fields;
``make_numbers.output`` is resolved on the host. Build the environments first:
``isolationctl deploy --local -e legacy`` (``make demo`` does it all).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

from isolation import IsolatedOperator
from isolation.example_dags import callables

with DAG(
    dag_id="example_isolation",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1),
    catchup=False,
    params={"greeting": "hello from the host"},
    tags=["isolation", "example"],
) as dag:
    # On the host (Airflow 3): an XCom that travels into isolation.
    make_numbers = PythonOperator(task_id="make_numbers", python_callable=callables.make_numbers)

    # Airflow 2 BashOperator (classic import path) in the legacy environment: its `python`
    # is the environment's interpreter, with requests 2.31.0.
    legacy_bash = IsolatedOperator(
        task_id="legacy_bash",
        operator="airflow.operators.bash.BashOperator",
        environment="legacy",
        bash_command=(
            "echo 'run {{ run_id }} of {{ dag.dag_id }}, {{ params.greeting }}' && "
            "python -c 'import sys, airflow, requests; "
            'print(f"requests {requests.__version__} on Python {sys.version.split()[0]}, '
            "Airflow {airflow.__version__}\")'"
        ),
    )

    # Airflow 2 PythonOperator with an upstream XCom, a variable and a connection.
    legacy_python = IsolatedOperator(
        task_id="legacy_python",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=callables.report_versions,
        op_kwargs={
            "numbers": make_numbers.output,
            "greeting": "{{ var.value.example_greeting }}",
            "api_host": "{{ conn.example_api.host }}",
        },
        retries=1,
        execution_timeout=dt.timedelta(minutes=5),
    )

    # Airflow 3 in the modern environment; pulls the legacy task's XCom in a template.
    modern_bash = IsolatedOperator(
        task_id="modern_bash",
        operator="airflow.providers.standard.operators.bash.BashOperator",
        environment="modern",
        bash_command=(
            "echo \"legacy total: {{ ti.xcom_pull(task_ids='legacy_python')['total'] }}\"; "
            "python -c 'import sys, airflow; print(sys.version.split()[0], airflow.__version__)'"
        ),
    )

    modern_python = IsolatedOperator(
        task_id="modern_python",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=callables.report_versions,
        op_kwargs={"numbers": [1, 2], "greeting": "{{ params.greeting }}", "api_host": "{{ conn.example_api.host }}"},
    )

    # Skipped in isolation: AirflowSkipException there is a skipped task here.
    skipped = IsolatedOperator(
        task_id="skipped_in_isolation",
        operator="airflow.operators.python.PythonOperator",
        environment="legacy",
        python_callable=callables.skip_when_nothing_to_do,
    )

    # TaskFlow: the function's own source travels sealed in the envelope and runs in the
    # Airflow 2 environment; `humanize` exists only there (imported inside the function).
    @task.isolated(task_id="taskflow_legacy", environment="legacy")
    def describe(numbers: list[int], ti: Any = None, params: Any = None) -> dict[str, str]:
        import humanize
        from airflow.models import Variable

        return {
            "total": humanize.intcomma(sum(numbers) * 1000),
            "greeting": Variable.get("example_greeting"),
            "who": params["greeting"],
            "task": ti.task_id,
        }

    describe(make_numbers.output)  # type: ignore[arg-type]  # TaskFlow resolves the XComArg

    # Back on the host: the isolated results are ordinary XComs.
    summarize = PythonOperator(
        task_id="summarize",
        python_callable=callables.summarize,
        op_kwargs={"legacy": legacy_python.output, "modern": modern_python.output},
    )

    make_numbers >> legacy_bash
    legacy_python >> modern_bash
