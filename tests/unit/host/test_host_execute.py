"""IsolatedOperator.execute on the host: the environment check, the result's XComs, versions.

The backend here is scripted (the Backend interface is this project's); sealing, key
lookup, template rendering and connection lookup are Airflow's and this project's real
code. The context's ``ti`` records pushes: the real XCom store needs a metadata DB and
a task supervisor, which the end-to-end suite runs.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from airflow.sdk import DAG

from isolation.backends import Backend, RunOutcome
from isolation.errors import ConfigurationError, IsolatedTaskFailed
from isolation.keyring import HostKeyring
from isolation.operators.isolated import ENVIRONMENT_XCOM, IsolatedOperator
from isolation.transport import Keyset

BASH = "airflow.operators.bash.BashOperator"


def result_doc(**fields):
    base = {"format": "isolation-result/v1", "outcome": "success", "return_value": None, "xcoms": [], "error": None}
    base.update(fields)
    return json.dumps(base).encode()


class ScriptedBackend(Backend):
    """Seals like a real backend, then answers with a fixed result document."""

    name = "scripted"

    def __init__(self, result, built=None):
        self.result = result
        self.built = built
        self.checked = []
        self.envelopes = []

    def check(self, environment):
        self.checked.append(environment)

    def built_versions(self, environment):
        return self.built

    def run(self, environment, seal, on_log):
        self.envelopes.append(seal("/nonexistent/result.json"))
        return RunOutcome(0, self.result)


class RecordingTaskInstance:
    dag_id = "unit"
    task_id = "t"
    run_id = "manual__2024-01-01"
    map_index = -1
    try_number = 1
    max_tries = 0

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key="return_value"):
        return None


@pytest.fixture(autouse=True)
def keyring(tmp_path, monkeypatch):
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    for name in ("legacy", "modern"):
        ring.save_recipient(Keyset.generate_recipient(name))
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(ring.path))
    return ring


def task_log(capsys):
    # Airflow's task logger writes through structlog to standard output here.
    captured = capsys.readouterr()
    return captured.out + captured.err


def run_task(task, params=None):
    ti = RecordingTaskInstance()
    context = {"ti": ti, "params": params or {}}
    task.render_template_fields(context)
    return task.execute(context), ti


def make_task(backend, **kwargs):
    with DAG("unit", schedule=None, start_date=dt.datetime(2024, 1, 1)):
        return IsolatedOperator(task_id="t", operator=BASH, backend=backend, bash_command="true", **kwargs)


def test_xcom_reports_the_built_versions_and_labels_the_claim(capsys):
    claim = {"python": "3.9.1", "airflow": "3.3.0", "name": "legacy"}
    backend = ScriptedBackend(result_doc(return_value=7, environment=claim), built=("3.11.4", "2.11.2"))
    task = make_task(backend, environment="legacy")
    returned, ti = run_task(task)
    assert returned == 7 and len(backend.envelopes) == 1
    assert ti.pushed[ENVIRONMENT_XCOM] == {
        "name": "legacy",
        "backend": "scripted",
        "python": "3.11.4",
        "airflow": "2.11.2",
        "reported": {"python": "3.9.1", "airflow": "3.3.0"},
    }
    log = task_log(capsys)
    assert "finished in environment 'legacy' (built with Python 3.11.4, Airflow 2.11.2)" in log
    warnings = [line for line in log.splitlines() if "[warning" in line]
    assert any("reports Python 3.9.1 but was built with Python 3.11.4" in w for w in warnings)
    assert any("reports Airflow 3.3.0 but was built with Airflow 2.11.2" in w for w in warnings)


def test_matching_claim_logs_no_version_warning(capsys):
    claim = {"python": "3.11.4", "airflow": "2.11.2", "name": "legacy"}
    backend = ScriptedBackend(result_doc(environment=claim), built=("3.11.4", "2.11.2"))
    run_task(make_task(backend, environment="legacy"))
    log = task_log(capsys)
    assert "built with Python 3.11.4, Airflow 2.11.2" in log and " reports " not in log


def test_versions_unknown_to_the_backend_are_not_taken_from_the_claim(capsys):
    claim = {"python": "3.9.1", "airflow": "3.3.0", "name": "legacy"}
    backend = ScriptedBackend(result_doc(environment=claim), built=None)
    _, ti = run_task(make_task(backend, environment="legacy"))
    where = ti.pushed[ENVIRONMENT_XCOM]
    assert where["python"] is None and where["airflow"] is None
    assert where["reported"] == {"python": "3.9.1", "airflow": "3.3.0"}
    assert "versions unknown to backend scripted; the environment reports Python 3.9.1" in task_log(capsys)


def test_result_pushing_the_environment_xcom_is_refused():
    spoof = {"name": "legacy", "backend": "local", "python": "3.13.0", "airflow": "3.3.2"}
    backend = ScriptedBackend(result_doc(xcoms=[{"key": ENVIRONMENT_XCOM, "value": spoof}]), built=("3.11.4", None))
    with pytest.raises(IsolatedTaskFailed, match="reserved XCom key 'isolation_environment'"):
        run_task(make_task(backend, environment="legacy"))


def test_overflowing_number_fails_before_any_xcom_is_pushed():
    data = b'{"format": "isolation-result/v1", "outcome": "success", "xcoms": [{"key": "n", "value": 1e999}]}'
    backend = ScriptedBackend(data)
    task = make_task(backend, environment="legacy")
    ti = RecordingTaskInstance()
    with pytest.raises(IsolatedTaskFailed, match="non-finite number in XCom 'n'"):
        task.execute({"ti": ti, "params": {}})
    assert ti.pushed == {}


def templated_task(backend, **kwargs):
    return make_task(
        backend,
        environment="{{ params.env }}",
        allowed_environments=["legacy", "modern"],
        connections=["absent_conn"],
        **kwargs,
    )


def test_rendered_environment_outside_the_allowed_ones_is_refused_before_resolution():
    backend = ScriptedBackend(result_doc())
    # The connection does not exist: resolving it would fail with another error.
    with pytest.raises(ConfigurationError, match="environment 'elsewhere' is not one of this task's") as info:
        run_task(templated_task(backend), {"env": "elsewhere"})
    assert "legacy, modern" in str(info.value)
    assert backend.checked == [] and backend.envelopes == []


def test_rendered_environment_inside_the_allowed_ones_runs():
    backend = ScriptedBackend(result_doc(return_value="ran"), built=("3.12.1", "3.3.2"))
    # Proof that the refusal above came first: here the same task resolves its connection.
    with pytest.raises(ConfigurationError, match=r"connection 'absent_conn' .* does not exist"):
        run_task(templated_task(backend), {"env": "modern"})
    assert backend.checked == ["modern"]
    task = make_task(backend, environment="{{ params.env }}", allowed_environments=["legacy", "modern"])
    returned, ti = run_task(task, {"env": "modern"})
    assert returned == "ran" and task.environment == "modern"
    assert ti.pushed[ENVIRONMENT_XCOM]["name"] == "modern"


def test_rendered_name_must_still_be_a_valid_name():
    backend = ScriptedBackend(result_doc())
    task = make_task(backend, environment="{{ params.env }}", allowed_environments=["legacy"])
    with pytest.raises(ConfigurationError, match=r"invalid environment name '\.\./legacy'"):
        run_task(task, {"env": "../legacy"})
    assert backend.checked == []


def test_mapped_environment_is_checked_against_allowed_environments():
    backend = ScriptedBackend(result_doc(return_value=1), built=("3.12.1", "3.3.2"))
    with DAG("unit", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        upstream = IsolatedOperator(task_id="up", operator=BASH, environment="legacy")
        mapped = IsolatedOperator.partial(
            task_id="t", operator=BASH, backend=backend, allowed_environments=["legacy"]
        ).expand(environment=upstream.output)
    assert dag.task_dict["t"] is mapped
    task = mapped.unmap({"environment": "modern"})
    with pytest.raises(ConfigurationError, match="'modern' is not one of this task's allowed_environments"):
        run_task(task)
    assert backend.checked == []
    returned, _ = run_task(mapped.unmap({"environment": "legacy"}))
    assert returned == 1
