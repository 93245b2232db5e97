"""The context the host seals: schema 2's keys from other runs, from a real Airflow 3 context.

Each context is the one Airflow 3's own ``RuntimeTaskInstance.get_template_context``
builds from a run context like the API server's. Its ``prev_*_success`` keys are lazy
calls to the supervisor; here they are lazy values instead, as no supervisor runs.
The previous and next logical dates follow Airflow 2's definitions
(``TaskInstance.get_template_context``); ``test_airflow_2_computes_the_same_schedule``
asks a real Airflow 2.11 for them.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from typing import Any

import lazy_object_proxy
import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset
from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
from airflow.timetables.interval import CronDataIntervalTimetable

from isolation.operators._state import task_context

UTC = dt.timezone.utc
T = dt.datetime(2024, 3, 4, 6, 0, tzinfo=UTC)
DAY = dt.timedelta(days=1)


def airflow_context(
    schedule: Any,
    run_type: str,
    logical: dt.datetime | None,
    interval: tuple[dt.datetime, dt.datetime] | None,
    success: dict[str, dt.datetime | None] | None = None,
) -> dict[str, Any]:
    with DAG("ctx", schedule=schedule, start_date=dt.datetime(2024, 1, 1, tzinfo=UTC)):
        task = EmptyOperator(task_id="t")
    start, end = interval if interval else (None, None)
    run = DagRun.model_construct(
        dag_id="ctx",
        run_id="r",
        logical_date=logical,
        data_interval_start=start,
        data_interval_end=end,
        run_after=end or T,
        start_date=T + DAY,
        run_type=run_type,
        state="running",
        conf={"k": 1},
        consumed_asset_events=[],
        partition_key=None,
        partition_date=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id="t", dag_id="ctx", run_id="r", try_number=1, map_index=-1, task=task, start_date=T
    )
    ti._ti_context_from_server = TIRunContext.model_construct(dag_run=run, max_tries=0, task_reschedule_count=0)
    context = dict(ti.get_template_context())
    for key, value in (success or {}).items():
        context[key] = lazy_object_proxy.Proxy(lambda value=value: value)
    return context


def sealed(context: dict[str, Any]) -> Any:
    return task_context(context, owner="me")


def test_a_manual_run_is_its_own_previous_and_next_logical_date():
    ctx = sealed(airflow_context("0 6 * * *", "manual", T, (T, T)))
    assert ctx.prev_logical_date == T and ctx.next_logical_date == T
    assert ctx.dag_run_conf == {"k": 1} and ctx.run_type == "manual"


@pytest.mark.parametrize(
    ("schedule", "interval", "prev", "following"),
    [
        ("0 6 * * *", (T, T), T - DAY, T + DAY),  # Airflow 3's cron default: CronTriggerTimetable
        (CronDataIntervalTimetable("0 6 * * *", timezone="UTC"), (T, T + DAY), T - DAY, T + DAY),
        (dt.timedelta(hours=6), (T, T), T - dt.timedelta(hours=6), T + dt.timedelta(hours=6)),
    ],
    ids=["cron-trigger", "cron-data-interval", "delta"],
)
def test_a_scheduled_run_takes_them_from_the_timetable(schedule, interval, prev, following):
    ctx = sealed(airflow_context(schedule, "scheduled", T, interval))
    assert ctx.prev_logical_date == prev
    assert ctx.next_logical_date == following


@pytest.mark.parametrize(
    ("schedule", "run_type"),
    [(None, "backfill"), ([Asset("s3://bucket/in")], "asset_triggered"), ("@once", "scheduled")],
    ids=["no-schedule", "assets", "once"],
)
def test_timetables_without_a_schedule_to_name_leave_them_out(schedule, run_type):
    ctx = sealed(airflow_context(schedule, run_type, T, (T, T)))
    assert ctx.prev_logical_date is None
    assert ctx.next_logical_date is None


def test_a_run_without_a_logical_date_has_no_schedule_dates():
    ctx = sealed(airflow_context("0 6 * * *", "manual", None, None))
    assert ctx.logical_date is None and ctx.prev_logical_date is None and ctx.next_logical_date is None


def test_the_latest_successful_run_comes_from_airflows_lazy_keys():
    success = {
        "prev_data_interval_start_success": T - 2 * DAY,
        "prev_data_interval_end_success": T - DAY,
        "prev_start_date_success": T - DAY + dt.timedelta(minutes=1),
        "prev_end_date_success": T - DAY + dt.timedelta(minutes=5),
    }
    ctx = sealed(airflow_context("0 6 * * *", "manual", T, (T, T), success))
    for key, value in success.items():
        assert getattr(ctx, key) == value, key
        assert type(getattr(ctx, key)) is dt.datetime  # stdlib, as the envelope carries it
    none = sealed(airflow_context("0 6 * * *", "manual", T, (T, T), dict.fromkeys(success)))
    assert all(getattr(none, key) is None for key in success)


_AIRFLOW_2_SCHEDULE = """
import datetime as dt, json, sys, warnings
warnings.simplefilter("ignore")
from airflow.utils import db
db.initdb()
from airflow.models import DAG
from airflow.operators.empty import EmptyOperator
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunType
when = dt.datetime(2024, 3, 4, 6, tzinfo=dt.timezone.utc)
dag = DAG("ctx", schedule="0 6 * * *", start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
EmptyOperator(task_id="t", dag=dag)
out = {}
with create_session() as session:
    for run_type in (DagRunType.SCHEDULED, DagRunType.MANUAL):
        run = dag.create_dagrun(run_id=f"r-{run_type.value}", run_type=run_type, execution_date=when,
                                state=DagRunState.RUNNING, data_interval=dag.infer_automated_data_interval(when),
                                external_trigger=run_type == DagRunType.MANUAL, session=session)
        ti = run.get_task_instance("t", session=session)
        ti.task = dag.get_task("t")
        context = ti.get_template_context(session=session)
        out[run_type.value] = [context["prev_execution_date"].isoformat(), context["next_execution_date"].isoformat()]
        when = when + dt.timedelta(minutes=1)  # a second run: another logical date
print("DATES " + json.dumps(out))
"""


@pytest.mark.envs
@pytest.mark.slow
def test_airflow_2_computes_the_same_schedule(tmp_path):
    from tests._envs import LEGACY, get_env

    env = get_env(LEGACY)
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run(
        [str(env.python), "-c", _AIRFLOW_2_SCHEDULE], capture_output=True, text=True, env=environ, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("DATES ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    airflow_2 = json.loads(lines[-1][len("DATES ") :])
    # The same DAG on this Airflow 3 host: cron schedules are trigger timetables here.
    scheduled = sealed(airflow_context("0 6 * * *", "scheduled", T, (T, T)))
    assert airflow_2["scheduled"] == [scheduled.prev_logical_date.isoformat(), scheduled.next_logical_date.isoformat()]
    manual_at = T + dt.timedelta(minutes=1)
    manual = sealed(airflow_context("0 6 * * *", "manual", manual_at, (manual_at, manual_at)))
    assert airflow_2["manual"] == [manual.prev_logical_date.isoformat(), manual.next_logical_date.isoformat()]
