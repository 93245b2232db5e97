"""End to end: ``ti.xcom_pull`` and the task context in isolation, beside twins on the host.

A real Airflow 3.3 host runs the DAGs of ``dags/e2e_xcom_pull.py`` and ``dags/e2e_context.py``
with isolated tasks in the Airflow 2.11 (``legacy``) and 3.3 (``modern``) environments. The
context keys each environment offers are asked of its own Airflow (tests/_context_keys.py).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from harness import Run, run_dag

from tests._context_keys import UNAVAILABLE, offered_keys
from tests._envs import get_env

pytestmark = [pytest.mark.envs, pytest.mark.slow]

ENVS = ("legacy", "modern")
AIRFLOW = {"legacy": "2.11.2", "modern": "3.3.2"}


@pytest.fixture(scope="module")
def pulls(airflow_env: Any) -> Run:
    return run_dag("e2e_xcom_pull")


def test_an_xcom_pulled_in_the_callables_source_is_sent_without_declaring_it(pulls: Run) -> None:
    twin = pulls.xcoms["ctrl_round_trip"]
    assert twin["return_value"] == {"doubled": 42, "pulled": {"n": 21}}
    for env in ENVS:
        task = f"discovered_{env}"
        assert pulls.states[task] == "success", pulls.logs.get(task, pulls.output[-3000:])
        assert pulls.xcoms[task]["return_value"] == twin["return_value"]
        assert pulls.xcoms[task]["extra"] == twin["extra"]
        assert pulls.xcoms[task]["isolation_environment"]["airflow"] == AIRFLOW[env]


def test_an_undeclared_xcom_pull_fails_naming_the_xcom_the_task_and_the_fix(pulls: Run) -> None:
    for env in ENVS:
        for task in (f"strict_{env}", f"strict_taskflow_{env}"):
            assert pulls.states[task] == "failed", task
            log = pulls.logs[task]
            assert (
                f"XComNotProvided: XCom 'return_value' of task 'quiet' was not sent to the isolated task '{task}'"
                in log
            ), log[-3000:]
            assert "declare it with xcom_inputs=['quiet'] on the IsolatedOperator" in log
            assert "lenient_xcom_pull=True" in log
            assert "return_value" not in pulls.xcoms.get(task, {})


def test_lenient_xcom_pull_returns_none_as_the_host_twin_does(pulls: Run) -> None:
    echoed = pulls.xcoms["ctrl_echo"]["return_value"]
    pulled = pulls.xcoms["ctrl_pull_named"]["return_value"]
    assert (echoed, pulled) == ("None", {"pulled": None})  # "quiet" pushed nothing
    for env in ENVS:
        twins = {f"lenient_{env}": echoed, f"lenient_taskflow_{env}": pulled, f"declared_{env}": echoed}
        for task, twin in twins.items():
            assert pulls.states[task] == "success", pulls.logs.get(task, "")[-3000:]
            assert pulls.xcoms[task]["return_value"] == twin, task


def test_a_mapped_upstream_is_pulled_by_map_index_as_on_the_host(pulls: Run) -> None:
    twin = pulls.xcoms["ctrl_mapped"]["return_value"]
    assert twin == {"one": 9, "absent": "none pushed", "some": [9, 1], "all": [1, 9]}
    for env in ENVS:
        task = f"mapped_{env}"
        assert pulls.states[task] == "success", pulls.logs.get(task, pulls.output[-3000:])
        assert pulls.xcoms[task]["return_value"] == twin, task


# -- context keys ---------------------------------------------------------------------------


def _run_with_conf(logical_date: str, conf: dict[str, Any]) -> Run:
    return run_dag("e2e_context", "--logical-date", logical_date, "--conf", json.dumps(conf), timeout=600)


@pytest.fixture(scope="module")
def contexts(airflow_env: Any) -> list[Run]:
    """Two runs: the second has a successful run before it, which the prev_*_success keys name."""
    runs = [
        _run_with_conf("2024-03-04T06:00:00+00:00", {"size": 3}),
        _run_with_conf("2024-03-05T06:00:00+00:00", {"size": 4}),
    ]
    for run in runs:
        assert set(run.states.values()) == {"success"}, run.output[-4000:]
    return runs


def _reports(run: Run) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    host = run.xcoms["ctrl_context"]["return_value"]
    return host, {env: run.xcoms[f"context_{env}"]["return_value"] for env in ENVS}


# Airflow 2's keys, which an Airflow 3 host does not have: checked against its definitions.
AIRFLOW_2_ONLY = {
    "execution_date",
    "expanded_ti_count",
    "next_ds",
    "next_ds_nodash",
    "next_execution_date",
    "prev_ds",
    "prev_ds_nodash",
    "prev_execution_date",
    "test_mode",
    "tomorrow_ds",
    "tomorrow_ds_nodash",
    "yesterday_ds",
    "yesterday_ds_nodash",
}


def _same(value: Any, task_id: str) -> Any:
    """What a host and an isolated value have in common: objects by their fields, this task's id out."""
    if isinstance(value, dict):
        dropped = ("type", "task_id", "logical_date") if "type" in value else ()
        return {k: _same(v, task_id) for k, v in value.items() if k not in dropped}
    if isinstance(value, str):
        return value.replace(task_id, "<task>")
    return value


def _is_unavailable(way: dict[str, Any], key: str) -> bool:
    if way.get("error") != "ContextNotAvailable":
        return False
    assert way["message"].startswith(f"context key {key!r} is not available in isolation: "), way
    return True


def test_every_key_the_environments_airflow_offers_is_carried_or_refused(contexts: list[Run]) -> None:
    for env in ENVS:
        offered = set(offered_keys(get_env(env)))
        for run in contexts:
            report = _reports(run)[1][env]
            assert report["<airflow>"] == AIRFLOW[env]
            refused = set()
            for key in sorted(offered):
                python, jinja = report[key]["python"], report[key]["jinja"]
                if _is_unavailable(python, key):
                    assert _is_unavailable(jinja, key), (env, key, jinja)
                    refused.add(key)
                else:
                    assert "value" in python, (env, key, python)
                    assert "value" in jinja, (env, key, jinja)
            assert refused == UNAVAILABLE[2 if env == "legacy" else 3], env


def test_carried_keys_are_what_the_host_twin_sees(contexts: list[Run]) -> None:
    for run in contexts:
        host, isolated = _reports(run)
        for env in ENVS:
            report, own = isolated[env], f"context_{env}"
            for key, entry in host.items():
                if key.startswith("<") or "value" not in entry["python"] or key not in report:
                    continue
                if _is_unavailable(report[key]["python"], key):
                    continue
                seen = _same(report[key]["python"]["value"], own)
                assert seen == _same(entry["python"]["value"], "ctrl_context"), (env, key, seen)
                if not isinstance(entry["python"]["value"], dict):  # objects render as their repr
                    assert _same(report[key]["jinja"], own) == _same(entry["jinja"], "ctrl_context"), (env, key)
            # Nothing the host lacks, but Airflow 2's own keys (the last test).
            extra = {
                k
                for k, e in report.items()
                if not k.startswith("<") and "value" in e["python"] and "value" not in host.get(k, {}).get("python", {})
            }
            assert extra == (AIRFLOW_2_ONLY if env == "legacy" else set()), (env, extra)


def test_the_run_conf_and_the_latest_successful_run_are_the_hosts(contexts: list[Run]) -> None:
    for run, size in zip(contexts, (3, 4), strict=True):
        host, isolated = _reports(run)
        assert host["dag_run"]["python"]["value"]["conf"] == {"size": size}
        for env in ENVS:
            assert isolated[env]["dag_run"]["python"]["value"]["conf"] == {"size": size}
    first, second = (_reports(run)[0] for run in contexts)
    assert first["prev_start_date_success"]["python"] == {"value": None}
    assert second["prev_start_date_success"]["python"]["value"] is not None  # the first run
    assert second["prev_end_date_success"]["python"]["value"] is not None


def test_airflow_2_keys_follow_airflow_2s_definitions_from_the_hosts_values(contexts: list[Run]) -> None:
    for run in contexts:
        host, isolated = _reports(run)
        legacy = {k: e["python"].get("value") for k, e in isolated["legacy"].items() if not k.startswith("<")}
        logical, ds = host["logical_date"]["python"]["value"], host["ds"]["python"]["value"]
        day_of = dt.date.fromisoformat(ds)
        yesterday, tomorrow = (str(day_of + dt.timedelta(days=n)) for n in (-1, 1))
        # A manual run (dag.test) is its own previous and next logical date in Airflow 2.
        assert legacy["execution_date"] == logical
        assert legacy["prev_execution_date"] == legacy["next_execution_date"] == logical
        assert legacy["prev_ds"] == legacy["next_ds"] == ds
        assert legacy["prev_ds_nodash"] == legacy["next_ds_nodash"] == ds.replace("-", "")
        assert (legacy["yesterday_ds"], legacy["tomorrow_ds"]) == (yesterday, tomorrow)
        assert (legacy["yesterday_ds_nodash"], legacy["tomorrow_ds_nodash"]) == (
            yesterday.replace("-", ""),
            tomorrow.replace("-", ""),
        )
        assert legacy["test_mode"] is False and legacy["expanded_ti_count"] is None
        assert isolated["legacy"]["yesterday_ds"]["jinja"] == {"value": yesterday}
