"""Warm environments under load: throughput 4 at a time, and what a warm server and a task cost in memory.

Used by ``bench/overhead.py`` (same run, same machine); runnable alone:

    .venv/bin/python bench/warm.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from isolation.backends import LocalBackend, _warm  # noqa: E402
from isolation.transport import CallableRef  # noqa: E402
from tests._envs import envs_home, get_env  # noqa: E402
from tests.integration._runtime import PYTHON, make_payload, seal  # noqa: E402

ENV = "modern"
# What ExternalPythonOperator's interpreter does before it calls the function: start, import Airflow.
_EXTERNAL = "import airflow\nfrom isolation.example_dags.probes import noop\nnoop()\n"


def _warm_task(
    backend: LocalBackend, callable_path: str = "isolation.example_dags.probes:noop", **kwargs: Any
) -> float:
    env = backend.locate(ENV)
    payload = make_payload(PYTHON, {"python_callable": CallableRef(callable_path), **kwargs})
    begun = time.perf_counter()

    def sealer(result_path: str) -> str:
        options = payload.options.model_copy(update={"result_path": result_path})
        return seal(env, payload.model_copy(update={"options": options}))

    outcome = backend.run(ENV, sealer, lambda line: None)
    if outcome.exit_code != 0:
        raise SystemExit(f"a warm task failed: {outcome.log_tail[-3:]}")
    return time.perf_counter() - begun


def _external_task(python: Path) -> float:
    begun = time.perf_counter()
    subprocess.run([str(python), "-c", _EXTERNAL], check=True, capture_output=True)
    return time.perf_counter() - begun


def throughput(tasks: int = 20, parallel: int = 4) -> dict[str, Any]:
    env = get_env(ENV)
    backend = LocalBackend(envs_home(), warm=True)
    _warm_task(backend)  # the server is up before the clock starts
    result: dict[str, Any] = {"tasks": tasks, "parallel": parallel}
    for label, job in (("warm", lambda _: _warm_task(backend)), ("external", lambda _: _external_task(env.python))):
        begun = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(job, range(tasks)))
        seconds = time.perf_counter() - begun
        result[label] = {"seconds": round(seconds, 3), "tasks_per_second": round(tasks / seconds, 2)}
    result["ratio_warm_vs_external"] = round(result["warm"]["seconds"] / result["external"]["seconds"], 3)
    return result


def memory() -> dict[str, Any]:
    """The warm server's RSS, and the unique memory of a task's child (the fork) while it sleeps."""
    import psutil

    backend = LocalBackend(envs_home(), warm=True)
    _warm_task(backend)
    env = backend.locate(ENV)
    state = _warm.read_state(env.root / _warm.DIRECTORY)
    assert state is not None
    server = psutil.Process(int(state["server_pid"]))
    found: dict[str, Any] = {}

    def sleeper() -> None:
        _warm_task(backend, "time:sleep", op_args=[2])

    thread = threading.Thread(target=sleeper)
    thread.start()
    uss = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not uss:
        for child in server.children(recursive=True):
            with_parent = child.parent()
            if with_parent is not None and with_parent.pid != server.pid and child.name().startswith("python"):
                try:
                    uss = child.memory_full_info().uss
                except psutil.Error:
                    continue
        time.sleep(0.05)
    thread.join(60)
    found["server_rss_mib"] = round(server.memory_info().rss / 2**20, 1)
    found["child_uss_mib"] = round(uss / 2**20, 1)
    return found


def report(throughput_result: dict[str, Any], memory_result: dict[str, Any]) -> None:
    t = throughput_result
    print(
        f"  throughput, {t['tasks']} tasks {t['parallel']} at a time: warm {t['warm']['seconds']:.2f} s "
        f"({t['warm']['tasks_per_second']}/s), new interpreters {t['external']['seconds']:.2f} s "
        f"({t['external']['tasks_per_second']}/s); ratio {t['ratio_warm_vs_external']:.3f}"
    )
    print(
        f"  memory: warm server RSS {memory_result['server_rss_mib']} MiB; "
        f"one task's child, unique {memory_result['child_uss_mib']} MiB"
    )


if __name__ == "__main__":
    result = {"throughput": throughput(), "memory": memory()}
    if "--json" in sys.argv:
        print(json.dumps(result))
    else:
        report(result["throughput"], result["memory"])
