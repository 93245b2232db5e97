"""Code the integration tests run inside the isolated environments (on PYTHONPATH there).

It imports Airflow lazily so that it runs on every supported version.
"""

from __future__ import annotations

import json
import os
from typing import Any


def out(name: str, data: Any) -> None:
    """Write a file the test reads back."""
    path = os.path.join(os.environ["ISOLATION_TEST_OUT"], name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(data if isinstance(data, str) else json.dumps(data, default=repr))


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def noop() -> None:
    return None
