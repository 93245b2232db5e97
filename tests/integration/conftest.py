"""Fixtures: the two real environments (Airflow 2.11 / Python 3.12 and Airflow 3.3 / Python 3.13)."""

from __future__ import annotations

import pytest

from isolation.environments import LocalEnvironment
from tests._envs import LEGACY, MODERN, get_env


@pytest.fixture(scope="session", params=[LEGACY, MODERN])
def environment(request: pytest.FixtureRequest) -> LocalEnvironment:
    return get_env(request.param)
