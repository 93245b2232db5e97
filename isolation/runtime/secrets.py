"""Connections and variables from the envelope, served from memory only.

The store is filled once, after the envelope is open. Airflow reads it through
:class:`isolation.runtime.backend.EnvelopeSecretsBackend` (the configured secrets
backend) and through the getters :mod:`isolation.runtime.compat` wraps. Nothing is
put into ``os.environ`` (which child processes inherit) unless the host asked for it
with ``options.export_secrets_to_env``.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from isolation.masking import MIN_LENGTH, secret_strings

if TYPE_CHECKING:
    from isolation.transport.payload import ConnectionSpec, Payload

# Shorter values would mask ordinary words and digits all over the log.
MIN_MASKED_LENGTH = MIN_LENGTH

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


def secret_values(payload: Payload) -> list[str]:
    """Every string to hide from logs, errors and the result's error message.

    The payload's own list (passwords, logins, extras, variable values), expanded as the
    host expands it (:func:`isolation.masking.secret_strings`): JSON leaves, lines.
    """
    return secret_strings(payload.secret_values(), min_length=MIN_MASKED_LENGTH)
