"""``KubernetesBackend(deferrable=True)``: the task defers, the real trigger runs, the task resumes.

What is stood in, and only that: the Kubernetes API server. The synchronous calls of
KubernetesPodOperator go to ``FakeKubernetesApi`` (tests/unit/host/kubernetes_api.py), which
runs each pod's container for real (``python -m isolation.runtime`` opening the real
envelope). The provider's own ``KubernetesPodTrigger`` runs here, its ``run()`` generator to
its first event in ``asyncio.run`` as a triggerer does, through the provider's
``AsyncKubernetesHook`` and a real ``kubernetes_asyncio`` ApiClient: ``AsyncCoreV1Api``
answers its CoreV1Api calls (``read_namespaced_pod``, ``list_namespaced_event`` and its
watch, ``read_namespaced_pod_log``, ``delete_namespaced_pod``) from the same stand-in's
pods, and the hook's kubeconfig loading is skipped (there is no cluster to point at).

What Airflow stores during the deferral (the trigger's kwargs and the deferral's kwargs)
goes through Airflow's own ``serde``, as the task runner sends them; the task resumes through
``BaseOperator.resume_execution``, the task runner's entry point, with the next kwargs the
API server hands back (the stored ones plus ``event``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from typing import Any

import kubernetes_callables
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred
from kubernetes_api import stand_in_async
from kubernetes_support import NAMESPACE, assert_no_secret, make_context, stand_in

from isolation.backends.kubernetes import KubernetesBackend
from isolation.errors import ConfigurationError, IsolatedTaskFailed
from isolation.example_dags.callables import skip_when_nothing_to_do
from isolation.operators.isolated import IsolatedOperator

PYTHON_OP = "airflow.providers.standard.operators.python.PythonOperator"
BASH = "airflow.operators.bash.BashOperator"
KEYS_ONLY = ["isolation-keys-legacy"]
DEADLINE = 120  # seconds: a hang (apache/airflow#37298) fails the test instead of the run


@pytest.fixture
def kube(tmp_path, monkeypatch):
    for api in stand_in(tmp_path, monkeypatch):
        stand_in_async(api, monkeypatch)
        yield api


def backend(**options: Any) -> KubernetesBackend:
    options.setdefault("startup_check_interval_seconds", 0.2)
    return KubernetesBackend(namespace=NAMESPACE, deferrable=True, poll_interval=0.2, **options)


def isolated(pod_backend: KubernetesBackend, **kwargs: Any) -> tuple[Any, IsolatedOperator]:
    with DAG("kube", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        task = IsolatedOperator(task_id="t", environment="legacy", backend=pod_backend, **kwargs)
    return dag, task


class Deferral:
    """One deferral as Airflow handles it: what it stores, the trigger's event, the resumed outcome."""

    def __init__(self, task: IsolatedOperator, context: dict[str, Any]) -> None:
        from airflow.sdk.serde import serialize

        with pytest.raises(TaskDeferred) as caught:
            task.execute(context)
        self.deferred = caught.value
        classpath, trigger_kwargs = self.deferred.trigger.serialize()
        self.classpath = classpath
        # What the task runner sends to be stored in the metadata database.
        self.stored_trigger_kwargs = serialize(trigger_kwargs)
        self.stored_next_kwargs = serialize(self.deferred.kwargs or {})

    def stored_text(self) -> str:
        return json.dumps([self.classpath, self.stored_trigger_kwargs, self.stored_next_kwargs], default=str)

    def fire(self) -> dict[str, Any]:
        """The triggerer: the trigger rebuilt from what was stored, run to its first event."""
        from airflow.sdk._shared.module_loading import import_string
        from airflow.sdk.serde import deserialize

        trigger = import_string(self.classpath)(**deserialize(self.stored_trigger_kwargs))

        async def first_event() -> Any:
            return await asyncio.wait_for(anext(trigger.run()), DEADLINE)

        event = asyncio.run(first_event())
        self.event: dict[str, Any] = event.payload
        return self.event

    def resume(self, task: IsolatedOperator, context: dict[str, Any], event: dict[str, Any]) -> Any:
        """The API server adds ``event`` to the stored kwargs; the task runner calls ``resume_execution``."""
        from airflow.sdk.serde import deserialize, serialize

        next_kwargs = deserialize(serialize({**deserialize(self.stored_next_kwargs), "event": event}))
        return task.resume_execution(self.deferred.method_name, next_kwargs, context)


def defer_fire_resume(task: IsolatedOperator, dag: Any, map_index: int = -1) -> tuple[Any, Any, Deferral]:
    """The whole deferral in a thread under a deadline; (returned value or exception, ti, deferral)."""
    context = make_context(dag, task, map_index)
    task.render_template_fields(context)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            deferral = box["deferral"] = Deferral(task, context)
            box["event"] = deferral.fire()
            box["value"] = deferral.resume(task, context, box["event"])
        except BaseException as exc:
            box["value"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), "the deferred task did not finish (apache/airflow#37298)"
    return box["value"], context["ti"], box["deferral"]


def test_deferrable_task_defers_resumes_and_its_xcoms_arrive(kube, capsys):
    dag, task = isolated(backend(), operator=PYTHON_OP, python_callable=kubernetes_callables.push_and_return)
    returned, ti, deferral = defer_fire_resume(task, dag)
    assert returned == {"status": "ok"}
    assert ti.pushed["rows"] == 3 and "isolation_environment" in ti.pushed
    assert "pod_name" not in ti.pushed and "return_value" not in ti.pushed
    # The real trigger watched the pod; the task resumed in the IsolatedOperator's own method.
    assert deferral.deferred.method_name == "resume_isolated"
    assert deferral.classpath.endswith("KubernetesPodTrigger") and "async_read_pod" in kube.calls
    assert kube.pods == {} and kube.secrets_left() == KEYS_ONLY


def test_during_deferral_only_names_are_stored_and_the_pod_owns_its_secret(kube, capsys):
    dag, task = isolated(
        backend(),
        operator=BASH,
        bash_command='test "{{ conn.warehouse.password }}" = pw-SECRET-a1b2 && '
        'echo "token {{ var.value.api_token }}" && echo finished',
    )
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    # The trigger's kwargs and the deferral's kwargs hold no connection field, variable
    # value or key material: Airflow keeps them in its database until the task resumes.
    assert_no_secret(deferral.stored_text(), "what Airflow stores during the deferral")
    [pod] = kube.created_pods
    [secret] = kube.created_secrets
    state = deferral.deferred.kwargs["isolation_resume"]
    assert state == {
        "environment": "legacy",
        "secret": secret["metadata"]["name"],
        "namespace": NAMESPACE,
        "pod": pod["metadata"]["name"],
        "method": "trigger_reentry",
        "method_kwargs": {},
    }
    # The pod still needs the Secret, and it goes with the pod whatever becomes of the task.
    assert kube.secrets_left() == sorted([*KEYS_ONLY, secret["metadata"]["name"]])
    assert kube.owner_of[secret["metadata"]["name"]] == pod["metadata"]["uid"]

    returned = deferral.resume(task, context, deferral.fire())
    assert returned == "finished"
    # The log lines read after the resume went through the rebuilt masker.
    log = capsys.readouterr()
    assert "token ***" in log.out + log.err
    assert_no_secret(log.out + log.err, "the task log")
    assert kube.secrets_left() == KEYS_ONLY


def test_deferrable_skip_comes_back_through_skip_on_exit_code(kube):
    dag, task = isolated(backend(), operator=PYTHON_OP, python_callable=skip_when_nothing_to_do)
    outcome, _, _ = defer_fire_resume(task, dag)
    assert isinstance(outcome, AirflowSkipException) and "nothing to do today" in str(outcome)
    assert kube.secrets_left() == KEYS_ONLY


def test_deferrable_failure_with_the_sidecar_finishes_with_the_isolated_error(kube, capsys):
    # apache/airflow#37298: a failed deferrable pod with do_xcom_push must not hang.
    dag, task = isolated(backend(), operator=PYTHON_OP, python_callable=kubernetes_callables.fail_loudly)
    outcome, _, deferral = defer_fire_resume(task, dag)
    assert deferral.event["status"] == "failed"  # the trigger saw the base container fail, sidecar still up
    assert isinstance(outcome, IsolatedTaskFailed)
    assert "ValueError: the isolated task broke on purpose" in str(outcome)
    assert_no_secret(outcome.diagnostics(), "the failure message")
    log = capsys.readouterr()
    assert "ValueError: the isolated task broke on purpose" in log.out + log.err
    assert kube.pods == {} and kube.secrets_left() == KEYS_ONLY


@pytest.mark.parametrize(
    ("start", "status"),
    [("unschedulable", "timeout"), ("image-pull-error", "error")],
)
def test_a_pod_that_never_starts_gives_one_clear_failure_and_no_secret(kube, start, status):
    kube.start = start
    dag, task = isolated(
        backend(startup_timeout_seconds=1, schedule_timeout_seconds=1),
        operator=BASH,
        bash_command="true",
    )
    outcome, _, deferral = defer_fire_resume(task, dag)
    assert deferral.event["status"] == status
    assert isinstance(outcome, IsolatedTaskFailed), outcome
    assert f"KubernetesPodTrigger reported {status}" in str(outcome)
    assert "image_pull_secrets" in outcome.diagnostics()  # what to check
    assert kube.secrets_left() == KEYS_ONLY


def test_the_tasks_execution_timeout_reaches_the_trigger_and_ends_as_one_clear_failure(kube):
    dag, task = isolated(
        backend(), operator=BASH, bash_command="sleep 4 && echo late", execution_timeout=dt.timedelta(seconds=1)
    )
    context = make_context(dag, task)
    context["ti"].start_date = dt.datetime.now(dt.timezone.utc)  # what Airflow's task instance has
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    assert "_execution_deadline" in deferral.deferred.trigger.trigger_kwargs
    assert deferral.deferred.timeout is not None  # KPO's own padding past the deadline
    event = deferral.fire()
    assert event["status"] == "timeout"
    with pytest.raises(IsolatedTaskFailed, match="KubernetesPodTrigger reported timeout") as info:
        deferral.resume(task, context, event)
    assert "execution_timeout" in str(info.value)
    assert kube.pods == {} and kube.secrets_left() == KEYS_ONLY


def test_a_connection_gone_while_deferred_fails_the_resume_and_still_removes_pod_and_secret(kube, monkeypatch, capsys):
    dag, task = isolated(backend(), operator=BASH, bash_command='echo "{{ conn.warehouse.password }}" && echo finished')
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    event = deferral.fire()
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE")  # the masker cannot be rebuilt
    with pytest.raises(ConfigurationError, match="connection 'warehouse'"):
        deferral.resume(task, context, event)
    log = capsys.readouterr()
    assert_no_secret(log.out + log.err, "the task log")
    assert kube.pods == {} and kube.secrets_left() == KEYS_ONLY


def test_mapped_deferrable_task_gets_one_pod_and_one_secret_per_index(kube):
    pod_backend = backend()
    for index in range(3):
        dag, task = isolated(pod_backend, operator=BASH, bash_command="echo index-{{ ti.map_index }}")
        returned, _, _ = defer_fire_resume(task, dag, map_index=index)
        assert returned == f"index-{index}"
    assert [p["metadata"]["labels"]["map_index"] for p in kube.created_pods] == ["0", "1", "2"]
    assert len({s["metadata"]["name"] for s in kube.created_secrets}) == 3
    assert kube.secrets_left() == KEYS_ONLY


def test_killing_the_trigger_of_a_deferred_task_deletes_the_pod_and_its_secret(kube):
    # Airflow 3.3's triggerer calls the trigger's on_kill when a deferred task is marked or cleared.
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk.serde import deserialize

    dag, task = isolated(backend(), operator=PYTHON_OP, python_callable=kubernetes_callables.sleep_long)
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    assert len(kube.secrets_left()) == 2
    trigger = import_string(deferral.classpath)(**deserialize(deferral.stored_trigger_kwargs))
    asyncio.run(trigger.on_kill())
    assert kube.pods == {} and kube.secrets_left() == KEYS_ONLY


def test_a_resume_with_another_environments_state_is_refused(kube):
    dag, task = isolated(backend(), operator=BASH, bash_command="true")
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    event = deferral.fire()
    state = {**deferral.deferred.kwargs["isolation_resume"], "environment": "other"}
    with pytest.raises(IsolatedTaskFailed, match="ran in environment 'other'"):
        task.resume_execution("resume_isolated", {"isolation_resume": state, "event": event}, context)
    # The state it deferred with still resumes it, and cleans up.
    deferral.resume(task, context, event)
    assert set(context["ti"].pushed) == {"isolation_environment"}
    assert kube.secrets_left() == KEYS_ONLY


def test_a_resume_with_the_event_alone_uses_the_names_the_trigger_echoed(kube):
    # What dag.test() does: next_kwargs become {"event": ...}, the deferral's kwargs are dropped.
    dag, task = isolated(backend(), operator=PYTHON_OP, python_callable=kubernetes_callables.push_and_return)
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    event = deferral.fire()
    assert event["isolation_resume"] == {"environment": "legacy", "secret": kube.created_secrets[0]["metadata"]["name"]}
    assert task.resume_execution("resume_isolated", {"event": event}, context) == {"status": "ok"}
    assert context["ti"].pushed["rows"] == 3
    assert kube.secrets_left() == KEYS_ONLY


def test_logging_interval_is_refused_with_deferrable():
    with pytest.raises(ConfigurationError, match="logging_interval") as info:
        KubernetesBackend(deferrable=True, logging_interval=30)
    assert "masker" in info.value.diagnostics()


def test_kpo_stores_a_config_files_content_with_the_trigger(kube, tmp_path):
    # Not the task's secrets but the cluster's: KPO hands the kubeconfig's content to its
    # trigger, so Airflow stores it during the deferral (docs/howto-kubernetes.md says so).
    token = "kubeconfig-TOKEN-9e8d"
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps({"apiVersion": "v1", "kind": "Config", "users": [{"name": "u", "user": {"token": token}}]})
    )
    dag, task = isolated(backend(config_file=str(config)), operator=BASH, bash_command="true")
    context = make_context(dag, task)
    task.render_template_fields(context)
    deferral = Deferral(task, context)
    assert token in deferral.stored_text()
    assert_no_secret(deferral.stored_text(), "what Airflow stores during the deferral")
    deferral.resume(task, context, deferral.fire())
    assert kube.secrets_left() == KEYS_ONLY


_DAG_TEST = """
import datetime as dt, json, sys
from pathlib import Path

import kubernetes_callables
from airflow.sdk import DAG
from isolation.backends.kubernetes import KubernetesBackend
from isolation.operators.isolated import IsolatedOperator
from kubernetes_support import NAMESPACE

pods = KubernetesBackend(namespace=NAMESPACE, deferrable=True, poll_interval=0.2, startup_check_interval_seconds=0.2)
with DAG("kube_deferrable", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    IsolatedOperator(
        task_id="t",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="legacy",
        backend=pods,
        python_callable=kubernetes_callables.push_and_return,
    )

if __name__ == "__main__":
    import pytest
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from kubernetes_api import stand_in_async
    from kubernetes_support import stand_in

    patch = pytest.MonkeyPatch()
    api = next(stand_in(Path(sys.argv[1]), patch))
    stand_in_async(api, patch)
    resumed = []
    resume = IsolatedOperator.resume_isolated

    def recording(self, context, event=None, **deferred):
        resumed.append(sorted(deferred))
        return resume(self, context, event=event, **deferred)

    patch.setattr(IsolatedOperator, "resume_isolated", recording)
    run = dag.test()
    with create_session() as session:
        [ti] = run.get_task_instances(session=session)
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, map_indexes=None))
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
        state = str(getattr(ti.state, "value", ti.state))
    found = {"state": state, "xcoms": xcoms, "secrets": api.secrets_left(), "calls": api.calls, "resumed": resumed}
    print("RESULT " + json.dumps(found))
"""


def test_dag_test_defers_runs_the_trigger_inline_and_resumes(tmp_path):
    # Airflow 3's dag.test() runs the trigger in line and resumes the task with the event
    # alone (it drops the deferral's kwargs): the names come back in the trigger's event.
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "PYTHONPATH": os.pathsep.join([str(here), str(here.parents[2])]),
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    script = tmp_path / "dags" / "kube_deferrable.py"
    script.parent.mkdir()
    script.write_text(_DAG_TEST)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE * 2,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert "running trigger in line" in done.stdout + done.stderr  # it did defer
    assert "async_read_pod" in result["calls"] and len(result["resumed"]) == 1
    assert result["state"] == "success"
    assert result["xcoms"]["rows"] == 3 and result["xcoms"]["return_value"] == {"status": "ok"}
    assert "pod_name" not in result["xcoms"]
    assert result["secrets"] == KEYS_ONLY
