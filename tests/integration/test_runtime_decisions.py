"""Downstream decisions recorded by the runtime, on every supported Airflow minor.

The runtime rebuilds the DAG from the envelope's structure, runs the deciding operator
against it and reports what it asked to skip or follow; the host applies it (tested end to
end in tests/e2e/test_e2e_branching.py). Here each decision is checked as the runtime
reports it, on Airflow 2.9, 2.10, 2.11, 3.0, 3.1 and 3.3.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from isolation.transport.payload import DagShape, Payload
from tests.integration._runtime import Run, make_payload, run_many

pytestmark = [pytest.mark.envs, pytest.mark.slow, pytest.mark.every_version]

PYTHON = "airflow.providers.standard.operators.python"
GIVEN = CallableRef("isolation.example_dags.probes:given")
UTC = dt.timezone.utc
DAILY = ("airflow.timetables.interval.CronDataIntervalTimetable", {"expression": "0 0 * * *", "timezone": "UTC"})


def shape(downstream: dict[str, list[str]], timetable: tuple[str, dict[str, Any]] | None = None) -> DagShape:
    """isolated_task and the tasks named, with their direct downstream ids."""
    tasks = [{"task_id": task_id, "downstream": ids} for task_id, ids in downstream.items()]
    return DagShape.model_validate(
        {
            "tasks": tasks,
            "timetable_type": timetable[0] if timetable else None,
            "timetable": timetable[1] if timetable else None,
        }
    )


def with_dag(payload: Payload, dag: DagShape, **context: Any) -> Payload:
    return payload.model_copy(update={"dag": dag, "context": payload.context.model_copy(update=context)})


FAN_OUT = {"isolated_task": ["a", "c"], "a": ["b"], "b": [], "c": []}


def _jobs() -> dict[str, Payload]:
    past = dt.datetime(2024, 1, 2, tzinfo=UTC)
    return {
        "short_circuit": with_dag(
            make_payload(f"{PYTHON}.ShortCircuitOperator", {"python_callable": GIVEN, "op_args": [False]}),
            shape(FAN_OUT),
        ),
        "short_circuit_direct": with_dag(
            make_payload(
                f"{PYTHON}.ShortCircuitOperator",
                {"python_callable": GIVEN, "op_args": [0], "ignore_downstream_trigger_rules": False},
            ),
            shape(FAN_OUT),
        ),
        "branch": with_dag(
            make_payload(f"{PYTHON}.BranchPythonOperator", {"python_callable": GIVEN, "op_args": ["a"]}),
            shape(FAN_OUT),
        ),
        "branch_unknown": with_dag(
            make_payload(f"{PYTHON}.BranchPythonOperator", {"python_callable": GIVEN, "op_args": ["nowhere"]}),
            shape(FAN_OUT),
        ),
        "latest_only_past": with_dag(
            make_payload("airflow.providers.standard.operators.latest_only.LatestOnlyOperator"),
            shape({"isolated_task": ["a"], "a": []}, DAILY),
            run_type="scheduled",
            logical_date=past,
            data_interval_start=past,
            data_interval_end=past + dt.timedelta(days=1),
        ),
        "no_structure": make_payload(f"{PYTHON}.BranchPythonOperator", {"python_callable": GIVEN, "op_args": ["a"]}),
    }


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"decisions-{environment.name}")
    return run_many({name: (environment, payload) for name, payload in _jobs().items()}, base)


def decisions(run: Run) -> list[dict[str, Any]]:
    assert run.code == 0 and run.result is not None, run.output[-3000:]
    return list(run.result["downstream"])


def test_short_circuit_asks_to_skip_everything_downstream(runs: dict[str, Run]) -> None:
    (decision,) = decisions(runs["short_circuit"])
    assert decision["kind"] == "skip" and sorted(decision["task_ids"]) == ["a", "b", "c"]
    # SkipMixin's own XCom is the host's to write.
    assert "skipmixin_key" not in runs["short_circuit"].xcoms()


def test_short_circuit_respecting_trigger_rules_asks_to_skip_the_direct_downstream(runs: dict[str, Run]) -> None:
    (decision,) = decisions(runs["short_circuit_direct"])
    assert decision["kind"] == "skip" and sorted(decision["task_ids"]) == ["a", "c"]


def test_a_branch_reports_the_branches_it_follows(runs: dict[str, Run]) -> None:
    assert decisions(runs["branch"]) == [{"kind": "follow", "task_ids": ["a"]}]


def test_a_branch_to_an_unknown_task_fails_with_airflows_message(runs: dict[str, Run]) -> None:
    run = runs["branch_unknown"]
    assert run.code == 1 and run.result is not None, run.output[-3000:]
    assert "Invalid tasks found" in run.result["error"]["message"] and run.result["downstream"] == []


def test_latest_only_follows_nothing_on_a_past_scheduled_run(runs: dict[str, Run]) -> None:
    assert decisions(runs["latest_only_past"]) == [{"kind": "follow", "task_ids": []}]


def test_a_deciding_operator_without_the_dags_structure_fails_saying_so(runs: dict[str, Run]) -> None:
    run = runs["no_structure"]
    assert run.code in (1, 2) and run.result is not None, run.output[-3000:]
    assert "decides which downstream tasks run" in run.result["error"]["message"]
