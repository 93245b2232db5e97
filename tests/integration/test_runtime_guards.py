"""The no-callback contract: every way back into Airflow raises IsolationViolation, with no effect.

One run per environment attempts every forbidden call from inside a PythonOperator,
catching each violation and recording what it saw afterwards (the variable's value,
the files in the private AIRFLOW_HOME); the last attempt is left uncaught, so the
run must end with exit code 4.

Then Airflow work that needs the host: TriggerDagRunOperator, ExternalTaskSensor (over
tasks, a task group, a whole DAG), ExternalTaskMarker, the task instance's and dag run's
queries of other tasks and runs, a sensor asking to be rescheduled, and (Airflow 3.3)
waiting for a human. Each ends with exit
code 4 and a message naming the operator and where the work belongs instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from tests.integration._runtime import PYTHON, Run, airflow_major, make_payload, run_many

pytestmark = [pytest.mark.envs, pytest.mark.slow, pytest.mark.every_version]

GUARDS = [
    "variable_set",
    "variable_delete",
    "variable_update",
    "connection_write",
    "settings_session",
    "create_session",
    "provide_session",
    "engine",
    "callback_channel",
]
CONTRACT = "isolation no-callback contract"


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"guards-{environment.name}")
    probe = make_payload(
        PYTHON,
        {"python_callable": CallableRef("it_tasks:try_forbidden"), "op_args": ["variable_set"]},
        variables={"existing": "original"},
    )
    marker = make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:mark_ran")})
    leaked = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{base / 'leaked.db'}"}
    return run_many(
        {"probe": (environment, probe), "db_url": (environment, marker, leaked), "control": (environment, marker)},
        base,
    )


def _report(runs: dict[str, Run]) -> dict[str, Any]:
    return json.loads(runs["probe"].files["guards.json"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("guard", GUARDS)
def test_forbidden_call_raises_and_changes_nothing(runs: dict[str, Run], guard: str) -> None:
    seen = _report(runs)[guard]
    assert seen["raised"] == "IsolationViolation", seen
    assert CONTRACT in seen["message"]
    assert seen["existing_after"] == "original"
    # The private AIRFLOW_HOME holds only the empty config the runtime wrote: no database file.
    assert seen["home_files"] == ["airflow.cfg"]


def test_uncaught_violation_is_exit_4(runs: dict[str, Run]) -> None:
    run = runs["probe"]
    assert run.code == 4, run.output
    assert run.result is not None
    assert run.result["outcome"] == "violation"
    assert run.result["error"]["type"] == "IsolationViolation"
    assert "Variable.set('existing')" in run.result["error"]["message"]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("isolation-runtime: violation (exit 4): ")
    assert CONTRACT in last


def test_nothing_is_written_outside_the_task(runs: dict[str, Run]) -> None:
    for run in runs.values():
        written = [p for p in Path(run.workdir).rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]
        assert written == []
        # The private AIRFLOW_HOME is removed when the runtime exits.
        assert not list(Path(run.workdir).glob("isolation-airflow-home-*"))


def test_database_url_in_environment_is_a_violation_before_any_operator_code(runs: dict[str, Run]) -> None:
    run = runs["db_url"]
    assert run.code == 4, run.output
    assert run.result is not None and run.result["outcome"] == "violation"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in run.result["error"]["message"]
    assert "ran" not in run.files
    assert not (run.workdir.parent / "leaked.db").exists()


def test_same_task_without_database_url_runs(runs: dict[str, Run]) -> None:
    # The control for the test above: the task itself is fine and does run.
    run = runs["control"]
    assert run.code == 0, run.output
    assert run.files["ran"] == "yes"


# -- Airflow work that needs the host (isolation/runtime/contract.py) ------------------------

STANDARD = "airflow.providers.standard"
WAIT = {"external_dag_id": "other_dag", "poke_interval": 0.1, "timeout": 30, "mode": "poke"}
# job: (import path, arguments, start of the message, where it belongs instead)
HOST_WORK = {
    "trigger": (
        f"{STANDARD}.operators.trigger_dagrun.TriggerDagRunOperator",
        {"trigger_dag_id": "other_dag"},
        "TriggerDagRunOperator cannot trigger a DAG run from isolation",
        "run it on the host, outside IsolatedOperator, downstream of the isolated task",
    ),
    "sensor_tasks": (
        f"{STANDARD}.sensors.external_task.ExternalTaskSensor",
        {**WAIT, "external_task_ids": ["a", "b"]},
        "ExternalTaskSensor cannot read the state of another DAG's tasks or runs from isolation",
        "run it on the host, outside IsolatedOperator, upstream of the isolated task",
    ),
    "sensor_group": (
        f"{STANDARD}.sensors.external_task.ExternalTaskSensor",
        {**WAIT, "external_task_group_id": "group"},
        "ExternalTaskSensor cannot read the state of another DAG's tasks or runs from isolation",
        "upstream of the isolated task",
    ),
    "sensor_dag": (
        f"{STANDARD}.sensors.external_task.ExternalTaskSensor",
        {**WAIT, "external_task_id": None},
        "ExternalTaskSensor cannot read the state of another DAG's tasks or runs from isolation",
        "upstream of the isolated task",
    ),
    "marker": (
        f"{STANDARD}.sensors.external_task.ExternalTaskMarker",
        {"external_dag_id": "other_dag", "external_task_id": "t"},
        "ExternalTaskMarker has no effect in isolation",
        "Airflow reads it on the host when tasks are cleared; put it in the DAG itself, outside IsolatedOperator",
    ),
}


# Airflow 3.3's human-in-the-loop operators and the task runner's signal they raise.
MODERN_AIRFLOW = "3.3.2"
HUMAN_IN_THE_LOOP = {
    "hitl": (
        f"{STANDARD}.operators.hitl.ApprovalOperator",
        {"subject": "deploy?"},
        "ApprovalOperator cannot ask a human for input from isolation",
        "run it on the host, outside IsolatedOperator",
    ),
    "awaiting_input": (
        PYTHON,
        {"python_callable": CallableRef("it_tasks:await_input")},
        "PythonOperator cannot wait for human input from isolation",
        "run it on the host, outside IsolatedOperator",
    ),
}


@pytest.fixture(scope="module")
def host_work(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"host-work-{environment.name}")
    jobs = {name: (environment, make_payload(path, kwargs)) for name, (path, kwargs, _, _) in HOST_WORK.items()}
    jobs["queries"] = (environment, make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:try_queries")}))
    # A sensor that asks the scheduler to run it again later (reschedule mode kept on purpose).
    rescheduling = make_payload(
        "airflow.providers.standard.sensors.python.PythonSensor",
        {"python_callable": CallableRef("it_tasks:noop"), "mode": "reschedule", "poke_interval": 1, "timeout": 30},
        options={"reschedule_to_poke": False},
    )
    jobs["reschedule"] = (environment, rescheduling)
    if environment.airflow_version == MODERN_AIRFLOW:
        for name, (path, kwargs, _, _) in HUMAN_IN_THE_LOOP.items():
            jobs[name] = (environment, make_payload(path, kwargs))
    return run_many(jobs, base)


def _violation(run: Run) -> str:
    assert run.code == 4, run.output
    assert run.result is not None and run.result["outcome"] == "violation", run.result
    assert run.result["error"]["type"] == "IsolationViolation"
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("isolation-runtime: violation (exit 4): ")
    return str(run.result["error"]["message"])


@pytest.mark.parametrize("job", sorted(HOST_WORK))
def test_host_work_is_a_violation_naming_the_operator_and_where_it_belongs(host_work: dict[str, Run], job: str) -> None:
    message = _violation(host_work[job])
    _, _, says, instead = HOST_WORK[job]
    assert message.startswith(says), message
    assert message.endswith(instead), message
    assert CONTRACT in message


@pytest.mark.parametrize("job", sorted(HUMAN_IN_THE_LOOP))
def test_waiting_for_a_human_is_a_violation(host_work: dict[str, Run], environment: LocalEnvironment, job: str) -> None:
    if environment.airflow_version != MODERN_AIRFLOW:
        # Human-in-the-loop operators exist from Airflow 3.1's standard provider on; the
        # environments older than the newest have none to run.
        assert job not in host_work
        return
    message = _violation(host_work[job])
    _, _, says, instead = HUMAN_IN_THE_LOOP[job]
    assert message.startswith(says) and message.endswith(instead), message


def test_each_query_of_other_tasks_and_runs_is_a_violation(
    host_work: dict[str, Run], environment: LocalEnvironment
) -> None:
    run = host_work["queries"]
    report = json.loads(run.files["queries.json"])
    home_files = report.pop("home_files")
    # The queries the DAG authors' operators use most, on this Airflow's own classes.
    if airflow_major(environment) >= 3:
        expected = {"ti.get_ti_count", "ti.get_task_states", "ti.get_dr_count", "ti.get_dagrun_state"}
        expected |= {"ti.get_previous_dagrun", "ti.get_first_reschedule_date"}
    else:
        expected = {"ti.get_previous_ti", "ti.get_previous_dagrun", "ti.get_num_running_task_instances"}
        expected |= {"ti.refresh_from_db", "dag_run.get_task_instances", "dag_run.get_previous_dagrun"}
    assert expected <= set(report), sorted(report)
    for name, seen in report.items():
        assert seen["raised"] == "IsolationViolation", (name, seen)
        assert seen["message"].startswith("PythonOperator cannot "), (name, seen)
        assert f"refused: {name}()" in seen["message"] and CONTRACT in seen["message"], (name, seen)
    assert home_files == ["airflow.cfg"]
    # The last one, uncaught, ends the run as a violation. On Airflow 3 it asked the Task
    # SDK's class itself, past the stand-in: the supervisor guard names the request.
    message = _violation(run)
    assert (
        "SUPERVISOR_COMMS.send(GetDRCount)" if airflow_major(environment) >= 3 else "ti.get_previous_ti()"
    ) in message


def test_a_reschedule_request_is_a_violation(host_work: dict[str, Run], environment: LocalEnvironment) -> None:
    message = _violation(host_work["reschedule"])
    if airflow_major(environment) >= 3:
        # The Task SDK asks for the first reschedule date before it asks to be rescheduled.
        assert message.startswith("PythonSensor cannot read this task's reschedule history from isolation"), message
        assert message.endswith("run the sensor with mode='poke'"), message
    else:
        assert "an Airflow metadata database session" in message, message
