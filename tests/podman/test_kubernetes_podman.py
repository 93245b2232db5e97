"""Real containers: the Kubernetes backend's pods run in podman, for Airflow 2 and Airflow 3.

No Kubernetes API server can run here and no image can be pulled, so: the images are built
locally from a Debian root filesystem (``scripts/podman-images``, cached by content hash
under ``ISOLATION_TEST_CACHE``), the Kubernetes API is the stand-in of the unit tests
(tests/unit/host/kubernetes_api.py), and its kubelet is podman (``podman kube play
--network=none`` of the exact pod manifest KubernetesPodOperator sent, see
podman_kubelet.py). KubernetesPodOperator's own code creates the pod, waits for it, reads
its logs and reads ``/airflow/xcom/return.json`` through the real sidecar container.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from airflow.sdk import DAG
from kubernetes_support import NAMESPACE, assert_no_secret, make_context, stand_in
from podman_kubelet import PodmanPod, podman

from isolation.backends.kubernetes import KubernetesBackend
from isolation.operators.isolated import ENVIRONMENT_XCOM, IsolatedOperator

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = {"airflow-2-10": "2.10.5", "airflow-3-1": "3.1.8"}
BASH = "airflow.operators.bash.BashOperator"


def cache_root() -> Path:
    configured = os.environ.get("ISOLATION_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "isolation-tests"


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """Build (first run) or reuse the images; podman missing fails with what to install."""
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.fail("podman is needed: sudo apt-get install -y podman runc debootstrap (docs/howto-kubernetes.md)")
    done = subprocess.run(
        [str(ROOT / "scripts" / "podman-images"), str(cache_root()), *ENVIRONMENTS],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert done.returncode == 0, f"scripts/podman-images failed:\n{done.stderr}"
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


@pytest.fixture
def kube(tmp_path, monkeypatch, images):
    pods: list[PodmanPod] = []

    def kubelet(pod, secrets):
        pods.append(PodmanPod(pod, secrets, tmp_path))
        return pods[-1]

    env_images = {name: images[name] for name in ENVIRONMENTS}
    api_iter = stand_in(tmp_path, monkeypatch, environments=tuple(ENVIRONMENTS), images=env_images, kubelet=kubelet)
    api = next(api_iter)
    api.podman_pods = pods
    yield api
    for pod in pods:
        pod.kill()
    next(api_iter, None)


def test_pods_run_in_real_containers_with_each_environments_airflow(kube):
    for environment, version in ENVIRONMENTS.items():
        with DAG("kube", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
            task = IsolatedOperator(
                task_id=f"t-{environment}",
                operator=BASH,
                environment=environment,
                backend=KubernetesBackend(namespace=NAMESPACE),
                # The connection reached the container, and the Airflow that ran is the image's.
                bash_command='test "{{ conn.warehouse.password }}" = pw-SECRET-a1b2 && '
                'python -c "import airflow; print(airflow.__version__)"',
            )
        context = make_context(dag, task)
        task.render_template_fields(context)
        assert task.execute(context) == version
        where = context["ti"].pushed[ENVIRONMENT_XCOM]
        assert where["reported"]["airflow"] == version and where["backend"] == "kubernetes"

    assert len(kube.podman_pods) == 2
    for pod in kube.podman_pods:
        # The container's first process had no secret in its environment.
        assert pod.environ is not None, f"could not read /proc/1/environ of {pod.base}"
        assert b"ISOLATION_POD_DAG_ID=kube" in pod.environ
        assert_no_secret(pod.environ.decode("utf-8", "replace"), "the container's /proc/1/environ")
        assert b"ISOLATION_ENVELOPE=" not in pod.environ
    # Every per-task Secret is gone from the API and from podman's store; no volume is left.
    assert kube.secrets_left() == sorted(f"isolation-keys-{name}" for name in ENVIRONMENTS)
    for pod in kube.podman_pods:
        pod.kill()
    secrets = podman("secret", "ls", "--format", "{{.Name}}")
    volumes = podman("volume", "ls", "--format", "{{.Name}}")
    made = {name for pod in kube.podman_pods for name in [*pod.secret_names, *pod.volumes]}
    assert made and not made & set(secrets.stdout.split() + volumes.stdout.split())
    pods = podman("pod", "ls", "--format", "{{.Name}}")
    assert not {pod.name for pod in kube.podman_pods} & set(pods.stdout.split())
