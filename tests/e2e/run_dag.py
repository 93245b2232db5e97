"""Run one DAG of ``dags/`` with ``dag.test()`` in this process; print a JSON summary last.

Used by the end-to-end tests as a real host process (the Airflow task runs in it, as
with ``airflow dags test``), so each run has its own logging set-up and output::

    python run_dag.py DAG_ID [--logical-date ISO] [--conf JSON] [--scheduled]

The environment (AIRFLOW_HOME, DB, DAG folder, keyring) comes from the caller.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from harness import collect, load_dag

MARKER = "E2E-RESULT "


def _scheduled_runs() -> None:
    """Make ``dag.test()`` create a scheduled run instead of a manual one.

    The run is what the scheduler would have made for that logical date; LatestOnlyOperator
    and Airflow 2's ``prev_ds``/``next_ds`` tell the two apart.
    """
    import airflow.models.dagrun as dagrun_module
    from airflow.utils.types import DagRunType

    original = dagrun_module.get_or_create_dagrun

    def scheduled(**kwargs: Any) -> Any:
        dag = kwargs["dag"]
        create = dag.create_dagrun

        def create_scheduled(**create_kwargs: Any) -> Any:
            create_kwargs["run_type"] = DagRunType.SCHEDULED
            create_kwargs["run_id"] = dagrun_module.DagRun.generate_run_id(
                run_type=DagRunType.SCHEDULED,
                logical_date=create_kwargs["logical_date"],
                run_after=create_kwargs["run_after"],
            )
            return create(**create_kwargs)

        dag.create_dagrun = create_scheduled
        return original(**kwargs)

    dagrun_module.get_or_create_dagrun = scheduled


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_id")
    parser.add_argument("--logical-date")
    parser.add_argument("--conf", help="the dag run's conf, as JSON")
    parser.add_argument("--scheduled", action="store_true")
    args = parser.parse_args()
    if args.scheduled:
        _scheduled_runs()
    kwargs: dict[str, Any] = {}
    if args.logical_date:
        kwargs["logical_date"] = dt.datetime.fromisoformat(args.logical_date)
    if args.conf:
        kwargs["run_conf"] = json.loads(args.conf)
    dag_run = load_dag(args.dag_id).test(**kwargs)
    summary = collect(args.dag_id, dag_run)
    sys.stdout.flush()
    print(MARKER + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
