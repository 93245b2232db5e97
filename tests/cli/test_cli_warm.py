"""`isolationctl env warm start|stop|status` against a real warm server of the ``modern`` environment."""

from __future__ import annotations

import os
import time

import pytest
from _cli import Sandbox

from tests._envs import MODERN, get_env

pytestmark = [pytest.mark.envs, pytest.mark.slow]


def _built_modern(cli: Sandbox) -> None:
    """``modern`` in the sandbox's environments home: its marker copied, its venv and keys the cached ones."""
    modern = get_env(MODERN)
    root = cli.envs / MODERN
    root.mkdir(parents=True)
    (root / "environment.json").write_bytes((modern.root / "environment.json").read_bytes())
    (root / "keys").symlink_to(modern.keys_dir)


def test_warm_start_status_and_stop(cli: Sandbox) -> None:
    _built_modern(cli)
    assert cli.ok("env", "warm", "status", "--json").json() == [{"name": MODERN, "server": False}]
    assert "no warm server running" in cli.ok("env", "warm", "stop", MODERN).output
    try:
        assert "modern: warm server running" in cli.ok("env", "warm", "start", MODERN).output
        (row,) = cli.ok("env", "warm", "status", "--json").json()
        assert row["server"] is True and row["current"] is True, row
        assert row["served"] == 0 and row["running"] == 0 and row["rss"] > 10 * 2**20, row
        assert isinstance(row["pid"], int) and row["pid"] > 0 and len(row["fingerprint"]) == 16, row
        table = cli.ok("env", "warm", "status").stdout
        assert "modern" in table and "running" in table and str(row["pid"]) in table, table
    finally:
        stopped = cli.ok("env", "warm", "stop", MODERN).output
    assert "warm server stopping (0 task(s) still running)" in stopped
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{row['pid']}"):
        time.sleep(0.1)
    assert cli.ok("env", "warm", "status", "--json").json() == [{"name": MODERN, "server": False}]


def test_warm_status_of_an_unknown_environment_fails_with_the_fix(cli: Sandbox) -> None:
    result = cli.run("env", "warm", "status", "nowhere")
    assert result.code != 0 and "nowhere" in result.output, str(result)
