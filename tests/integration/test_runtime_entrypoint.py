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
