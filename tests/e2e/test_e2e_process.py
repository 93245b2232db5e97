"""Killing the Airflow task kills the isolated process tree; DAG parsing looks nothing up."""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import TMP
from harness import DAGS, finish, leftover_temp, namespace_processes, start_dag, wait_namespace_empty

ROOT = Path(__file__).resolve().parents[2]
_PIDS = re.compile(r"sleeping runtime_pid=(\d+) child_pid=(\d+) pidns=(\d+)")


def _wait_for_isolated_pids(proc) -> tuple[list[str], int]:
    """Read the DAG run's output until the isolated task reports its sandbox; it must hold both processes."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = _PIDS.search(line)
        if match:
            pidns = int(match.group(3))
            assert len(namespace_processes(pidns)) >= 2, "the sandbox should hold the runtime and its child"
            return lines, pidns
    raise AssertionError("".join(lines)[-3000:])


@pytest.mark.envs
@pytest.mark.slow
def test_killing_the_task_kills_the_isolated_tree(airflow_env, start_path):
    proc = start_dag("e2e_kill")
    try:
        lines, pidns = _wait_for_isolated_pids(proc)
        # What the Airflow supervisor does to a task it stops: SIGTERM to the task process.
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = finish(proc, "".join(lines) + rest)
    assert run.states["long"] == "failed"
    assert ("; warm start" in run.logs["long"]) == (start_path == "warm"), run.logs["long"][-3000:]
    # The runtime ran the operator's on_kill and said why it stopped.
    assert "the isolated task was terminated by signal 15" in run.logs["long"], run.logs["long"][-3000:]
    assert wait_namespace_empty(pidns, 10) == [], "an isolated process outlived the task"
    assert leftover_temp(TMP) == []


@pytest.mark.envs
@pytest.mark.slow
def test_a_host_killed_without_warning_takes_the_isolated_tree_with_it(airflow_env, start_path):
    # SIGKILL gives the host no chance to run on_kill: only the lifeline pipe tells the runtime.
    proc = start_dag("e2e_kill")
    try:
        _, pidns = _wait_for_isolated_pids(proc)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_namespace_empty(pidns, 15) == [], "an isolated process outlived a SIGKILLed host"


class _Forbidden(AssertionError):
    pass


def _forbid(*args, **kwargs):
    raise _Forbidden("a lookup or network call happened while parsing a DAG file")


def test_parsing_dag_files_looks_nothing_up(monkeypatch):
    from airflow.models import Variable as ModelVariable
    from airflow.sdk import BaseHook, Connection, Variable

    for owner, name in (
        (BaseHook, "get_connection"),
        (Connection, "get"),
        (Variable, "get"),
        (ModelVariable, "get"),
    ):
        monkeypatch.setattr(owner, name, _forbid)
    monkeypatch.setattr(socket.socket, "connect", _forbid)
    # The guards are live: a lookup would fail the test.
    with pytest.raises(_Forbidden):
        BaseHook.get_connection("anything")
    files = [ROOT / "isolation" / "example_dags" / "example_isolation.py", *sorted(DAGS.glob("e2e_*.py"))]
    for index, path in enumerate(files):
        spec = importlib.util.spec_from_file_location(f"parse_check_{index}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.dag.task_ids, path
