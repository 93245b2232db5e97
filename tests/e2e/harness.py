"""Running a DAG file of ``dags/`` with ``dag.test()`` and reading what it left in the DB."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isolation.testing.breakout import start_ticks

HERE = Path(__file__).resolve().parent
DAGS = HERE / "dags"


@dataclass
class Run:
    dag_id: str
    run_id: str
    state: str
    states: dict[str, str]
    xcoms: dict[str, dict[str, Any]]
    rendered: dict[str, Any]
    output: str = ""
    logs: dict[str, str] = field(default_factory=dict)
    # Mapped task instances, by task id then map index: their states and XComs.
    mapped_states: dict[str, dict[int, str]] = field(default_factory=dict)
    mapped_xcoms: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # How many tries each (unmapped) task instance had.
    tries: dict[str, int] = field(default_factory=dict)


def load_dag(dag_id: str) -> Any:
    path = DAGS / f"{dag_id}.py"
    spec = importlib.util.spec_from_file_location(f"e2e_dag_{dag_id}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def collect(dag_id: str, dag_run: Any) -> dict[str, Any]:
    """States, XComs and rendered template fields of a finished run (JSON-able)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        states = {ti.task_id: _value(ti.state) for ti in tis}
        tries = {ti.task_id: ti.try_number for ti in tis if ti.map_index < 0}
        mapped_states: dict[str, dict[int, str]] = {}
        for ti in tis:
            if ti.map_index >= 0:
                mapped_states.setdefault(ti.task_id, {})[ti.map_index] = _value(ti.state)
        xcoms: dict[str, dict[str, Any]] = {}
        mapped_xcoms: dict[str, dict[int, dict[str, Any]]] = {}
        for row in session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_id, map_indexes=None)):
            value = XComModel.deserialize_value(row)
            xcoms.setdefault(row.task_id, {})[row.key] = value
            if row.map_index >= 0:
                mapped_xcoms.setdefault(row.task_id, {}).setdefault(row.map_index, {})[row.key] = value
        rendered = {
            row.task_id: row.rendered_fields
            for row in session.scalars(
                select(RenderedTaskInstanceFields).where(
                    RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == dag_run.run_id
                )
            )
        }
    return {
        "dag_id": dag_id,
        "run_id": dag_run.run_id,
        "state": _value(dag_run.state),
        "states": states,
        "xcoms": xcoms,
        "rendered": rendered,
        "mapped_states": mapped_states,
        "mapped_xcoms": mapped_xcoms,
        "tries": tries,
    }


def start_dag(dag_id: str, *args: str) -> subprocess.Popen[str]:
    """A host process running ``run_dag.py`` (stdout and stderr merged)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "run_dag.py"), dag_id, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE,
    )


def run_dag(dag_id: str, *args: str, timeout: float = 300) -> Run:
    """Run a DAG in a host process and return what it left behind."""
    proc = start_dag(dag_id, *args)
    output, _ = proc.communicate(timeout=timeout)
    return finish(proc, output)


def finish(proc: subprocess.Popen[str], output: str) -> Run:
    lines = [line for line in output.splitlines() if line.startswith("E2E-RESULT ")]
    assert proc.returncode == 0 and lines, f"run_dag.py failed (exit {proc.returncode}):\n{output[-4000:]}"
    summary = json.loads(lines[-1][len("E2E-RESULT ") :])
    return Run(
        summary["dag_id"],
        summary["run_id"],
        summary["state"],
        summary["states"],
        summary["xcoms"],
        summary["rendered"],
        output,
        split_logs(output),
        {task: {int(i): v for i, v in by.items()} for task, by in summary.get("mapped_states", {}).items()},
        {task: {int(i): v for i, v in by.items()} for task, by in summary.get("mapped_xcoms", {}).items()},
        summary.get("tries", {}),
    )


_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")


def split_logs(output: str) -> dict[str, str]:
    """The host output of each task (dag.test runs them one after the other)."""
    logs: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        match = _START.search(line)
        if match:
            current = logs.setdefault(match.group(1), [])
        if current is not None:
            current.append(line)
    return {task: "\n".join(lines) for task, lines in logs.items()}


def sandboxed_processes() -> list[int]:
    """Live processes of isolated tasks on this machine: in a sandbox's PID namespace, with its keys path."""
    own = os.stat("/proc/self/ns/pid").st_ino
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/pid").st_ino == own:
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if b"ISOLATION_KEYS_DIR=/run/isolation/keys" in environ and alive(int(entry)):
            found.append(int(entry))
    return found


def namespace_processes(pidns: int, started_by: int | None = None) -> list[int]:
    """Host pids of the live processes in the PID namespace with inode ``pidns`` (a sandbox).

    The kernel gives a freed namespace's inode number to the next new one, so with
    ``started_by`` (clock ticks since boot) only processes started no later count: a later
    namespace's processes all started after this one's last.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{entry}/ns/pid").st_ino
            if started_by is not None and inode == pidns and start_ticks(entry) > started_by:
                continue
        except (OSError, IndexError, ValueError):
            continue
        if inode == pidns and alive(int(entry)):
            found.append(int(entry))
    return found


def wait_namespace_empty(pidns: int, timeout: float, started_by: int | None = None) -> list[int]:
    """The processes of sandbox ``pidns`` still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = namespace_processes(pidns, started_by)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = namespace_processes(pidns, started_by)
    return left


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# What the session's temporary directory held when the running test started (conftest):
# files other tests of this worker left are not this test's.
TEMP_AT_START: set[str] = set()


def temp_entries(tmp: Path) -> set[str]:
    return {p.name for p in tmp.iterdir() if p.name.startswith("isolation-")}


def leftover_temp(tmp: Path) -> list[str]:
    """What this test left in ``tmp``: the ``isolation-*`` entries made since it started."""
    return sorted(temp_entries(tmp) - TEMP_AT_START)
