"""Every context key, in an Airflow 2 and an Airflow 3 environment, beside the host's twin.

One function, ``report``, runs three times: on the host (``ctrl_context``) and in each
environment (``@task.isolated``). For every key its own Airflow declares
(``KNOWN_CONTEXT_KEYS``) and every key its context holds, it reports the value (as
plain data), or the error that ``context[key]`` and ``{{ key }}`` raise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task


def report(**context: Any) -> dict[str, Any]:
    import datetime
    import enum
    import importlib

    import airflow

    try:
        from airflow.sdk import get_current_context
    except ImportError:  # Airflow 2
        from airflow.operators.python import get_current_context

    def plain(value: Any, deep: bool = True) -> Any:
        if type(value).__name__ == "Proxy":  # Airflow's lazy values (lazy_object_proxy), even of None
            value = value.__wrapped__
        if value is None:
            return None
        if isinstance(value, enum.Enum):
            return plain(value.value)
        for kind in (bool, int, float, str):
            if isinstance(value, kind):
                return kind(value)
        if isinstance(value, datetime.datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {str(k): plain(v, deep) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, deep) for v in value]
        found: dict[str, Any] = {"type": type(value).__name__}
        fields = ("dag_id", "task_id", "run_id", "map_index", "try_number", "run_type", "conf", "logical_date")
        for name in (*fields, "data_interval_start", "data_interval_end") if deep else ():
            attr = getattr(value, name, None)  # the fields a task reads of a DAG, task, run, task instance
            if attr is not None and not callable(attr):
                found[name] = plain(attr)
        return found

    current = get_current_context()
    major = int(airflow.__version__.split(".", 1)[0])
    module = importlib.import_module("airflow.sdk.definitions.context" if major >= 3 else "airflow.utils.context")
    out: dict[str, Any] = {"<airflow>": airflow.__version__}
    for key in sorted(set(getattr(module, "KNOWN_CONTEXT_KEYS", ())) | set(current)):
        entry: dict[str, Any] = {}
        try:
            # The accessors look names up when asked for attributes: only their type.
            entry["python"] = {"value": plain(current[key], deep=key not in ("conn", "var", "macros"))}
        except KeyError as exc:
            missing = type(exc) is KeyError
            entry["python"] = {"absent": True} if missing else {"error": type(exc).__name__, "message": str(exc)}
        try:
            entry["jinja"] = {"value": current["task"].render_template("{{ " + key + " }}", current)}
        except Exception as exc:
            entry["jinja"] = {"error": type(exc).__name__, "message": str(exc)}
        out[key] = entry
    return out


with DAG("e2e_context", schedule="0 6 * * *", start_date=dt.datetime(2024, 1, 1), params={"who": "p"}) as dag:
    task(task_id="ctrl_context")(report)()
    for env in ("legacy", "modern"):
        task.isolated(task_id=f"context_{env}", environment=env)(report)()
