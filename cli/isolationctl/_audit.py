"""The audit log of key commands: one JSON line per command, never key material.

``<keyring>/audit.log`` (0600), appended with ``O_APPEND`` in a single write per line,
so concurrent commands never interleave inside a line.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from isolation.keyring import RECIPIENT_FILE, SIGNER_FILE, HostKeyring
from isolation.transport.keyset import Keyset

AUDIT_FILE = "audit.log"


def audit_path(keyring: Path) -> Path:
    return keyring / AUDIT_FILE


def record(keyring: Path, command: str, keyset: str, key_ids: Sequence[str], detail: str = "") -> None:
    """Append one line: when, who, which command, on which keyset and key ids."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid says who
        user = f"uid {os.getuid()}"
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user": user,
        "command": command,
        "keyset": keyset,
        "key_ids": list(key_ids),
    }
    if detail:
        entry["detail"] = detail
    keyring.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(audit_path(keyring), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def read(keyring: Path) -> list[dict[str, Any]]:
    """Every entry, oldest first; a damaged line is shown as such rather than dropped."""
    try:
        lines = audit_path(keyring).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not _well_formed(entry):
            # Shown, not dropped: a damaged audit log is itself worth noticing.
            entry = {"time": "?", "user": "?", "command": f"(line {number} is damaged)", "keyset": "", "key_ids": []}
        entries.append(entry)
    return entries


def _well_formed(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    texts = all(isinstance(entry.get(name), str) for name in ("time", "user", "command", "keyset"))
    ids = entry.get("key_ids")
    return texts and isinstance(ids, list) and all(isinstance(kid, str) for kid in ids)


@contextlib.contextmanager
def key_creation(keyring: HostKeyring, home: Path, command: str) -> Iterator[None]:
    """Audit the keysets a block creates (init, env add, deploy provision keys as they go)."""
    signer = keyring.path / SIGNER_FILE

    def recipients() -> set[Path]:
        return set(home.glob(f"*/keys/{RECIPIENT_FILE}")) if home.is_dir() else set()

    had_signer, had = signer.exists(), recipients()
    try:
        yield
    finally:
        if not had_signer and signer.exists():
            _record_created(keyring.path, command, "signer", signer)
        for path in sorted(recipients() - had):
            _record_created(keyring.path, command, f"recipient:{path.parent.parent.name}", path)


def _record_created(keyring: Path, command: str, keyset: str, path: Path) -> None:
    try:
        kids = [key.kid for key in Keyset.load(path)]
    except Exception:  # unreadable right after creation: still say it was created
        kids = []
    record(keyring, f"{command}: create keys", keyset, kids)
