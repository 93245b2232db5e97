"""The real isolated environments the integration and end-to-end tests run in.

Built once from ``environments/<name>/`` with the project installed from this source
tree, then cached between runs under ``ISOLATION_TEST_CACHE`` (default
``~/.cache/isolation-tests``). A missing Python version fails loudly with what to
install; nothing is skipped.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isolation.environments import LocalEnvironment, build_local, load_spec
from isolation.keyring import HostKeyring

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ROOT / "environments"
# Airflow 2 on Python 3.12, Airflow 3 on Python 3.13; the host runs Airflow 3 on 3.11.
LEGACY = "legacy"
MODERN = "modern"
# The oldest supported minor of each major: Airflow 2.9 on Python 3.10, Airflow 3.0 on 3.12.
OLDEST_2 = "airflow-2-9"
OLDEST_3 = "airflow-3-0"
# A middle minor of each major: Airflow 2.10 and 3.1, both on Python 3.11.
MIDDLE_2 = "airflow-2-10"
MIDDLE_3 = "airflow-3-1"
# Every integration test runs on LATEST; a representative subset (every_version) also on
# the oldest and the middle minors, so each major is tested at 3 minors.
LATEST = (LEGACY, MODERN)
OLDEST = (OLDEST_2, OLDEST_3)
OTHER_MINORS = (OLDEST_2, MIDDLE_2, OLDEST_3, MIDDLE_3)


def cache_root() -> Path:
    configured = os.environ.get("ISOLATION_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "isolation-tests"


@contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder at a time: the test workers (pytest -n) share the cache."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def host_keyring() -> HostKeyring:
    with _cache_lock():
        keyring = HostKeyring.open(cache_root() / "keyring")
        keyring.init()
    return keyring


def envs_home() -> Path:
    return cache_root() / "envs"


def get_env(name: str) -> LocalEnvironment:
    """Build (first time) or reuse the cached environment ``name``."""
    keyring = host_keyring()
    with _cache_lock():
        return build_local(load_spec(ENVIRONMENTS / name), keyring=keyring, home=envs_home(), project_source=ROOT)
