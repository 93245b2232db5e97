"""The Kubernetes backend's bad input: one clear failure each, with the fix, and no Secret left.

The Kubernetes API server is stood in for by ``FakeKubernetesApi`` (see
tests/unit/host/kubernetes_api.py); everything else is the real provider and runtime.
"""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk import DAG
from kubernetes_support import NAMESPACE, assert_no_secret, make_context, stand_in

from isolation.backends.kubernetes import KubernetesBackend
from isolation.errors import ConfigurationError, IsolatedTaskFailed
from isolation.operators.isolated import IsolatedOperator

BASH = "airflow.operators.bash.BashOperator"


@pytest.fixture
def kube(tmp_path, monkeypatch):
    yield from stand_in(tmp_path, monkeypatch)


def run(backend, environment="legacy", command='echo "{{ var.value.api_token }}"'):
    with DAG("kube", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
        task = IsolatedOperator(
            task_id="t", operator=BASH, environment=environment, backend=backend, bash_command=command
        )
    context = make_context(dag, task)
    task.render_template_fields(context)
    return task.execute(context)


def assert_nothing_left(kube):
    assert kube.secrets_left() == ["isolation-keys-legacy"]


def test_environment_without_a_deployed_image_fails_before_anything_is_created(kube, monkeypatch):
    monkeypatch.delenv("AIRFLOW__ISOLATION__KUBERNETES_IMAGES")
    with pytest.raises(ConfigurationError, match="environment 'legacy' has no deployed Kubernetes image") as info:
        run(KubernetesBackend(namespace=NAMESPACE))
    assert "isolationctl deploy -e legacy --registry" in info.value.hint
    assert kube.calls == [] and kube.created_pods == []


def test_envelope_too_large_for_the_env_transport_names_the_one_that_fits(kube, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", "x" * 120_000)
    with pytest.raises(ConfigurationError, match="more than the env transport's limit of 98304") as info:
        run(KubernetesBackend(namespace=NAMESPACE, transport="env"))
    assert "transport='secret'" in info.value.hint
    assert kube.calls == [] and kube.created_pods == []


def test_missing_keys_secret_says_how_to_create_it(kube):
    kube.delete_namespaced_secret("isolation-keys-legacy", NAMESPACE)
    with pytest.raises(ConfigurationError, match=r"keys Secret 'isolation-keys-legacy'.*does not exist") as info:
        run(KubernetesBackend(namespace=NAMESPACE))
    assert "isolationctl keys export --format k8s-secret -e legacy --namespace jobs | kubectl apply -f -" in (
        info.value.hint
    )
    assert kube.created_secrets == [] and kube.created_pods == []


@pytest.mark.parametrize("start", ["image-pull-error", "unschedulable"])
def test_pod_that_never_starts_fails_with_what_to_check_and_removes_its_secret(kube, start):
    kube.start = start
    backend = KubernetesBackend(
        namespace=NAMESPACE, startup_timeout_seconds=1, schedule_timeout_seconds=1, startup_check_interval_seconds=1
    )
    with pytest.raises(IsolatedTaskFailed, match="the pod of the isolated task never started") as info:
        run(backend)
    assert "image_pull_secrets" in info.value.hint
    assert len(kube.created_secrets) == 1 and kube.pods == {}
    assert_nothing_left(kube)
    assert_no_secret(info.value.diagnostics(), "the failure")


def test_unknown_kubernetes_connection_is_named(kube):
    with pytest.raises(ConfigurationError, match="Kubernetes connection 'no_such_cluster' does not exist"):
        run(KubernetesBackend(namespace=NAMESPACE, kubernetes_conn_id="no_such_cluster"))
    assert kube.created_secrets == [] and kube.created_pods == []


@pytest.mark.parametrize(
    ("argument", "fix"),
    [
        ("image", "isolationctl deploy"),
        ("cmds", "bash_command"),
        ("env_vars", "connections= / variables="),
        ("do_xcom_push", "XCom sidecar"),
    ],
)
def test_arguments_the_backend_owns_are_refused_at_parse_time(argument, fix):
    with pytest.raises(ConfigurationError, match=f"KubernetesBackend does not take {argument}=") as info:
        KubernetesBackend(**{argument: "x"})
    assert fix in info.value.hint


def test_unknown_backend_name_lists_kubernetes():
    from isolation.backends import get_backend

    assert isinstance(get_backend("kubernetes"), KubernetesBackend)
    with pytest.raises(ConfigurationError, match="unknown isolation backend"):
        get_backend("kubernetess")


def test_the_default_backend_comes_from_airflow_configuration(monkeypatch):
    from isolation.backends import KubernetesBackend, LocalBackend, get_backend

    monkeypatch.delenv("AIRFLOW__ISOLATION__BACKEND", raising=False)
    assert isinstance(get_backend(None), LocalBackend)
    monkeypatch.setenv("AIRFLOW__ISOLATION__BACKEND", "kubernetes")
    assert isinstance(get_backend(None), KubernetesBackend)
