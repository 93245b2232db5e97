"""Shared set-up of the Kubernetes backend tests: keys, known secrets, the API stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_api import FakeKubernetesApi, FakeStream

from isolation.keyring import EnvironmentKeys, HostKeyring
from isolation.transport import Keyset

NAMESPACE = "jobs"
IMAGE = "registry.example/isolation-legacy:0123456789abcdef"
PASSWORD = "pw-SECRET-a1b2"
LOGIN = "etl-LOGIN-e5f6"
TOKEN = "tok-SECRET-c3d4"
KNOWN_SECRETS = [PASSWORD, LOGIN, TOKEN]


class RecordingTaskInstance:
    def __init__(self, dag_id: str, task_id: str, map_index: int = -1) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = "manual__2024-01-01"
        self.map_index = map_index
        self.try_number = 1
        self.max_tries = 0
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value") -> Any:
        return None


def make_context(dag: Any, task: Any, map_index: int = -1) -> dict[str, Any]:
    ti = RecordingTaskInstance(dag.dag_id, task.task_id, map_index)
    return {"ti": ti, "params": {}, "run_id": ti.run_id, "dag": dag, "task": task}


def bash_task(command: str, environment: str = "legacy") -> tuple[Any, dict[str, Any]]:
    """A one-task DAG: a BashOperator isolated on the Kubernetes backend; the task and its context."""
    import datetime as dt

    from airflow.sdk import DAG

    from isolation.backends.kubernetes import KubernetesBackend
    from isolation.operators.isolated import IsolatedOperator

    with DAG("kube", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        task = IsolatedOperator(
            task_id="t",
            operator="airflow.operators.bash.BashOperator",
            environment=environment,
            backend=KubernetesBackend(namespace=NAMESPACE),
            bash_command=command,
        )
    return task, make_context(dag, task)


def assert_no_secret(text: str, where: str) -> None:
    for value in [*KNOWN_SECRETS, *_KEY_MATERIAL]:
        assert value not in text, f"{where} holds a secret"


_KEY_MATERIAL: list[str] = []


def _private_parts(keyset: Keyset) -> list[str]:
    doc = json.loads(keyset.to_json())
    return [key["private"] for key in doc["keys"] if key.get("private")]


def stand_in(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    environments: tuple[str, ...] = ("legacy",),
    images: dict[str, str] | None = None,
    kubelet: Any = None,
) -> Iterator[FakeKubernetesApi]:
    """The API stand-in wired into the provider's hook, with the keys Secret of each environment."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.cncf.kubernetes.utils import pod_manager

    from isolationctl._keystore import KeyStore
    from isolationctl.keys import _k8s_secret

    ring = HostKeyring.open(tmp_path / "keyring")
    signer = ring.init()
    home = tmp_path / "envs"
    _KEY_MATERIAL[:] = _private_parts(signer)
    for name in environments:
        recipient = Keyset.generate_recipient(name)
        ring.save_recipient(recipient)
        EnvironmentKeys.provision(home / name / "keys", recipient, signer)
        _KEY_MATERIAL.extend(_private_parts(recipient))
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(ring.path))
    monkeypatch.setenv("AIRFLOW__ISOLATION__KUBERNETES_IMAGES", json.dumps(images or {"legacy": IMAGE}))
    conn = {"conn_type": "postgres", "host": "db.internal", "login": LOGIN, "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", TOKEN)

    api = FakeKubernetesApi(tmp_path / "kubelet", kubelet=kubelet)
    # The keys Secrets exactly as `isolationctl keys export --format k8s-secret` writes them.
    for name in environments:
        manifest = json.loads(_k8s_secret(KeyStore(ring, home), name, NAMESPACE, f"isolation-keys-{name}"))
        api.create_namespaced_secret(NAMESPACE, manifest)
    api.created_secrets.clear()
    api.calls.clear()
    # Only the API server is replaced: the hook's client is the stand-in.
    monkeypatch.setattr(KubernetesHook, "core_v1_client", property(lambda self: api))
    monkeypatch.setattr(KubernetesHook, "is_in_cluster", property(lambda self: False))
    monkeypatch.setattr(pod_manager, "kubernetes_stream", FakeStream(api))
    yield api
    for container in api.containers.values():
        container.kill()
