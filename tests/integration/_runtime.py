"""Helpers to seal a task and run the isolated runtime in a real environment.

The runtime runs as the local backend would run it: in the environment's sandbox
(bubblewrap, :mod:`isolation.backends.sandbox`), the environment's interpreter,
``-m isolation.runtime --stdin``, the envelope on standard input, a scrubbed
environment (no variable of this test process leaks in), the keys directory from
``ISOLATION_KEYS_DIR`` and a result path chosen through the payload. Two more paths
are visible in the sandbox, for the tests alone: the isolated test code (read-only)
and the run's own work directory (writable: results, files the code writes).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isolation.backends import sandbox
from isolation.environments import LocalEnvironment
from isolation.environments.settings import SandboxSettings
from isolation.transport import seal_envelope
from isolation.transport.payload import (
    ConnectionSpec,
    OperatorSpec,
    Payload,
    RuntimeOptions,
    TaskContext,
    XComInput,
)
from tests._envs import host_keyring

CODE_DIR = Path(__file__).resolve().parent / "isolated_code"
LOGICAL = dt.datetime(2024, 3, 5, 6, 7, 8, tzinfo=dt.timezone.utc)
# BashOperator as a DAG author writes it on Airflow 2 (core) and on Airflow 3 (standard provider).
BASH_V2 = "airflow.operators.bash.BashOperator"
BASH_V3 = "airflow.providers.standard.operators.bash.BashOperator"
PYTHON = "airflow.providers.standard.operators.python.PythonOperator"
TIMEOUT = 180


def airflow_major(env: LocalEnvironment) -> int:
    assert env.airflow_version is not None, env
    return int(env.airflow_version.split(".", 1)[0])


def bash_path(env: LocalEnvironment, *, other_spelling: bool = False) -> str:
    """The environment's own spelling of BashOperator (or the other major's, to test the fallback)."""
    return BASH_V2 if (airflow_major(env) == 2) != other_spelling else BASH_V3


def make_payload(
    import_path: str,
    kwargs: dict[str, Any] | None = None,
    *,
    task_id: str = "isolated_task",
    connections: Mapping[str, ConnectionSpec] | None = None,
    variables: Mapping[str, str] | None = None,
    xcom_inputs: list[XComInput] | None = None,
    params: dict[str, Any] | None = None,
    conf: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    try_number: int = 1,
    map_index: int = -1,
) -> Payload:
    context = TaskContext(
        dag_id="isolation_it",
        task_id=task_id,
        run_id="manual__2024-03-05T06:07:08+00:00",
        map_index=map_index,
        try_number=try_number,
        max_tries=2,
        logical_date=LOGICAL,
        data_interval_start=LOGICAL - dt.timedelta(days=1),
        data_interval_end=LOGICAL,
        start_date=LOGICAL + dt.timedelta(minutes=1),
        run_type="manual",
        params=params or {},
        dag_run_conf=conf or {},
        owner="data-team",
    )
    return Payload(
        operator=OperatorSpec(import_path=import_path, kwargs=kwargs or {}),
        context=context,
        connections=dict(connections or {}),
        variables=dict(variables or {}),
        xcom_inputs=xcom_inputs or [],
        options=RuntimeOptions(**(options or {})),
    )


def seal(env: LocalEnvironment, payload: Payload, **kwargs: Any) -> str:
    keyring = host_keyring()
    return seal_envelope(payload, signer=keyring.signer(), recipient=keyring.recipient(env.name), **kwargs)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None
    workdir: Path
    files: dict[str, str] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def xcoms(self) -> dict[str, Any]:
        assert self.result is not None
        return {x["key"]: x["value"] for x in self.result["xcoms"]}


def scrubbed_env(env: LocalEnvironment, workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    base = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(workdir),
        "PYTHONPATH": str(CODE_DIR),
        "ISOLATION_KEYS_DIR": str(env.keys_dir),
        # Tests read files the isolated code writes here.
        "ISOLATION_TEST_OUT": str(workdir / "out"),
    }
    (workdir / "out").mkdir(exist_ok=True)
    base.update(extra or {})
    return base


def run_runtime(
    env: LocalEnvironment,
    workdir: Path,
    *,
    payload: Payload | None = None,
    stdin: str | bytes | None = None,
    args: list[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    result_path: Path | None = None,
    transport: str = "stdin",
    settings: SandboxSettings | None = None,
) -> Run:
    """Run the runtime once; seal ``payload`` (with a result path under ``workdir``) if given.

    ``transport`` is how a sealed payload travels: ``stdin``, ``env`` (ISOLATION_ENVELOPE)
    or ``file`` (ISOLATION_ENVELOPE_FILE).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = result_path or workdir / "result.json"
    if payload is not None:
        options = payload.options.model_copy(update={"result_path": str(result_file)})
        payload = payload.model_copy(update={"options": options})
        stdin = seal(env, payload)
        if transport != "stdin":
            extra_env = dict(extra_env or {})
            if transport == "env":
                extra_env["ISOLATION_ENVELOPE"] = stdin
            else:
                (workdir / "envelope").write_text(stdin)
                extra_env["ISOLATION_ENVELOPE_FILE"] = str(workdir / "envelope")
            stdin, args = None, []
    data = stdin.encode() if isinstance(stdin, str) else stdin
    cmd = [str(env.python), "-m", "isolation.runtime", *(args if args is not None else ["--stdin"])]
    chosen = settings or env.settings
    launch = sandboxed(env, workdir, cmd, chosen)
    limits = {
        "ISOLATION_LIMIT_MEMORY": str(chosen.limits.memory),
        "ISOLATION_LIMIT_PROCESSES": str(chosen.limits.processes),
    }
    child_env = scrubbed_env(env, workdir, {"ISOLATION_KEYS_DIR": sandbox.KEYS_DIR, **limits, **(extra_env or {})})
    try:
        done = subprocess.run(
            launch.argv,
            input=data if data is not None else b"",
            capture_output=True,
            env=child_env,
            timeout=TIMEOUT,
            check=False,
            pass_fds=launch.pass_fds,
        )
    finally:
        launch.finished()
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    out_dir = workdir / "out"
    files = {p.name: p.read_text(errors="replace") for p in out_dir.iterdir() if p.is_file()}
    return Run(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        result,
        workdir,
        files,
    )


def sandboxed(
    env: LocalEnvironment, workdir: Path, cmd: list[str], settings: SandboxSettings | None = None
) -> sandbox.Launch:
    """``cmd`` in the environment's sandbox, with the test code and ``workdir`` visible."""
    return sandbox.command(
        settings or env.settings,
        venv=env.venv,
        keys_dir=env.keys_dir,
        program=cmd,
        env_name=env.name,
        extra_binds=[sandbox.Bind(workdir, str(workdir), writable=True), sandbox.Bind(CODE_DIR, str(CODE_DIR))],
    )


Job = tuple[LocalEnvironment, Payload] | tuple[LocalEnvironment, Payload, Mapping[str, str]]


def run_many(jobs: Mapping[str, Job], base: Path) -> dict[str, Run]:
    """Run several independent tasks in parallel (two at a time: CI has two cores).

    A job is (environment, payload) or (environment, payload, extra environment variables).
    """
    with ThreadPoolExecutor(max_workers=int(os.environ.get("ISOLATION_TEST_PARALLEL", "2"))) as pool:
        futures = {
            name: pool.submit(
                run_runtime, job[0], base / name, payload=job[1], extra_env=job[2] if len(job) > 2 else None
            )
            for name, job in jobs.items()
        }
        return {name: future.result() for name, future in futures.items()}


def run_calls(calls: Mapping[str, Callable[[], Run]]) -> dict[str, Run]:
    """Run arbitrary runtime invocations in parallel, two at a time."""
    with ThreadPoolExecutor(max_workers=int(os.environ.get("ISOLATION_TEST_PARALLEL", "2"))) as pool:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}
