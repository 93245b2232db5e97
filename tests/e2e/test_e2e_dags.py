"""End to end: real Airflow 3.3 host, real isolated environments (Airflow 2.11 and 3.3)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from conftest import HOST_ONLY_SECRET, TMP
from harness import leftover_temp, run_dag, sandboxed_processes, wait_namespace_empty
from secrets_data import CONN_PASSWORD, VAR_SECRET

pytestmark = [pytest.mark.envs, pytest.mark.slow]


def test_xcom_round_trip(airflow_env):
    run = run_dag("e2e_roundtrip")
    assert run.states == {"produce": "success", "isolated": "success", "consume": "success"}, run.output[-3000:]
    isolated = run.xcoms["isolated"]
    assert isolated["return_value"] == {"doubled": 42, "pulled": {"n": 21}}
    assert isolated["extra"] == {"seen": 21}
    assert isolated["isolation_environment"]["name"] == "modern"
    assert isolated["isolation_environment"]["airflow"] == "3.3.2"
    assert isolated["isolation_environment"]["python"].startswith("3.13.")
    assert run.xcoms["consume"]["return_value"] == "doubled=42 extra=21"


def test_templating_in_an_airflow_2_environment(airflow_env):
    logical_date = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)
    run = run_dag("e2e_templating", "--logical-date", logical_date.isoformat())
    assert run.states["render"] == "success", run.logs.get("render", run.output[-3000:])
    assert run.xcoms["render"]["return_value"] == {
        "ds": "2024-03-04",
        "who": "param-value",
        "plain": "plain-var-value",
        "json": "json-value",
        "conn_host": "conn-host.example",
        "conn_login": "someone",
        "pulled": "upstream-value",
        "xcomarg": "upstream-value",
        "dag": "e2e_templating/render",
    }
    assert run.xcoms["render"]["isolation_environment"]["airflow"] == "2.11.2"
    # Only the IsolatedOperator's own field is rendered (and stored) on the host.
    assert run.rendered["render"] == {"environment": "legacy"}


def test_skip_failure_and_violation(airflow_env):
    run = run_dag("e2e_outcomes")
    assert run.states["skipped"] == "skipped"
    assert run.states["after_skip"] == "skipped"
    assert "nothing to do today" in run.logs["skipped"]
    assert run.states["failing"] == "failed"
    failing = run.logs["failing"]
    assert "the isolated task in environment 'modern' failed: ValueError: boom-from-isolation-e2e" in failing
    assert "Traceback" in failing  # the isolated traceback was streamed into the task log
    assert run.states["violating"] == "failed"
    assert "broke the no-callback contract" in run.logs["violating"]
    # An IsolatedTaskViolation that is also Airflow's AirflowFailException: never retried.
    assert "IsolatedAirflowViolation" in run.logs["violating"]


def test_secrets_never_leak(airflow_env):
    run = run_dag("e2e_leak")
    assert run.states == {"python_uses_secrets": "success", "bash_echoes_secrets": "success"}, run.output[-3000:]
    # The isolated tasks really used them (they echo them: the masker hides them).
    assert "password=*** variable=***" in run.logs["python_uses_secrets"]
    assert "pw=*** var=***" in run.logs["bash_echoes_secrets"]
    # The log is everything but the summary line (which carries XCom values: the bash task's
    # last line, its return value, is the echoed text, as with any BashOperator).
    log = "\n".join(line for line in run.output.splitlines() if not line.startswith("E2E-RESULT "))
    for secret in (CONN_PASSWORD, VAR_SECRET, HOST_ONLY_SECRET):
        assert secret not in log, "secret in the task log"
        assert secret not in json.dumps(run.rendered), "secret in the rendered templates"
    report = run.xcoms["python_uses_secrets"]["return_value"]
    child_env = json.dumps(report)
    for secret in (CONN_PASSWORD, VAR_SECRET, HOST_ONLY_SECRET):
        assert secret not in child_env, "secret in the isolated process's environment"
    # What the host handed over (the process's initial environment) holds no Airflow setting at all;
    # the runtime then points its own Airflow at a private home and an unusable database.
    initial = {item.split("=", 1)[0] for item in report["initial_environ"]}
    assert not {name for name in initial if name.startswith("AIRFLOW")}, initial
    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] not in child_env
    assert not {name for name in report["environ"] if name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    names = initial | set(report["environ"])
    assert "ISOLATION_ENVELOPE" not in names


def test_timeout_ends_the_isolated_process_tree(airflow_env):
    run = run_dag("e2e_limits")
    assert run.states["too_slow"] == "failed"
    log = run.logs["too_slow"]
    assert "AirflowTaskTimeout" in log or "Timeout" in log
    # The pids are the sandbox's own; its PID namespace names every process it held.
    namespaces = [int(part.split("=")[1]) for part in log.split() if part.startswith("pidns=")]
    assert len(namespaces) == 1, log[-2000:]
    assert wait_namespace_empty(namespaces[0], 10) == []
    assert leftover_temp(TMP) == []


BAD_INPUT = {
    "unknown_env": ("local environment 'e2e-not-built' is not built", "isolationctl deploy --local -e e2e-not-built"),
    "missing_python": ("local environment 'e2e-no-python' has no working interpreter", "rebuild it"),
    "broken_python": ("exited with code 127 before the isolation runtime ran", "rebuild the environment"),
    "missing_conn": ("connection 'e2e_nope' (referenced by connections=) does not exist", "airflow connections add"),
    "missing_conn_template": (
        "connection 'e2e_nope2' (referenced by argument bash_command) does not exist",
        "remove the reference",
    ),
    "missing_keys": ("no public keys for environment 'e2e-no-keys'", "hint:"),
    "bad_operator": ("'airflow.operators.nope.NopeOperator' cannot be imported", "requirements.txt"),
}


@pytest.mark.serial  # counts sandboxes machine-wide: nothing else may run beside it
def test_bad_input_fails_clearly_and_leaves_nothing(airflow_env):
    # Other sandboxes on this machine are not this test's business: only new ones count.
    before = set(sandboxed_processes())
    run = run_dag("e2e_bad_input")
    for task_id, (message, hint) in BAD_INPUT.items():
        assert run.states[task_id] == "failed", task_id
        log = run.logs[task_id]
        assert message in log, (task_id, log[-2500:])
        assert hint in log, (task_id, log[-2500:])
    assert set(sandboxed_processes()) - before == set()
    assert leftover_temp(TMP) == []


def _callbacks(output: str) -> dict[str, dict]:
    marker = "E2E-CALLBACK "
    seen = [json.loads(line[line.index(marker) + len(marker) :]) for line in output.splitlines() if marker in line]
    return {item["task"]: item for item in seen}


def test_failures_airflow_never_retries_are_not_retried_in_isolation(airflow_env):
    run = run_dag("e2e_no_retry")
    callbacks = _callbacks(run.output)
    # Every task has retries=1; the host twins show what Airflow does with each exception.
    for task in ("fail", "ctrl_fail", "sensor_timeout", "ctrl_sensor_timeout", "bad_kwarg", "bad_path", "not_sent"):
        assert run.states[task] == "failed", (task, run.logs.get(task, run.output)[-3000:])
        assert run.tries[task] == 1, (task, run.tries)
    for task in ("retried", "ctrl_retried"):
        assert run.states[task] == "failed" and run.tries[task] == 2, (task, run.tries)
    # Callbacks see the original type and message, and an AirflowFailException as on the host.
    assert callbacks["ctrl_fail"]["message"] == "no-point-retrying"
    assert callbacks["fail"]["message"] == "AirflowFailException: no-point-retrying"
    assert callbacks["fail"]["isolated_type"] == "AirflowFailException"
    assert "airflow.sdk.exceptions.AirflowFailException" in callbacks["fail"]["isolated_types"]
    assert callbacks["fail"]["airflow_fail"] and callbacks["ctrl_fail"]["airflow_fail"]
    assert callbacks["ctrl_sensor_timeout"]["type"] == "AirflowSensorTimeout"
    assert callbacks["sensor_timeout"]["isolated_type"] == "AirflowSensorTimeout"
    assert callbacks["sensor_timeout"]["message"].startswith("AirflowSensorTimeout: ")
    assert "airflow.exceptions.AirflowSensorTimeout" in callbacks["sensor_timeout"]["isolated_types"]
    assert callbacks["retried"]["message"] == "ValueError: try-again"
    assert callbacks["retried"]["isolated_types"][0] == "builtins.ValueError"
    assert not callbacks["retried"]["airflow_fail"]
    # Configuration errors: the hint names the operator path and arguments, never the keys.
    for task, text in (("bad_kwarg", "unknown argument 'bash_comand'"), ("bad_path", "BashOprator")):
        log = run.logs[task]
        assert text in log and "check the operator path/arguments" in log, log[-3000:]
        assert "keys directory" not in log, log[-3000:]
        assert callbacks[task]["isolated_type"] == "OperatorLoadError"
    # What the task was not sent: the next try is sent the same, so it is not retried.
    assert callbacks["not_sent"]["isolated_type"] == "ConnectionNotProvided"
    assert "'undeclared_conn'" in callbacks["not_sent"]["message"] and callbacks["not_sent"]["airflow_fail"]


def test_isolated_lines_keep_their_level_and_one_timestamp(airflow_env):
    run = run_dag("e2e_outcomes")
    # Lines forwarded from the isolated task (the host's own traceback follows them unprefixed).
    forwarded = [line for line in run.logs["failing"].splitlines() if "isolated.IsolatedOperator]" in line]
    traceback = [line for line in forwarded if "Traceback (most recent call last)" in line]
    assert traceback and all("[error" in line for line in traceback), forwarded
    # The isolated traceback's own lines stay with it, at ERROR.
    raised = [line for line in forwarded if "ValueError: boom-from-isolation-e2e" in line]
    assert raised and all("[error" in line for line in raised), forwarded
    # A record keeps its level and loses the isolated timestamp: the host's is the only one.
    running = [line for line in forwarded if "isolation.runtime: running" in line]
    assert running and all("[info" in line and "] INFO " not in line for line in running), running


def test_mapping_over_the_wrapped_operators_arguments(airflow_env):
    run = run_dag("e2e_mapping")
    assert run.state == "success", run.output[-4000:]
    expected = {
        "op_args": {0: 1, 1: 2, 2: 3},
        "op_kwargs": {0: "x", 1: "y"},
        "upstream": {0: 5, 1: 6},
        "kwargs_list": {0: "k0", 1: "k1"},
        "mapped_upstream": {0: 50, 1: 60},
    }
    for task, values in expected.items():
        for prefix in ("", "ctrl_"):
            xcoms = run.mapped_xcoms[prefix + task]
            # Each mapped instance ran with its own value and knew its own map index.
            got = {i: xcoms[i]["return_value"] for i in xcoms}
            assert got == {i: {"value": v, "map_index": i} for i, v in values.items()}, (prefix + task, got)
        # Each isolated instance was sealed for and ran in the environment on its own.
        assert all(x["isolation_environment"]["name"] == "legacy" for x in run.mapped_xcoms[task].values())
    for task in ("bash_command", "ctrl_bash_command"):
        got = {i: x["return_value"] for i, x in run.mapped_xcoms[task].items()}
        assert got == {0: "a-0", 1: "b-1"}, (task, got)
