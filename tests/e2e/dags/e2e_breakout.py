"""The breakout catalogue: every escape of isolation.testing.breakout, tried from inside the sandbox.

One task per environment runs every probe (``probes_<label>``), with the host's paths,
database URL and pid taken from this host process's environment when the file is parsed
(``dag.test()`` runs the tasks in the same process). Two more print a connection's
password in escaped forms through every channel and fail with all of them in the message.

The ``network = "host"`` environment (``e2e-hostnet``) is made by the test module; the
DAG only uses it when it exists. With ``E2E_BREAKOUT_KILL`` set, the DAG is instead the
one task the kill test kills: it leaves files and a daemon behind, then sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from isolation import IsolatedOperator
from isolation.testing import breakout

HOSTNET = "e2e-hostnet"
OPERATORS = {
    "legacy": "airflow.operators.python.PythonOperator",
    "modern": "airflow.providers.standard.operators.python.PythonOperator",
    HOSTNET: "airflow.providers.standard.operators.python.PythonOperator",
}
LABELS = {"legacy": "legacy", "modern": "modern", HOSTNET: "hostnet"}
# Credentials-like files of the worker's home, tried where they exist.
HOME_FILES = (
    ".bashrc",
    ".profile",
    ".bash_history",
    ".netrc",
    ".pypirc",
    ".gitconfig",
    ".git-credentials",
    ".ssh/id_rsa",
    ".ssh/id_ed25519",
    ".ssh/authorized_keys",
    ".aws/credentials",
    ".kube/config",
    ".docker/config.json",
    ".config/gh/hosts.yml",
)

AIRFLOW_HOME = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
DB_URL = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
KEYRING = Path(os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH", "~/.config/isolation/keyring")).expanduser()
ENVS_HOME = Path(os.environ.get("ISOLATION_ENVS_HOME", "~/.local/share/isolation/envs")).expanduser()
PORT = int(os.environ.get("E2E_BREAKOUT_PORT") or 0)
UNIX = os.environ.get("E2E_BREAKOUT_UNIX")
START = dt.datetime(2024, 1, 1)


def marker(name: str) -> dict[str, Any]:
    try:
        return json.loads((ENVS_HOME / name / "environment.json").read_text())
    except (OSError, ValueError):
        return {}


def venv_of(name: str) -> Path | None:
    python = marker(name).get("python")
    return Path(python).parent.parent if python else None


def site_packages(name: str) -> list[str]:
    """The environment's site-packages: as its marker names it, through ENVS_HOME, and resolved."""
    venv = venv_of(name)
    if venv is None:
        return []
    found = {
        str(path) for root in (venv, ENVS_HOME / name / "venv") for path in root.glob("lib/python3*/site-packages")
    }
    return sorted(found | {os.path.realpath(path) for path in found})


def both(path: Path) -> list[str]:
    """A host path and, when a symbolic link leads elsewhere, where it really is."""
    return sorted({str(path), os.path.realpath(path)})


def environments() -> list[str]:
    return ["legacy", "modern"] + ([HOSTNET] if marker(HOSTNET) else [])


def probe_inputs(name: str) -> dict[str, Any]:
    others = [other for other in ("legacy", "modern", HOSTNET) if other != name and marker(other)]
    own_venv = venv_of(name)
    host_files = both(AIRFLOW_HOME / "airflow.cfg") + both(AIRFLOW_HOME / "airflow.db") + ["/etc/shadow"]
    host_files += both(KEYRING / "signer.json") + both(KEYRING)
    for other in others:
        host_files += both(ENVS_HOME / other / "keys" / "recipient.json") + both(ENVS_HOME / other / "keys")
    # The cached keyring the session's keyring was copied from (in the worker's home, next to the venvs).
    if own_venv is not None:
        cached_signer = Path(os.path.realpath(own_venv)).parent.parent.parent / "keyring" / "signer.json"
        if cached_signer.exists():
            host_files += [str(cached_signer)]
    home = Path.home()
    home_files = [str(home / entry) for entry in HOME_FILES if (home / entry).is_file()]
    own = {os.path.realpath(path) for path in site_packages(name)}
    other_venvs = sorted(
        {path for other in others for path in site_packages(other) if os.path.realpath(path) not in own}
    )
    write_dirs = ["/", "/etc", "/usr", "/run/isolation/keys", "/dev", "/proc"]
    write_dirs += [str(AIRFLOW_HOME), str(ENVS_HOME), str(KEYRING), str(home)]
    write_dirs += [str(own_venv)] if own_venv is not None else []
    settings = marker(name).get("sandbox") or {}
    return {
        "needles": [DB_URL, str(AIRFLOW_HOME), str(KEYRING), "AIRFLOW_CONN_E2E_HOST_ONLY"],
        "host_files": sorted(set(host_files)),
        "home_files": home_files,
        "database_url": DB_URL,
        "host_pids": [os.getpid()],
        "other_site_packages": other_venvs,
        "write_dirs": write_dirs,
        "tcp": ["127.0.0.1", PORT] if PORT else None,
        "unix": UNIX,
        "tag": LABELS[name],
        "include_net_sysctls": settings.get("network") == "host",
    }


with DAG("e2e_breakout", schedule=None, start_date=START) as dag:
    if os.environ.get("E2E_BREAKOUT_KILL"):
        IsolatedOperator(
            task_id="left_behind",
            operator=OPERATORS["modern"],
            environment="modern",
            python_callable=breakout.leave_files_then_sleep,
            op_kwargs={"seconds": 300, "directories": [os.environ.get("TMPDIR", "/nonexistent")]},
        )
    else:
        for name in environments():
            IsolatedOperator(
                task_id=f"probes_{LABELS[name]}",
                operator=OPERATORS[name],
                environment=name,
                python_callable=breakout.catalogue,
                op_kwargs=probe_inputs(name),
            )
        for name in ("legacy", "modern"):
            IsolatedOperator(
                task_id=f"secret_forms_{name}",
                operator=OPERATORS[name],
                environment=name,
                python_callable=breakout.emit_secret_forms,
                op_kwargs={"secret": "{{ conn.e2e_escaped.password }}"},
            )
