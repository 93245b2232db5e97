"""``isolationctl deploy``: real builds of one small environment.

The module builds ``tiny`` (Python 3.12, Airflow 2.11) once, through the console script;
each test then deploys it again, or a broken sibling next to it, and checks what the
command says and leaves. The timed second deploy, a usage error and Ctrl-C run the
console script too; the other commands run in this process (``_cli``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _cli import SCRIPT, Result, Sandbox

TINY_REQUIREMENTS = "apache-airflow==2.11.2\n"


def define(cli: Sandbox, name: str, python: str = "3.12", requirements: str = TINY_REQUIREMENTS) -> Path:
    folder = cli.project / "environments" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "python-version").write_text(python + "\n")
    (folder / "requirements.txt").write_text(requirements)
    return folder


class Built:
    """The module's sandbox, after its first deploy."""

    def __init__(self, cli: Sandbox, first: Result, seconds: float) -> None:
        self.cli, self.first, self.seconds = cli, first, seconds

    def run(self, *args: str, real: bool = False, **env: str) -> Result:
        return self.cli.run(*args, env=self.cli.environ(**env), real=real)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    cli = Sandbox(tmp_path_factory.mktemp("deploy"))
    define(cli, "tiny")
    started = time.monotonic()
    first = cli.run("deploy", "--local", env=cli.environ(), real=True)
    assert first.code == 0, str(first)
    return Built(cli, first, time.monotonic() - started)


def test_deploy_builds_provisions_keys_and_passes_the_self_test(built: Built) -> None:
    out = built.first.stderr
    for step in ("resolving", "creating the virtualenv", "installing 1 requirement", "installing apache-airflow-pro"):
        assert step in out, out
    assert "provisioning the keys of environment 'tiny'" in out
    assert "tiny: built in" in out and "Airflow 2.11.2" in out
    assert "tiny: self-test passed" in out
    root = built.cli.envs / "tiny"
    marker = json.loads((root / "environment.json").read_text())
    assert marker["airflow"] == "2.11.2" and marker["python_version"].startswith("3.12.")
    assert (root / "keys" / "recipient.json").is_file() and (built.cli.keyring / "environments" / "tiny.json").is_file()


def test_a_second_deploy_says_unchanged_and_is_fast(built: Built) -> None:
    # Timed as a person sees it: the console script, its start-up included.
    started = time.monotonic()
    again = built.run("deploy", "--local", "--json", real=True)
    seconds = time.monotonic() - started
    assert again.code == 0, str(again)
    assert "tiny: unchanged" in again.stderr and "self-test" not in again.stderr
    assert "creating the virtualenv" not in again.stderr
    (summary,) = again.json()["environments"]
    assert summary["status"] == "unchanged" and summary["self_test"] == "skipped"
    assert seconds < 15 and seconds < built.seconds, (seconds, built.seconds)


def test_self_test_on_request_for_an_unchanged_environment(built: Built) -> None:
    again = built.run("deploy", "-e", "tiny", "--self-test", "--json")
    assert again.code == 0, str(again)
    (summary,) = again.json()["environments"]
    assert summary == {**summary, "name": "tiny", "status": "unchanged", "self_test": "passed"}
    assert "tiny: self-test passed (a sealed no-op task ran in" in again.stderr


def test_a_failing_self_test_exits_check_failed(built: Built) -> None:
    """A one-second wall clock: the build is fine, the no-op task is stopped before it ends.

    Started cold: a warm start runs the no-op task in well under a second."""
    settings = built.cli.project / "environments" / "tiny" / "isolation.toml"
    try:
        settings.write_text("[warm]\nenabled = false\n\n[limits]\nwall_clock = 1\n")
        failed = built.run("deploy", "--local", "--self-test")
        assert failed.code == 1, str(failed)
        assert "tiny: unchanged" in failed.stderr
        assert "error: environment 'tiny': the self-test could not run" in failed.stderr
        assert "wall-clock limit of 1 s" in failed.stderr and "fix: raise [limits] wall_clock" in failed.stderr
        assert "Traceback" not in failed.output
    finally:
        settings.unlink(missing_ok=True)
    # Sandbox settings are re-recorded without a rebuild: the next deploy is good again.
    repaired = built.run("deploy", "--local", "--self-test")
    assert repaired.code == 0 and "tiny: self-test passed" in repaired.stderr, str(repaired)


def test_an_unknown_environment_is_refused_before_anything_is_built(built: Built) -> None:
    refused = built.run("deploy", "--local", "-e", "tiny", "-e", "unknown")
    assert refused.code == 3, str(refused)
    assert "error: no environment 'unknown'" in refused.stderr and "(defined: tiny)" in refused.stderr
    assert "fix: create it with `isolationctl env add unknown" in refused.stderr
    assert "resolving" not in refused.stderr and not (built.cli.envs / "unknown").exists()


def test_a_missing_python_without_downloads_fails_with_how_to_install_it(built: Built) -> None:
    define(built.cli, "future", python="3.99")
    try:
        for args, env in ((("--no-download",), {}), ((), {"UV_PYTHON_DOWNLOADS": "never"})):
            failed = built.run("deploy", "--local", "-e", "future", *args, **env)
            assert failed.code == 6, str(failed)
            assert "error: environment 'future': no Python 3.99 interpreter found" in failed.stderr
            assert "`uv python install 3.99`" in failed.stderr and "`pyenv install 3.99`" in failed.stderr
            assert "downloading CPython" not in failed.stderr
        assert not (built.cli.envs / "future" / "environment.json").exists()
    finally:
        shutil.rmtree(built.cli.project / "environments" / "future")


def test_a_missing_python_is_downloaded_with_uv_when_allowed(built: Built) -> None:
    """uv has no CPython 3.99 to download: the attempt is announced, then fails with uv's words."""
    if shutil.which("uv") is None:
        pytest.fail("uv is part of the development setup (make bootstrap)")
    define(built.cli, "future", python="3.99")
    try:
        failed = built.run("deploy", "--local", "-e", "future")
    finally:
        shutil.rmtree(built.cli.project / "environments" / "future")
    assert "downloading CPython 3.99 with uv (set UV_PYTHON_DOWNLOADS=never to forbid)" in failed.stderr
    assert failed.code == 6 and "downloading CPython 3.99 with uv failed" in failed.stderr, str(failed)
    assert "No download found" in failed.stderr


def test_a_failing_install_exits_build_with_the_installer_message(built: Built) -> None:
    define(built.cli, "broken", requirements="/nonexistent/isolation_missing-1.0-py3-none-any.whl\n")
    try:
        failed = built.run("deploy", "--local", "-e", "broken")
    finally:
        shutil.rmtree(built.cli.project / "environments" / "broken")
    assert failed.code == 6, str(failed)
    assert "error: environment 'broken': installing the requirements of environment 'broken' failed" in failed.stderr
    assert "/nonexistent/isolation_missing-1.0-py3-none-any.whl" in failed.stderr
    assert "fix: check the environment's requirements.txt" in failed.stderr
    assert not (built.cli.envs / "broken" / "environment.json").exists()
    assert "Traceback" not in failed.output


@pytest.mark.parametrize("args", [("--kubernetes",), ("--registry", "registry.example/team"), ("--builder", "podman")])
def test_kubernetes_deploys_build_images_not_virtualenvs(built: Built, args: tuple[str, ...]) -> None:
    """tiny is on Python 3.12, not the Debian base image's: refused before any build (test_cli_deploy_images builds)."""
    refused = built.run("deploy", *args)
    assert refused.code == 6, str(refused)
    assert "error: environment 'tiny' wants Python 3.12; its image's virtualenv is built" in refused.stderr
    assert "resolving" not in refused.stderr


def test_local_and_kubernetes_options_conflict(built: Built) -> None:
    refused = built.run("deploy", "--local", "--registry", "registry.example/team", real=True)
    assert refused.code == 2, str(refused)
    assert "--local cannot be combined with --builder, --base-image or --registry" in refused.stderr


def test_deploy_alone_follows_the_project_backend(built: Built) -> None:
    toml = built.cli.project / "isolationctl.toml"
    try:
        toml.write_text('[project]\nbackend = "kubernetes"\n')
        images = built.run("deploy")
        assert images.code == 6 and "environment 'tiny' wants Python 3.12; its image's" in images.stderr, str(images)
        toml.write_text('[project]\nbackend = "local"\n')
        local = built.run("deploy")
        assert local.code == 0 and "tiny: unchanged" in local.stderr, str(local)
    finally:
        toml.unlink(missing_ok=True)


def test_an_interrupted_deploy_is_rebuilt_next_time(built: Built) -> None:
    """Ctrl-C while the requirements install: exit 130, no marker, and the next deploy builds again."""
    cli = built.cli
    proc = subprocess.Popen(
        [str(SCRIPT), "deploy", "--local", "--force"],
        cwd=cli.project,
        env=cli.environ(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "installing 1 requirement" in line:
            break
    time.sleep(0.5)  # the installer is running now
    os.kill(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, "".join(seen) + rest
    assert "error: interrupted while deploying 'tiny'; an unfinished build is never marked built" in rest, rest
    assert "fix: run `isolationctl deploy --local` again" in rest and "Traceback" not in rest
    assert not (cli.envs / "tiny" / "environment.json").exists()
    again = built.run("deploy", "--local", real=True)
    assert again.code == 0, str(again)
    assert "tiny: built in" in again.stderr and "tiny: self-test passed" in again.stderr
