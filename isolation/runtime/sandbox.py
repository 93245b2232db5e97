"""The process environment Airflow starts in, prepared before Airflow is imported.

Airflow reads its configuration from the environment when it is first imported, so
this is the one moment to decide what it sees: a private, empty ``AIRFLOW_HOME``
that is removed at exit, a metadata database URL that can never be opened (a path
below ``/dev/null``), no internal API, and the envelope's secrets backend. A
database URL already present in the environment is a contract violation: it would
hand isolated code the keys to Airflow's database.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import MutableMapping

from isolation.errors import IsolationViolation

# Nothing can ever be created below /dev/null, so even code that slips past the
# guards cannot create or open a metadata database file.
UNUSABLE_DB_URL = "sqlite:////dev/null/isolation-has-no-metadata-database"
SECRETS_BACKEND = "isolation.runtime.backend.EnvelopeSecretsBackend"

_DB_URL_VAR = re.compile(r"AIRFLOW__(DATABASE|CORE)__SQL_ALCHEMY_CONN(_ASYNC)?(_CMD|_SECRET)?")
# Settings that would point Airflow at a server or the database; the runtime owns them.
_OWNED_PREFIXES = ("AIRFLOW__DATABASE__", "AIRFLOW__SECRETS__")
_OWNED_NAMES = (
    "AIRFLOW_CONFIG",
    "AIRFLOW_ENABLE_AIP_44",
    "AIRFLOW__CORE__DATABASE_ACCESS_ISOLATION",
    "AIRFLOW__CORE__INTERNAL_API_URL",
    "AIRFLOW__CORE__INTERNAL_API_SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS",
    "AIRFLOW__WORKERS__SECRETS_BACKEND",
    "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS",
)


_HOMES: list[str] = []


def cleanup() -> None:
    """Remove the private homes made by :func:`prepare` (idempotent)."""
    while _HOMES:
        shutil.rmtree(_HOMES.pop(), ignore_errors=True)


def check_no_database_url(environ: MutableMapping[str, str] | None = None) -> None:
    """Refuse to run with a metadata database URL in the environment."""
    env = os.environ if environ is None else environ
    found = sorted(name for name in env if _DB_URL_VAR.fullmatch(name.upper()))
    if found:
        raise IsolationViolation(f"a metadata database URL in the environment ({', '.join(found)})")


def prepare(environ: MutableMapping[str, str] | None = None) -> str:
    """Point Airflow at a private home and an unusable database; return the home."""
    env = os.environ if environ is None else environ
    home = tempfile.mkdtemp(prefix="isolation-airflow-home-")
    _HOMES.append(home)
    atexit.register(cleanup)
    config = os.path.join(home, "airflow.cfg")
    # An existing (empty) config file stops Airflow from writing a default one on import.
    with open(config, "w", encoding="utf-8"):
        pass
    for name in list(env):
        if name in _OWNED_NAMES or name.startswith(_OWNED_PREFIXES):
            del env[name]
    env.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW_CONFIG": config,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": UNUSABLE_DB_URL,
            "AIRFLOW__CORE__DATABASE_ACCESS_ISOLATION": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(home, "dags"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": os.path.join(home, "logs"),
            "AIRFLOW__SECRETS__BACKEND": SECRETS_BACKEND,
            "AIRFLOW__SECRETS__BACKEND_KWARGS": "{}",
        }
    )
    return home
