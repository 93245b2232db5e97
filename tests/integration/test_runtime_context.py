"""The rebuilt context and ``ti.xcom_pull`` in the real environments (Airflow 2.9, 2.11, 3.0 and 3.3).

Strict XCom pulls (payload schema 2's default) refuse an XCom the host did not send,
naming it and the fix; lenient ones (the host's opt-in, and every schema 1 payload)
return the default as Airflow does. Every context key the environment's own Airflow
gives a task (asked of that Airflow: tests/_context_keys.py) is carried, or refused
with ContextNotAvailable in Python and in templates.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from isolation.transport.payload import Payload, XComInput
from tests._context_keys import UNAVAILABLE, offered_keys
from tests._envs import LATEST
from tests.integration._runtime import LOGICAL, PYTHON, Run, airflow_major, bash_path, make_payload, run_many

# On the oldest supported Airflow 2 and 3 too: each offers its own set of keys.
pytestmark = [pytest.mark.envs, pytest.mark.slow, pytest.mark.every_version]

XCOMS = [
    XComInput(task_id="upstream", value="from-upstream"),
    XComInput(task_id="upstream", key="extra", value={"a": [1, 2]}),
    XComInput(task_id="declared_none", value=None),
    XComInput(task_id="mapped", map_index=1, value="m1"),
    XComInput(task_id="mapped", map_index=0, value="m0"),
    XComInput(task_id="mapped", map_index=2, value=None),  # the host's "index 2 pushed nothing"
]
# Each call: what to push first, then the xcom_pull arguments.
CALLS: dict[str, dict[str, Any]] = {
    "sent": {"kwargs": {"task_ids": "upstream"}},
    "sent_key": {"kwargs": {"task_ids": "upstream", "key": "extra"}},
    "sent_none": {"kwargs": {"task_ids": "declared_none"}},
    "positional": {"args": ["upstream"]},
    "mapped_all": {"kwargs": {"task_ids": "mapped"}},
    "mapped_one": {"kwargs": {"task_ids": "mapped", "map_indexes": 1}},
    "mapped_some": {"kwargs": {"task_ids": "mapped", "map_indexes": [1, 0]}},
    "mapped_nothing_pushed": {"kwargs": {"task_ids": "mapped", "map_indexes": 2, "default": "dflt"}},
    "undeclared": {"kwargs": {"task_ids": "nowhere"}},
    "undeclared_default": {"kwargs": {"task_ids": "nowhere", "default": "dflt"}},
    "undeclared_key": {"kwargs": {"task_ids": "upstream", "key": "other"}},
    "undeclared_map_index": {"kwargs": {"task_ids": "mapped", "map_indexes": 5}},
    "other_dag": {"kwargs": {"task_ids": "upstream", "dag_id": "another_dag", "run_id": "another_run"}},
    "list_with_undeclared": {"kwargs": {"task_ids": ["upstream", "nowhere"]}},
    "own_push": {"push": {"mine": 7}, "kwargs": {"task_ids": "isolated_task", "key": "mine"}},
    "no_task_ids_pushed": {"kwargs": {"key": "mine"}},
    # Airflow 3: this task's own XCom (not pushed); Airflow 2: any task's (upstream's).
    "no_task_ids_other": {"kwargs": {"key": "extra"}},
}
PREV = LOGICAL - dt.timedelta(days=1)
NEXT = LOGICAL + dt.timedelta(days=1)
SUCCESS = {
    "prev_data_interval_start_success": LOGICAL - dt.timedelta(days=3),
    "prev_data_interval_end_success": LOGICAL - dt.timedelta(days=2),
    "prev_start_date_success": LOGICAL - dt.timedelta(days=2, hours=-1),
    "prev_end_date_success": LOGICAL - dt.timedelta(days=2, hours=-2),
}


def _pulls(options: dict[str, Any] | None = None, **kwargs: Any) -> Payload:
    calls = list(CALLS.values())
    return make_payload(
        PYTHON,
        {"python_callable": CallableRef("it_context:pulls"), "op_kwargs": {"calls": calls}},
        xcom_inputs=XCOMS,
        options=options,
        **kwargs,
    )


def _schema_1(payload: Payload) -> Payload:
    data = payload.model_dump(by_alias=True)
    data["schema_version"] = 1
    data["options"]["strict_xcom_pull"] = False
    return Payload.model_validate(data)


def _with_context(payload: Payload, **values: Any) -> Payload:
    return payload.model_copy(update={"context": payload.context.model_copy(update=values)})


# Not offered by Airflow 3 (nor "no_such_key" by any): missing as there, a plain KeyError.
NOT_OFFERED_3 = ["execution_date", "prev_ds", "test_mode", "expanded_ti_count", "no_such_key"]


# Carried, true of every running run, not carried (Airflow 3 / 2), and no field of either.
DAG_RUN_FIELDS = ["run_id", "state", "end_date", "run_after", "queued_at", "no_such_field"]


def _jobs(env: LocalEnvironment) -> dict[str, Payload]:
    keys = sorted(set(offered_keys(env)) | set(NOT_OFFERED_3))
    probe = {"python_callable": CallableRef("it_context:probe"), "op_kwargs": {"keys": keys}}
    context = _with_context(
        make_payload(PYTHON, probe, params={"region": "eu-west"}, conf={"size": 3}),
        prev_logical_date=PREV,
        next_logical_date=NEXT,
        **SUCCESS,
    )
    bash = bash_path(env)
    return {
        "pulls_strict": _pulls(),
        "pulls_lenient": _pulls({"strict_xcom_pull": False}),
        "pulls_schema_1": _schema_1(_pulls({"strict_xcom_pull": False})),
        "template_undeclared": make_payload(bash, {"bash_command": "echo {{ ti.xcom_pull(task_ids='nowhere') }}"}),
        "context": context,
        "context_not_computed": make_payload(PYTHON, probe),
        "context_schema_1": _schema_1(make_payload(PYTHON, probe)),
        "context_mapped": make_payload(PYTHON, probe, map_index=2),
        "dag_run_fields": make_payload(
            PYTHON,
            {"python_callable": CallableRef("it_context:dag_run_fields"), "op_kwargs": {"fields": DAG_RUN_FIELDS}},
        ),
        "template_unavailable": make_payload(bash, {"bash_command": "echo {{ inlets }}"}),
        "template_carried": _with_context(
            make_payload(bash, {"bash_command": "echo {{ prev_ds }}/{{ next_ds_nodash }}/{{ yesterday_ds }}"}),
            prev_logical_date=PREV,
            next_logical_date=NEXT,
        ),
    }


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"context-{environment.name}")
    return run_many({name: (environment, p) for name, p in _jobs(environment).items()}, base)


def _ok(run: Run) -> Any:
    assert run.code == 0, run.output
    assert run.result is not None and run.result["outcome"] == "success", run.output
    return run.result["return_value"]


def _pulled(run: Run) -> dict[str, Any]:
    return dict(zip(CALLS, _ok(run), strict=True))


def _refused(entry: dict[str, Any]) -> str:
    assert entry.get("error") == "XComNotProvided", entry
    assert "isolation.errors.NotProvided" in entry["types"]
    return str(entry["message"])


def test_declared_and_own_xcoms_are_served(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    pulled = _pulled(runs["pulls_strict"])
    assert pulled["sent"] == {"value": "from-upstream"}
    assert pulled["sent_key"] == {"value": {"a": [1, 2]}}
    assert pulled["positional"] == {"value": "from-upstream"}
    assert pulled["mapped_all"] == {"value": ["m0", "m1"]}
    assert pulled["mapped_one"] == {"value": "m1"}
    assert pulled["mapped_some"] == {"value": ["m1", "m0"]}
    assert pulled["mapped_nothing_pushed"] == {"value": "dflt"}
    assert pulled["own_push"] == {"value": 7}
    assert pulled["no_task_ids_pushed"] == {"value": 7}


def test_a_sent_xcom_whose_value_is_none_is_none(runs: dict[str, Run]) -> None:
    assert _pulled(runs["pulls_strict"])["sent_none"] == {"value": None}


def test_an_undeclared_pull_fails_naming_the_xcom_and_the_fix(runs: dict[str, Run]) -> None:
    pulled = _pulled(runs["pulls_strict"])
    message = _refused(pulled["undeclared"])
    assert "XCom 'return_value' of task 'nowhere'" in message
    assert "isolated task 'isolated_task'" in message
    assert "xcom_inputs=['nowhere']" in message
    assert "lenient_xcom_pull=True" in message
    # A default does not make it lenient: it would hide an XCom the host has.
    assert "'nowhere'" in _refused(pulled["undeclared_default"])
    assert "xcom_inputs=['upstream:other']" in _refused(pulled["undeclared_key"])
    assert "map index 5" in _refused(pulled["undeclared_map_index"])
    other = _refused(pulled["other_dag"])
    assert "of task 'upstream' of another DAG or run (dag 'another_dag', run 'another_run')" in other
    assert "pull it in a host task" in other and "xcom_inputs" not in other
    assert "'nowhere'" in _refused(pulled["list_with_undeclared"])


def test_pulls_without_task_ids_follow_the_environments_airflow(
    runs: dict[str, Run], environment: LocalEnvironment
) -> None:
    pulled = _pulled(runs["pulls_strict"])["no_task_ids_other"]
    if airflow_major(environment) >= 3:  # this task's own XCom, which it has not pushed
        assert "XCom 'extra' of task 'isolated_task'" in _refused(pulled)
    else:  # any task's: the one the host sent
        assert pulled == {"value": {"a": [1, 2]}}


def test_lenient_pulls_return_the_default_as_airflow_does(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    for name in ("pulls_lenient", "pulls_schema_1"):
        pulled = _pulled(runs[name])
        assert pulled["undeclared"] == {"value": None}, name
        # Airflow 3 ignores ``default`` when no map index is asked for (its get_all path).
        assert pulled["undeclared_default"] == {"value": None if airflow_major(environment) >= 3 else "dflt"}, name
        assert pulled["undeclared_map_index"] == {"value": None}, name
        assert pulled["list_with_undeclared"] == {"value": ["from-upstream", None]}, name
        assert pulled["sent"] == {"value": "from-upstream"}, name
        assert pulled["sent_none"] == {"value": None}, name


def test_an_undeclared_pull_in_a_template_fails_the_task_with_the_fix(runs: dict[str, Run]) -> None:
    run = runs["template_undeclared"]
    assert run.code == 1, run.output
    assert run.result is not None and run.result["error"]["type"] == "XComNotProvided"
    assert "of task 'nowhere'" in run.result["error"]["message"]
    assert "xcom_inputs=['nowhere']" in run.result["error"]["message"]


def test_dag_run_fields_are_carried_or_refused_saying_so(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    fields = _ok(runs["dag_run_fields"])
    assert fields["run_id"]["value"] == "manual__2024-03-05T06:07:08+00:00"
    assert fields["state"]["value"] == "running" and fields["end_date"] == {"value": None, "default": None}
    not_carried = "run_after" if airflow_major(environment) >= 3 else "queued_at"
    entry = fields[not_carried]
    assert entry["error"] == "DagRunFieldNotCarried", entry
    assert f"dag_run.{not_carried} is not carried into isolation" in entry["message"]
    assert "builtins.AttributeError" in entry["types"] and "isolation.errors.NotProvided" in entry["types"]
    assert entry["default"] == "<default>"  # getattr with a default still takes it
    # Not a field of this Airflow's dag run: Airflow's own AttributeError, not a refusal.
    assert fields["no_such_field"]["error"] == "AttributeError"
    assert "not carried" not in fields["no_such_field"]["message"]


def _report(run: Run) -> dict[str, Any]:
    report: dict[str, Any] = _ok(run)
    return report


def test_every_key_the_environment_offers_is_carried_or_refused(
    runs: dict[str, Run], environment: LocalEnvironment
) -> None:
    offered = set(offered_keys(environment))
    unavailable = UNAVAILABLE[airflow_major(environment)] & offered
    if environment.name in LATEST:  # the newest minors offer every key the table names
        assert unavailable == UNAVAILABLE[airflow_major(environment)], offered
    report = _report(runs["context"])
    for key in sorted(offered):
        entry = report[key]
        assert entry["in"] is True, key
        if key in unavailable:
            for way in ("direct", "jinja", "kwargs_used"):
                assert entry[way]["error"] == "ContextNotAvailable", (key, way, entry)
                assert f"context key {key!r} is not available in isolation: " in entry[way]["message"]
                assert "builtins.KeyError" in entry[way]["types"]
            # Missing for get(): Airflow's own optional lookups (task_state_store) take their fallback.
            assert entry["get"] == {"value": "<default>"}, key
        else:
            assert "value" in entry["direct"], (key, entry)
            assert "value" in entry["jinja"], (key, entry)
            assert entry["get"]["value"] == entry["direct"]["value"], key
    assert report["<branch not taken>"] == {"value": "ok"}


def test_carried_keys_have_the_values_airflow_computes(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    report = _report(runs["context"])

    def value(key: str) -> Any:
        return report[key]["direct"]["value"]

    assert value("ds") == "2024-03-05"
    assert value("ts") == LOGICAL.isoformat()
    assert value("params") == {"region": "eu-west"}
    assert value("task_instance_key_str") == "isolation_it__isolated_task__20240305"
    for key, when in SUCCESS.items():
        assert value(key) == when.isoformat(), key
    assert report["no_such_key"]["in"] is False
    assert report["no_such_key"]["direct"]["error"] == "KeyError"
    if airflow_major(environment) >= 3:
        assert value("task_reschedule_count") == 0
        for key in NOT_OFFERED_3:  # missing, as on an Airflow 3 worker
            assert key not in offered_keys(environment)
            assert report[key]["in"] is False, key
            assert report[key]["direct"]["error"] == "KeyError", key
        return
    # Airflow 2's definitions (TaskInstance.get_template_context), from the carried values.
    assert value("execution_date") == LOGICAL.isoformat()
    assert (value("yesterday_ds"), value("yesterday_ds_nodash")) == ("2024-03-04", "20240304")
    assert (value("tomorrow_ds"), value("tomorrow_ds_nodash")) == ("2024-03-06", "20240306")
    assert value("prev_execution_date") == PREV.isoformat()
    assert (value("prev_ds"), value("prev_ds_nodash")) == ("2024-03-04", "20240304")
    assert value("next_execution_date") == NEXT.isoformat()
    assert (value("next_ds"), value("next_ds_nodash")) == ("2024-03-06", "20240306")
    assert value("test_mode") is False
    assert value("expanded_ti_count") is None
    assert report["yesterday_ds"]["jinja"] == {"value": "2024-03-04"}


def test_keys_the_host_could_not_compute_are_refused_with_the_reason(
    runs: dict[str, Run], environment: LocalEnvironment
) -> None:
    report = _report(runs["context_not_computed"])
    for key in SUCCESS:  # the host found no earlier successful run: None, as in Airflow
        if key in report:
            assert report[key]["direct"] == {"value": None}, key
    if airflow_major(environment) >= 3:
        return
    for key in ("prev_execution_date", "prev_ds", "next_execution_date", "next_ds_nodash"):
        entry = report[key]["direct"]
        assert entry["error"] == "ContextNotAvailable", key
        assert "could not compute the" in entry["message"] and "timetable" in entry["message"]
    mapped = _report(runs["context_mapped"])["expanded_ti_count"]["direct"]
    assert mapped["error"] == "ContextNotAvailable"


def test_a_schema_1_payload_carries_no_key_of_schema_2(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    report = _report(runs["context_schema_1"])
    keys = [k for k in SUCCESS if k in report]
    if airflow_major(environment) == 2:
        keys += ["prev_execution_date", "next_ds"]
    assert keys
    for key in keys:
        entry = report[key]["direct"]
        assert entry["error"] == "ContextNotAvailable", key
        assert "payload schema 1" in entry["message"]


def test_an_unavailable_key_in_a_template_fails_the_task_naming_it(runs: dict[str, Run]) -> None:
    run = runs["template_unavailable"]
    assert run.code == 1, run.output
    assert run.result is not None and run.result["error"]["type"] == "ContextNotAvailable"
    message = run.result["error"]["message"]
    assert message.startswith("context key 'inlets' is not available in isolation: assets stay on the host")


def test_carried_keys_render_in_templates(runs: dict[str, Run], environment: LocalEnvironment) -> None:
    run = runs["template_carried"]
    if airflow_major(environment) >= 3:  # Airflow 3 has none of these keys: as on an Airflow 3 worker
        assert run.code == 1, run.output
        assert run.result is not None and run.result["error"]["type"] == "UndefinedError"
        assert "'prev_ds' is undefined" in run.result["error"]["message"]
        return
    assert _ok(run) == "2024-03-04/20240306/2024-03-04"
