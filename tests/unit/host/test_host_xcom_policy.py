"""What the host seals about XCom pulls: the policy, and the XComs found in a callable's source.

The envelope is sealed by the real IsolatedOperator and opened with the environment's
real keys; the backend only hands the sealed text back (its interface is this project's).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk import DAG

from isolation.backends import Backend, RunOutcome
from isolation.keyring import HostKeyring
from isolation.operators.isolated import IsolatedOperator
from isolation.transport import Keyset, open_envelope

PYTHON = "airflow.providers.standard.operators.python.PythonOperator"
DONE = json.dumps({"format": "isolation-result/v1", "outcome": "success", "return_value": None, "xcoms": []})


def pulls_upstream(ti):
    return ti.xcom_pull(task_ids="upstream", key="rows")


class SealOnly(Backend):
    name = "seal-only"

    def __init__(self) -> None:
        self.envelopes: list[str] = []

    def check(self, environment):
        pass

    def built_versions(self, environment):
        return None

    def run(self, environment, seal, on_log):
        self.envelopes.append(seal("/nonexistent/result.json"))
        return RunOutcome(0, DONE.encode())


class TaskInstance:
    dag_id, task_id, run_id, map_index, try_number, max_tries = "unit", "t", "manual__1", -1, 1, 0

    def __init__(self, xcoms):
        self.xcoms = xcoms

    def xcom_push(self, key, value):
        pass

    def xcom_pull(self, task_ids=None, key="return_value"):
        return self.xcoms.get((task_ids, key))


@pytest.fixture
def recipient(tmp_path, monkeypatch):
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    keyset = Keyset.generate_recipient("legacy")
    ring.save_recipient(keyset.public())
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(ring.path))
    return ring, keyset


def run_and_open(recipient, xcoms=None, **kwargs):
    ring, keyset = recipient
    backend = SealOnly()
    with DAG("unit", schedule=None, start_date=dt.datetime(2024, 1, 1)):
        task = IsolatedOperator(task_id="t", operator=PYTHON, environment="legacy", backend=backend, **kwargs)
    task.execute({"ti": TaskInstance(xcoms or {}), "params": {}})
    return open_envelope(backend.envelopes[0], signers=ring.signer().public(), recipient=keyset).payload


def test_pulls_are_strict_unless_the_task_opts_into_airflows_lenient_default(recipient):
    assert run_and_open(recipient, python_callable=pulls_upstream).options.strict_xcom_pull is True
    lenient = run_and_open(recipient, python_callable=pulls_upstream, lenient_xcom_pull=True)
    assert lenient.options.strict_xcom_pull is False


def test_lenient_xcom_pull_configures_the_task_not_the_wrapped_operator():
    with DAG("unit", schedule=None, start_date=dt.datetime(2024, 1, 1)):
        task = IsolatedOperator(task_id="t", operator=PYTHON, environment="legacy", lenient_xcom_pull=True)
        mapped = IsolatedOperator.partial(
            task_id="m", operator=PYTHON, environment="legacy", lenient_xcom_pull=True
        ).expand(op_args=[[1], [2]])
    assert task.lenient_xcom_pull is True and "lenient_xcom_pull" not in task.operator_kwargs
    assert mapped.partial_kwargs["lenient_xcom_pull"] is True
    assert "lenient_xcom_pull" not in mapped.partial_kwargs.get("operator_kwargs", {})


def test_an_xcom_pulled_in_the_callables_source_is_resolved_and_sealed(recipient):
    payload = run_and_open(recipient, {("upstream", "rows"): [1, 2]}, python_callable=pulls_upstream)
    assert [(x.task_id, x.key, x.value) for x in payload.xcom_inputs] == [("upstream", "rows", [1, 2])]
