"""Code the integration tests run inside the isolated environments (on PYTHONPATH there).

It imports Airflow lazily so that it runs on every supported version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def out(name: str, data: Any) -> None:
    """Write a file the test reads back."""
    path = os.path.join(os.environ["ISOLATION_TEST_OUT"], name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(data if isinstance(data, str) else json.dumps(data, default=repr))


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def noop() -> None:
    return None


def airflow_major() -> int:
    import airflow

    return int(airflow.__version__.split(".")[0])


def inspect_context(**context: Any) -> dict[str, Any]:
    """Report the types and values of the context, pull an XCom and push two."""
    import datetime

    if airflow_major() >= 3:
        from airflow.sdk import get_current_context
    else:
        from airflow.operators.python import get_current_context

    from collections.abc import Mapping

    current = get_current_context()
    ti = context["ti"]
    ti.xcom_push(key="pushed", value={"n": 1})
    context["task_instance"].xcom_push(key="second", value=[1, 2])
    return {
        "same_context": current is context or current["run_id"] == context["run_id"],
        "logical_date_is_datetime": isinstance(context["logical_date"], datetime.datetime),
        "logical_date_type": type(context["logical_date"]).__module__.split(".")[0],
        "data_interval_start": context["data_interval_start"].isoformat(),
        "params_is_mapping": isinstance(context["params"], Mapping),
        "params": dict(context["params"]),
        "conf": context["dag_run"].conf,
        "ids": [ti.dag_id, ti.task_id, context["dag"].dag_id, context["task"].task_id, ti.run_id],
        "try_number": ti.try_number,
        "map_index": ti.map_index,
        "pulled": ti.xcom_pull(task_ids="upstream"),
        "pulled_key": ti.xcom_pull(task_ids="upstream", key="extra"),
        "pulled_mapped": ti.xcom_pull(task_ids="mapped"),
        "pulled_missing": ti.xcom_pull(task_ids="nowhere", default="dflt"),
    }


def use_connections_and_variables() -> dict[str, Any]:
    """Read through every public getter; ask for what was not provided."""
    from airflow.hooks.base import BaseHook

    if airflow_major() >= 3:
        from airflow.sdk import Connection, Variable

        sdk_conn = Connection.get("api").host
    else:
        from airflow.models import Variable

        sdk_conn = None
    conn = BaseHook.get_connection("api")
    report: dict[str, Any] = {
        "host": conn.host,
        "port": conn.port,
        "schema": conn.schema,
        "extra": conn.extra_dejson,
        "sdk_conn": sdk_conn,
        "var": Variable.get("plain"),
        "json": Variable.get("structured", deserialize_json=True),
        "default": Variable.get("absent", "fallback"),
    }
    for what, call in (
        ("missing_conn", lambda: BaseHook.get_connection("nope")),
        ("missing_var", lambda: Variable.get("nope")),
    ):
        try:
            call()
        except Exception as exc:
            report[what] = [type(exc).__mro__[1].__name__, str(exc)]
    from airflow.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection("nope")
    except AirflowNotFoundException:
        report["not_found_is_airflow_type"] = True
    try:
        Variable.get("nope")
    except KeyError:
        report["missing_var_is_key_error"] = True
    return report


def skip() -> None:
    from airflow.exceptions import AirflowSkipException

    raise AirflowSkipException("nothing to do today")


def fail_with(message: str) -> None:
    raise RuntimeError(message)


def return_unserialisable() -> Any:
    return {1, 2, 3}


def push_unserialisable(**context: Any) -> str:
    context["ti"].xcom_push(key="bad_key", value=object())
    return "ok"


def poke_three_times() -> bool:
    """True on the third call (a sensor pokes until then)."""
    path = os.path.join(os.environ["ISOLATION_TEST_OUT"], "pokes")
    count = int(Path(path).read_text()) + 1 if os.path.exists(path) else 1
    out("pokes", str(count))
    return count >= 3


def mark_ran() -> str:
    out("ran", "yes")
    return "ran"


def leak_attempts() -> str:
    """Print and log every secret it can reach; the runtime must mask them all."""
    import logging

    from airflow.hooks.base import BaseHook

    if airflow_major() >= 3:
        from airflow.sdk import Variable
    else:
        from airflow.models import Variable

    conn = BaseHook.get_connection("db")
    token = Variable.get("token")
    print("password is", conn.password)
    print("token is", token, flush=True)
    logging.getLogger("leaky").warning("extra %s login %s", conn.extra, conn.login)
    out("environ", "\n".join(f"{k}={v}" for k, v in os.environ.items()))
    try:  # Airflow 3.1+
        from airflow.sdk.log import redact  # type: ignore[attr-defined]
    except ImportError:  # Airflow 3.0, then Airflow 2
        try:
            from airflow.sdk.execution_time.secrets_masker import redact
        except ImportError:
            from airflow.utils.log.secrets_masker import redact
    # Airflow's own masker was told too (it redacts rendered fields and connection URIs).
    out("airflow_redact", json.dumps([redact(f"x {conn.password} y"), redact(f"x {token} y")]))
    return "done"


def leak_in_error() -> None:
    from airflow.hooks.base import BaseHook

    raise ValueError(f"could not log in with {BaseHook.get_connection('db').password}")


def _escaped_forms(secret: str) -> dict[str, str]:
    from urllib.parse import quote, quote_plus

    return {
        "raw": secret,
        "repr": repr(secret),
        "json": json.dumps(secret),
        "json_unicode": json.dumps(secret, ensure_ascii=False),
        "quote": quote(secret, safe=""),
        "quote_slash": quote(secret),
        "quote_plus": quote_plus(secret),
        "bytes": repr(secret.encode()),
    }


def leak_escaped_forms() -> str:
    """Write one password in every spelling through every write path; each line is labelled."""
    import logging
    import subprocess
    import sys

    from airflow.hooks.base import BaseHook

    forms = _escaped_forms(BaseHook.get_connection("hard").password)
    for name, form in forms.items():
        print(f"print-{name}=<{form}>", flush=True)
        sys.__stdout__.write(f"dunder_stdout-{name}=<{form}>\n")
        sys.__stdout__.flush()
        sys.__stderr__.write(f"dunder_stderr-{name}=<{form}>\n")
        sys.__stderr__.flush()
        os.write(1, f"fd1-{name}=<{form}>\n".encode())
        os.write(2, f"fd2-{name}=<{form}>\n".encode())
        logging.getLogger("leaky").warning("logged-%s=<%s>", name, form)
        # The child gets the value in its environment and writes it to both inherited fds.
        subprocess.run(
            ["sh", "-c", 'printf "child_out-%s=<%s>\\n" "$N" "$V"; printf "child_err-%s=<%s>\\n" "$N" "$V" >&2'],
            env={"PATH": os.environ["PATH"], "N": name, "V": form},
            check=True,
        )
    return "done"


def leak_escaped_in_error() -> None:
    from airflow.hooks.base import BaseHook

    forms = _escaped_forms(BaseHook.get_connection("hard").password)
    raise ValueError(" ".join(f"{name}=<{form}>" for name, form in forms.items()))


def _home_files() -> list[str]:
    home = os.environ["AIRFLOW_HOME"]
    return sorted(os.path.relpath(os.path.join(d, f), home) for d, _, fs in os.walk(home) for f in fs)


def _attempts() -> dict[str, Any]:
    """Each forbidden call back into Airflow, by name."""
    from airflow import settings
    from airflow.models.connection import Connection as CoreConnection
    from airflow.models.variable import Variable as CoreVariable
    from airflow.utils.session import create_session, provide_session

    if airflow_major() >= 3:
        from airflow.sdk import Variable
    else:
        Variable = CoreVariable

    @provide_session
    def count_variables(session: Any = None) -> int:
        return session.query(CoreVariable).count()

    def write_connection() -> None:
        with create_session() as session:
            session.add(CoreConnection(conn_id="created", conn_type="http", host="h"))

    def supervisor_or_internal_api() -> None:
        if airflow_major() >= 3:
            from airflow.sdk.execution_time.comms import GetVariable
            from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

            SUPERVISOR_COMMS.send(GetVariable(key="existing"))
        else:
            from airflow.api_internal.internal_api_call import InternalApiConfig

            InternalApiConfig.set_use_internal_api("isolated task")

    def engine_connect() -> None:
        from sqlalchemy import text

        with settings.engine.connect() as connection:
            connection.execute(text("select 1"))

    return {
        "variable_set": lambda: Variable.set("existing", "changed"),
        "variable_delete": lambda: Variable.delete("existing"),
        "variable_update": lambda: CoreVariable.update("existing", "changed"),
        "connection_write": write_connection,
        "settings_session": lambda: settings.Session(),
        "create_session": lambda: create_session().__enter__(),
        "provide_session": count_variables,
        "engine": engine_connect,
        "callback_channel": supervisor_or_internal_api,
    }


def try_forbidden(raise_last: str) -> None:
    """Attempt every forbidden call, record what happened, then let ``raise_last`` escape."""
    from isolation.errors import IsolationViolation

    if airflow_major() >= 3:
        from airflow.sdk import Variable
    else:
        from airflow.models import Variable

    report: dict[str, Any] = {}
    attempts = _attempts()
    for name, attempt in attempts.items():
        try:
            attempt()
            report[name] = {"raised": None}
        except IsolationViolation as exc:
            report[name] = {"raised": "IsolationViolation", "message": str(exc)}
        except Exception as exc:
            report[name] = {"raised": type(exc).__name__, "message": str(exc)}
        report[name]["existing_after"] = Variable.get("existing")
        report[name]["home_files"] = _home_files()
    out("guards.json", report)
    attempts[raise_last]()


def try_queries(**context: Any) -> None:
    """Ask the task instance and dag run every query their Airflow counterparts have; record each outcome.

    The last attempt asks the Task SDK class itself (Airflow 3) or the stand-in (Airflow 2)
    and is left uncaught.
    """
    from isolation.errors import IsolationViolation
    from isolation.runtime import compat, contract

    real_ti, real_dag_run = compat.real_run_classes()
    targets = [("ti", context["ti"], real_ti, contract.TASK_INSTANCE_QUERIES)]
    targets.append(("dag_run", context["dag_run"], real_dag_run, contract.DAG_RUN_QUERIES))
    report: dict[str, Any] = {}
    for owner, stand_in, real, queries in targets:
        for name in queries:
            if real is None or not hasattr(real, name):
                continue
            try:
                getattr(stand_in, name)(dag_id="other_dag")
                report[f"{owner}.{name}"] = {"raised": None}
            except IsolationViolation as exc:
                report[f"{owner}.{name}"] = {"raised": "IsolationViolation", "message": str(exc)}
            except Exception as exc:
                report[f"{owner}.{name}"] = {"raised": type(exc).__name__, "message": str(exc)}
    report["home_files"] = _home_files()
    out("queries.json", report)
    if airflow_major() >= 3:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        RuntimeTaskInstance.get_dr_count(dag_id="other_dag")
    else:
        context["ti"].get_previous_ti()


def await_input() -> None:
    """Ask the task runner to park this task until a human answers (Airflow 3.3's signal)."""
    from airflow.sdk.exceptions import TaskAwaitingInput

    raise TaskAwaitingInput(method_name="execute_complete")


def two_outputs() -> dict[str, Any]:
    return {"first": 1, "second": "two"}


def _deferring_operator() -> type:
    if airflow_major() >= 3:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk import BaseOperator
    else:
        from airflow.models.baseoperator import BaseOperator
        from airflow.triggers.temporal import TimeDeltaTrigger

    import datetime

    class DeferringOperator(BaseOperator):
        def execute(self, context: Any) -> None:
            self.defer(trigger=TimeDeltaTrigger(datetime.timedelta(hours=1)), method_name="resume")

        def resume(self, context: Any, event: Any = None) -> None:
            return None

    return DeferringOperator


def __getattr__(name: str) -> Any:
    # Built on first use: importing Airflow at module level would slow every import of this module.
    if name == "DeferringOperator":
        cls = _deferring_operator()
        cls.__module__ = __name__
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def fork_many(count: int) -> dict[str, Any]:
    """Start ``count`` sleeping processes at once; report how many the sandbox allowed."""
    import subprocess

    started, error = [], None
    try:
        for _ in range(count):
            started.append(subprocess.Popen(["sleep", "30"]))
    except OSError as exc:
        error = type(exc).__name__ + ": " + (exc.strerror or "")
    for proc in started:
        proc.kill()
        proc.wait()
    return {"started": len(started), "error": error}


def allocate(megabytes: int) -> dict[str, Any]:
    """Touch ``megabytes`` of memory; report whether the sandbox allowed it."""
    try:
        block = bytearray(megabytes * 2**20)
        block[::4096] = b"x" * len(block[::4096])
    except MemoryError:
        return {"allocated": False}
    return {"allocated": True}


def fill_tmp(megabytes: int) -> dict[str, Any]:
    """Write ``megabytes`` into /tmp (the sandbox's tmpfs); report where it stopped."""
    import tempfile

    written = 0
    try:
        with tempfile.NamedTemporaryFile(dir="/tmp") as handle:  # the sandbox's own tmpfs
            chunk = b"x" * 2**20
            for _ in range(megabytes):
                handle.write(chunk)
                handle.flush()
                written += 1
    except OSError as exc:
        return {"written_mb": written, "error": type(exc).__name__ + ": " + (exc.strerror or "")}
    return {"written_mb": written, "error": None}
