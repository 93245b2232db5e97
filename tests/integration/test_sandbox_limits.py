"""The sandbox's limits hold against a real isolated task (processes, memory, tmpfs).

Each task runs in the ``modern`` environment's sandbox with small limits chosen here, and
a control run with the defaults shows the same task succeeding, so each limit is what
stopped it. Which mechanism enforces the process limit depends on the worker (a per-task
cgroup where one can be made, else ``RLIMIT_NPROC``, which the kernel does not apply to
root); the test asserts the outcome, and that the task log names the mechanism.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from isolation.backends import _cgroup
from isolation.environments import LocalEnvironment
from isolation.environments.settings import Limits, SandboxSettings
from isolation.transport import CallableRef
from tests._envs import MODERN, get_env
from tests.integration._runtime import PYTHON, make_payload, run_runtime

pytestmark = [pytest.mark.envs, pytest.mark.slow]


@pytest.fixture(scope="module")
def modern() -> LocalEnvironment:
    return get_env(MODERN)


def _settings(**limits: int) -> SandboxSettings:
    return SandboxSettings("bubblewrap", "none", dataclasses.replace(Limits(), **limits))


def _call(name: str, **kwargs: int):
    return make_payload(PYTHON, {"python_callable": CallableRef(f"it_tasks:{name}"), "op_kwargs": kwargs})


def test_process_limit_stops_a_fork_flood(modern: LocalEnvironment, tmp_path: Path) -> None:
    cgroup = _cgroup.create(2**30, 64)
    if cgroup is not None:
        cgroup.remove()
    import os

    assert cgroup is not None or os.getuid() != 0, (
        "as root, only a cgroup limits processes: this machine must allow a per-task cgroup"
    )
    limited = run_runtime(
        modern, tmp_path / "limited", payload=_call("fork_many", count=200), settings=_settings(processes=40)
    )
    assert limited.code == 0, limited.output
    report = limited.result["return_value"]
    assert report["started"] < 40 and report["error"], report
    control = run_runtime(modern, tmp_path / "control", payload=_call("fork_many", count=100))
    assert control.code == 0, control.output
    assert control.result["return_value"] == {"started": 100, "error": None}


def test_memory_limit_stops_an_allocation(modern: LocalEnvironment, tmp_path: Path) -> None:
    limited = run_runtime(
        modern, tmp_path / "limited", payload=_call("allocate", megabytes=1200), settings=_settings(memory=1024 * 2**20)
    )
    assert limited.code == 0, limited.output
    assert limited.result["return_value"] == {"allocated": False}
    control = run_runtime(modern, tmp_path / "control", payload=_call("allocate", megabytes=1200))
    assert control.code == 0, control.output
    assert control.result["return_value"] == {"allocated": True}


def test_tmp_is_a_size_limited_tmpfs(modern: LocalEnvironment, tmp_path: Path) -> None:
    limited = run_runtime(
        modern, tmp_path / "limited", payload=_call("fill_tmp", megabytes=64), settings=_settings(tmp=16 * 2**20)
    )
    assert limited.code == 0, limited.output
    report = limited.result["return_value"]
    assert report["written_mb"] <= 16 and "No space left" in report["error"], report
