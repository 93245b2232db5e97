"""Callables the example DAG runs, on the host and in isolated environments.

They live in an importable module of the ``isolation`` package so that every
environment built with this project has them: a callable travels in the envelope as
an import path (``module:function``), never as code. Nothing Airflow-specific is
imported at module level, so the module loads under Airflow 2 and Airflow 3 alike.
"""

from __future__ import annotations

import platform
from typing import Any


def _versions() -> dict[str, str | None]:
    try:
        import airflow

        airflow_version: str | None = airflow.__version__
    except ImportError:
        airflow_version = None
    try:
        import requests

        requests_version: str | None = getattr(requests, "__version__", None)
    except ImportError:
        requests_version = None
    return {"python": platform.python_version(), "airflow": airflow_version, "requests": requests_version}


def make_numbers() -> list[int]:
    """Host task: the XCom that flows into isolation."""
    return [3, 4, 5]


def report_versions(numbers: list[int], greeting: str, api_host: str) -> dict[str, Any]:
    """Runs isolated: uses an upstream XCom, a variable and a connection; says where it ran."""
    versions = _versions()
    print(f"{greeting}: requests {versions['requests']} on Python {versions['python']}, Airflow {versions['airflow']}")
    print(f"the connection's host is {api_host}; summing {numbers}")
    return {"total": sum(numbers), "api_host": api_host, **versions}


def skip_when_nothing_to_do() -> None:
    """Runs isolated and asks Airflow to skip the task (AirflowSkipException)."""
    from airflow.exceptions import AirflowSkipException

    raise AirflowSkipException("nothing to do today")


def summarize(legacy: dict[str, Any], modern: dict[str, Any]) -> str:
    """Host task: the isolated results come back as ordinary XComs."""
    here = _versions()
    return (
        f"host Python {here['python']} / requests {here['requests']}; "
        f"legacy returned total={legacy['total']} from requests {legacy['requests']}; "
        f"modern ran Airflow {modern['airflow']}"
    )
