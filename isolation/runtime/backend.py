"""The secrets backend Airflow is configured with inside isolation (``[secrets] backend``).

Airflow imports this module itself, while it reads its configuration, so it is the
one runtime module that imports Airflow at module level. Registering a backend by
configuration is Airflow's public extension point on every supported version.
"""

from __future__ import annotations

from typing import Any

from airflow.secrets import BaseSecretsBackend

from isolation.runtime import secrets


class EnvelopeSecretsBackend(BaseSecretsBackend):
    """Serves the envelope's connections and variables; knows nothing else."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()

    def get_conn_value(self, conn_id: str, *args: Any, **kwargs: Any) -> str | None:
        return secrets.connection_json(conn_id)

    def get_variable(self, key: str, *args: Any, **kwargs: Any) -> str | None:
        return secrets.variable(key)

    def get_config(self, key: str) -> str | None:
        return None
