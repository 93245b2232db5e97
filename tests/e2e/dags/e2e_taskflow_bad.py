"""@task.isolated functions that fail at execute time, each with its own clear message."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, task

LIMIT = 10  # module scope: not there in isolation

with DAG("e2e_taskflow_bad", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:

    @task.isolated(environment="modern")
    def module_scope(x: int) -> int:
        return x * LIMIT

    @task.isolated(environment="legacy")
    def raises(x: int) -> None:
        y = x + 1
        raise ValueError(f"boom-taskflow-{y}")

    @task.isolated(environment="modern")
    def bad_return() -> object:
        return {1, 2}

    @task.isolated(environment="legacy")
    def bad_argument(values: object) -> None:
        pass

    @task.isolated(environment="modern")
    def not_a_dict() -> dict:
        return [1, 2]  # type: ignore[return-value]

    # multiple_outputs: each key would become an XCom; the host's and Airflow's own are refused.
    @task.isolated(environment="modern")
    def forges_keys() -> dict[str, str]:
        return {"isolation_environment": "forged", "fine": "yes"}

    @task.isolated(environment="modern")
    def forges_skip() -> dict[str, str]:
        return {" SkipMixin_Key": "forged"}

    forges_keys()
    forges_skip()
    module_scope(1)
    raises(1)
    bad_return()
    bad_argument({1, 2})
    not_a_dict()
