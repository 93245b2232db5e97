"""Small callables that show (and let the end-to-end tests check) isolation's behaviour.

Like :mod:`isolation.example_dags.callables` they ship inside the package so that every
environment built with this project can import them, under Airflow 2 and 3 alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any


def round_trip(value: dict[str, Any], ti: Any) -> dict[str, Any]:
    """Doubles an upstream value, reads it again through ``ti.xcom_pull``, pushes an extra key."""
    pulled = ti.xcom_pull(task_ids="produce")
    ti.xcom_push(key="extra", value={"seen": pulled["n"]})
    return {"doubled": value["n"] * 2, "pulled": pulled}


def echo(values: dict[str, Any]) -> dict[str, Any]:
    """Returns its (rendered) argument."""
    return values


def fail(message: str) -> None:
    raise ValueError(message)


def fail_for_good(message: str) -> None:
    """Raises AirflowFailException: Airflow fails the task without retrying it."""
    try:  # the Task SDK's class from Airflow 3.1; airflow.exceptions before (and re-exported after)
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:
        from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]
    raise AirflowFailException(message)


def mapped_report(value: Any, ti: Any = None) -> dict[str, Any]:
    """Its argument and the map index of the task instance it runs as."""
    return {"value": value, "map_index": ti.map_index}


def never_ready() -> bool:
    """A sensor condition that never holds: the sensor times out."""
    return False


def write_variable() -> None:
    """Tries to write an Airflow Variable: the no-callback contract forbids it."""
    from airflow.models import Variable

    Variable.set("written_from_isolation", "x")


def environment_report(conn_id: str, variable: str) -> dict[str, Any]:
    """Uses a connection and a variable, prints both, and reports the process environment."""
    try:
        from airflow.sdk import BaseHook, Variable
    except ImportError:  # Airflow 2
        from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef]
        from airflow.models import Variable

    conn = BaseHook.get_connection(conn_id)
    value = Variable.get(variable)
    print(f"password={conn.password} variable={value}", flush=True)
    with open("/proc/self/environ", "rb") as handle:
        initial = handle.read().decode("utf-8", "replace").split("\0")
    return {"environ": dict(os.environ), "initial_environ": [item for item in initial if item]}


def sleep_with_child(seconds: float) -> None:
    """Starts a grandchild process, says who is who, then sleeps.

    In a sandbox the pids are the sandbox's own; ``pidns`` (the PID namespace's inode)
    lets the host find every process of the sandbox.
    """
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    pidns = os.stat("/proc/self/ns/pid").st_ino
    print(f"sleeping runtime_pid={os.getpid()} child_pid={child.pid} pidns={pidns}", flush=True)
    time.sleep(seconds)


def noop() -> int:
    """The benchmark's trivial callable."""
    return 1


def given(value: Any) -> Any:
    """Return the argument: a ShortCircuit condition or the branches to follow."""
    return value
