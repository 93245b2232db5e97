"""End to end: Airflow work that needs the host fails in isolation with the contract's message, never retried.

Real Airflow 3.3 host, real environments (Airflow 2.11 and 3.3): on Airflow 2 the database
guard refuses TriggerDagRunOperator and ExternalTaskSensor, on Airflow 3 the runtime refuses
the task runner's trigger signal and the Task SDK's queries; either way the host sees the
same violation. The ``ctrl_`` twins show the same operators working on the host.
"""

from __future__ import annotations

import json

import pytest
from harness import run_dag

pytestmark = [pytest.mark.envs, pytest.mark.slow]

ENVIRONMENTS = ("legacy", "modern")
MESSAGES = {
    "trigger": "TriggerDagRunOperator cannot trigger a DAG run from isolation",
    "sensor": "ExternalTaskSensor cannot read the state of another DAG's tasks or runs from isolation",
}
INSTEAD = {
    "trigger": "run it on the host, outside IsolatedOperator, downstream of the isolated task",
    "sensor": "run it on the host, outside IsolatedOperator, upstream of the isolated task",
}


def _callbacks(output: str) -> dict[str, dict]:
    marker = "E2E-CALLBACK "
    seen = [json.loads(line[line.index(marker) + len(marker) :]) for line in output.splitlines() if marker in line]
    return {item["task"]: item for item in seen}


@pytest.fixture(scope="module")
def run(airflow_env):
    return run_dag("e2e_contract")


def test_the_operators_work_on_the_host(run):
    assert run.states["ctrl_trigger"] == "success", run.logs.get("ctrl_trigger", run.output[-3000:])
    assert run.states["ctrl_sensor"] == "success", run.logs.get("ctrl_sensor", run.output[-3000:])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_in_isolation_they_fail_with_the_violation_and_where_to_run_them(run, kind, environment):
    task = f"{kind}_{environment}"
    log = run.logs[task]
    assert run.states[task] == "failed", log[-3000:]
    assert "broke the no-callback contract (not retried)" in log, log[-3000:]
    assert MESSAGES[kind] in log and INSTEAD[kind] in log, log[-3000:]
    assert "isolation no-callback contract" in log
    # Not the ordinary failures they were before: an empty DagRunTriggerException, an AttributeError.
    assert "AttributeError" not in log and "DagRunTriggerException: \n" not in log


@pytest.mark.parametrize("environment", ENVIRONMENTS)
@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_a_violation_is_tried_once_despite_retries(run, kind, environment):
    task = f"{kind}_{environment}"
    assert run.tries[task] == 1, run.tries
    seen = _callbacks(run.output)[task]
    assert seen["violation"] and seen["airflow_fail"], seen
