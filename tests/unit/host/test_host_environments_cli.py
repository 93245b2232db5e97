"""``python -m isolation.environments``: errors are one message with a hint and exit code 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from host_support import fake_env

import isolation
from isolation.backends.sandbox import INSTALL_HINT
from isolation.environments.__main__ import keyring_path_from_settings, main


def test_show_a_built_environment(tmp_path, capsys):
    fake_env(tmp_path, "legacy")
    assert main(["show", "legacy", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "environment: legacy" in out and str(tmp_path / "legacy" / "venv" / "bin" / "python") in out


def test_show_an_unbuilt_environment(tmp_path, capsys):
    assert main(["show", "nope", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: local environment 'nope' is not built")
    assert "hint: build it: isolationctl deploy --local -e nope" in err


def test_build_without_a_definition(tmp_path, capsys):
    assert main(["build", "ghost", "--environments", str(tmp_path), "--home", str(tmp_path / "h")]) == 1
    assert "error: environment 'ghost'" in capsys.readouterr().err


def test_keyring_path_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(tmp_path))
    assert keyring_path_from_settings() == tmp_path


def test_runs_as_a_module(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "isolation.environments", "show", "nope", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "is not built" in done.stderr


def test_build_refuses_requirements_naming_the_runtime(tmp_path, capsys):
    definition = tmp_path / "environments" / "poc"
    definition.mkdir(parents=True)
    (definition / "python-version").write_text("3.12\n")
    (definition / "requirements.txt").write_text("requests\napache_airflow_providers_isolation==1.0.1\n")
    argv = ["build", "poc", "--source", str(tmp_path), "--home", str(tmp_path / "h"), "--keyring", str(tmp_path / "k")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "requirements name apache-airflow-providers-isolation ('apache_airflow_providers_isolation==1.0.1')" in err
    assert "the old 1.0.1 proof of concept" in err and "hint: remove the line" in err
    assert not (tmp_path / "h").exists()


def _doctor(*args, **env):
    """In a subprocess: the sandbox probe is cached per process."""
    return subprocess.run(
        [sys.executable, "-m", "isolation.environments", "doctor", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
        timeout=120,
    )


def test_doctor_on_this_machine(tmp_path):
    """bubblewrap is installed here (CI installs it too): the sandbox works."""
    fake_env(tmp_path, "legacy")
    bwrap = shutil.which("bwrap")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    done = _doctor("--home", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"sandbox:     works: {version} works" in out
    assert f"bubblewrap:  {bwrap} ({version})" in out
    assert "seccomp:     libseccomp loads" in out
    assert "cgroup:      " in out and "limits:      memory by " in out
    assert (
        f"runtime:     apache-airflow-providers-isolation {isolation.__version__}, installed into environments from"
        in out
    )
    assert f"home:        {tmp_path} (1 environment)" in out
    assert "environment: legacy: sandbox none, network host, runtime not recorded" in out
    assert "fix:" not in out


def test_doctor_names_the_fix_when_bubblewrap_is_missing(tmp_path):
    done = _doctor("--home", str(tmp_path), ISOLATION_BWRAP="/nonexistent")
    assert done.returncode == 1
    assert "sandbox:     NOT available: /nonexistent does not run" in done.stdout
    assert f"fix:         {INSTALL_HINT}" in done.stdout


def test_doctor_flags_an_environment_built_with_another_runtime(tmp_path, capsys):
    fake_env(tmp_path, "old")
    marker = tmp_path / "old" / "environment.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "runtime_version": "1.0.1"}))
    main(["doctor", "--home", str(tmp_path)])
    out = capsys.readouterr().out
    expected = f"runtime 1.0.1 (the host runs {isolation.__version__}: rebuild it)"
    assert f"environment: old: sandbox none, network host, {expected}" in out
