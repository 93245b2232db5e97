"""The quick start exactly as the README writes it, on a clean machine of its own.

    isolationctl init --example --local --git --astro
    isolationctl deploy --local

then the README's next step, ``airflow db migrate`` and ``airflow dags test
example_isolated`` with the project's ``dags/`` as the DAGs folder, under the host's Airflow
(a temporary ``AIRFLOW_HOME`` with its own SQLite database): every task succeeds, the
isolated ones in the example environment's sandbox. The ``astro`` CLI is kept off ``PATH``.
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

# What the run left in the database: the DAG run's state, each task's, the summary's XCom.
READ_RUN = r"""
import json
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

with create_session() as session:
    run = session.query(DagRun).filter(DagRun.dag_id == "example_isolated").one()
    tis = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances(session=session)}
    query = XComModel.get_many(run_id=run.run_id, dag_ids="example_isolated", task_ids="summarize", key="return_value")
    values = [XComModel.deserialize_value(xcom) for xcom in session.scalars(query)]
    state = str(getattr(run.state, "value", run.state))
print("RESULT " + json.dumps({"state": state, "tasks": tis, "summary": values[0] if values else None}, default=str))
"""


def _path_without_astro() -> str:
    directories = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in directories if not (Path(d) / "astro").exists())


def test_the_quick_start_as_written_runs_the_example_dag(cli_real: Sandbox):
    cli = cli_real  # the README's commands, as a person types them
    env = cli.environ(PATH=_path_without_astro())
    assert shutil.which("astro", path=env["PATH"]) is None
    init = cli.run("init", "--example", "--local", "--git", "--astro", env=env, input="")
    assert init.code == 0, init
    assert "astro" in init.output  # says what to run, since the astro CLI is absent
    deploy = cli.run("deploy", "--local", env=env, input="", timeout=1200)
    assert deploy.code == 0, deploy

    # The README's next step, as written: the DAGs folder is the project's dags/.
    airflow_env = {
        **env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(cli.project / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    for command in ([airflow, "db", "migrate"], [airflow, "dags", "test", "example_isolated"]):
        done = subprocess.run(
            command, env=airflow_env, cwd=cli.project, capture_output=True, text=True, timeout=900, check=False
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    read = subprocess.run(
        [sys.executable, "-c", READ_RUN],
        env=airflow_env,
        cwd=cli.root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in read.stdout.splitlines() if line.startswith("RESULT ")]
    assert read.returncode == 0 and lines, (read.stdout[-3000:], read.stderr[-3000:])
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"] == "success", result
    assert set(result["tasks"].values()) == {"success"}, result
    assert {"versions_bash", "versions_python", "summarize"} <= set(result["tasks"])
    # The isolated tasks really ran in the environment: its Airflow 2 and its requests.
    assert "requests 2.31.0" in result["summary"], result
