"""``python -m isolation.environments``: errors are one message with a hint and exit code 1."""

from __future__ import annotations

import subprocess
import sys

from host_support import fake_env

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
    assert "hint: build it: python -m isolation.environments build nope" in err


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
