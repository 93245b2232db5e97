"""Run one DAG of ``dags/`` with ``dag.test()`` in this process; print a JSON summary last.

Used by the end-to-end tests as a real host process (the Airflow task runs in it, as
with ``airflow dags test``), so each run has its own logging set-up and output::

    python run_dag.py DAG_ID [--logical-date ISO]

The environment (AIRFLOW_HOME, DB, DAG folder, keyring) comes from the caller.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from harness import collect, load_dag

MARKER = "E2E-RESULT "


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_id")
    parser.add_argument("--logical-date")
    args = parser.parse_args()
    kwargs = {}
    if args.logical_date:
        kwargs["logical_date"] = dt.datetime.fromisoformat(args.logical_date)
    dag_run = load_dag(args.dag_id).test(**kwargs)
    summary = collect(args.dag_id, dag_run)
    sys.stdout.flush()
    print(MARKER + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
