"""Downstream decisions on the host: the DAG's structure goes out, checked requests come back.

The isolated side is trusted for nothing, so a result that asks to skip tasks is a request:
these tests play a hostile environment (a scripted backend answering with a chosen result)
and check that only tasks downstream of the isolated task can be skipped, and that what is
allowed is applied by Airflow's own SkipMixin (its XCom and its DownstreamTasksSkipped).
The envelope is the real one, opened with the environment's private keys.
"""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup
from airflow.sdk.exceptions import AirflowException, DownstreamTasksSkipped
from test_host_execute import RecordingTaskInstance, ScriptedBackend, result_doc

from isolation.errors import IsolatedTaskFailed
from isolation.keyring import HostKeyring
from isolation.operators.isolated import IsolatedOperator
from isolation.transport import Keyset, open_envelope

SHORT_CIRCUIT = "airflow.providers.standard.operators.python.ShortCircuitOperator"
BRANCH = "airflow.providers.standard.operators.python.BranchPythonOperator"


@pytest.fixture(autouse=True)
def keyring(tmp_path, monkeypatch):
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    private = Keyset.generate_recipient("modern")
    ring.save_recipient(private)
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(ring.path))
    return ring, private


def build(backend, operator=SHORT_CIRCUIT):
    """upstream >> decide >> [a >> b, g.x], and an unrelated task beside them."""
    with DAG("unit", schedule="@daily", start_date=dt.datetime(2024, 1, 1)) as dag:
        upstream = EmptyOperator(task_id="upstream")
        decide = IsolatedOperator(task_id="decide", operator=operator, environment="modern", backend=backend)
        a = EmptyOperator(task_id="a")
        with TaskGroup("g") as group:
            EmptyOperator(task_id="x")
        EmptyOperator(task_id="unrelated")
        upstream >> decide >> [a, group]
        a >> EmptyOperator(task_id="b", trigger_rule="all_done")
    return dag, decide


def execute(task):
    ti = RecordingTaskInstance()
    ti.task_id = task.task_id
    ti.task = task
    return task.execute({"ti": ti, "params": {}}), ti


def decided(*decisions, return_value=None):
    return ScriptedBackend(result_doc(return_value=return_value, downstream=list(decisions)))


def opened_payload(backend, keyring):
    ring, private = keyring
    return open_envelope(backend.envelopes[-1], signers=ring.signer().public(), recipient=private).payload


def test_the_envelope_carries_the_dags_structure_and_timetable_for_a_deciding_operator(keyring):
    backend = decided()
    _, task = build(backend)
    execute(task)
    shape = opened_payload(backend, keyring).dag
    assert shape is not None
    tasks = {t.task_id: t for t in shape.tasks}
    assert set(tasks) == {"upstream", "decide", "a", "g.x", "unrelated", "b"}
    assert tasks["decide"].downstream == ["a", "g.x"] and tasks["a"].downstream == ["b"]
    assert tasks["g.x"].task_group == "g" and tasks["b"].trigger_rule == "all_done"
    assert [(g.group_id, g.parent) for g in shape.task_groups] == [("g", None)]
    assert shape.timetable_type == "airflow.timetables.trigger.CronTriggerTimetable"
    assert shape.timetable is not None and shape.timetable["expression"] == "0 0 * * *"


def test_an_operator_that_decides_nothing_gets_no_structure(keyring):
    backend = decided()
    _, task = build(backend, operator="airflow.providers.standard.operators.bash.BashOperator")
    execute(task)
    assert opened_payload(backend, keyring).dag is None


@pytest.mark.parametrize("target", ["upstream", "unrelated", "decide", "not_in_the_dag"])
def test_a_result_cannot_skip_a_task_that_is_not_downstream(target):
    _, task = build(decided({"kind": "skip", "task_ids": ["a", target]}))
    with pytest.raises(IsolatedTaskFailed, match="not downstream of it: no downstream task was skipped"):
        execute(task)


def test_an_allowed_skip_is_applied_by_airflows_skipmixin():
    _, task = build(decided({"kind": "skip", "task_ids": ["a", "b", "g.x"]}, return_value=False))
    with pytest.raises(DownstreamTasksSkipped) as raised:
        execute(task)
    assert sorted(raised.value.tasks) == ["a", "b", "g.x"]


def test_the_skip_xcom_and_the_return_value_are_pushed_before_the_skip():
    _, task = build(decided({"kind": "skip", "task_ids": ["a"]}, return_value=False))
    ti = RecordingTaskInstance()
    ti.task = task
    with pytest.raises(DownstreamTasksSkipped):
        task.execute({"ti": ti, "params": {}})
    assert ti.pushed["skipmixin_key"] == {"skipped": ["a"]}
    assert ti.pushed["return_value"] is False


def test_a_followed_branch_skips_the_other_direct_downstream_tasks():
    _, task = build(decided({"kind": "follow", "task_ids": ["a"]}), operator=BRANCH)
    ti = RecordingTaskInstance()
    ti.task = task
    with pytest.raises(DownstreamTasksSkipped) as raised:
        task.execute({"ti": ti, "params": {}})
    assert raised.value.tasks == [("g.x", -1)]
    assert ti.pushed["skipmixin_key"] == {"followed": ["a"]}


def test_a_branch_to_an_unknown_task_fails_with_airflows_message():
    _, task = build(decided({"kind": "follow", "task_ids": ["nowhere"]}), operator=BRANCH)
    with pytest.raises(AirflowException, match="Invalid tasks found"):
        execute(task)


def test_following_every_branch_skips_nothing():
    _, task = build(decided({"kind": "follow", "task_ids": ["a", "g.x"]}, return_value=["a"]), operator=BRANCH)
    value, ti = execute(task)
    assert value == ["a"] and sorted(ti.pushed["skipmixin_key"]["followed"]) == ["a", "g.x"]


@pytest.mark.parametrize(
    "downstream",
    [
        [{"kind": "stop", "task_ids": ["a"]}],
        [{"kind": "skip", "task_ids": "a"}],
        [{"kind": "skip", "task_ids": [1]}],
        [{"kind": "skip", "task_ids": ["a"], "also": True}],
        [{"kind": "skip", "task_ids": ["x" * 251]}],
    ],
)
def test_a_malformed_decision_is_refused_as_a_malformed_result(downstream):
    _, task = build(ScriptedBackend(result_doc(downstream=downstream)))
    with pytest.raises(IsolatedTaskFailed, match=r"is malformed \(fields: downstream"):
        execute(task)


def test_deciding_operators_are_marked_for_airflows_skip_dependency():
    # NotPreviouslySkippedDep reads SkipMixin's XCom only of tasks marked so (mapped ones need it).
    _, deciding = build(decided())
    _, plain = build(decided(), operator="airflow.providers.standard.operators.bash.BashOperator")
    assert deciding.inherits_from_skipmixin and not plain.inherits_from_skipmixin
