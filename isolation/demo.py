"""``make demo``: run the example DAG for real and say what ran where.

Runs ``isolation/example_dags/example_isolation.py`` with ``dag.test()`` on this Airflow 3
host, in a throw-away ``AIRFLOW_HOME`` with its own SQLite database, after building (or
reusing) the local environments it needs from this source tree. Airflow's own log goes
to a file in that home (``--verbose`` shows it live); the summary says, per task, where it
ran, on which Python and Airflow, and what came back.

Caches: environments and the demo keyring live under ``ISOLATION_DEMO_CACHE`` (default
``~/.cache/isolation-demo``), so only the first run builds virtualenvs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Nothing here may import Airflow before the demo's AIRFLOW_HOME is in the environment.
from isolation.environments import build_local, load_spec
from isolation.errors import IsolationError
from isolation.keyring import HostKeyring

DAG_ID = "example_isolation"
ENVIRONMENTS = ("legacy", "modern")
SOURCE = Path(__file__).resolve().parent.parent
CONNECTION_PASSWORD = "demo-password-never-printed"  # noqa: S105 - a demo value, shown to be masked


def _cache() -> Path:
    configured = os.environ.get("ISOLATION_DEMO_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "isolation-demo"


def _configure(home: Path, cache: Path) -> None:
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(SOURCE / "isolation" / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__ISOLATION__KEYRING_PATH": str(cache / "keyring"),
            "ISOLATION_ENVS_HOME": str(cache / "envs"),
            # A connection from the environment-variable secrets backend; the variable goes to the DB.
            "AIRFLOW_CONN_EXAMPLE_API": json.dumps(
                {
                    "conn_type": "http",
                    "host": "api.example.internal",
                    "login": "isolation-demo-user",
                    "password": CONNECTION_PASSWORD,
                }
            ),
        }
    )


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors too) to ``path``; None keeps them."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _build_environments(cache: Path) -> dict[str, Any]:
    keyring = HostKeyring.open(cache / "keyring")
    built = {}
    for name in ENVIRONMENTS:
        started = time.monotonic()
        env = build_local(
            load_spec(SOURCE / "environments" / name), keyring=keyring, home=cache / "envs", project_source=SOURCE
        )
        built[name] = env
        print(
            f"  {name:<8} Python {env.python_version:<8} Airflow {env.airflow_version or '-':<8} "
            f"({time.monotonic() - started:.0f} s)  {env.python}"
        )
    return built


def _migrate(home: Path, log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], stdout=out, stderr=out, check=False, cwd=home
        )
    if done.returncode != 0:
        raise SystemExit(f"demo: `airflow db migrate` failed; see {log}")


def _run_dag(log: Path | None) -> Any:
    from airflow.models.variable import Variable

    from isolation.example_dags.example_isolation import dag

    with output_to(log):
        Variable.set("example_greeting", "hello from an Airflow Variable")
        return dag.test()


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary(dag_run: Any) -> list[dict[str, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from isolation.operators.isolated import ENVIRONMENT_XCOM

    rows = []
    with create_session() as session:
        rows = _rows(dag_run, session, XComModel, ENVIRONMENT_XCOM)
    return rows


def _rows(dag_run: Any, session: Any, XComModel: Any, environment_key: str) -> list[dict[str, Any]]:
    rows = []
    for ti in sorted(dag_run.get_task_instances(session=session), key=lambda t: (t.start_date is None, t.start_date)):
        values = {}
        for xcom in session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=DAG_ID, task_ids=ti.task_id)):
            values[xcom.key] = XComModel.deserialize_value(xcom)
        where = values.get(environment_key)
        rows.append(
            {
                "task": ti.task_id,
                "state": str(getattr(ti.state, "value", ti.state)),
                "where": where,
                "returned": values.get("return_value"),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isolation.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", action="store_true", help="show Airflow's log live instead of in a file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args(argv)
    if not (SOURCE / "environments").is_dir():
        print("demo: run it from a source checkout (make demo)", file=sys.stderr)
        return 2
    cache = _cache()
    home = Path(tempfile.mkdtemp(prefix="isolation-demo-"))
    log = home / "demo.log"
    _configure(home, cache)
    try:
        import airflow

        print(
            f"Host: Airflow {airflow.__version__} on Python {platform.python_version()}; AIRFLOW_HOME {home} (SQLite)"
        )
        print(f"Isolated environments (built once, then cached in {cache}):")
        _build_environments(cache)
        _migrate(home, log)
        print(f"Running DAG {DAG_ID!r} with dag.test() ...")
        started = time.monotonic()
        dag_run = _run_dag(None if args.verbose else log)
        took = time.monotonic() - started
        rows = _summary(dag_run)
        _print(rows, dag_run, took, log if not args.verbose else None)
        log_text = log.read_text(errors="replace") if log.exists() else ""
        if CONNECTION_PASSWORD in log_text:
            print("demo: the connection password appeared in the log: masking failed", file=sys.stderr)
            return 1
        _print_sandboxes(log_text)
        ok = str(getattr(dag_run.state, "value", dag_run.state)) == "success"
        return 0 if ok else 1
    except IsolationError as exc:
        print(f"demo: {exc.diagnostics()}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"(kept {home})")
        else:
            shutil.rmtree(home, ignore_errors=True)


def _print(rows: list[dict[str, Any]], dag_run: Any, took: float, log: Path | None) -> None:
    host = f"host (Python {platform.python_version()}, Airflow {__import__('airflow').__version__})"
    print()
    isolated = _isolated_tasks()
    print(f"{'task':<22} {'state':<8} {'ran in':<44} returned")
    for row in rows:
        where = row["where"]
        if where:
            ran = f"{where['name']} (Python {where['python']}, Airflow {where['airflow'] or '-'})"
        elif row["task"] in isolated:
            ran = f"{isolated[row['task']]} (isolated; no result)"
        else:
            ran = host
        returned = "-" if row["returned"] is None else _short(row["returned"])
        print(f"{row['task']:<22} {row['state']:<8} {ran:<44} {returned}")
    print()
    state = str(getattr(dag_run.state, "value", dag_run.state))
    print(f"DAG run {dag_run.run_id}: {state} in {took:.1f} s.")
    print(
        "The connection password and the variable crossed only inside sealed envelopes; "
        "the password is masked in every log."
    )
    if log is not None:
        print("Airflow's full log, with each isolated task's output: --verbose shows it live, --keep keeps " + str(log))


def _print_sandboxes(log_text: str) -> None:
    """What the backend said about each isolated task's confinement (one line per task)."""
    import re

    seen = re.findall(r"isolation: environment '([^']+)': (sandbox: [^;\n]+(?:; network: \w+)?)", log_text)
    for name, how in sorted(set(seen)):
        count = sum(1 for item in seen if item == (name, how))
        print(f"Isolated tasks in {name!r} ({count}): {how}.")


def _isolated_tasks() -> dict[str, str]:
    from isolation.example_dags.example_isolation import dag
    from isolation.operators.isolated import IsolatedOperator

    # @task.isolated tasks are IsolatedOperators too.
    return {task.task_id: task.environment for task in dag.tasks if isinstance(task, IsolatedOperator)}


if __name__ == "__main__":
    sys.exit(main())
