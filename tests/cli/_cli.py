"""Running the real ``isolationctl`` console script in throw-away folders.

Every test runs the installed entry point in a subprocess, with its own HOME, keyring,
environments' home and AIRFLOW_HOME, and none of the caller's ``AIRFLOW_*`` or
``ISOLATION_*`` variables, so nothing leaks between tests or from the machine.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "isolationctl"


@functools.lru_cache(maxsize=1)
def machine_caches() -> dict[str, str]:
    """What a fresh HOME would lose: uv's cache (a cold one costs minutes) and pyenv's interpreters."""
    found: dict[str, str] = {}
    uv = shutil.which("uv")
    if uv is not None:
        done = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            found["UV_CACHE_DIR"] = done.stdout.strip()
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if Path(pyenv).is_dir():
        found["PYENV_ROOT"] = pyenv
    return found


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"isolationctl {command} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Sandbox:
    """A temporary machine for the CLI: a home, a keyring, an environments' home, a project."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def keyring(self) -> Path:
        return self.root / "keyring"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def project(self) -> Path:
        return self.root / "project"

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ISOLATION_", "VIRTUAL_ENV"))}
        self.home.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "HOME": str(self.home),
                "ISOLATION_KEYRING": str(self.keyring),
                "ISOLATION_ENVS_HOME": str(self.envs),
                "AIRFLOW_HOME": str(self.root / "airflow"),
                # Rich: no colours, a fixed width, so output is plain text.
                "NO_COLOR": "1",
                "TERM": "dumb",
                "COLUMNS": "200",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(machine_caches())
        env.update(extra)
        return env

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 600,
    ) -> Result:
        if not SCRIPT.exists():
            raise AssertionError(f"the isolationctl console script is not installed at {SCRIPT}: run make bootstrap")
        if cwd is None:
            self.project.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=cwd or self.project,
            env=env or self.environ(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(tuple(args), done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and assert exit code 0, showing everything the command printed if not."""
        result = self.run(*args, **kwargs)
        assert result.code == 0, str(result)
        return result
