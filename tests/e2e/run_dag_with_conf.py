"""``run_dag.py`` with a dag run conf: ``python run_dag_with_conf.py DAG_ID --logical-date ISO --conf JSON``.

Prints the same JSON summary last, read by ``harness.finish``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from harness import collect, load_dag
from run_dag import MARKER


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_id")
    parser.add_argument("--logical-date", required=True)
    parser.add_argument("--conf", default="{}")
    args = parser.parse_args()
    logical_date = dt.datetime.fromisoformat(args.logical_date)
    dag_run = load_dag(args.dag_id).test(logical_date=logical_date, run_conf=json.loads(args.conf))
    summary = collect(args.dag_id, dag_run)
    sys.stdout.flush()
    print(MARKER + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
