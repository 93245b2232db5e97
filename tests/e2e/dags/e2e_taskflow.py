"""@task.isolated end to end: upstream XComs, context, a variable and a connection, mapping,
multiple_outputs, environment-only libraries, in an Airflow 2 and an Airflow 3 environment.

The isolated functions import ``humanize`` (which the host does not have) and ``requests``
(at another version than the host's) inside their bodies: the host never imports them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

with DAG("e2e_taskflow", schedule=None, start_date=dt.datetime(2024, 1, 1), params={"who": "param-value"}) as dag:

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def label() -> str:
        return "upstream-label"

    for env in ("legacy", "modern"):

        @task.isolated(task_id=f"report_{env}", environment=env)
        def report(n: int, label: str, ti=None, ds=None, params=None) -> dict[str, Any]:
            import platform

            import airflow
            import humanize
            import requests

            try:
                from airflow.sdk import BaseHook, Variable
            except ImportError:  # Airflow 2
                from airflow.hooks.base import BaseHook
                from airflow.models import Variable

            conn = BaseHook.get_connection("my.conn-1")
            return {
                "n": n,
                "squared": n * n,
                "label": label,
                "ds": ds,
                "who": params["who"],
                "map_index": ti.map_index,
                "task_id": ti.task_id,
                "variable": Variable.get("e2e_plain"),
                "conn_host": conn.host,
                "requests": requests.__version__,
                "humanized": humanize.intcomma(1234567 * n),
                "airflow": airflow.__version__,
                "python": platform.python_version(),
            }

        report.partial(label=label()).expand(n=numbers())

    @task.isolated(environment="modern", multiple_outputs=False)
    def uses_secrets(conn_id: str) -> dict[str, Any]:
        import os

        from airflow.sdk import BaseHook, Variable

        conn = BaseHook.get_connection("e2e_leaky")
        value = Variable.get("e2e_leaky_var")
        print(f"password={conn.password} variable={value} via={conn_id}", flush=True)
        with open("/proc/self/environ", "rb") as handle:
            initial = handle.read().decode("utf-8", "replace").split("\0")
        return {"environ": dict(os.environ), "initial_environ": [item for item in initial if item]}

    uses_secrets("e2e_leaky")

    @task
    def total(legacy: list[int], modern: list[int]) -> int:
        return sum(legacy) + sum(modern)

    # multiple_outputs: each mapped instance's keys are XComs; "squared" of every instance here.
    total(dag.task_dict["report_legacy"].output["squared"], dag.task_dict["report_modern"].output["squared"])

    # Values from upstream XComs are data: never discovered (no connection is sealed for
    # them) and never rendered. e2e_leaky exists, so a discovered id would really resolve.
    @task
    def other_team() -> list[dict[str, str]]:
        return [{"source_conn_id": "e2e_leaky"}]

    @task
    def templates() -> list[str]:
        return ["{{ conn.e2e_leaky.password }}"]

    @task.isolated(environment="modern", multiple_outputs=False)
    def probe(source_conn_id: str) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        try:
            got = BaseHook.get_connection(source_conn_id).password
        except Exception as exc:  # the runtime's "was not provided" error
            got = f"{type(exc).__name__}: {exc}"
        return {"conn_id": source_conn_id, "got": got}

    probe.expand_kwargs(other_team())

    @task.isolated(environment="modern", multiple_outputs=False)
    def verbatim(text: Any, literal: str) -> dict[str, Any]:
        return {"text": text, "literal": literal}

    # An XComArg argument, a mapped XCom value, and (rendered) the DAG file's literals.
    verbatim.override(task_id="verbatim_arg")(templates(), "{{ params.who }}")
    verbatim.override(task_id="verbatim_mapped").partial(literal="{{ params.who }}").expand(text=templates())
    verbatim.override(task_id="verbatim_literal").partial(literal="x").expand(text=["{{ params.who }}"])

    # A mapped task's whole output (Airflow's LazyXComSequence) as one argument.
    @task.isolated(environment="modern")
    def count_reports(reports: list[dict[str, Any]]) -> int:
        return sum(report["n"] for report in reports)

    count_reports(dag.task_dict["report_modern"].output)
