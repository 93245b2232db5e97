"""``isolationctl doctor``: passes on a good setup, and fails with the fix on each broken one it detects.

The module deploys ``tiny`` once; every test breaks one thing, and the ``setup`` fixture
puts the small files back afterwards (keys, marker, definitions: never the virtualenv),
so the tests stay independent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli import Result, Sandbox

from isolation.transport.keyset import Keyset


class Setup:
    def __init__(self, cli: Sandbox) -> None:
        self.cli = cli
        self.root = cli.envs / "tiny"
        self.keys = self.root / "keys"
        self.host_copy = cli.keyring / "environments" / "tiny.json"

    def run(self, *args: str, real: bool = False, **env: str) -> Result:
        return self.cli.run(*args, env=self.cli.environ(**env), real=real)

    def doctor(self, *args: str, real: bool = False, **env: str) -> tuple[Result, list[dict[str, Any]]]:
        result = self.run("doctor", "--json", *args, real=real, **env)
        return result, result.json()["checks"]


def failing(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in checks if not check["ok"]}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    cli = Sandbox(tmp_path_factory.mktemp("doctor"))
    folder = cli.project / "environments" / "tiny"
    folder.mkdir(parents=True)
    (folder / "python-version").write_text("3.12\n")
    (folder / "requirements.txt").write_text("apache-airflow==2.11.2\n")
    setup = Setup(cli)
    first = setup.run("deploy", "--local")
    assert first.code == 0, str(first)
    return setup


@pytest.fixture
def setup(deployed: Setup, tmp_path: Path) -> Iterator[Setup]:
    """The deployed setup; whatever a test breaks in its small files is restored afterwards."""
    saved = {
        deployed.cli.keyring: tmp_path / "keyring",
        deployed.keys: tmp_path / "keys",
        deployed.cli.project: tmp_path / "project",
    }
    for source, copy in saved.items():
        shutil.copytree(source, copy, symlinks=True)
    marker = (deployed.root / "environment.json").read_bytes()
    yield deployed
    for source, copy in saved.items():
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(copy, source, symlinks=True)
    (deployed.root / "environment.json").write_bytes(marker)


def test_doctor_passes_on_a_good_setup(setup: Setup) -> None:
    # Through the console script: a new process probes bubblewrap and seccomp itself.
    result, checks = setup.doctor(real=True)
    assert result.code == 0, str(result)
    assert all(check["ok"] for check in checks), failing(checks)
    names = {check["name"] for check in checks}
    assert {
        "built",
        "built from the current definition",
        "runtime importable",
        "runtime version is the host's",
    } <= names
    assert "tiny: host copy of its public keys matches" in names and "bubblewrap works" in names
    assert {check["area"] for check in checks} >= {"host", "keys", "environment tiny", "sandbox"}
    airflow = next(check for check in checks if check["name"] == "Airflow installed")
    assert airflow["detail"].startswith("Airflow 2.11.2, Python 3.12.")
    table = setup.run("doctor", real=True)
    assert table.code == 0 and "FAIL" not in table.stdout and "pass" in table.stdout, str(table)
    assert "all " in table.stderr and "checks passed" in table.stderr


def test_a_deleted_private_keyset_fails_with_the_fix(setup: Setup) -> None:
    (setup.keys / "recipient.json").unlink()
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    check = failing(checks)["tiny: private recipient keyset present"]
    assert check["fix"] == "isolationctl deploy --local -e tiny"
    table = setup.run("doctor")
    assert table.code == 1 and "FAIL" in table.stdout and "isolationctl deploy --local -e tiny" in table.stderr


def test_a_deleted_signer_keyset_fails_with_the_fix(setup: Setup) -> None:
    (setup.cli.keyring / "signer.json").unlink()
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    assert failing(checks)["host signer keyset signer.json present"]["fix"].startswith("isolationctl deploy --local")


@pytest.mark.parametrize("which", ["recipient", "signer"])
def test_a_private_keyset_readable_by_others_fails_with_chmod(setup: Setup, which: str) -> None:
    path = setup.keys / "recipient.json" if which == "recipient" else setup.cli.keyring / "signer.json"
    path.chmod(0o644)
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    problems = failing(checks)
    name = "tiny: private recipient keyset" if which == "recipient" else "host signer keyset signer.json"
    mode = problems[f"{name} is private (0600 or 0400)"]
    assert mode["fix"] == f"chmod 600 {path}" and "mode 0644" in mode["detail"]
    if which == "recipient":
        # The runtime itself refuses such a keys directory.
        assert "tiny: keys directory loads as the runtime reads it" in problems


def test_an_environment_not_built_fails_with_the_fix(setup: Setup) -> None:
    (setup.root / "environment.json").unlink()
    other = setup.cli.project / "environments" / "other"
    other.mkdir()
    (other / "python-version").write_text("3.12\n")
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    not_built = [c for c in checks if c["name"] == "built" and not c["ok"]]
    assert {c["area"] for c in not_built} == {"environment tiny", "environment other"}
    assert {c["fix"] for c in not_built} == {
        "isolationctl deploy --local -e tiny",
        "isolationctl deploy --local -e other",
    }
    # Never deployed: one failure, not one per missing key file as well.
    assert not any(c["name"].startswith("other:") for c in checks)


def test_a_stale_fingerprint_fails_with_the_fix(setup: Setup) -> None:
    requirements = setup.cli.project / "environments" / "tiny" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "requests\n")
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    stale = failing(checks)["built from the current definition"]
    assert "changed since the build" in stale["detail"] and stale["fix"] == "isolationctl deploy --local -e tiny"
    assert set(failing(checks)) == {"built from the current definition"}


def test_a_host_without_the_environment_public_keys_fails_with_the_fix(setup: Setup) -> None:
    setup.host_copy.unlink()
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    check = failing(checks)["tiny: host copy of its public keys matches"]
    assert "the host has no public keys for 'tiny'" in check["detail"]
    assert check["fix"].startswith("isolationctl deploy --local -e tiny")


def test_a_host_copy_of_another_key_fails(setup: Setup) -> None:
    Keyset.generate_recipient("tiny").public().save(setup.host_copy)
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    assert "the copy lacks key" in failing(checks)["tiny: host copy of its public keys matches"]["detail"]


def test_a_host_copy_with_another_status_fails(setup: Setup) -> None:
    document = json.loads(setup.host_copy.read_text())
    document["keys"][0]["status"] = "pending"
    setup.host_copy.write_text(json.dumps(document))
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    detail = failing(checks)["tiny: host copy of its public keys matches"]["detail"]
    assert "is primary in the master but pending in the copy" in detail


def test_an_environment_with_a_stale_signer_copy_fails(setup: Setup) -> None:
    Keyset.generate_signer().public().save(setup.keys / "signers.json")
    result, checks = setup.doctor()
    assert result.code == 1, str(result)
    check = failing(checks)["tiny: its copy of the host signer keys matches"]
    assert "isolationctl keys distribute --signer" in check["fix"]


def test_the_fix_it_names_repairs_the_setup(setup: Setup) -> None:
    setup.host_copy.unlink()
    assert setup.doctor()[0].code == 1
    repaired = setup.run("deploy", "--local", "-e", "tiny")
    assert repaired.code == 0 and "tiny: keys updated" in repaired.stderr, str(repaired)
    result, checks = setup.doctor()
    assert result.code == 0, failing(checks)


def test_keyring_settings_that_disagree_fail(setup: Setup) -> None:
    airflow = setup.cli.root / "airflow"
    airflow.mkdir(exist_ok=True)
    (airflow / "airflow.cfg").write_text(f"[isolation]\nkeyring_path = {setup.cli.root / 'elsewhere'}\n")
    try:
        result, checks = setup.doctor(AIRFLOW__ISOLATION__KEYRING_PATH=str(setup.cli.keyring))
    finally:
        (airflow / "airflow.cfg").unlink()
    assert result.code == 1, str(result)
    assert set(failing(checks)) == {"AIRFLOW__ISOLATION__KEYRING_PATH and airflow.cfg agree"}


def test_no_private_key_material_in_any_output_even_of_a_broken_keyset(setup: Setup) -> None:
    from isolation.transport import _b64

    recipient = Keyset.load(setup.keys / "recipient.json")
    signer = Keyset.load(setup.cli.keyring / "signer.json")
    secrets = [_b64.encode(key.private) for keyset in (recipient, signer) for key in keyset if key.private]
    # A damaged keyset whose broken part is the private key itself: no error may quote it.
    document = json.loads((setup.keys / "recipient.json").read_text())
    document["keys"][0]["private"] = document["keys"][0]["private"] + "=="
    (setup.keys / "recipient.json").write_text(json.dumps(document))
    for args in (("--json",), ()):
        result = setup.run("doctor", *args)
        assert result.code == 1, str(result)
        for secret in secrets:
            assert secret not in result.output
