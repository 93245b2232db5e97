"""Per-task overhead of isolation against its closest peer, in one run on one machine.

The same trivial callable (``isolation.example_dags.probes:noop``) runs as

  (a) a plain ``PythonOperator`` on the host (the floor: Airflow's own task overhead),
  (b) an ``ExternalPythonOperator`` into the modern environment's virtualenv (Python 3.13,
      Airflow 3.3.2): another interpreter, no isolation (the peer),
  (c) an ``IsolatedOperator`` wrapping a ``PythonOperator`` in that same environment with
      the local backend, cold (``LocalBackend(warm=False)``): another interpreter plus
      sealing, a scrubbed child, the sandbox and the runtime's guards,
  (d) the same, warm (``LocalBackend(warm=True)``): a fork of the environment's warm
      server, in namespaces of its own (docs/howto-local.md).

Each round runs one DAG run holding the four tasks with ``dag.test()`` (temporary
``AIRFLOW_HOME``, SQLite); a task's wall time is its task instance's end minus start as
Airflow records it. Medians are compared: c/b (target <= 1.0); ``warm_overhead_ms`` =
d - a (target <= 50 ms) and ``ratio_warm_vs_external`` = d/b (target <= 0.1).

Throughput: 20 tasks, 4 at a time, through the local backend warm, against 20 new
interpreters of the environment importing Airflow and running the callable (what
ExternalPythonOperator starts per task), also 4 at a time. Memory: the warm server's
RSS and the unique memory (USS) of one task's child while it runs.

Then the sandbox's own cost per task, ``sandbox_overhead_ms`` (sandboxed against
``sandbox = "none"`` in the same run, paired; target <= 15 ms): see ``bench/sandbox.py``.

    .venv/bin/python bench/overhead.py [--rounds N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "bench_overhead"
TASKS = {"a": "plain_python", "b": "external_python", "c": "isolated_python", "d": "isolated_warm"}

DAG_FILE = """
import datetime as dt
import os

from airflow.providers.standard.operators.python import ExternalPythonOperator, PythonOperator
from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.backends import LocalBackend
from isolation.example_dags.probes import noop

with DAG("bench_overhead", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:
    PythonOperator(task_id="plain_python", python_callable=noop)
    ExternalPythonOperator(
        task_id="external_python", python=os.environ["BENCH_ENV_PYTHON"], python_callable=noop, expect_airflow=True
    )
    IsolatedOperator(
        task_id="isolated_python",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=noop,
        backend=LocalBackend(warm=False),
    )
    IsolatedOperator(
        task_id="isolated_warm",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="modern",
        python_callable=noop,
        backend=LocalBackend(warm=True),
    )
"""


def _setup(home: Path) -> Path:
    """Environment variables for Airflow (before it is imported), the DAG file, the env."""
    sys.path.insert(0, str(ROOT))
    from tests._envs import envs_home, get_env, host_keyring

    env = get_env("modern")
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__ISOLATION__KEYRING_PATH": str(host_keyring().path),
            "ISOLATION_ENVS_HOME": str(envs_home()),
            "BENCH_ENV_PYTHON": str(env.python),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{done.stderr[-2000:]}")
    return dags / f"{DAG_ID}.py"


def _load_dag(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_overhead_dag", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _round(dag: Any, log: Path) -> dict[str, float]:
    """One DAG run; seconds per task from Airflow's own task instance timestamps."""
    from airflow.utils.session import create_session

    from isolation.demo import output_to

    with output_to(log):
        dag_run = dag.test()
    times = {}
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            state = str(getattr(ti.state, "value", ti.state))
            if state != "success":
                raise SystemExit(f"task {ti.task_id} ended {state}; see {log}")
            times[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed DAG runs (default 10)")
    parser.add_argument("--quick", action="store_true", help="CI mode: 3 timed rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    home = Path(tempfile.mkdtemp(prefix="isolation-bench-"))
    try:
        dag_file = _setup(home)
        import airflow

        dag = _load_dag(dag_file)
        log = home / "bench.log"
        _round(dag, log)  # warm-up: first in-process API start, byte-code caches
        samples: dict[str, list[float]] = {task: [] for task in TASKS.values()}
        started = time.monotonic()
        for _ in range(rounds):
            for task, seconds in _round(dag, log).items():
                samples[task].append(seconds)
        medians = {task: statistics.median(values) for task, values in samples.items()}
        ratio = medians[TASKS["c"]] / medians[TASKS["b"]]
        result = {
            "benchmark": "overhead",
            "rounds": rounds,
            "host": {"python": platform.python_version(), "airflow": airflow.__version__, "cpus": os.cpu_count()},
            "environment": "modern",
            "seconds_per_task": {
                task: {"median": round(medians[task], 4), "min": round(min(v), 4), "max": round(max(v), 4)}
                for task, v in samples.items()
            },
            "ratio_isolated_vs_external": round(ratio, 3),
            "ratio_isolated_vs_plain": round(medians[TASKS["c"]] / medians[TASKS["a"]], 3),
            "target_ratio_isolated_vs_external": 1.0,
            "wall_seconds": round(time.monotonic() - started, 1),
        }
        warm_ms = (medians[TASKS["d"]] - medians[TASKS["a"]]) * 1000
        result["warm_overhead_ms"] = round(warm_ms, 1)
        result["ratio_warm_vs_external"] = round(medians[TASKS["d"]] / medians[TASKS["b"]], 3)
        result["target_warm_overhead_ms"] = 50
        result["target_ratio_warm_vs_external"] = 0.1
        import warm as warm_bench  # bench/warm.py, beside this file

        result["throughput"] = warm_bench.throughput(tasks=20, parallel=4)
        result["memory"] = warm_bench.memory()
        import sandbox as sandbox_bench  # bench/sandbox.py, beside this file

        pairs = (10, 2) if args.quick else (30, 6)
        sandbox_cost = sandbox_bench.measure(*pairs)
        result["sandbox"] = sandbox_cost
        result["sandbox_overhead_ms"] = sandbox_cost["sandbox_overhead_ms"]
        if args.json:
            print(json.dumps(result))
        else:
            print(f"Airflow {airflow.__version__} host, Python {platform.python_version()}; {rounds} rounds")
            labels = {
                "a": "(a) PythonOperator, host",
                "b": "(b) ExternalPythonOperator",
                "c": "(c) IsolatedOperator, cold",
                "d": "(d) IsolatedOperator, warm",
            }
            for key, task in TASKS.items():
                stats = result["seconds_per_task"][task]
                spread = f"(min {stats['min']:.3f}, max {stats['max']:.3f})"
                print(f"  {labels[key]:<30} median {stats['median']:.3f} s  {spread}")
            print(f"  ratio c/b = {ratio:.3f} (target <= 1.0); c/a = {result['ratio_isolated_vs_plain']:.1f}")
            print(
                f"  warm_overhead_ms = d - a = {result['warm_overhead_ms']:.1f} (target <= 50); "
                f"ratio_warm_vs_external = d/b = {result['ratio_warm_vs_external']:.3f} (target <= 0.1)"
            )
            warm_bench.report(result["throughput"], result["memory"])
            sandbox_bench.report(sandbox_cost)
        return 0
    finally:
        if args.keep:
            print(f"(kept {home})", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
