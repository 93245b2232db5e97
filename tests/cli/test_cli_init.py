"""`isolationctl init`: the files it writes, the keys it provisions, and that re-running is safe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _cli import Sandbox

from isolation.environments.spec import load_spec

# Imports the DAG file with the host's Airflow and prints each task's upstream ids; runs nothing.
_LOAD_DAG = """
import json, runpy, sys
namespace = runpy.run_path(sys.argv[1])
dag = namespace["dag"]
print(json.dumps({"dag_id": dag.dag_id, "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}}))
"""


def _key_files(cli: Sandbox) -> dict[Path, bytes]:
    files = [cli.keyring / "signer.json", cli.keyring / "environments" / "example.json"]
    files += sorted((cli.envs / "example" / "keys").iterdir())
    return {path: path.read_bytes() for path in files}


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_init_without_flags_makes_a_minimal_project(cli: Sandbox) -> None:
    result = cli.ok("init")
    assert (cli.project / "isolationctl.toml").is_file()
    assert (cli.project / "environments").is_dir()
    assert (cli.project / "dags").is_dir()
    assert not (cli.project / "environments" / "example").exists()
    assert not (cli.project / ".git").exists()
    # The folder is now a project the other commands accept.
    assert cli.ok("env", "list", "--json").json() == []
    assert result.stderr.strip().splitlines()[-1] == "next: isolationctl deploy --local"


def test_example_environment_is_valid_and_its_keys_live_outside_the_project(cli: Sandbox) -> None:
    result = cli.ok("init", "--example", "--local", "--yes")
    spec = load_spec(cli.project / "environments" / "example")
    assert spec.python_version == "3.12"
    assert "apache-airflow==2.11.2" in spec.requirements
    assert "requests==2.31.0" in spec.requirements
    assert spec.settings.sandbox == "bubblewrap"
    assert spec.settings.network == "none"
    assert (spec.directory / "Dockerfile").read_text().startswith("# Image of environment")
    assert 'backend = "local"' in (cli.project / "isolationctl.toml").read_text()
    keys_dir = cli.envs / "example" / "keys"
    assert (keys_dir / "recipient.json").is_file()
    assert (cli.keyring / "signer.json").is_file()
    assert str(keys_dir) in result.stderr
    assert str(cli.keyring) in result.stderr
    assert "outside the project tree" in result.stderr
    assert not any(p.name in ("recipient.json", "signer.json") for p in cli.project.rglob("*.json"))


def test_example_dag_imports_with_the_hosts_airflow(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    dag_file = cli.project / "dags" / "example_isolated.py"
    airflow_home = cli.root / "airflow-import"
    airflow_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(airflow_home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_DAG, str(dag_file)],
        cwd=cli.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    assert dag["dag_id"] == "example_isolated"
    assert dag["tasks"] == {
        "make_numbers": [],
        "versions_bash": ["make_numbers"],
        "versions_python": ["make_numbers"],
        "summarize": ["versions_bash", "versions_python"],
    }
    text = dag_file.read_text()
    assert '"airflow.operators.bash.BashOperator"' in text
    assert '"airflow.operators.python.PythonOperator"' in text
    assert 'environment="example"' in text


def test_git_repository_ignores_key_material(cli: Sandbox) -> None:
    cli.project.mkdir(parents=True)
    (cli.project / ".gitignore").write_text("node_modules/\nkeys/\n")
    cli.ok("init", "--example", "--git", "--yes")
    assert (cli.project / ".git").is_dir()
    lines = (cli.project / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "keys/"]
    assert lines.count("keys/") == 1
    for pattern in ("*.private.json", "recipient.json", "signer.json", ".env"):
        assert lines.count(pattern) == 1, pattern
    # Key material copied into the tree by mistake stays out of the repository.
    secrets = [
        "environments/example/keys/recipient.json",
        "signer.json",
        "backup/host.private.json",
        "keys/anything.json",
        ".env",
    ]
    for name in secrets:
        path = cli.project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    for name in secrets:
        assert _git(cli.project, "check-ignore", "-q", name).returncode == 0, name
    status = _git(cli.project, "status", "--porcelain", "--untracked-files=all").stdout
    assert "dags/example_isolated.py" in status
    assert "isolationctl.toml" in status
    for marker in ("recipient.json", "signer.json", "private", ".env", "keys/"):
        assert marker not in status, status


def test_git_on_a_rerun_adds_no_duplicate_lines(cli: Sandbox) -> None:
    cli.ok("init", "--git", "--yes")
    first = (cli.project / ".gitignore").read_text()
    result = cli.ok("init", "--git", "--yes")
    assert (cli.project / ".gitignore").read_text() == first
    assert "kept     .gitignore" in result.stderr


def test_astro_layout_without_the_astro_cli(cli: Sandbox) -> None:
    # A PATH that has git, Python and the console script but certainly no astro.
    bin_dir = cli.root / "bin"
    bin_dir.mkdir()
    for tool in ("git", "bwrap"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = cli.environ(PATH=f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}")
    result = cli.ok("init", "--astro", "--example", "--yes", env=env)
    requirements = (cli.project / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("apache-airflow-providers-isolation==") for line in requirements)
    packages = (cli.project / "packages.txt").read_text().splitlines()
    assert "bubblewrap" in packages
    assert "libseccomp2" in packages
    dockerfile = (cli.project / "Dockerfile").read_text().splitlines()
    instructions = [line for line in dockerfile if line.strip() and not line.startswith("#")]
    assert instructions[0].startswith("FROM astrocrpublic.azurecr.io/runtime:")
    assert (cli.project / "dags" / "example_isolated.py").is_file()
    assert (cli.project / "include").is_dir()
    assert "astro CLI is not installed" in result.stderr
    assert "astro dev init" in result.stderr


def test_astro_adds_to_existing_requirements_without_duplicating(cli: Sandbox) -> None:
    cli.project.mkdir(parents=True)
    (cli.project / "requirements.txt").write_text("pandas==2.2.0\nApache_Airflow_Providers_Isolation\n")
    (cli.project / "packages.txt").write_text("libpq5\n")
    cli.ok("init", "--astro", "--yes")
    # The provider is already named: the file is the user's and stays as it is.
    assert (cli.project / "requirements.txt").read_text() == "pandas==2.2.0\nApache_Airflow_Providers_Isolation\n"
    packages = (cli.project / "packages.txt").read_text().splitlines()
    assert packages[0] == "libpq5"
    assert packages.count("bubblewrap") == 1


def test_rerun_keeps_keys_and_user_files(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--git", "--yes")
    keys = _key_files(cli)
    dag_file = cli.project / "dags" / "example_isolated.py"
    edited = dag_file.read_text() + "\n# my change\n"
    dag_file.write_text(edited)
    requirements = cli.project / "environments" / "example" / "requirements.txt"
    requirements.write_text("apache-airflow==2.11.2\nrequests==2.32.0\n")

    result = cli.ok("init", "--example", "--git", "--yes")
    assert _key_files(cli) == keys
    assert dag_file.read_text() == edited
    assert requirements.read_text() == "apache-airflow==2.11.2\nrequests==2.32.0\n"
    assert "kept     dags/example_isolated.py" in result.stderr
    assert "keys of environment 'example' (kept)" in result.stderr
    assert "created" not in result.stderr


def test_rerun_without_yes_asks_before_replacing_a_changed_file(cli: Sandbox) -> None:
    cli.ok("init", "--example", "--yes")
    dag_file = cli.project / "dags" / "example_isolated.py"
    original = dag_file.read_text()
    dag_file.write_text("# mine\n")

    declined = cli.ok("init", "--example", input="n\n")
    assert "replace it?" in declined.stderr
    assert dag_file.read_text() == "# mine\n"

    closed = cli.ok("init", "--example", input="")
    assert dag_file.read_text() == "# mine\n", "a closed stdin must mean no"
    assert "kept     dags/example_isolated.py" in closed.stderr

    accepted = cli.ok("init", "--example", input="y\n")
    assert dag_file.read_text() == original
    assert "replaced dags/example_isolated.py" in accepted.stderr


def test_init_in_an_existing_airflow_project_keeps_its_files(cli: Sandbox) -> None:
    dags = cli.project / "dags"
    dags.mkdir(parents=True)
    (dags / "mine.py").write_text("# an existing DAG\n")
    (cli.project / "isolationctl.toml").write_text('[project]\nbackend = "kubernetes"\n')
    cli.ok("init", "--yes")
    assert (dags / "mine.py").read_text() == "# an existing DAG\n"
    assert (cli.project / "isolationctl.toml").read_text() == '[project]\nbackend = "kubernetes"\n'
    # --local asks to change the backend; --yes keeps the user's file.
    kept = cli.ok("init", "--local", "--yes")
    assert "kubernetes" in (cli.project / "isolationctl.toml").read_text()
    assert "kept     isolationctl.toml" in kept.stderr
    cli.ok("init", "--local", input="y\n")
    assert 'backend = "local"' in (cli.project / "isolationctl.toml").read_text()


def test_folder_is_created_and_json_lists_what_was_done(cli: Sandbox) -> None:
    result = cli.ok("init", "--folder", "new/project", "--example", "--json", "--yes")
    root = cli.project / "new" / "project"
    data = result.json()
    assert data["project"] == str(root.resolve())
    assert "environments/example/python-version" in data["created"]
    assert "dags/example_isolated.py" in data["created"]
    assert data["environments"]["example"] == {"keys_dir": str(cli.envs / "example" / "keys"), "created": True}
    assert data["next"] == "isolationctl deploy --local"
    again = cli.ok("init", "--folder", "new/project", "--example", "--json", "--yes").json()
    assert again["created"] == []
    assert "dags/example_isolated.py" in again["kept"]
    assert again["environments"]["example"]["created"] is False


def test_init_refuses_a_folder_that_is_a_file(cli_real: Sandbox) -> None:
    cli = cli_real
    cli.project.mkdir(parents=True)
    (cli.project / "plain").write_text("x")
    result = cli.run("init", "--folder", "plain")
    assert result.code == 3, str(result)
    assert "is not a folder" in result.stderr
    assert "Traceback" not in result.output
