"""Where the host finds its signer key and the environments' public keys.

First the Airflow connection ``isolation_default`` (connection type ``isolation``), so
production keys can live in whatever secrets backend Airflow already uses::

    conn_type  isolation
    password   the host's PRIVATE signer keyset, as JSON text (optional)
    extra      {"keyring_path": "/etc/isolation/keyring",          (optional)
                "environments": {"legacy": {<public recipient keyset>}, ...}}  (optional)

The signer comes from ``password``, else from ``keyring_path``; an environment's public
keyset from ``extra.environments``, else from ``keyring_path``. When the connection
does not exist, the keyring directory configured as ``[isolation] keyring_path``
(``AIRFLOW__ISOLATION__KEYRING_PATH``), else ``ISOLATION_KEYRING``, else
``~/.config/isolation/keyring`` is used (see :mod:`isolation.keyring` for its layout).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from isolation.errors import ConfigurationError, KeysetError
from isolation.keyring import HostKeyring, check_environment_name, default_keyring_path
from isolation.transport.keyset import Keyset, Purpose

DEFAULT_CONN_ID = "isolation_default"
_CACHE: dict[tuple[Any, ...], Keyset] = {}
_CACHE_LIMIT = 64


@dataclass(frozen=True)
class HostKeys:
    """What sealing one envelope needs: the private signer and the recipient's public keys."""

    signer: Keyset
    recipient: Keyset
    source: str


def configured_keyring_path() -> Path:
    """``[isolation] keyring_path``, else ``ISOLATION_KEYRING``, else the default location."""
    try:
        from airflow.configuration import conf

        configured = conf.get("isolation", "keyring_path", fallback=None)
    except Exception:  # Airflow config unreadable: fall back to the plain variables.
        configured = os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH")
    return Path(configured) if configured else default_keyring_path()


def _cached(key: tuple[Any, ...], load: Any) -> Keyset:
    # Sealing many tasks in one process (dag.test, benchmarks) should parse each keyset once.
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        found = _CACHE[key] = load()
    return found


def _file_key(path: Path) -> tuple[Any, ...]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _from_keyring(path: Path, environment: str) -> tuple[Keyset, Keyset]:
    keyring = HostKeyring.open(path)
    signer = _cached(("signer", *_file_key(path / "signer.json")), keyring.signer)
    recipient = _recipient_from_keyring(keyring, environment)
    return signer, recipient


def _recipient_from_keyring(keyring: HostKeyring, environment: str) -> Keyset:
    check_environment_name(environment)  # before the name becomes part of a path
    target = keyring.path / "environments" / f"{environment}.json"
    return _cached(("recipient", environment, *_file_key(target)), lambda: keyring.recipient(environment))


def _inline_keyset(text: str, what: str) -> Keyset:
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        return _cached(("inline", digest), lambda: Keyset.from_json(text))
    except KeysetError as exc:
        raise KeysetError(f"{what}: {exc.message}", hint=exc.hint) from None


def _keys_from_connection(conn: Any, conn_id: str, environment: str) -> tuple[Keyset, Keyset]:
    where = f"Airflow connection {conn_id!r}"
    try:
        extra = json.loads(conn.extra) if conn.extra else {}
    except ValueError:
        raise ConfigurationError(f"the extra of {where} is not JSON", hint=_CONN_HINT) from None
    if not isinstance(extra, dict):
        raise ConfigurationError(f"the extra of {where} must be a JSON object", hint=_CONN_HINT)
    path = Path(extra["keyring_path"]) if extra.get("keyring_path") else None
    if conn.password:
        signer = _inline_keyset(conn.password, f"the signer keyset in the password of {where}")
        if signer.purpose is not Purpose.SIGNER or not signer.has_private:
            raise KeysetError(f"the password of {where} is not a private signer keyset", hint=_CONN_HINT)
    elif path is not None:
        signer = _cached(("signer", *_file_key(path / "signer.json")), HostKeyring.open(path).signer)
    else:
        raise ConfigurationError(f"{where} holds no signer key", hint=_CONN_HINT)
    inline = extra.get("environments") or {}
    if not isinstance(inline, dict):
        raise ConfigurationError(f"extra.environments of {where} must be an object", hint=_CONN_HINT)
    if environment in inline:
        document = inline[environment]
        text = document if isinstance(document, str) else json.dumps(document)
        recipient = _inline_keyset(text, f"extra.environments[{environment!r}] of {where}")
        if recipient.purpose is not Purpose.RECIPIENT or recipient.name != environment:
            raise KeysetError(f"extra.environments[{environment!r}] of {where} is not that environment's keyset")
        return signer, recipient.public()
    if path is not None:
        return signer, _recipient_from_keyring(HostKeyring.open(path), environment)
    raise KeysetError(
        f"no public keys for environment {environment!r} in {where}",
        hint="add them under extra.environments, or point extra.keyring_path at a keyring that has them",
    )


_CONN_HINT = (
    "the connection (type 'isolation') holds the private signer keyset JSON in its password and "
    '{"keyring_path": ...} and/or {"environments": {name: public keyset}} in its extra; see docs/howto-local.md'
)


def load_host_keys(environment: str, conn_id: str | None = DEFAULT_CONN_ID) -> HostKeys:
    """The signer and ``environment``'s public keys, from the connection or the keyring path.

    With the default connection id a missing connection falls back to the configured
    keyring path; a connection id chosen on purpose must exist.
    """
    if conn_id:
        conn = _get_connection(conn_id)
        if conn is not None:
            signer, recipient = _keys_from_connection(conn, conn_id, environment)
            return HostKeys(signer, recipient, f"connection {conn_id!r}")
        if conn_id != DEFAULT_CONN_ID:
            raise ConfigurationError(
                f"the keyring connection {conn_id!r} does not exist",
                hint=f"create it (type 'isolation') or use the default {DEFAULT_CONN_ID!r} / a keyring path",
            )
    path = configured_keyring_path()
    signer, recipient = _from_keyring(path, environment)
    return HostKeys(signer, recipient, f"keyring {path}")


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


class IsolationKeyringHook(BaseHook):
    """Reads the host's isolation keys from an ``isolation`` connection (see module docs)."""

    conn_name_attr = "isolation_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "isolation"
    hook_name = "Isolation keyring"

    def __init__(self, isolation_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.isolation_conn_id = isolation_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "login", "port"],
            "relabeling": {"password": "Signer keyset (private, JSON)"},
            "placeholders": {
                "extra": '{"keyring_path": "/etc/isolation/keyring", "environments": {"legacy": {...}}}',
            },
        }

    def get_keys(self, environment: str) -> HostKeys:
        return load_host_keys(environment, self.isolation_conn_id)
