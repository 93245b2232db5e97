"""The local backend with a fake runtime: pipe, scrubbed environment, fds, process tree."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from host_support import alive, fake_env, isolation_temp_dirs, wait_gone

from isolation.backends import LocalBackend, get_backend
from isolation.errors import ConfigurationError

SECRETS = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u:db-secret-1@db/airflow",
    "AIRFLOW__CORE__FERNET_KEY": "fernet-secret-2",
    "AIRFLOW_CONN_SOMETHING": "http://u:conn-secret-3@x",
    "AIRFLOW_VAR_SOMETHING": "var-secret-4",
    "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-5",
    "SUPERVISOR_COMMS_FD": "987654321",  # long enough not to appear in random temp names
    "PYTHONPATH": "/somewhere/else",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-6",
}


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    """A private TMPDIR so temp-dir leak checks see only this test."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return temp


@pytest.fixture
def backend(tmp_path, tmpdir_env):
    fake_env(tmp_path / "envs")
    return LocalBackend(tmp_path / "envs", kill_grace=1.0)


def run(backend, script, logs=None):
    sink = logs if logs is not None else []
    seen_paths = []

    def seal(result_path):
        seen_paths.append(result_path)
        return json.dumps(script)

    outcome = backend.run("fake", seal, sink.append)
    return outcome, _task_lines(sink), seen_paths[0]


def _task_lines(lines):
    """The task's own output, without the backend's notices (``isolation: ...``)."""
    return [line for line in lines if not line.startswith("isolation: ")]


def test_envelope_goes_through_stdin_and_result_comes_back(backend, tmpdir_env):
    outcome, logs, result_path = run(backend, {"result": "report", "lines": ["hello", "world"]})
    assert outcome.exit_code == 0
    report = json.loads(outcome.result)["return_value"]
    assert report["envelope_length"] == len(json.dumps({"result": "report", "lines": ["hello", "world"]}))
    assert report["argv"] == ["-I", "-u", "-m", "isolation.runtime", "--stdin"]
    assert logs == ["hello", "world"]
    # The result travels in an inherited memory file, never a path on disk.
    assert result_path.startswith("/proc/self/fd/")
    assert report["env"]["ISOLATION_RESULT_PATH"] == result_path
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_child_environment_is_an_allow_list(backend, monkeypatch, tmp_path):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TZ", "Europe/Paris")
    outcome, _, _ = run(backend, {"result": "report"})
    report = json.loads(outcome.result)["return_value"]
    env = report["env"]
    env.pop("PWD", None)  # set by the fake environment's /bin/sh wrapper, not by the backend
    assert set(env) <= {"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "HOME", "TMPDIR"} | {
        "ISOLATION_KEYS_DIR",
        "ISOLATION_RESULT_PATH",
        "ISOLATION_LIFELINE_FD",
    }
    assert env["ISOLATION_LIFELINE_FD"].isdigit()
    text = json.dumps(env)
    for value in SECRETS.values():
        assert value not in text
    assert env["TZ"] == "Europe/Paris"
    assert env["HOME"] == env["TMPDIR"] == report["cwd"]
    assert Path(env["HOME"]).name.startswith("isolation-fake-")
    assert env["ISOLATION_KEYS_DIR"] == str(tmp_path / "envs" / "fake" / "keys")
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "envs" / "fake" / "venv" / "bin")


def test_no_inherited_descriptors_and_own_session(backend):
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        outcome, _, _ = run(backend, {"result": "report"})
    finally:
        os.close(leaked)
    report = json.loads(outcome.result)["return_value"]
    lifeline = int(report["env"]["ISOLATION_LIFELINE_FD"])
    result_fd = int(report["env"]["ISOLATION_RESULT_PATH"].rsplit("/", 1)[1])
    # 0-2, the lifeline pipe and the result memory file (the only descriptors passed on
    # purpose), and the one listdir opens.
    assert len(report["fds"]) == 6 and report["fds"][:3] == [0, 1, 2]
    assert lifeline in report["fds"] and result_fd in report["fds"]
    assert report["session_leader"] is True
    assert report["pid"] != os.getpid()


def test_log_lines_stream_live(backend, tmp_path):
    go = tmp_path / "go"
    logs: list[str] = []

    def sink(line):
        logs.append(line)
        if line == "ready":
            go.touch()  # the fake waits for this file: only a live stream lets it finish quickly

    started = time.monotonic()
    outcome = backend.run("fake", lambda _: json.dumps({"lines": ["ready"], "wait_for": str(go)}), sink)
    assert outcome.exit_code == 0
    assert _task_lines(logs) == ["ready", "saw go"]
    assert time.monotonic() - started < 8


def test_partial_last_line_and_exit_code(backend):
    outcome, logs, _ = run(backend, {"raw": "no newline at the end", "exit": 3})
    assert outcome.exit_code == 3 and outcome.result is None
    assert logs == ["no newline at the end"]
    assert outcome.log_tail == ("no newline at the end",)


def test_large_envelope_does_not_deadlock(backend):
    # Bigger than a pipe buffer while the child also writes: the selector interleaves both.
    script = {"lines": ["x" * 1000] * 200, "result": "report", "padding": "p" * 900_000}
    outcome, logs, _ = run(backend, script)
    assert outcome.exit_code == 0 and len(logs) == 200


def test_temp_dir_removed_when_sealing_fails(backend, tmpdir_env):
    def seal(_):
        raise ValueError("sealing failed")

    with pytest.raises(ValueError, match="sealing failed"):
        backend.run("fake", seal, print)
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_straggler_in_the_group_is_killed_and_does_not_hold_the_run(backend):
    logs: list[str] = []
    started = time.monotonic()
    outcome, logs, _ = run(backend, {"spawn": ["group"]}, logs)
    assert time.monotonic() - started < 10
    pids = json.loads(next(line for line in logs if line.startswith("pids "))[5:])
    assert outcome.exit_code == 0
    assert wait_gone(pids["children"]) == []


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm


def test_timeout_interrupt_kills_the_whole_tree(backend, tmpdir_env):
    # Airflow's execution_timeout raises from SIGALRM in the task's main thread.
    logs: list[str] = []
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(_Alarm):
            backend.run("fake", lambda _: json.dumps({"spawn": ["group", "session"], "sleep": 60}), logs.append)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pids = json.loads(next(line for line in logs if line.startswith("pids "))[5:])
    assert wait_gone([pids["runtime"], *pids["children"]]) == []
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_cancel_kills_the_tree_even_when_term_is_ignored(backend, tmpdir_env):
    logs: list[str] = []

    def sink(line):
        logs.append(line)
        if line.startswith("pids "):
            backend.cancel()  # what on_kill does, from a signal handler

    started = time.monotonic()
    outcome = backend.run("fake", lambda _: json.dumps({"spawn": ["session"], "ignore_term": True, "sleep": 60}), sink)
    assert time.monotonic() - started < 20
    assert outcome.killed_by == signal.SIGKILL
    pids = json.loads(logs[-1][5:])
    assert wait_gone([pids["runtime"], *pids["children"]]) == []
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_unsandboxed_environment_warns_in_every_task_log(backend):
    lines: list[str] = []
    outcome, _, _ = run(backend, {"result": "report"}, lines)
    assert outcome.exit_code == 0
    notices = [line for line in lines if line.startswith("isolation: ")]
    assert any("sandbox: none" in line for line in notices)
    assert any("runs with the worker's authority" in line and "WARNING" in line for line in notices)


def test_log_volume_is_capped_with_one_clear_line(tmp_path, tmpdir_env):
    import dataclasses

    from isolation.environments.settings import SandboxSettings

    fake_env(tmp_path / "envs")
    backend = LocalBackend(tmp_path / "envs")
    env = backend.locate("fake")
    small = dataclasses.replace(env.settings.limits, log=4096)
    limited = dataclasses.replace(env, settings=SandboxSettings("none", "host", small))
    backend.locate = lambda name: limited  # type: ignore[method-assign]
    lines: list[str] = []
    script = {"lines": [f"line {i:04d} " + "x" * 90 for i in range(200)], "result": "report"}
    outcome, _, _ = run(backend, script, lines)
    assert outcome.exit_code == 0
    task = _task_lines(lines)
    assert sum(len(line) + 1 for line in task) <= 4096
    assert task[0].startswith("line 0000")
    capped = [line for line in lines if "reached its limit of 4096 bytes" in line]
    assert len(capped) == 1
    assert not any(line.startswith("line 0199") for line in lines)


def test_wall_clock_limit_stops_the_task(tmp_path, tmpdir_env):
    import dataclasses

    from isolation.environments.settings import SandboxSettings
    from isolation.errors import IsolatedTaskFailed

    fake_env(tmp_path / "envs")
    backend = LocalBackend(tmp_path / "envs", kill_grace=1.0)
    env = backend.locate("fake")
    short = dataclasses.replace(env.settings.limits, wall_clock=1)
    limited = dataclasses.replace(env, settings=SandboxSettings("none", "host", short))
    backend.locate = lambda name: limited  # type: ignore[method-assign]
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(IsolatedTaskFailed, match="wall-clock limit of 1 s") as info:
        backend.run("fake", lambda _: json.dumps({"spawn": ["group"], "sleep": 60}), lines.append)
    assert time.monotonic() - started < 15
    assert "wall_clock" in info.value.diagnostics()
    pids = json.loads(next(line for line in lines if line.startswith("pids "))[5:])
    assert wait_gone([pids["runtime"], *pids["children"]]) == []


def test_cancel_without_a_running_task_is_harmless(backend):
    backend.cancel()


def test_unknown_environment(backend):
    with pytest.raises(ConfigurationError, match="local environment 'nope' is not built") as info:
        backend.check("nope")
    assert "isolationctl deploy --local -e nope" in info.value.diagnostics()


def test_missing_interpreter(tmp_path, tmpdir_env):
    python = fake_env(tmp_path / "envs")
    python.unlink()
    backend = LocalBackend(tmp_path / "envs")
    with pytest.raises(ConfigurationError, match="no working interpreter") as info:
        backend.run("fake", lambda _: "{}", print)
    assert "rebuild it" in info.value.diagnostics()
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_broken_interpreter(tmp_path, tmpdir_env):
    fake_env(tmp_path / "envs", interpreter="\x7fELF this is not a program")
    backend = LocalBackend(tmp_path / "envs")
    with pytest.raises(ConfigurationError, match="cannot start the interpreter of local environment 'fake'") as info:
        backend.run("fake", lambda _: "{}", print)
    assert "isolationctl deploy --local -e fake" in info.value.diagnostics()
    assert isolation_temp_dirs(str(tmpdir_env)) == set()


def test_extra_env_passes_plain_values_and_refuses_reserved_names(tmp_path, tmpdir_env):
    fake_env(tmp_path / "envs")
    backend = LocalBackend(tmp_path / "envs", extra_env={"MY_SETTING": "on"})
    outcome, _, _ = run(backend, {"result": "report"})
    assert json.loads(outcome.result)["return_value"]["env"]["MY_SETTING"] == "on"
    for name in ("AIRFLOW__CORE__X", "ISOLATION_ENVELOPE", "PYTHONPATH"):
        with pytest.raises(ValueError, match="reserved"):
            LocalBackend(extra_env={name: "x"})


def test_get_backend():
    assert isinstance(get_backend("local"), LocalBackend)
    mine = LocalBackend()
    assert get_backend(mine) is mine
    with pytest.raises(ConfigurationError, match="unknown isolation backend 'nomad'"):
        get_backend("nomad")


def test_alive_helper_sees_this_process():
    assert alive(os.getpid())


def _sandboxed_fake(home: Path) -> None:
    """The fake environment, but declaring the default: sandbox = "bubblewrap"."""
    from isolation.environments.settings import SandboxSettings

    marker_path = home / "fake" / "environment.json"
    marker = json.loads(marker_path.read_text())
    marker["sandbox"] = SandboxSettings().to_dict()
    marker_path.write_text(json.dumps(marker))


def test_no_sandbox_available_fails_before_anything_runs_and_names_the_fix(tmp_path, monkeypatch, tmpdir_env):
    from isolation.backends import sandbox

    fake_env(tmp_path / "envs")
    _sandboxed_fake(tmp_path / "envs")
    monkeypatch.setenv("ISOLATION_BWRAP", str(tmp_path / "no-bwrap-here"))
    sandbox.probe.cache_clear()
    try:
        backend = LocalBackend(tmp_path / "envs")
        with pytest.raises(ConfigurationError, match="the local sandbox is not available") as info:
            backend.check("fake")
        text = info.value.diagnostics()
        assert "apt-get install bubblewrap" in text
        assert 'sandbox = "none"' in text
        sealed = []
        with pytest.raises(ConfigurationError, match="not available"):
            backend.run("fake", lambda path: sealed.append(path) or "{}", print)
        # Nothing was sealed: no secret was resolved or handed to anything.
        assert sealed == []
        assert isolation_temp_dirs(str(tmpdir_env)) == set()
    finally:
        sandbox.probe.cache_clear()


def test_probe_reports_a_working_sandbox_here():
    # CI installs bubblewrap (.ci/run): the sandboxed suites depend on this being true.
    from isolation.backends import sandbox

    status = sandbox.probe()
    assert status.available, status.detail
    assert status.version and status.version.startswith("bubblewrap")


def test_an_environment_built_with_another_runtime_version_is_refused(tmp_path):
    fake_env(tmp_path / "envs")
    marker_path = tmp_path / "envs" / "fake" / "environment.json"
    marker = json.loads(marker_path.read_text())
    marker["runtime_version"] = "1.0.1"
    marker_path.write_text(json.dumps(marker))
    with pytest.raises(ConfigurationError, match=r"holds isolation runtime 1\.0\.1") as info:
        LocalBackend(tmp_path / "envs").check("fake")
    assert "rebuild it" in info.value.diagnostics()


def test_a_sandbox_that_cannot_start_fails_with_the_fix(tmp_path, monkeypatch, tmpdir_env):
    # What bubblewrap says where user namespaces are disabled; the task never ran.
    fake_env(tmp_path / "envs")
    _sandboxed_fake(tmp_path / "envs")
    (tmp_path / "envs" / "fake" / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    bwrap = tmp_path / "bwrap"
    bwrap.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    bwrap.chmod(0o755)
    monkeypatch.setenv("ISOLATION_BWRAP", str(bwrap))
    backend = LocalBackend(tmp_path / "envs")
    backend.check("fake")  # the cheap check passes: bubblewrap is there
    with pytest.raises(ConfigurationError, match="the local sandbox could not start: bwrap: No permissions") as info:
        backend.run("fake", lambda path: "{}", print)
    assert "unprivileged user namespaces" in info.value.diagnostics()
    assert isolation_temp_dirs(str(tmpdir_env)) == set()
