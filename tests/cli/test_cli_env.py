"""`isolationctl env add|list|show|remove`, in this process (``_cli``); a question answered by the console script."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from _cli import Sandbox

from isolation.environments.spec import load_spec


def _private_parts(*files: Path) -> list[str]:
    """Every private key value in these keyset files (base64, as stored)."""
    values = []
    for path in files:
        for key in json.loads(path.read_text())["keys"]:
            values.append(key["private"])
    assert values
    return values


def test_add_writes_a_folder_load_spec_accepts_and_provisions_keys(cli: Sandbox) -> None:
    cli.ok("init", "--yes")
    result = cli.ok(
        "env",
        "add",
        "reports",
        "--python",
        "3.11",
        "--airflow",
        "2.11.2",
        "-r",
        "requests==2.31.0",
        "--requirement",
        "pandas<3",
        "--system-package",
        "libpq5",
        "--suite",
        "2",
        "--network",
        "host",
    )
    folder = cli.project / "environments" / "reports"
    spec = load_spec(folder)
    assert spec.python_version == "3.11"
    assert spec.requirements == ("apache-airflow==2.11.2", "requests==2.31.0", "pandas<3")
    assert spec.suite == 2
    assert spec.settings.network == "host"
    assert (folder / "system-packages.txt").read_text() == "libpq5\n"
    assert "FROM python:3.11-slim" in (folder / "Dockerfile").read_text()
    recipient = json.loads((cli.envs / "reports" / "keys" / "recipient.json").read_text())
    assert recipient["name"] == "reports"
    assert {key["algorithm"] for key in recipient["keys"]} != {"X25519"}, "suite 2 is the hybrid"
    assert (cli.keyring / "environments" / "reports.json").is_file()
    assert "created environment 'reports'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("next: isolationctl deploy --local")


def test_add_defaults_to_the_hosts_airflow_and_no_network(cli: Sandbox) -> None:
    cli.ok("init", "--yes")
    cli.ok("env", "add", "plain", "--python", "3.12")
    spec = load_spec(cli.project / "environments" / "plain")
    assert spec.requirements == (f"apache-airflow=={importlib.metadata.version('apache-airflow')}",)
    assert spec.settings.network == "none"
    assert spec.suite == 1
    assert not (spec.directory / "system-packages.txt").exists()
    cli.ok("env", "add", "bare", "--python", "3.12", "--airflow", "none", "-r", "requests")
    assert load_spec(cli.project / "environments" / "bare").requirements == ("requests",)


def test_force_rewrites_the_files_and_keeps_the_keys(cli: Sandbox) -> None:
    cli.ok("init", "--yes")
    cli.ok("env", "add", "reports", "--python", "3.12", "--system-package", "libpq5")
    recipient = cli.envs / "reports" / "keys" / "recipient.json"
    before = recipient.read_bytes()
    cli.ok("env", "add", "reports", "--python", "3.13", "--force")
    spec = load_spec(cli.project / "environments" / "reports")
    assert spec.python_version == "3.13"
    assert not (spec.directory / "system-packages.txt").exists()
    assert recipient.read_bytes() == before


def test_list_json_reports_build_state(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    cli.ok("env", "add", "modern", "--python", "3.13", "--airflow", "3.3.2", "--network", "host")
    assert [row["name"] for row in cli.ok("env", "list", "--json").json()] == ["example", "modern"]
    # What a build leaves behind: the marker, with the fingerprint it was built from.
    example = load_spec(cli.project / "environments" / "example")
    (cli.envs / "example" / "environment.json").write_text(json.dumps({"fingerprint": example.fingerprint()}))
    (cli.envs / "modern").mkdir(parents=True, exist_ok=True)
    (cli.envs / "modern" / "environment.json").write_text(json.dumps({"fingerprint": "stale"}))

    rows = {row["name"]: row for row in cli.ok("env", "list", "--json").json()}
    assert rows["example"]["python"] == "3.12"
    assert rows["example"]["airflow"] == "apache-airflow==2.11.2"
    assert rows["example"]["built"] is True
    assert rows["example"]["fingerprint_current"] is True
    assert rows["modern"]["airflow"] == "apache-airflow==3.3.2"
    assert rows["modern"]["settings"]["network"] == "host"
    assert rows["modern"]["built"] is True
    assert rows["modern"]["fingerprint_current"] is False
    cli.ok("env", "add", "fresh", "--python", "3.12")
    fresh = {row["name"]: row for row in cli.ok("env", "list", "--json").json()}["fresh"]
    assert fresh["built"] is False
    assert fresh["fingerprint_current"] is None


def test_list_table_shows_each_environment(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    cli.ok("env", "add", "modern", "--python", "3.13", "--network", "host")
    out = cli.ok("env", "list").stdout
    assert "sandbox/network" in out
    example = next(line for line in out.splitlines() if " example " in line)
    assert "3.12" in example
    assert "apache-airflow==2.11.2" in example
    assert "bubblewrap/none" in example
    assert "bubblewrap/host" in next(line for line in out.splitlines() if " modern " in line)


def test_show_has_everything_but_private_keys(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    private = _private_parts(cli.envs / "example" / "keys" / "recipient.json", cli.keyring / "signer.json")
    public = json.loads((cli.keyring / "environments" / "example.json").read_text())
    kid = public["keys"][0]["kid"]

    data = cli.ok("env", "show", "example", "--json")
    info = data.json()
    assert info["requirements"] == ["apache-airflow==2.11.2", "requests==2.31.0"]
    assert info["settings"]["sandbox"] == "bubblewrap"
    assert info["confinement"].startswith("sandbox: bubblewrap; network: none; limits: memory 4 GiB")
    assert info["keys_dir"] == str(cli.envs / "example" / "keys")
    assert info["keys_provisioned"] is True
    assert [key["kid"] for key in info["keys"]] == [kid]
    human = cli.ok("env", "show", "example")
    assert kid in human.stdout
    assert "requests==2.31.0" in human.stdout
    assert "network: none" in human.stdout
    assert str(cli.envs / "example" / "keys") in human.stdout
    for value in private:
        assert value not in data.output
        assert value not in human.output
    assert '"private"' not in data.stdout


def test_remove_deletes_only_the_definition_unless_purged(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    cli.ok("env", "add", "other", "--python", "3.12")
    result = cli.ok("env", "remove", "example", "--yes")
    assert not (cli.project / "environments" / "example").exists()
    assert (cli.envs / "example" / "keys" / "recipient.json").is_file()
    assert "--purge deletes them" in result.stderr
    assert [row["name"] for row in cli.ok("env", "list", "--json").json()] == ["other"]


def test_remove_purge_deletes_the_build_and_keys_and_says_what(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    cli.ok("env", "add", "other", "--python", "3.12")
    venv_python = cli.envs / "example" / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    (cli.envs / "example" / "environment.json").write_text("{}")
    unrelated = cli.envs / "notes.txt"
    unrelated.write_text("keep me")

    result = cli.ok("env", "remove", "example", "--purge", "--yes")
    assert not (cli.project / "environments" / "example").exists()
    assert not (cli.envs / "example").exists()
    assert f"deleted {cli.project / 'environments' / 'example'}" in result.stderr
    assert f"deleted {cli.envs / 'example'}" in result.stderr
    # Nothing outside those two folders.
    assert unrelated.read_text() == "keep me"
    assert (cli.envs / "other" / "keys" / "recipient.json").is_file()
    assert (cli.project / "environments" / "other").is_dir()
    assert (cli.keyring / "signer.json").is_file()
    assert (cli.project / "dags" / "example_isolated.py").is_file()


def test_remove_asks_and_a_no_removes_nothing(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    result = cli.run("env", "remove", "example", "--purge", input="n\n", real=True)
    assert result.code == 1, str(result)
    assert "nothing was removed" in result.stderr
    assert (cli.project / "environments" / "example").is_dir()
    assert (cli.envs / "example" / "keys").is_dir()
    cli.ok("env", "remove", "example", input="y\n", real=True)
    assert not (cli.project / "environments" / "example").exists()


def _existing(cli: Sandbox) -> None:
    cli.ok("init", "--yes")
    cli.ok("env", "add", "taken", "--python", "3.12")


def _project(cli: Sandbox) -> None:
    cli.ok("init", "--yes")


def _nothing(cli: Sandbox) -> None:
    cli.project.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        pytest.param(_nothing, ["env", "list"], 3, "is not an isolation project", id="non-project-folder-list"),
        pytest.param(
            _nothing, ["env", "add", "x", "--python", "3.12"], 3, "is not an isolation project", id="non-project-add"
        ),
        pytest.param(_project, ["env", "show", "nope"], 3, "no environment 'nope'", id="unknown-env-show"),
        pytest.param(_project, ["env", "remove", "nope", "--yes"], 3, "no environment 'nope'", id="unknown-env-remove"),
        pytest.param(
            _project, ["env", "add", "Bad_Name", "--python", "3.12"], 2, "invalid environment name", id="invalid-name"
        ),
        pytest.param(_project, ["env", "show", "../etc"], 2, "invalid environment name", id="invalid-name-show"),
        pytest.param(_project, ["env", "add", "x", "--python", "3.x"], 2, "must look like 3.12", id="bad-python"),
        pytest.param(_project, ["env", "add", "x", "--python", "3.8"], 2, "too old", id="old-python"),
        pytest.param(_existing, ["env", "add", "taken", "--python", "3.12"], 3, "already exists", id="existing-env"),
        pytest.param(
            _project,
            ["env", "add", "x", "--python", "3.12", "-r", "apache-airflow-providers-isolation==1.0.1"],
            2,
            "apache-airflow-providers-isolation",
            id="runtime-requirement",
        ),
        pytest.param(
            _project, ["env", "add", "x", "--python", "3.12", "--network", "lan"], 2, "--network", id="bad-network"
        ),
        pytest.param(
            _project, ["env", "add", "x", "--python", "3.12", "--airflow", "latest"], 2, "--airflow", id="bad-airflow"
        ),
        pytest.param(
            _project,
            ["env", "add", "x", "--python", "3.12", "--system-package", "Bad Pkg"],
            2,
            "Debian",
            id="bad-system-package",
        ),
    ],
)
def test_bad_input_fails_with_one_line_and_a_code(
    cli: Sandbox, setup, args: list[str], code: int, message: str
) -> None:
    setup(cli)
    result = cli.run(*args)
    assert result.code == code, str(result)
    assert message in result.stderr
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.output
    # Refused before anything was written.
    if args[:2] == ["env", "add"] and "taken" not in args:
        assert not (cli.project / "environments" / args[2]).exists()
        assert not (cli.envs / args[2]).exists()


def test_commands_find_the_project_from_a_subfolder(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes", input="")
    listed = cli.ok("env", "list", "--json", cwd=cli.project / "dags").json()
    assert [env["name"] for env in listed] == ["example"]


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ('environments = "/tmp/elsewhere"', "relative to the project"),
        ('environments = "../outside"', "leads outside the project"),
        ("environments = 5", "relative to the project"),
    ],
)
def test_project_folders_outside_the_project_are_refused(cli: Sandbox, setting: str, words: str) -> None:
    outside = cli.root / "outside" / "victim"
    outside.mkdir(parents=True)
    (outside / "python-version").write_text("3.12\n")
    cli.project.mkdir(parents=True, exist_ok=True)
    (cli.project / "isolationctl.toml").write_text(f"[project]\n{setting}\n")
    result = cli.run("env", "remove", "victim", "--purge", "--yes")
    assert result.code == 3 and words in result.stderr, result
    assert outside.is_dir()


def test_a_project_setting_that_is_not_a_table_is_one_clear_line(cli: Sandbox) -> None:
    cli.project.mkdir(parents=True, exist_ok=True)
    (cli.project / "isolationctl.toml").write_text('project = "abc"\n')
    result = cli.run("env", "list")
    assert result.code == 3 and "[project] must be a table" in result.stderr, result
