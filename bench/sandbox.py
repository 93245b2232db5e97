"""What the local sandbox costs per task: bubblewrap against the same start without it.

Two paired measurements in the modern environment (Python 3.13, Airflow 3.3.2), each
pair run back to back in alternating order so that machine noise hits both sides:

  (bare) ``<venv python> -I -c pass`` started the way the backend starts it, in the
         sandbox (namespaces, seccomp filter, binds, cgroup where one can be made) and
         without it: the sandbox's own cost, ``sandbox_overhead_ms`` (target <= 15 ms);
  (task) a whole isolated task (``PythonOperator`` running a no-op) through
         ``LocalBackend.run``, once with the environment's recorded settings (sandboxed)
         and once with ``sandbox = "none"``: the same cost inside a real task, where the
         runtime's own second or so of start-up makes it noisy.

    .venv/bin/python bench/sandbox.py [--pairs N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 15.0


def _timed(argv: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False, **kwargs)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-1000:]}")
    return elapsed


def _bare_pair(env: Any, *, cgroup: bool = True) -> tuple[float, float]:
    from isolation.backends import _cgroup, sandbox

    program = [str(env.python), "-I", "-c", "pass"]
    create = _cgroup.create
    if not cgroup:
        _cgroup.create = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        launch = sandbox.command(env.settings, venv=env.venv, keys_dir=env.keys_dir, program=program, env_name=env.name)
    finally:
        _cgroup.create = create
    try:
        boxed = _timed(launch.argv, pass_fds=launch.pass_fds, env={"PATH": sandbox.PATH})
    finally:
        launch.finished()
    plain = _timed(program, env={"PATH": sandbox.PATH})
    return boxed, plain


def _task_pair(env: Any, order: int) -> tuple[float, float]:
    from isolation.backends.local import LocalBackend
    from isolation.environments.settings import SandboxSettings
    from isolation.transport import CallableRef
    from tests._envs import envs_home
    from tests.integration._runtime import PYTHON, make_payload, seal

    def run(settings: SandboxSettings) -> float:
        backend = LocalBackend(envs_home())
        chosen = dataclasses.replace(env, settings=settings)
        backend.locate = lambda name: chosen  # type: ignore[method-assign]

        def sealer(result_path: str) -> str:
            payload = make_payload(PYTHON, {"python_callable": CallableRef("isolation.example_dags.probes:noop")})
            options = payload.options.model_copy(update={"result_path": result_path})
            return seal(env, payload.model_copy(update={"options": options}))

        started = time.perf_counter()
        outcome = backend.run(env.name, sealer, lambda line: None)
        elapsed = time.perf_counter() - started
        if outcome.exit_code != 0:
            raise SystemExit(f"the benchmark task failed with exit code {outcome.exit_code}: {outcome.log_tail}")
        return elapsed

    unsandboxed = SandboxSettings("none", "host", env.settings.limits)
    if order % 2:
        plain = run(unsandboxed)
        boxed = run(env.settings)
    else:
        boxed = run(env.settings)
        plain = run(unsandboxed)
    return boxed, plain


def measure(pairs: int, task_pairs: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from isolation.backends import sandbox
    from tests._envs import get_env

    env = get_env("modern")
    status = sandbox.probe()
    if not status.available:
        raise SystemExit(f"the sandbox does not work here: {status.detail}")
    _bare_pair(env)  # warm-up: page cache, the compiled seccomp filter
    bare = [_bare_pair(env) for _ in range(pairs)]
    # Root pays for a per-task cgroup (one cgroup migration); an ordinary user does not.
    as_root = os.getuid() == 0
    bare_no_cgroup = [_bare_pair(env, cgroup=False) for _ in range(pairs)] if as_root else bare
    tasks = [_task_pair(env, i) for i in range(task_pairs)]

    def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
        diffs = [(boxed - plain) * 1000 for boxed, plain in samples]
        boxed_ms = statistics.median(b for b, _ in samples) * 1000
        plain_ms = statistics.median(p for _, p in samples) * 1000
        return {
            "sandboxed_ms": round(boxed_ms, 1),
            "unsandboxed_ms": round(plain_ms, 1),
            "overhead_ms": round(statistics.median(diffs), 1),
            "ratio": round(boxed_ms / plain_ms, 3),
        }

    bare_summary, task_summary = summary(bare), summary(tasks)
    no_cgroup_summary = summary(bare_no_cgroup)
    return {
        "benchmark": "sandbox",
        "bwrap": status.version,
        "pairs": pairs,
        "task_pairs": task_pairs,
        "as_root": as_root,
        "bare": bare_summary,
        "bare_without_cgroup": no_cgroup_summary,
        "task": task_summary,
        "sandbox_overhead_ms": bare_summary["overhead_ms"],
        "sandbox_overhead_without_cgroup_ms": no_cgroup_summary["overhead_ms"],
        "sandbox_overhead_task_ms": task_summary["overhead_ms"],
        "target_sandbox_overhead_ms": TARGET_MS,
    }


def report(result: dict[str, Any]) -> None:
    print(f"sandbox ({result['bwrap']}); {result['pairs']} bare pairs, {result['task_pairs']} task pairs")
    rows = [("bare", "python -I -c pass")]
    if result["as_root"]:
        rows.append(("bare_without_cgroup", "  without the cgroup"))
    rows.append(("task", "whole isolated task"))
    for key, label in rows:
        row = result[key]
        print(
            f"  {label:<22} sandboxed {row['sandboxed_ms']:8.1f} ms  unsandboxed {row['unsandboxed_ms']:8.1f} ms  "
            f"median paired overhead {row['overhead_ms']:7.1f} ms  ratio {row['ratio']:.3f}"
        )
    missed = "" if result["sandbox_overhead_ms"] <= TARGET_MS else "   MISSED"
    print(f"  sandbox_overhead_ms = {result['sandbox_overhead_ms']} (target <= {TARGET_MS:g}){missed}")
    if result["as_root"]:
        print(
            "  (as root the process limit needs a per-task cgroup; without it, as an ordinary user's "
            f"worker runs: {result['sandbox_overhead_without_cgroup_ms']} ms)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=30, help="bare start pairs (default 30)")
    parser.add_argument("--task-pairs", type=int, default=6, help="whole-task pairs (default 6)")
    parser.add_argument("--quick", action="store_true", help="CI mode: 10 bare pairs, 2 task pairs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    pairs, task_pairs = (10, 2) if args.quick else (args.pairs, args.task_pairs)
    result = measure(pairs, task_pairs)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
