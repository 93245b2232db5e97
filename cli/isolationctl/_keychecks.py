"""Key health for ``isolationctl doctor``: every keyset present, private, loadable, and the halves matching.

The host holds the private signer keyset and a public copy of each environment's
recipient keyset; each local environment holds its private recipient keyset (the master
copy of its key statuses, docs/keys.md section 3) and a public copy of the host's signer
keyset. A task works only when both copies agree with their masters, key by key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from isolation.errors import KeysetError
from isolation.keyring import RECIPIENT_FILE, SIGNER_FILE, SIGNERS_FILE, EnvironmentKeys, HostKeyring
from isolation.transport.keyset import Keyset, KeyStatus
from isolationctl._checks import Check

AREA = "keys"
_PRIVATE_MODES = (0o600, 0o400)


def deploy_fix(name: str) -> str:
    return f"isolationctl deploy --local -e {name}"


def signer_checks(keyring: HostKeyring) -> tuple[list[Check], Keyset | None]:
    """The host signer keyset: present, private (0600/0400), a private signer keyset, one primary."""
    path = keyring.path / SIGNER_FILE
    what = f"host signer keyset {path.name}"
    checks: list[Check] = []
    if not path.is_file():
        fix = "isolationctl deploy --local (creates it and gives every environment its public half)"
        return [Check(AREA, f"{what} present", False, f"no {path}", fix)], None
    checks.append(Check(AREA, f"{what} present", True, str(path)))
    checks.append(_mode_check(path, what))
    try:
        signer = keyring.signer()
    except KeysetError as exc:
        checks.append(Check(AREA, f"{what} loads", False, exc.message, exc.hint or f"restore {path} from a backup"))
        return checks, None
    checks.append(_one_primary(signer, what, "isolationctl keys promote KID --signer"))
    return checks, signer


def environment_checks(name: str, keys_dir: Path, keyring: HostKeyring, signer: Keyset | None) -> list[Check]:
    """An environment's keys: its private keyset, the host's copy of its public half, its copy of the signer."""
    path = keys_dir / RECIPIENT_FILE
    what = f"{name}: private recipient keyset"
    if not path.is_file():
        return [Check(AREA, f"{what} present", False, f"no {path}", deploy_fix(name))]
    checks = [Check(AREA, f"{what} present", True, str(path)), _mode_check(path, what)]
    try:
        master = Keyset.load(path)
    except KeysetError as exc:
        checks.append(Check(AREA, f"{what} loads", False, exc.message, f"restore {path} from a backup"))
        return checks
    checks.append(_one_primary(master, what, f"isolationctl keys promote KID -e {name}"))
    checks.append(_strict_load(name, keys_dir))
    checks.append(_host_copy_check(name, master, keyring))
    if signer is not None:
        checks.append(_signers_check(name, keys_dir, signer))
    return checks


def _mode_check(path: Path, what: str) -> Check:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    ok = mode in _PRIVATE_MODES
    detail = f"mode {mode:04o}" + ("" if ok else ", readable or writable by others than its owner")
    return Check(AREA, f"{what} is private (0600 or 0400)", ok, detail, "" if ok else f"chmod 600 {path}")


def _one_primary(keyset: Keyset, what: str, fix: str) -> Check:
    primaries = [key.kid for key in keyset if key.status is KeyStatus.PRIMARY]
    ok = len(primaries) == 1
    detail = f"primary {primaries[0]}" if ok else f"{len(primaries)} primary keys"
    return Check(AREA, f"{what} has exactly one primary", ok, detail, "" if ok else fix)


def _strict_load(name: str, keys_dir: Path) -> Check:
    """What the runtime itself reads, with its strict rules (owner, modes, names, links)."""
    what = f"{name}: keys directory loads as the runtime reads it"
    try:
        keys = EnvironmentKeys.load(keys_dir)
    except KeysetError as exc:
        return Check(AREA, what, False, exc.message, exc.hint or deploy_fix(name))
    if keys.recipient.name != name:
        return Check(
            AREA, what, False, f"{keys_dir / RECIPIENT_FILE} belongs to {keys.recipient.name!r}", deploy_fix(name)
        )
    return Check(AREA, what, True, str(keys_dir))


def _host_copy_check(name: str, master: Keyset, keyring: HostKeyring) -> Check:
    """The host seals with ``keyring/environments/<name>.json``: it must be the master's public half."""
    path = keyring.path / "environments" / f"{name}.json"
    what = f"{name}: host copy of its public keys matches"
    fix = f"{deploy_fix(name)} (or isolationctl keys distribute -e {name})"
    if not path.is_file():
        return Check(AREA, what, False, f"the host has no public keys for {name!r} ({path} is missing)", fix)
    try:
        copy = Keyset.load(path)
    except KeysetError as exc:
        return Check(AREA, what, False, exc.message, fix)
    problem = _difference(master, copy)
    return Check(AREA, what, problem is None, problem or str(path), "" if problem is None else fix)


def _signers_check(name: str, keys_dir: Path, signer: Keyset) -> Check:
    """The environment verifies with ``signers.json``: it must be the host signer's public half."""
    path = keys_dir / SIGNERS_FILE
    what = f"{name}: its copy of the host signer keys matches"
    fix = f"{deploy_fix(name)} (or isolationctl keys distribute --signer)"
    try:
        copy = Keyset.load(path)
    except KeysetError as exc:
        return Check(AREA, what, False, exc.message, fix)
    problem = _difference(signer, copy)
    return Check(AREA, what, problem is None, problem or str(path), "" if problem is None else fix)


def _difference(master: Keyset, copy: Keyset) -> str | None:
    """How ``copy`` differs from ``master``'s public half (key ids, public keys, statuses); None if not."""
    if copy.purpose is not master.purpose or copy.name != master.name:
        return f"the copy is the {copy.purpose.value} keyset {copy.name!r}, not {master.name!r}"
    mine = {key.kid: key for key in master}
    theirs = {key.kid: key for key in copy}
    missing = sorted(set(mine) - set(theirs))
    if missing:
        current = master.primary().kid if _has_primary(master) else "none"
        return f"the copy lacks key {', '.join(missing)} (the current primary: {current})"
    extra = sorted(set(theirs) - set(mine))
    if extra:
        return f"the copy has key {', '.join(extra)}, which the master does not"
    for kid, key in mine.items():
        other = theirs[kid]
        if other.public != key.public:
            return f"key {kid} has another public key in the copy"
        if other.status is not key.status:
            return f"key {kid} is {key.status.value} in the master but {other.status.value} in the copy"
    return None


def _has_primary(keyset: Keyset) -> bool:
    return any(key.status is KeyStatus.PRIMARY for key in keyset)
