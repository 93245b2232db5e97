"""The console script and the flags: ``isolation-runtime --envelope-file ... --result-path ...``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from tests.integration._runtime import PYTHON, make_payload, scrubbed_env, seal

pytestmark = [pytest.mark.envs, pytest.mark.slow]


def test_console_script_with_flags(environment: LocalEnvironment, tmp_path: Path) -> None:
    script = environment.python.parent / "isolation-runtime"
    assert script.exists()
    payload = make_payload(
        PYTHON, {"python_callable": CallableRef("it_tasks:add"), "op_args": [1, 2]}, options={"log_level": "DEBUG"}
    )
    (tmp_path / "envelope").write_text(seal(environment, payload) + "\n")
    env = scrubbed_env(environment, tmp_path, {"ISOLATION_RUNTIME_TIMINGS": "1"})
    keys = env.pop("ISOLATION_KEYS_DIR")
    done = subprocess.run(
        [
            str(script),
            "--envelope-file",
            str(tmp_path / "envelope"),
            "--keys-dir",
            keys,
            "--result-path",
            str(tmp_path / "flag-result.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "flag-result.json").read_text())
    assert result["return_value"] == 3
    assert result["environment"]["name"] == environment.name
    assert result["environment"]["airflow"] == environment.airflow_version
    assert "isolation-runtime: timings ms: read=" in done.stderr
    # The envelope file is read, never removed or rewritten by the runtime.
    assert (tmp_path / "envelope").exists()


def test_sigterm_runs_on_kill_and_fails_the_task(environment: LocalEnvironment, tmp_path: Path) -> None:
    import os
    import signal
    import time

    from tests.integration._runtime import bash_path

    payload = make_payload(
        bash_path(environment),
        {"bash_command": 'echo $$ > "$ISOLATION_TEST_OUT/pid"; sleep 120'},
        options={"result_path": str(tmp_path / "result.json")},
    )
    env = scrubbed_env(environment, tmp_path)
    proc = subprocess.Popen(
        [str(environment.python), "-m", "isolation.runtime", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(seal(environment, payload).encode())
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    pid_file = tmp_path / "out" / "pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "the bash command never started"
        time.sleep(0.1)
    shell = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["error"]["type"] == "TaskTerminated"
    assert "terminated by signal 15" in stderr.decode().strip().splitlines()[-1]
    # on_kill stopped the shell: no orphan keeps running after the task.
    for _ in range(50):
        if not Path(f"/proc/{shell}").exists() or "zombie" in Path(f"/proc/{shell}/status").read_text():
            break
        time.sleep(0.1)
    else:
        os.kill(shell, signal.SIGKILL)
        raise AssertionError("the operator's shell survived SIGTERM")
