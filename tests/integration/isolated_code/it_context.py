"""Isolated code for tests/integration/test_runtime_context.py: XCom pulls and context keys.

Runs inside the real environments (Airflow 2 and 3). Every function reports what it saw
as plain data, errors included, so one run answers many questions.
"""

from __future__ import annotations

import datetime
from typing import Any


def _error(exc: BaseException) -> dict[str, Any]:
    types = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
    return {"error": type(exc).__name__, "message": str(exc), "types": types}


def pulls(calls: list[dict[str, Any]], ti: Any) -> list[Any]:
    """``ti.xcom_pull(*args, **kwargs)`` for each call, after the pushes the call names."""
    out: list[Any] = []
    for call in calls:
        for key, value in call.get("push", {}).items():
            ti.xcom_push(key=key, value=value)
        try:
            out.append({"value": ti.xcom_pull(*call.get("args", []), **call.get("kwargs", {}))})
        except Exception as exc:
            out.append(_error(exc))
    return out


def plain(value: Any) -> Any:
    """A JSON value standing for a context value: dates as ISO text, objects by type name."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # Airflow 2 wraps deprecated keys in lazy proxies
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return f"<{type(value).__name__}>"


def current_context() -> Any:
    try:
        from airflow.sdk import get_current_context
    except ImportError:
        from airflow.operators.python import get_current_context  # type: ignore[no-redef]
    return get_current_context()


def probe(keys: list[str], **context: Any) -> dict[str, Any]:
    """For each key: direct access, ``.get``, the ``**context`` copy and ``{{ key }}``."""
    current = current_context()
    task = current["task"]
    report: dict[str, Any] = {}
    for key in keys:
        entry: dict[str, Any] = {"in": key in current}
        try:
            entry["direct"] = {"value": plain(current[key])}
        except Exception as exc:
            entry["direct"] = _error(exc)
        try:
            entry["get"] = {"value": plain(current.get(key, "<default>"))}
        except Exception as exc:
            entry["get"] = _error(exc)
        try:
            entry["kwargs"] = {"value": plain(context[key])} if key in context else {"absent": True}
        except Exception as exc:
            entry["kwargs"] = _error(exc)
        try:
            entry["jinja"] = {"value": task.render_template("{{ " + key + " }}", current)}
        except Exception as exc:
            entry["jinja"] = _error(exc)
        if key in context:
            try:
                entry["kwargs_used"] = {"value": str(context[key])}
            except Exception as exc:
                entry["kwargs_used"] = _error(exc)
        report[key] = entry
    # Jinja looks up every name a template mentions; a branch not taken must still render.
    try:
        branch = "{% if false %}{{ inlets }}{% endif %}ok"
        report["<branch not taken>"] = {"value": task.render_template(branch, current)}
    except Exception as exc:
        report["<branch not taken>"] = _error(exc)
    return report


def dag_run_fields(fields: list[str], dag_run: Any) -> dict[str, Any]:
    """Each field of ``dag_run``: its value or the error, and ``getattr`` with a default."""
    report: dict[str, Any] = {}
    for name in fields:
        try:
            report[name] = {"value": plain(getattr(dag_run, name))}
        except Exception as exc:
            report[name] = _error(exc)
        report[name]["default"] = plain(getattr(dag_run, name, "<default>"))
    return report
