"""``isolationctl deploy --kubernetes``: a real image of one small environment, built with podman.

The module builds ``kube-tiny`` (Python 3.11, the Debian base's, with Airflow 2.10) once.
The base image and the requirements' image stay in podman's store between runs, so a warm
run rebuilds nothing; build files stage under ``ISOLATION_TEST_CACHE``. No registry is
reachable from here: a push is the one step these tests cannot run, so only its failure is
tested (an unreachable registry fails with the fix, and records nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _cli import Result, Sandbox

from isolation.environments.distribution import host_runtime
from isolation.environments.image import BASE_RECIPE

ENV = "kube-tiny"
REQUIREMENTS = "apache-airflow==2.10.5\n"
PODMAN = shutil.which("podman")


def cache_root() -> Path:
    configured = os.environ.get("ISOLATION_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "isolation-tests"


def content_hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, check=False, timeout=120)


class Built:
    def __init__(self, cli: Sandbox, first: Result, seconds: float) -> None:
        self.cli, self.first, self.seconds = cli, first, seconds

    def environ(self, **extra: str) -> dict[str, str]:
        return self.cli.environ(XDG_CACHE_HOME=str(cache_root()), **extra)

    def run(self, *args: str, real: bool = False, **env: str) -> Result:
        return self.cli.run(*args, env=self.environ(**env), real=real)

    @property
    def recorded(self) -> dict[str, object]:
        return json.loads((self.cli.envs / "kubernetes-images.json").read_text())["images"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if PODMAN is None:
        pytest.fail("podman is part of the test machine's set-up (docs/howto-kubernetes.md, scripts/podman-images)")
    cli = Sandbox(tmp_path_factory.mktemp("deploy-images"))
    folder = cli.project / "environments" / ENV
    folder.mkdir(parents=True)
    (folder / "python-version").write_text("3.11\n")
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    started = time.monotonic()
    first = cli.run(
        "deploy", "--kubernetes", "--builder", "podman", "--json", env=cli.environ(XDG_CACHE_HOME=str(cache_root()))
    )
    assert first.code == 0, str(first)
    return Built(cli, first, time.monotonic() - started)


def test_the_image_is_tagged_by_the_content_hash_of_its_inputs(built: Built) -> None:
    (summary,) = built.first.json()["environments"]
    base = f"localhost/isolation-base:{content_hash(BASE_RECIPE)}"
    deps = f"localhost/isolation-{ENV}-deps:{content_hash(base, *REQUIREMENTS.splitlines(), '3.11')}"
    image = f"localhost/isolation-{ENV}:{content_hash(deps, host_runtime().fingerprint())}"
    assert summary["image"] == summary["local_image"] == image and summary["pushed"] is False
    assert summary["status"] in ("built", "recorded"), summary  # "recorded": a warm store had the image
    assert built.first.json()["builder"] == "podman"
    assert podman("image", "exists", image).returncode == 0 and podman("image", "exists", deps).returncode == 0
    # The image is what the pod needs: this project's runtime, user 50000, a writable /airflow/xcom.
    probe = podman(
        "run",
        "--rm",
        "--network=none",
        image,
        "python",
        "-c",
        "import os, isolation, airflow; print(os.getuid(), isolation.__version__, airflow.__version__,"
        " os.access('/airflow/xcom', os.W_OK))",
    )
    assert probe.returncode == 0, probe.stderr
    import isolation

    assert probe.stdout.split() == ["50000", isolation.__version__, "2.10.5", "True"]
    assert built.recorded == {ENV: {"image": image, "local_image": image}}
    assert f"AIRFLOW__ISOLATION__KUBERNETES_IMAGES='{json.dumps({ENV: image})}'" in built.first.stderr


def test_a_second_deploy_says_unchanged_and_builds_nothing(built: Built) -> None:
    started = time.monotonic()
    again = built.run("deploy", "--kubernetes", "--json", real=True)
    seconds = time.monotonic() - started
    assert again.code == 0, str(again)
    (summary,) = again.json()["environments"]
    image = built.first.json()["environments"][0]["image"]
    assert summary == {**summary, "status": "unchanged", "image": image}
    assert f"{ENV}: unchanged ({image})" in again.stderr and "building" not in again.stderr
    assert seconds < 15, seconds


def test_the_recorded_reference_is_what_the_backend_resolves(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    from isolation.backends.kubernetes import KubernetesBackend

    image = built.first.json()["environments"][0]["image"]
    monkeypatch.delenv("AIRFLOW__ISOLATION__KUBERNETES_IMAGES", raising=False)
    monkeypatch.setenv("ISOLATION_ENVS_HOME", str(built.cli.envs))
    assert KubernetesBackend().image_of(ENV) == image
    # images= and the Airflow setting still come first.
    assert KubernetesBackend(images={ENV: "registry.example/x:1"}).image_of(ENV) == "registry.example/x:1"
    monkeypatch.setenv("AIRFLOW__ISOLATION__KUBERNETES_IMAGES", json.dumps({ENV: "registry.example/y:2"}))
    assert KubernetesBackend().image_of(ENV) == "registry.example/y:2"


def test_a_project_whose_backend_is_kubernetes_deploys_images(built: Built) -> None:
    toml = built.cli.project / "isolationctl.toml"
    try:
        toml.write_text('[project]\nbackend = "kubernetes"\n')
        again = built.run("deploy")
        assert again.code == 0 and f"{ENV}: unchanged (localhost/isolation-{ENV}:" in again.stderr, str(again)
    finally:
        toml.unlink(missing_ok=True)


def test_an_unreachable_registry_fails_with_the_fix_and_records_nothing(built: Built) -> None:
    """A push to a real registry cannot run here (none is reachable): this is its failure path."""
    before = built.recorded
    failed = built.run("deploy", "--kubernetes", "--registry", "127.0.0.1:9/team")
    assert failed.code == 6, str(failed)
    tag = built.first.json()["environments"][0]["image"].rsplit(":", 1)[1]
    assert f"error: pushing 127.0.0.1:9/team/isolation-{ENV}:{tag} failed" in failed.stderr
    assert "fix: check that the registry 127.0.0.1:9 is reachable from here and that you are logged in" in (
        failed.stderr
    )
    assert "(podman login 127.0.0.1:9; a registry without TLS must be marked insecure" in failed.stderr
    assert "or leave out --registry to keep the image in the local store" in failed.stderr
    assert "connection refused" in failed.stderr and "Copying blob" not in failed.stderr
    assert "Traceback" not in failed.output and built.recorded == before
    # The remote name is untagged again; the image itself stays.
    assert podman("image", "exists", f"127.0.0.1:9/team/isolation-{ENV}:{tag}").returncode != 0


def test_a_registry_with_a_scheme_is_a_usage_error(built: Built) -> None:
    failed = built.run("deploy", "--registry", "https://registry.example/team")
    assert failed.code == 2 and "is not a registry path" in failed.stderr, str(failed)
    assert "fix: give HOST[:PORT]/PATH without a scheme" in failed.stderr


def test_a_missing_builder_fails_with_what_to_install(built: Built, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    failed = built.run("deploy", "--kubernetes", PATH=str(empty))
    assert failed.code == 6, str(failed)
    assert "error: no image builder found: neither podman nor docker is on PATH" in failed.stderr
    assert "sudo apt-get install -y podman runc" in failed.stderr and "docker.io" in failed.stderr
    assert PODMAN is not None
    (empty / "podman").symlink_to(PODMAN)
    failed = built.run("deploy", "--builder", "docker", PATH=str(empty))
    assert failed.code == 6 and "error: the image builder docker is not installed" in failed.stderr, str(failed)
    assert "fix: install Docker (Debian: sudo apt-get install -y docker.io)" in failed.stderr


def test_a_docker_without_its_daemon_fails_with_how_to_start_it(built: Built) -> None:
    """The docker client is installed on this machine, its daemon is not (the docker build itself is untested)."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine: the missing-builder test covers it")
    failed = built.run("deploy", "--builder", "docker")
    assert failed.code == 6, str(failed)
    assert "error: docker version failed (docker exit code 1)" in failed.stderr
    assert "Cannot connect to the Docker daemon" in failed.stderr and "and start its daemon" in failed.stderr


def test_an_environment_on_another_python_is_refused_before_any_build(built: Built) -> None:
    folder = built.cli.project / "environments" / "kube-other"
    folder.mkdir()
    try:
        (folder / "python-version").write_text("3.12\n")
        (folder / "requirements.txt").write_text(REQUIREMENTS)
        failed = built.run("deploy", "--kubernetes", "-e", "kube-other")
    finally:
        shutil.rmtree(folder)
    assert failed.code == 6, str(failed)
    assert "error: environment 'kube-other' wants Python 3.12; its image's virtualenv is built" in failed.stderr
    assert "fix: set the environment's python-version to 3.11, or build its image with your own" in failed.stderr


def test_a_base_image_is_checked_for_the_environments_python(built: Built) -> None:
    """The default base passed by name: its /usr/bin/python3 is checked, and the image is the same one."""
    base = f"localhost/isolation-base:{content_hash(BASE_RECIPE)}"
    again = built.run("deploy", "--base-image", base, "--json")
    assert again.code == 0, str(again)
    (summary,) = again.json()["environments"]
    assert summary["status"] == "unchanged" and summary["image"] == built.first.json()["environments"][0]["image"]


def test_a_base_image_missing_from_the_store_is_refused(built: Built) -> None:
    failed = built.run("deploy", "--base-image", "localhost/isolation-missing:1")
    assert failed.code == 6, str(failed)
    assert "error: the base image localhost/isolation-missing:1 is not in podman's local store" in failed.stderr
    assert "fix: podman pull localhost/isolation-missing:1 first" in failed.stderr


def test_local_and_kubernetes_options_conflict(built: Built) -> None:
    for args in (("--local", "--registry", "registry.example/team"), ("--local", "--kubernetes")):
        refused = built.run("deploy", *args)
        assert refused.code == 2, str(refused)
    assert "--local and --kubernetes exclude each other" in refused.stderr
