"""Helpers for the host-side unit tests: fake local environments and process checks."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

from isolation.environments.settings import SandboxSettings

FAKE_RUNTIME = Path(__file__).with_name("fake_runtime.py")


def fake_env(home: Path, name: str = "fake", *, interpreter: str | None = None) -> Path:
    """A local environment whose ``python`` runs :mod:`fake_runtime` (or ``interpreter``).

    It declares ``sandbox = "none"``: these tests are about the backend's process handling
    (pipes, descriptors, environment, process tree) on the unsandboxed path; the sandboxed
    path runs real environments (tests/integration, tests/e2e).
    """
    root = home / name
    bindir = root / "venv" / "bin"
    bindir.mkdir(parents=True)
    python = bindir / "python"
    if interpreter is None:
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_RUNTIME}" "$@"\n')
        python.chmod(python.stat().st_mode | stat.S_IXUSR)
    else:
        python.write_text(interpreter)
        python.chmod(0o755)
    (root / "keys").mkdir()
    settings = SandboxSettings(sandbox="none", network="host").to_dict()
    marker = {
        "name": name,
        "python": str(python),
        "python_version": "3.11.0",
        "airflow": None,
        "fingerprint": "x",
        "sandbox": settings,
    }
    (root / "environment.json").write_text(json.dumps(marker))
    return python


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if alive(pid)]
        if left:
            time.sleep(0.05)
    return left


def isolation_temp_dirs(tmpdir: str | None = None) -> set[str]:
    base = tmpdir or os.environ.get("TMPDIR") or "/tmp"
    return {entry for entry in os.listdir(base) if entry.startswith("isolation-")}
