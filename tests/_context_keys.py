"""The context keys an environment's own Airflow gives a running task, asked of that Airflow.

Each environment's interpreter builds a real task context, outside any sandbox and
isolation: Airflow 2 with ``TaskInstance.get_template_context`` on a throwaway metadata
database (it reads the dag run from there), Airflow 3 with the Task SDK's
``RuntimeTaskInstance.get_template_context`` from a run context like the API server's
(with and without an asset inlet, which adds ``asset_state_store``). The keys it returns
are what isolation must carry, or refuse by name.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

from isolation.environments import LocalEnvironment

# What each Airflow major cannot carry into isolation (of the keys its version offers);
# docs/runtime.md, "The context and XCom pulls", gives the reasons.
UNAVAILABLE = {
    2: {"conf", "inlet_events", "inlets", "outlets", "prev_execution_date_success", "triggering_dataset_events"},
    3: {
        "asset_state_store",
        "inlet_events",
        "inlets",
        "outlets",
        "partition_date",
        "partition_key",
        "task_state_store",
        "triggering_asset_events",
    },
}

_AIRFLOW_2 = """
import datetime as dt, json, warnings
warnings.simplefilter("ignore")
from airflow.utils import db
db.initdb()
from airflow.models import DAG
from airflow.operators.empty import EmptyOperator
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunType
when = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)
dag = DAG("keys", schedule=None, start_date=when)
EmptyOperator(task_id="t", dag=dag)
with create_session() as session:
    run = dag.create_dagrun(run_id="r", run_type=DagRunType.MANUAL, execution_date=when,
                            state=DagRunState.RUNNING, data_interval=(when, when), session=session)
    ti = run.get_task_instance("t", session=session)
    ti.task = dag.get_task("t")
    print("KEYS " + json.dumps(sorted(ti.get_template_context(session=session))))
"""

_AIRFLOW_3 = """
import datetime as dt, json, uuid
from airflow.sdk import DAG, Asset
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
when = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)
keys = set()
for inlets in ([], [Asset("s3://bucket/x")]):
    with DAG("keys", schedule=None, start_date=when):
        task = EmptyOperator(task_id="t", inlets=inlets)
    run = DagRun.model_construct(
        dag_id="keys", run_id="r", logical_date=when, data_interval_start=when, data_interval_end=when,
        run_after=when, start_date=when, run_type="manual", state="running", conf={},
        consumed_asset_events=[], partition_key=None, partition_date=None)
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id="t", dag_id="keys", run_id="r", try_number=1, map_index=-1, task=task,
        start_date=when, max_tries=0)
    ti._ti_context_from_server = TIRunContext.model_construct(dag_run=run, max_tries=0, task_reschedule_count=0)
    keys |= set(ti.get_template_context())
print("KEYS " + json.dumps(sorted(keys)))
"""


@functools.cache
def offered_keys(env: LocalEnvironment) -> tuple[str, ...]:
    """The keys of a running task's context in ``env``'s Airflow, sorted."""
    assert env.airflow_version is not None, env
    script = _AIRFLOW_2 if env.airflow_version.startswith("2.") else _AIRFLOW_3
    with tempfile.TemporaryDirectory(prefix="isolation-context-keys-") as home:
        environ = {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "AIRFLOW_HOME": home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{Path(home) / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        done = subprocess.run(
            [str(env.python), "-c", script], capture_output=True, text=True, env=environ, timeout=300, check=False
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("KEYS ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    keys: list[str] = json.loads(lines[-1][len("KEYS ") :])
    return tuple(keys)
