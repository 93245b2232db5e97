"""End-to-end harness: a real Airflow 3 host (temporary AIRFLOW_HOME, SQLite) running DAGs
whose isolated tasks run in the real local environments of ``tests/_envs.py``.

Every DAG run, the database migration and the seeding happen in host processes of their
own (``run_dag.py``, ``seed.py``) that inherit the environment set here, so the Airflow
configuration of the pytest process itself does not matter. The DAG files live in
``dags/`` (the DAG folder).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SESSION = Path(tempfile.mkdtemp(prefix="isolation-e2e-session-"))
atexit.register(shutil.rmtree, SESSION, True)
HOME = SESSION / "airflow-home"
ENVS_HOME = SESSION / "envs"
TMP = SESSION / "tmp"
for _path in (HOME, ENVS_HOME, TMP):
    _path.mkdir()

# A secret only the host has: it must never reach an isolated process.
HOST_ONLY_SECRET = "host-only-secret-7f3a9c"

os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "ISOLATION_ENVS_HOME": str(ENVS_HOME),
        "AIRFLOW_CONN_E2E_HOST_ONLY": json.dumps({"conn_type": "http", "password": HOST_ONLY_SECRET}),
        "TMPDIR": str(TMP),
    }
)
tempfile.tempdir = None

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))
from isolation.keyring import HostKeyring  # noqa: E402
from isolation.transport import Keyset  # noqa: E402
from tests._envs import cache_root  # noqa: E402

# A copy of the test keyring, so the broken environments' keys stay in this session.
KEYRING = SESSION / "keyring"
os.environ["AIRFLOW__ISOLATION__KEYRING_PATH"] = str(KEYRING)


@pytest.fixture(scope="session")
def airflow_env():
    """Build (or reuse) the environments, lay out the session's environments home, create the DB."""
    import subprocess

    from tests._envs import get_env

    for name in ("legacy", "modern"):
        env = get_env(name)
        (ENVS_HOME / name).symlink_to(env.root)
    shutil.copytree(cache_root() / "keyring", KEYRING)
    _fake_envs(get_env("legacy").python)
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seeded = subprocess.run(
        [sys.executable, str(HERE / "seed.py")], capture_output=True, text=True, check=False, cwd=HERE
    )
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    # Started now, so that a test counting the machine's sandboxes finds them already there
    # (they serve every DAG run of the session); drained when the session ends.
    started = _start_warm_servers(("legacy", "modern"))
    try:
        yield SESSION
    finally:
        _stop_warm_servers(started)


def _start_warm_servers(names) -> list:
    from isolation.backends import LocalBackend, _warm

    backend = LocalBackend(ENVS_HOME)
    started = []
    for name in names:
        env = backend.locate(name)
        _warm.ensure(env, backend._base_environment()).close()
        started.append(env)
    return started


def _stop_warm_servers(envs) -> None:
    from isolation.backends import _warm

    for env in envs:
        _warm.stop(env)


@pytest.fixture(autouse=True)
def _temp_at_start():
    """Snapshot the temporary directory, so a leak check counts only this test's leftovers."""
    import harness

    harness.TEMP_AT_START.clear()
    harness.TEMP_AT_START.update(harness.temp_entries(TMP))
    yield


@pytest.fixture(params=["cold", "warm"])
def start_path(request, monkeypatch):
    """Run the test's DAG runs on the cold path (a new interpreter per task) and on the warm one."""
    monkeypatch.setenv("ISOLATION_WARM", "1" if request.param == "warm" else "0")
    return request.param


def _fake_envs(legacy_python: Path) -> None:
    """Environments that are broken on purpose, for the bad-input tests."""

    def marker(name: str, python: Path) -> None:
        root = ENVS_HOME / name
        (root / "keys").mkdir(parents=True)
        (root / "environment.json").write_text(json.dumps({"name": name, "python": str(python)}))

    marker("e2e-no-python", ENVS_HOME / "e2e-no-python" / "venv" / "bin" / "python")
    broken = ENVS_HOME / "e2e-broken-python" / "venv" / "bin" / "python"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\necho 'python: error while loading shared libraries: libpython3.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    # A virtualenv in form (the sandbox binds its base interpreter), whose interpreter fails.
    (broken.parent.parent / "pyvenv.cfg").write_text("home = /usr/bin\n")
    marker("e2e-broken-python", broken)
    HostKeyring.open(KEYRING).save_recipient(Keyset.generate_recipient("e2e-broken-python"))
    # Built and runnable, but the host keyring has no public keys for it.
    marker("e2e-no-keys", legacy_python)
