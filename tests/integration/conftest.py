"""Fixtures: the real environments.

Every test runs on the newest Airflow 2 and 3 (``legacy``: 2.11 / Python 3.12, ``modern``:
3.3 / Python 3.13). Tests marked ``every_version`` also run on the oldest supported minor
of each major (``airflow-2-9``: 2.9 / Python 3.10, ``airflow-3-0``: 3.0 / Python 3.12) and
on a middle one (``airflow-2-10``: 2.10 / Python 3.11, ``airflow-3-1``: 3.1 / Python 3.11).
"""

from __future__ import annotations

import pytest

from isolation.environments import LocalEnvironment
from tests._envs import LATEST, OTHER_MINORS, get_env


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "every_version: also runs on the oldest and a middle Airflow 2 and 3")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "environment" in metafunc.fixturenames:
        names = LATEST + OTHER_MINORS if metafunc.definition.get_closest_marker("every_version") else LATEST
        metafunc.parametrize("environment", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def environment(request: pytest.FixtureRequest) -> LocalEnvironment:
    return get_env(request.param)
