"""The quick start exactly as the README writes it, on a clean machine of its own.

    isolationctl init --example --local --git --astro
    isolationctl deploy --local

then the example DAG runs with ``dag.test()`` under the host's Airflow (a temporary
``AIRFLOW_HOME`` with its own SQLite database) and every task succeeds, the isolated ones
in the example environment's sandbox. The ``astro`` CLI is kept off ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import Sandbox

pytestmark = [pytest.mark.envs, pytest.mark.slow]

RUN_DAG = r"""
import json, sys
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
sys.path.insert(0, sys.argv[1])
from example_isolated import dag

run = dag.test()
with create_session() as session:
    tis = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
    query = XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids="summarize", key="return_value")
    values = [XComModel.deserialize_value(xcom) for xcom in session.scalars(query)]
print("RESULT " + json.dumps({"state": str(getattr(run.state, "value", run.state)),
                              "tasks": {k: str(getattr(v, "value", v)) for k, v in tis.items()},
                              "summary": values[0] if values else None}, default=str))
"""


def _path_without_astro() -> str:
    directories = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in directories if not (Path(d) / "astro").exists())


def test_the_quick_start_as_written_runs_the_example_dag(cli: Sandbox):
    env = cli.environ(PATH=_path_without_astro())
    assert shutil.which("astro", path=env["PATH"]) is None
    init = cli.run("init", "--example", "--local", "--git", "--astro", env=env, input="")
    assert init.code == 0, init
    assert "astro" in init.output  # says what to run, since the astro CLI is absent
    deploy = cli.run("deploy", "--local", env=env, input="", timeout=1200)
    assert deploy.code == 0, deploy

    airflow_env = {
        **env,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(cli.project / "dags"),
    }
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env,
        cwd=cli.root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    ran = subprocess.run(
        [sys.executable, "-c", RUN_DAG, str(cli.project / "dags")],
        env=airflow_env,
        cwd=cli.root,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = [line for line in ran.stdout.splitlines() if line.startswith("RESULT ")]
    assert ran.returncode == 0 and lines, (ran.stdout[-5000:], ran.stderr[-5000:])
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"] == "success", result
    assert set(result["tasks"].values()) == {"success"}, result
    assert {"versions_bash", "versions_python", "summarize"} <= set(result["tasks"])
    # The isolated tasks really ran in the environment: its Airflow 2 and its requests.
    assert "requests 2.31.0" in result["summary"], result
