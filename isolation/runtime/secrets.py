"""Connections and variables from the envelope, served from memory only.

The store is filled once, after the envelope is open. Airflow reads it through
:class:`isolation.runtime.backend.EnvelopeSecretsBackend` (the configured secrets
backend) and through the getters :mod:`isolation.runtime.compat` wraps. Nothing is
put into ``os.environ`` (which child processes inherit) unless the host asked for it
with ``options.export_secrets_to_env``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isolation.transport.payload import ConnectionSpec, Payload

# Shorter values would mask ordinary words and digits all over the log.
MIN_MASKED_LENGTH = 3

_connections: dict[str, ConnectionSpec] = {}
_variables: dict[str, str] = {}


def provide(payload: Payload) -> None:
    """Make the envelope's connections and variables the only ones this process has."""
    _connections.clear()
    _connections.update(payload.connections)
    _variables.clear()
    _variables.update(payload.variables)


def has_connection(conn_id: str) -> bool:
    return conn_id in _connections


def has_variable(key: str) -> bool:
    return key in _variables


def variable(key: str) -> str | None:
    return _variables.get(key)


def connection_json(conn_id: str) -> str | None:
    """The connection in Airflow's JSON connection format, or None."""
    spec = _connections.get(conn_id)
    return None if spec is None else _to_json(spec)


def _to_json(spec: ConnectionSpec) -> str:
    fields: dict[str, Any] = {
        "conn_type": spec.conn_type,
        "description": spec.description,
        "host": spec.host,
        "login": spec.login,
        "password": spec.password,
        "schema": spec.schema_,
        "port": spec.port,
        "extra": spec.extra,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None})


def export_to_environment(environ: MutableMapping[str, str]) -> None:
    """Opt-in only: Airflow's ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` variables for child processes."""
    for conn_id, spec in _connections.items():
        environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = _to_json(spec)
    for key, value in _variables.items():
        environ[f"AIRFLOW_VAR_{key.upper()}"] = value


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


def secret_values(payload: Payload) -> list[str]:
    """Every string to hide from logs, errors and the result's error message.

    The payload's own list (passwords, logins, extras, variable values), plus the
    string leaves of JSON extras and variables (a token inside an extra is logged on
    its own), plus each line of a multi-line value (logs are redacted line by line).
    """
    found: set[str] = set()
    for value in payload.secret_values():
        found.add(value)
        with contextlib.suppress(ValueError):
            found.update(_string_leaves(json.loads(value)))
    for value in list(found):
        if "\n" in value:
            found.update(line.strip() for line in value.splitlines())
    return sorted(v for v in found if len(v) >= MIN_MASKED_LENGTH)
