"""Real operators run by the isolated runtime in the real environments.

One module fixture per environment runs the tasks of this file (two at a time); each
test then checks one behaviour of its run. Tests declared with ``every_version(jobs)``
also run on the other minors of Airflow 2 and 3, where only their jobs are run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from isolation.transport.payload import ConnectionSpec, XComInput
from tests._envs import OTHER_MINORS
from tests.integration._runtime import LOGICAL, PYTHON, Run, airflow_major, bash_path, make_payload, run_many

pytestmark = [pytest.mark.envs, pytest.mark.slow]

# The jobs the every_version tests read: the only ones run on the oldest environments.
EVERY_VERSION_JOBS: set[str] = set()


def every_version(*jobs: str) -> pytest.MarkDecorator:
    """Mark a test to run on every environment, reading the runs of ``jobs``."""
    EVERY_VERSION_JOBS.update(jobs)
    return pytest.mark.every_version


TEMPLATE_PARTS = [
    "{{ ds }}",
    "{{ ds_nodash }}",
    "{{ ts }}",
    "{{ run_id }}",
    "{{ ti.dag_id }}.{{ ti.task_id }}.{{ dag.dag_id }}.{{ task.task_id }}",
    "{{ params.region }}",
    "{{ dag_run.conf.size }}",
    "{{ ti.try_number }}/{{ ti.map_index }}",
    "{{ macros.ds_add(ds, 1) }}",
    "{{ var.value.plain }}",
    "{{ var.json.structured.nested }}",
    "{{ conn.api.host }}:{{ conn.api.port }}",
    "{{ ti.xcom_pull(task_ids='upstream') }}",
    "{{ data_interval_start.isoformat() }}",
    "{{ logical_date.year }}",
]
API = ConnectionSpec(
    conn_type="http", host="api.example.test", port=8443, schema="https", login="svc", extra='{"region": "eu"}'
)
VARIABLES = {"plain": "plain-value", "structured": '{"nested": "deep", "n": 3}'}
XCOMS = [
    XComInput(task_id="upstream", value="from-upstream"),
    XComInput(task_id="upstream", key="extra", value={"a": [1, 2]}),
    XComInput(task_id="mapped", map_index=1, value="m1"),
    XComInput(task_id="mapped", map_index=0, value="m0"),
]


def _jobs(environment: LocalEnvironment, sqlite_path: Path) -> dict[str, Any]:
    common: dict[str, Any] = {
        "connections": {"api": API},
        "variables": VARIABLES,
        "xcom_inputs": XCOMS,
        "params": {"region": "eu-west"},
        "conf": {"size": 3},
    }
    bash = bash_path(environment)
    return {
        "templated": make_payload(
            bash,
            {
                "bash_command": 'echo "$FROM_ENV"; echo "' + "|".join(TEMPLATE_PARTS) + '"',
                "env": {"FROM_ENV": "env {{ ds_nodash }}"},
                "append_env": True,
            },
            **common,
        ),
        "other_spelling": make_payload(bash_path(environment, other_spelling=True), {"bash_command": "echo spelled"}),
        "bash_fails": make_payload(bash, {"bash_command": "echo about to fail; exit 3"}),
        "bash_skips": make_payload(bash, {"bash_command": "exit 99"}),
        "python": make_payload(
            PYTHON,
            {"python_callable": CallableRef("it_tasks:add"), "op_args": [2, 3], "op_kwargs": {"scale": 10}},
        ),
        # Lenient pulls (the host's lenient_xcom_pull=True): a missing XCom is the default.
        "context": make_payload(
            PYTHON,
            {"python_callable": CallableRef("it_tasks:inspect_context")},
            try_number=2,
            options={"strict_xcom_pull": False},
            **common,
        ),
        "secrets_api": make_payload(
            PYTHON, {"python_callable": CallableRef("it_tasks:use_connections_and_variables")}, **common
        ),
        "sensor": make_payload(
            "airflow.providers.standard.sensors.python.PythonSensor",
            {
                "python_callable": CallableRef("it_tasks:poke_three_times"),
                "poke_interval": 0.05,
                "timeout": 60,
                "mode": "reschedule",
            },
        ),
        "sqlite": make_payload(
            "airflow.providers.common.sql.operators.sql.SQLExecuteQueryOperator",
            {
                "conn_id": "warehouse",
                "sql": [
                    "CREATE TABLE t (x INTEGER)",
                    "INSERT INTO t VALUES (4), (5)",
                    "SELECT x * 2 FROM t ORDER BY x",
                ],
                "return_last": True,
            },
            connections={"warehouse": ConnectionSpec(conn_type="sqlite", host=str(sqlite_path))},
        ),
        "skip": make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:skip")}),
        "deferrable": make_payload(
            "airflow.providers.standard.sensors.time_delta.TimeDeltaSensor",
            {"delta": dt.timedelta(hours=1), "deferrable": True},
        ),
        "defers": make_payload("it_tasks.DeferringOperator", {}),
        "multiple_outputs": make_payload(
            PYTHON,
            {"python_callable": CallableRef("it_tasks:two_outputs"), "multiple_outputs": True},
        ),
        "no_push": make_payload(bash, {"bash_command": "echo hidden", "do_xcom_push": False}),
        "unserialisable_return": make_payload(
            PYTHON, {"python_callable": CallableRef("it_tasks:return_unserialisable")}
        ),
        "unserialisable_push": make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:push_unserialisable")}),
    }


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"operators-{environment.name}")
    # In the sqlite run's own work directory: the one host path its sandbox can write.
    jobs = _jobs(environment, base / "sqlite" / "warehouse.db")
    if environment.name in OTHER_MINORS:
        jobs = {k: p for k, p in jobs.items() if k in EVERY_VERSION_JOBS}
    return run_many({k: (environment, p) for k, p in jobs.items()}, base)


def _ok(run: Run) -> dict[str, Any]:
    assert run.code == 0, run.output
    assert run.result is not None
    assert run.result["outcome"] == "success"
    assert "Traceback" not in run.stderr
    return run.result


@every_version("templated")
def test_bash_renders_the_whole_context(runs: dict[str, Run]) -> None:
    result = _ok(runs["templated"])
    parts = result["return_value"].split("|")
    assert parts == [
        "2024-03-05",
        "20240305",
        "2024-03-05T06:07:08+00:00",
        "manual__2024-03-05T06:07:08+00:00",
        "isolation_it.isolated_task.isolation_it.isolated_task",
        "eu-west",
        "3",
        "1/-1",
        "2024-03-06",
        "plain-value",
        "deep",
        "api.example.test:8443",
        "from-upstream",
        "2024-03-04T06:07:08+00:00",
        "2024",
    ]
    assert "env 20240305" in runs["templated"].stderr
    # The runtime passes Airflow's sentinel, so Airflow does not warn about a direct execute().
    assert "cannot be called outside" not in runs["templated"].stderr


def test_either_import_path_works_on_either_version(runs: dict[str, Run]) -> None:
    assert _ok(runs["other_spelling"])["return_value"] == "spelled"


def test_bash_failure_is_exit_1_with_the_reason(runs: dict[str, Run]) -> None:
    run = runs["bash_fails"]
    assert run.code == 1
    assert run.result is not None and run.result["outcome"] == "failed"
    assert "exit code 3" in run.result["error"]["message"].lower() or "non-zero" in run.result["error"]["message"]
    assert "about to fail" in run.stderr


@every_version("bash_skips")
def test_bash_exit_99_skips(runs: dict[str, Run]) -> None:
    run = runs["bash_skips"]
    assert run.code == 99, run.output
    assert run.result is not None and run.result["outcome"] == "skipped"


@every_version("python")
def test_python_callable_by_import_path(runs: dict[str, Run]) -> None:
    assert _ok(runs["python"])["return_value"] == 50


@every_version("context")
def test_context_is_typed_and_xcom_flows_both_ways(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    result = _ok(runs["context"])
    report = result["return_value"]
    assert report["same_context"] is True
    assert report["logical_date_is_datetime"] is True
    assert report["logical_date_type"] == "pendulum"
    assert report["data_interval_start"] == (LOGICAL - dt.timedelta(days=1)).isoformat()
    assert report["params_is_mapping"] is True
    assert report["params"] == {"region": "eu-west"}
    assert report["conf"] == {"size": 3}
    assert report["ids"] == [
        "isolation_it",
        "isolated_task",
        "isolation_it",
        "isolated_task",
        "manual__2024-03-05T06:07:08+00:00",
    ]
    assert report["try_number"] == 2
    assert report["map_index"] == -1
    assert report["pulled"] == "from-upstream"
    assert report["pulled_key"] == {"a": [1, 2]}
    assert report["pulled_mapped"] == ["m0", "m1"]
    # Airflow 3 ignores ``default`` when no map index is asked for; Airflow 2 returns it.
    assert report["pulled_missing"] == (None if airflow_major(environment) >= 3 else "dflt")
    assert result["xcoms"] == [{"key": "pushed", "value": {"n": 1}}, {"key": "second", "value": [1, 2]}]


def test_connections_and_variables_come_from_the_envelope_only(runs: dict[str, Run]) -> None:
    report = _ok(runs["secrets_api"])["return_value"]
    assert report["host"] == "api.example.test"
    assert report["port"] == 8443
    assert report["schema"] == "https"
    assert report["extra"] == {"region": "eu"}
    assert report["var"] == "plain-value"
    assert report["json"] == {"nested": "deep", "n": 3}
    assert report["default"] == "fallback"
    assert report["missing_conn"][1] == "connection 'nope' was not provided to this isolated task"
    assert report["missing_var"][1] == "variable 'nope' was not provided to this isolated task"
    assert report["not_found_is_airflow_type"] is True
    assert report["missing_var_is_key_error"] is True


@every_version("sensor")
def test_sensor_pokes_and_reschedule_becomes_poke(runs: dict[str, Run]) -> None:
    run = runs["sensor"]
    _ok(run)
    assert run.files["pokes"] == "3"
    assert "sensor mode 'reschedule' converted to 'poke'" in run.stderr


@every_version("sqlite")
def test_operator_uses_a_connection_through_its_hook(runs: dict[str, Run], tmp_path_factory: Any) -> None:
    run = runs["sqlite"]
    result = _ok(run)
    assert result["return_value"][-1] == [[8], [10]]
    assert (run.workdir / "warehouse.db").exists()


@every_version("skip")
def test_skip_exception_is_exit_99(runs: dict[str, Run]) -> None:
    run = runs["skip"]
    assert run.code == 99, run.output
    assert run.result is not None and run.result["outcome"] == "skipped"
    assert "nothing to do today" in run.result["error"]["message"]


@every_version("deferrable", "defers")
@pytest.mark.parametrize("job", ["deferrable", "defers"])
def test_deferral_is_refused(runs: dict[str, Run], job: str) -> None:
    run = runs[job]
    assert run.code == 1, run.output
    assert run.result is not None and run.result["outcome"] == "failed"
    assert "deferral is not supported inside isolation" in run.result["error"]["message"]
    assert "deferral is not supported inside isolation" in run.stderr.splitlines()[-1]


def test_multiple_outputs_become_xcoms(runs: dict[str, Run]) -> None:
    result = _ok(runs["multiple_outputs"])
    assert result["return_value"] == {"first": 1, "second": "two"}
    assert result["xcoms"] == [{"key": "first", "value": 1}, {"key": "second", "value": "two"}]


def test_do_xcom_push_false_returns_null(runs: dict[str, Run]) -> None:
    assert _ok(runs["no_push"])["return_value"] is None


@pytest.mark.parametrize(
    ("job", "key"), [("unserialisable_return", "return_value"), ("unserialisable_push", "bad_key")]
)
def test_unserialisable_values_fail_naming_the_key(runs: dict[str, Run], job: str, key: str) -> None:
    run = runs[job]
    assert run.code == 1, run.output
    assert run.result is not None and run.result["error"]["type"] == "ResultError"
    assert f"XCom {key!r} is not JSON-serialisable" in run.result["error"]["message"]
    json.dumps(run.result)
