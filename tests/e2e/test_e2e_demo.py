"""``make demo`` as a test: the example DAG, TaskFlow task included, runs and says where each task ran.

The demo runs in a subprocess exactly as ``make demo`` runs it, with its cache pointed at
the test environments' cache (the same ``environments/legacy`` and ``environments/modern``,
the same layout: ``envs/`` and ``keyring/``), so nothing is built twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from _envs import ROOT, cache_root, get_env

pytestmark = [pytest.mark.envs, pytest.mark.slow]


def test_the_demo_runs_every_task_of_the_example_dag_where_it_says():
    for name in ("legacy", "modern"):
        get_env(name)  # built (or reused) from this source tree, as the demo would build them
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ISOLATION_"))}
    env["ISOLATION_DEMO_CACHE"] = str(cache_root())
    done = subprocess.run(
        [sys.executable, "-m", "isolation.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    rows = {
        match.group(1): (match.group(2), match.group(3))
        for match in re.finditer(r"^(\w+)\s+(success|skipped|failed)\s+(\S+)", done.stdout, re.MULTILINE)
    }
    # The TaskFlow task ran in the Airflow 2 environment, the other isolated tasks where they say.
    assert rows["taskflow_legacy"] == ("success", "legacy"), done.stdout
    assert rows["modern_python"] == ("success", "modern"), done.stdout
    assert rows["legacy_python"] == ("success", "legacy"), done.stdout
    assert rows["skipped_in_isolation"][0] == "skipped", done.stdout
    assert all(state in ("success", "skipped") for state, _ in rows.values()), done.stdout
    assert "sandbox: bubblewrap" in done.stdout
