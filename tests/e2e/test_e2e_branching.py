"""End to end: operators that decide what runs next behave in isolation as on the host.

Every case of ``dags/e2e_branching.py`` exists three times in one DAG run: the plain
operator on the host (``ctrl_``) and the IsolatedOperator in an Airflow 2 (``legacy_``)
and an Airflow 3 (``modern_``) environment. Each isolated case must leave its downstream
tasks in exactly the states its host twin leaves them in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from harness import run_dag

pytestmark = [pytest.mark.envs, pytest.mark.slow]

PREFIXES = ("ctrl_", "legacy_", "modern_")


def _by_case(states: dict[str, str], prefix: str) -> dict[str, str]:
    """The states of one twin, with its prefix taken out of every task id (groups too)."""
    return {task.replace(prefix, ""): state for task, state in states.items() if task.startswith(prefix)}


@pytest.fixture(scope="module")
def run(airflow_env: Any) -> Any:
    return run_dag("e2e_branching", timeout=900)


def test_the_host_twins_do_what_airflow_does(run: Any) -> None:
    # What Airflow does on the host, stated once so the comparison below means something.
    host = _by_case(run.states, "ctrl_")
    assert host["sc_false"] == "success"
    assert {host[t] for t in ("sc_false_a", "sc_false_b", "sc_false_join")} == {"skipped"}
    assert (host["sc_direct_a"], host["sc_direct_b"], host["sc_direct_c"]) == ("skipped", "success", "skipped")
    assert (host["sc_true_a"], host["sc_true_b"]) == ("success", "success")
    assert (host["br_one_a"], host["br_one_b"], host["br_one_join"]) == ("success", "skipped", "success")
    assert (host["br_two_a"], host["br_two_b"], host["br_two_c"]) == ("success", "success", "skipped")
    assert (host["br_group_g.in"], host["br_group_g.after"]) == ("success", "success")
    assert host["br_group_other"] == "skipped"
    assert (host["br_invalid"], host["br_invalid_a"]) == ("failed", "upstream_failed")
    assert (host["tf_branch_a"], host["tf_branch_b"]) == ("success", "skipped")
    assert (host["br_datetime_in"], host["br_datetime_out"]) == ("success", "skipped")
    assert (host["br_weekday_on"], host["br_weekday_off"]) == ("success", "skipped")
    assert (host["tf_sc_a"], host["tf_sc_b"]) == ("skipped", "success")


@pytest.mark.parametrize("prefix", ["legacy_", "modern_"])
def test_every_isolated_case_leaves_the_states_its_host_twin_leaves(run: Any, prefix: str) -> None:
    host = _by_case(run.states, "ctrl_")
    isolated = _by_case(run.states, prefix)
    assert set(isolated) == set(host)
    differ = {task: (isolated[task], host[task]) for task in host if isolated[task] != host[task]}
    failed = [f"{prefix}{task}" for task, (state, _) in differ.items() if state == "failed"]
    assert not differ, (differ, {task: run.logs.get(task, "")[-2000:] for task in failed})


@pytest.mark.parametrize("prefix", ["legacy_", "modern_"])
def test_a_branch_to_an_unknown_task_fails_with_airflows_message(run: Any, prefix: str) -> None:
    log = run.logs[f"{prefix}br_invalid"]
    assert "Invalid tasks found" in log and "no_such_task" in log, log[-3000:]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_branch_decision_is_recorded_where_airflow_reads_it(run: Any, prefix: str) -> None:
    # SkipMixin's XCom, which Airflow reads when a skipped task is cleared: written by the host.
    followed = run.xcoms[f"{prefix}br_one"]["skipmixin_key"]
    assert followed == {"followed": [f"{prefix}br_one_a", f"{prefix}br_one_join"]} or followed == {
        "followed": [f"{prefix}br_one_join", f"{prefix}br_one_a"]
    }
    assert run.xcoms[f"{prefix}sc_false"]["skipmixin_key"]["skipped"]


def _today() -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.timezone.utc).isoformat()


LATEST_RUNS = {
    "manual run": (),
    "scheduled run long past": ("--scheduled", "--logical-date", "2024-01-02T00:00:00+00:00"),
    "today's scheduled run": ("--scheduled", "--logical-date", "<today>"),
}


def _run_latest(dag_id: str, name: str) -> Any:
    return run_dag(dag_id, *(_today() if a == "<today>" else a for a in LATEST_RUNS[name]))


@pytest.mark.parametrize(("name", "after"), [("manual run", "success"), ("scheduled run long past", "skipped")])
def test_latest_only_decides_as_on_the_host(airflow_env: Any, name: str, after: str) -> None:
    run = _run_latest("e2e_latest_only_interval", name)
    assert run.states["ctrl_after"] == after, (name, run.states)
    for env in ("legacy", "modern"):
        assert run.states[f"{env}_latest"] == "success", run.logs.get(f"{env}_latest", run.output)[-3000:]
        assert run.states[f"{env}_after"] == after, (name, env, run.logs[f"{env}_latest"][-3000:])


def test_latest_only_finds_todays_run_latest_as_on_the_host(airflow_env: Any) -> None:
    # Airflow 3's default cron timetable, and a data-interval one that both majors read alike.
    default = _run_latest("e2e_latest_only", "today's scheduled run")
    interval = _run_latest("e2e_latest_only_interval", "today's scheduled run")
    for run in (default, interval):
        assert run.states["ctrl_after"] == "success", run.states
        assert run.states["modern_after"] == "success", run.logs["modern_latest"][-3000:]
    assert interval.states["legacy_after"] == "success", interval.logs["legacy_latest"][-3000:]
    # Airflow 2's operator would skip every run under zero-length intervals: refused, saying so.
    log = default.logs["legacy_latest"]
    assert default.states["legacy_latest"] == "failed" and default.tries["legacy_latest"] == 1, log[-3000:]
    assert "never finds a scheduled run latest under CronTriggerTimetable" in log, log[-3000:]
    assert "CronDataIntervalTimetable" in log
