"""The Kubernetes backend end to end on the host: the pod contract and the pod's lifecycle.

There is no Kubernetes API server on these machines: ``FakeKubernetesApi``
(tests/unit/host/kubernetes_api.py) stands in for it, and for nothing else. The provider's
KubernetesPodOperator builds the pod with its own ``build_pod_request_obj``, creates it,
waits for it, reads its logs and its ``return.json`` through its own PodManager; the stand-in
runs each pod's container for real (``python -m isolation.runtime`` opening the real
envelope with the keys from the keys Secret that ``isolationctl keys export --format
k8s-secret`` produces). The same pod, with real containers, runs in tests/podman.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time

import kubernetes_callables
import pytest
import yaml
from airflow.sdk import DAG
from kubernetes_support import IMAGE, NAMESPACE, assert_no_secret, make_context, stand_in

from isolation.backends.kubernetes import KEYS_DIR, RUNTIME_COMMAND, KubernetesBackend
from isolation.errors import IsolatedTaskFailed
from isolation.example_dags.callables import skip_when_nothing_to_do
from isolation.operators.isolated import IsolatedOperator

PYTHON_OP = "airflow.providers.standard.operators.python.PythonOperator"
BASH = "airflow.operators.bash.BashOperator"


@pytest.fixture
def kube(tmp_path, monkeypatch):
    yield from stand_in(tmp_path, monkeypatch)


def isolated(backend, *, task_id="t", **kwargs):
    with DAG("kube", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        task = IsolatedOperator(task_id=task_id, environment="legacy", backend=backend, **kwargs)
    return dag, task


def bash_with_secrets(backend):
    # The isolated task uses the connection and the variable, and prints the token: the
    # host's masker must hide it in this task's log.
    return isolated(
        backend,
        operator=BASH,
        bash_command='test "{{ conn.warehouse.password }}" = pw-SECRET-a1b2 && '
        'echo "token {{ var.value.api_token }}" && echo finished',
    )


def run(task, dag, **context_fields):
    context = make_context(dag, task, **context_fields)
    task.render_template_fields(context)
    return task.execute(context), context["ti"]


def test_pod_contract_holds_no_secret_and_the_task_runs(kube, capsys):
    backend = KubernetesBackend(namespace=NAMESPACE, labels={"team": "data"})
    dag, task = bash_with_secrets(backend)
    returned, ti = run(task, dag)
    assert returned == "finished"

    [pod] = kube.created_pods
    [secret] = kube.created_secrets
    # The serialized pod and the Secret's metadata hold none of the task's secrets.
    assert_no_secret(yaml.safe_dump(pod), "the pod spec")
    assert_no_secret(json.dumps(secret["metadata"]), "the per-task Secret's metadata")
    # The Secret carries the envelope's canonical base64url text, and only ciphertext.
    text = base64.b64decode(secret["data"]["envelope"]).decode()
    assert text.startswith("SVNPTAE") and re.fullmatch(r"[A-Za-z0-9_-]+", text)
    assert_no_secret(text, "the envelope text")
    assert secret["immutable"] is True and list(secret["data"]) == ["envelope"]

    spec = pod["spec"]
    base = next(c for c in spec["containers"] if c["name"] == "base")
    assert base["image"] == IMAGE
    assert base["command"] == list(RUNTIME_COMMAND) and not base.get("args")
    mounts = {m["mountPath"]: m for m in base["volumeMounts"]}
    assert mounts[KEYS_DIR]["readOnly"] is True
    assert mounts["/var/run/isolation/envelope"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts[KEYS_DIR]["name"]]["secret"] == {
        "secretName": "isolation-keys-legacy",
        "optional": False,
        "defaultMode": 0o440,
    }
    envelope_volume = volumes[mounts["/var/run/isolation/envelope"]["name"]]["secret"]
    assert envelope_volume["secretName"] == secret["metadata"]["name"] and envelope_volume["optional"] is False
    # Least authority.
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 50000
    sc = base["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["privileged"] is False
    # The task instance's labels (identity binding reads them back through the downward API).
    labels = pod["metadata"]["labels"]
    assert {k: labels[k] for k in ("dag_id", "task_id", "run_id", "try_number", "team")} == {
        "dag_id": "kube",
        "task_id": "t",
        "run_id": "manual__2024-01-01",
        "try_number": "1",
        "team": "data",
    }
    env = {e["name"]: e for e in base["env"]}
    assert env["ISOLATION_POD_DAG_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['dag_id']"
    assert "ISOLATION_ENVELOPE" not in env
    # Owned by the pod (garbage-collected with it), and deleted by the host at the end.
    assert kube.owner_of[secret["metadata"]["name"]] == pod["metadata"]["uid"]
    assert kube.secrets_left() == ["isolation-keys-legacy"]
    # The log streamed through the host's masker; the XComs are the wrapped operator's own.
    log = capsys.readouterr()
    assert "token ***" in log.out + log.err
    assert_no_secret(log.out + log.err, "the task log")
    assert set(ti.pushed) == {"isolation_environment"}
    # The rendered-templates view and the serialized DAG hold none of them either.
    assert_no_secret(json.dumps({f: str(getattr(task, f)) for f in task.template_fields}), "rendered fields")
    from airflow.serialization.serialized_objects import DagSerialization

    assert_no_secret(json.dumps(DagSerialization.to_dict(dag), default=str), "the serialized DAG")


def test_result_and_xcoms_arrive_under_the_wrapped_operators_keys(kube):
    dag, task = isolated(
        KubernetesBackend(namespace=NAMESPACE), operator=PYTHON_OP, python_callable=kubernetes_callables.push_and_return
    )
    returned, ti = run(task, dag)
    assert returned == {"status": "ok"}
    assert ti.pushed["rows"] == 3
    assert "pod_name" not in ti.pushed and "return_value" not in ti.pushed
    assert kube.secrets_left() == ["isolation-keys-legacy"]


def test_skip_comes_back_through_skip_on_exit_code(kube):
    from airflow.sdk.exceptions import AirflowSkipException

    dag, task = isolated(
        KubernetesBackend(namespace=NAMESPACE), operator=PYTHON_OP, python_callable=skip_when_nothing_to_do
    )
    with pytest.raises(AirflowSkipException, match="nothing to do today"):
        run(task, dag)
    assert len(kube.created_pods) == 1
    assert kube.secrets_left() == ["isolation-keys-legacy"]


def test_failure_carries_the_isolated_error_and_removes_the_secret(kube):
    dag, task = isolated(
        KubernetesBackend(namespace=NAMESPACE), operator=PYTHON_OP, python_callable=kubernetes_callables.fail_loudly
    )
    with pytest.raises(IsolatedTaskFailed, match="ValueError: the isolated task broke on purpose") as info:
        run(task, dag)
    assert_no_secret(info.value.diagnostics(), "the failure message")
    assert kube.secrets_left() == ["isolation-keys-legacy"]
    assert "delete_secret" in kube.calls


def test_env_transport_puts_only_ciphertext_in_the_pod_and_creates_no_secret(kube):
    dag, task = bash_with_secrets(KubernetesBackend(namespace=NAMESPACE, transport="env"))
    returned, _ = run(task, dag)
    assert returned == "finished"
    [pod] = kube.created_pods
    assert kube.created_secrets == []
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert env["ISOLATION_ENVELOPE"].startswith("SVNPTAE")
    assert_no_secret(yaml.safe_dump(pod), "the pod spec")


def test_mapped_task_gets_one_pod_and_one_secret_per_index_each_bound_to_it(kube):
    backend = KubernetesBackend(namespace=NAMESPACE)
    for index in range(3):
        dag, task = bash_with_secrets(backend)
        returned, _ = run(task, dag, map_index=index)
        assert returned == "finished"
    assert len(kube.created_pods) == 3 and len(kube.created_secrets) == 3
    assert [p["metadata"]["labels"]["map_index"] for p in kube.created_pods] == ["0", "1", "2"]
    assert len({s["metadata"]["name"] for s in kube.created_secrets}) == 3
    assert kube.secrets_left() == ["isolation-keys-legacy"]


def test_a_pod_given_another_tasks_envelope_refuses_it(kube):
    from isolation.errors import IsolatedTaskRejected

    kube.relabel = {"task_id": "someone-else"}  # the pod's labels name another task
    dag, task = bash_with_secrets(KubernetesBackend(namespace=NAMESPACE))
    with pytest.raises(IsolatedTaskRejected, match=r"wrong-subject.*task_id label differs"):
        run(task, dag)
    assert kube.secrets_left() == ["isolation-keys-legacy"]


def test_kill_deletes_the_pod_and_the_secret(kube):
    dag, task = isolated(
        KubernetesBackend(namespace=NAMESPACE), operator=PYTHON_OP, python_callable=kubernetes_callables.sleep_long
    )
    context = make_context(dag, task)
    task.render_template_fields(context)
    outcome: list[BaseException | None] = []

    def target():
        try:
            task.execute(context)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not kube.containers and time.monotonic() < deadline:
        time.sleep(0.05)
    [container] = kube.containers.values()
    started = time.monotonic()
    task.on_kill()
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - started < 20
    assert container.proc.poll() is not None  # the pod's process is gone
    assert kube.pods == {} and kube.secrets_left() == ["isolation-keys-legacy"]
    assert outcome and outcome[0] is not None


def test_readme_network_policy_selects_isolated_pods_and_allows_only_dns(kube):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    policy = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    assert policy["kind"] == "NetworkPolicy" and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["ingress"] == []
    [rule] = policy["spec"]["egress"]
    assert {p["port"] for p in rule["ports"]} == {53} and all("ipBlock" not in to for to in rule["to"])
    # It selects the pods the backend makes.
    dag, task = isolated(KubernetesBackend(namespace=NAMESPACE), operator=BASH, bash_command="true")
    run(task, dag)
    labels = kube.created_pods[0]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
