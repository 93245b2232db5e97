"""The result file: ``isolation-result/v1`` JSON, written atomically (docs/runtime.md)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from typing import Any

from isolation.errors import ResultError

FORMAT = "isolation-result/v1"
# The host keeps at most this many names of an error's class hierarchy (docs/runtime.md).
MAX_ERROR_TYPES = 32


def _json_value(value: Any, key: str) -> Any:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ResultError(
            f"XCom {key!r} is not JSON-serialisable ({type(exc).__name__}: {exc})",
            hint="return or push plain JSON data (str, int, float, bool, None, list, dict with str keys)",
        ) from None
    # A round trip normalises tuples to lists and rejects nothing else: what the host reads.
    return json.loads(text)


def values(return_value: Any, pushed: list[tuple[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """Check and normalise the return value and XComs; ResultError names the failing key."""
    checked_return = _json_value(return_value, "return_value")
    checked = [{"key": key, "value": _json_value(value, key)} for key, value in pushed]
    return checked_return, checked


def document(
    outcome: str,
    *,
    return_value: Any = None,
    xcoms: list[dict[str, Any]] | None = None,
    error: BaseException | None = None,
    redact: Callable[[str], str] = str,
    environment: str | None = None,
    airflow_version: str | None = None,
    downstream: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    err = None
    if error is not None:
        message = getattr(error, "message", None) or str(error)
        # A class name can be made at run time from anything, a secret included.
        err = {
            "type": redact(type(error).__name__),
            "message": redact(str(message)),
            "types": [redact(name) for name in class_hierarchy(type(error))],
        }
    return {
        "format": FORMAT,
        "outcome": outcome,
        "return_value": return_value,
        "xcoms": xcoms or [],
        "error": err,
        "environment": {"python": platform.python_version(), "airflow": airflow_version, "name": environment},
        "downstream": downstream or [],
    }


def class_hierarchy(cls: type) -> list[str]:
    """Module-qualified names of ``cls``'s MRO, most specific first, without ``object``.

    The host decides by them what Airflow would do (``AirflowFailException`` anywhere in
    the hierarchy: no retry), whatever module the environment's Airflow defines it in.
    """
    names = [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__ if c is not object]
    return [name[:200] for name in names[:MAX_ERROR_TYPES]]


_INHERITED = "/proc/self/fd/"


def inherited_fd(path: str | None) -> int | None:
    """The descriptor number of a ``/proc/self/fd/N`` result path, else None."""
    if path and path.startswith(_INHERITED) and path[len(_INHERITED) :].isdigit():
        return int(path[len(_INHERITED) :])
    return None


def keep_from_children(path: str | None) -> None:
    """The operator's child processes must not inherit the result descriptor."""
    fd = inherited_fd(path)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.set_inheritable(fd, False)


def write(path: str, doc: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, then rename.

    ``/proc/self/fd/N`` is a memory file the host handed down (the local backend): it is
    rewritten from the start in one write; the host reads it only after the runtime ended.
    """
    fd = inherited_fd(path)
    if fd is not None:
        data = (json.dumps(doc) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], done)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".isolation-result-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
