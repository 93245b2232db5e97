"""Callables the pods of the Kubernetes backend tests run (the stand-in's image has this folder)."""

from __future__ import annotations

import time
from typing import Any


def push_and_return(ti: Any) -> dict[str, Any]:
    ti.xcom_push(key="rows", value=3)
    return {"status": "ok"}


def fail_loudly() -> None:
    raise ValueError("the isolated task broke on purpose")


def sleep_long() -> None:
    time.sleep(60)
