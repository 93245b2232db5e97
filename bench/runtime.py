"""What the isolated runtime costs above the bare import of Airflow and the operator.

In each environment, two kinds of fresh processes are timed from spawn to exit, in
interleaved rounds (the order alternates each round):

* ``floor``: ``python -c "<import the Airflow SDK: DAG, BaseOperator>; import <operator
  module>; os._exit(0)"``, the least any way of running the operator in a new interpreter
  pays (it leaves without interpreter teardown, as the runtime does once its result is
  written, so the two processes end the same way);
* ``runtime``: ``python -m isolation.runtime --stdin`` running a no-op operator
  (EmptyOperator) from a sealed envelope: verify, decrypt, guards, context, execute,
  result file.

Both run with the same scrubbed environment, an ``AIRFLOW_HOME`` that already has a
config file, and the same interpreter; ``overhead_ms`` is the
median of the per-round differences (wall clock; the CPU time difference is printed
next to it, as it suffers less from a busy machine). Target: at most 150 ms.

    .venv/bin/python bench/runtime.py                 # both test environments, tables
    .venv/bin/python bench/runtime.py --quick         # CI smoke run
    .venv/bin/python bench/runtime.py --json          # one JSON object on stdout
    .venv/bin/python bench/runtime.py --env modern    # one environment

The environments are the test environments (``tests/_envs.py``), built on first use.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from isolation.environments import LocalEnvironment  # noqa: E402
from isolation.transport import seal_envelope  # noqa: E402
from isolation.transport.payload import OperatorSpec, Payload, TaskContext  # noqa: E402
from tests._envs import LEGACY, MODERN, get_env, host_keyring  # noqa: E402

TARGET_MS = 150.0
OPERATOR = "airflow.providers.standard.operators.empty.EmptyOperator"
# The Airflow SDK: the authoring API every DAG file imports (the DAG and BaseOperator
# classes). Airflow 3 has it in airflow.sdk (lazily loaded, so name the classes);
# Airflow 2 in airflow.models.
SDK_IMPORT = {
    True: "from airflow.sdk import DAG, BaseOperator",
    False: "from airflow.models.dag import DAG; from airflow.models.baseoperator import BaseOperator",
}


def _env(workdir: Path, keys_dir: Path) -> dict[str, str]:
    home = workdir / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "airflow.cfg").touch()
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "ISOLATION_KEYS_DIR": str(keys_dir),
        "ISOLATION_RESULT_PATH": str(workdir / "result.json"),
    }


def _envelope(env: LocalEnvironment, result_path: Path) -> str:
    keyring = host_keyring()
    payload = Payload.model_validate(
        {
            "operator": OperatorSpec(import_path=OPERATOR),
            "context": TaskContext(dag_id="bench", task_id="noop", run_id="bench_run"),
            "options": {"result_path": str(result_path), "log_level": "WARNING"},
        }
    )
    return seal_envelope(payload, signer=keyring.signer(), recipient=keyring.recipient(env.name))


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) milliseconds of one child process."""
    cpu = _cpu_children()
    start = time.perf_counter()
    done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, cwd=cwd, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{cmd[2]!r} failed with exit {done.returncode}:\n{done.stderr.decode()[-2000:]}")
    return elapsed, (_cpu_children() - cpu) * 1000


def measure(env: LocalEnvironment, rounds: int, warmup: int) -> dict[str, Any]:
    v3 = (env.airflow_version or "2").split(".")[0] >= "3"
    module = OPERATOR.rpartition(".")[0]
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        workdir = Path(tmp)
        proc_env = _env(workdir, env.keys_dir)
        envelope = _envelope(env, workdir / "result.json").encode()
        floor_cmd = [str(env.python), "-c", f"{SDK_IMPORT[v3]}; import {module}; import os; os._exit(0)"]
        runtime_cmd = [str(env.python), "-m", "isolation.runtime", "--stdin"]
        contenders = {"floor": (floor_cmd, None), "runtime": (runtime_cmd, envelope)}
        wall: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(warmup):  # byte code, page cache
            for cmd, stdin in contenders.values():
                _timed(cmd, proc_env, workdir, stdin)
        names = list(contenders)
        for index in range(rounds):
            for name in names if index % 2 == 0 else reversed(names):
                cmd, stdin = contenders[name]
                elapsed, used = _timed(cmd, proc_env, workdir, stdin)
                wall[name].append(elapsed)
                cpu[name].append(used)
        result = json.loads((workdir / "result.json").read_text())
        if result["outcome"] != "success":
            raise SystemExit(f"the no-op task did not succeed: {result}")
    # Each round's two runs shared the machine's state: the median of the paired
    # differences resists a noisy neighbour better than a difference of medians.
    overhead = statistics.median(r - f for r, f in zip(wall["runtime"], wall["floor"], strict=True))
    cpu_overhead = statistics.median(r - f for r, f in zip(cpu["runtime"], cpu["floor"], strict=True))
    return {
        "python": env.python_version,
        "airflow": env.airflow_version,
        "rounds": rounds,
        "floor_ms": _stats(wall["floor"]),
        "runtime_ms": _stats(wall["runtime"]),
        "floor_cpu_ms": _stats(cpu["floor"]),
        "runtime_cpu_ms": _stats(cpu["runtime"]),
        "overhead_ms": round(overhead, 1),
        "cpu_overhead_ms": round(cpu_overhead, 1),
        "target_ms": TARGET_MS,
        "met": overhead <= TARGET_MS,
    }


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="append", choices=[LEGACY, MODERN], help="environment (default: both)")
    parser.add_argument("--quick", action="store_true", help="few rounds: a CI smoke run")
    parser.add_argument("--rounds", type=int, help="timed rounds per contender (default 15, quick 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 15)
    warmup = 1 if args.quick else 2
    report: dict[str, Any] = {"target_ms": TARGET_MS, "environments": {}}
    for name in args.env or [LEGACY, MODERN]:
        print(f"measuring {name} ({rounds} rounds)...", file=sys.stderr)
        report["environments"][name] = measure(get_env(name), rounds, warmup)
    report["overhead_ms"] = max(e["overhead_ms"] for e in report["environments"].values())
    report["met"] = report["overhead_ms"] <= TARGET_MS
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{'environment':<12} {'python':<8} {'airflow':<8} {'floor ms':>9} {'runtime ms':>11} "
        f"{'overhead ms':>12} {'cpu overhead ms':>16}"
    )
    for name, e in report["environments"].items():
        print(
            f"{name:<12} {e['python']:<8} {e['airflow']:<8} {e['floor_ms']['median_ms']:>9.1f} "
            f"{e['runtime_ms']['median_ms']:>11.1f} {e['overhead_ms']:>12.1f} {e['cpu_overhead_ms']:>16.1f}"
            + ("" if e["met"] else f"   MISSED (target {TARGET_MS:.0f} ms)")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
