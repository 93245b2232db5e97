"""Every copy of every keyset on this machine, and how a change reaches each copy.

The master copy of each keyset, as docs/keys.md section 3 describes:

- the host signer keyset: ``<keyring>/signer.json`` (private). Each local environment
  holds a public copy in ``<home>/<name>/keys/signers.json``: it trusts the keys in it;
- an environment's recipient keyset: ``<home>/<name>/keys/recipient.json`` (private, the
  environment's own copy). The host holds a public copy in
  ``<keyring>/environments/<name>.json``: it seals to that copy's primary.

A change to a recipient keyset is written to the environment first, then to the host
(the environment must hold a key before the host seals to it). A change to the signer
keyset is written to the host; ``distribute_signer`` copies it to the environments.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from isolation.keyring import (
    RECIPIENT_FILE,
    SIGNER_FILE,
    SIGNERS_FILE,
    HostKeyring,
    check_environment_name,
    write_keys_file,
)
from isolation.transport.keyset import Key, Keyset, Purpose
from isolationctl._ui import ExitCode, fail

SIGNER = "signer"


@dataclass(frozen=True)
class KeysetRef:
    """Which keyset a command acts on: the host signer, or one environment's recipient keyset."""

    environment: str | None = None

    @property
    def is_signer(self) -> bool:
        return self.environment is None

    @property
    def label(self) -> str:
        return SIGNER if self.environment is None else f"recipient:{self.environment}"

    def __str__(self) -> str:
        return "the host signer keyset" if self.environment is None else f"the recipient keyset of {self.environment!r}"


@dataclass(frozen=True)
class KeyStore:
    keyring: HostKeyring
    home: Path

    # -- where -------------------------------------------------------------------------

    @property
    def signer_path(self) -> Path:
        return self.keyring.path / SIGNER_FILE

    def keys_dir(self, name: str) -> Path:
        return self.home / check_environment_name(name) / "keys"

    def recipient_path(self, name: str) -> Path:
        return self.keys_dir(name) / RECIPIENT_FILE

    def host_copy_path(self, name: str) -> Path:
        return self.keyring.path / "environments" / f"{check_environment_name(name)}.json"

    def environments(self) -> list[str]:
        """The local environments that hold keys here (built or provisioned), sorted."""
        if not self.home.is_dir():
            return []
        return sorted(p.parent.parent.name for p in self.home.glob(f"*/keys/{RECIPIENT_FILE}"))

    def refs(self) -> list[KeysetRef]:
        refs = [KeysetRef()] if self.signer_path.exists() else []
        return refs + [KeysetRef(name) for name in self.environments()]

    # -- read --------------------------------------------------------------------------

    def load(self, ref: KeysetRef) -> Keyset:
        if ref.environment is None:
            if not self.signer_path.exists():
                fail(
                    f"there is no host signer keyset at {self.signer_path}",
                    hint="create it with `isolationctl init` (or `isolationctl deploy --local`), "
                    "or pass the keyring with --keyring",
                    code=ExitCode.KEYS,
                )
            return self.keyring.signer()
        path = self.recipient_path(ref.environment)
        if not path.exists():
            known = ", ".join(self.environments()) or "none"
            fail(
                f"environment {ref.environment!r} has no keys at {path} (environments with keys: {known})",
                hint=f"provision them with `isolationctl deploy --local -e {ref.environment}` "
                "(or `isolationctl init`), or pass --home",
                code=ExitCode.KEYS,
            )
        keyset = Keyset.load(path)
        if keyset.purpose is not Purpose.RECIPIENT or keyset.name != ref.environment or not keyset.has_private:
            fail(f"{path} is not environment {ref.environment!r}'s private recipient keyset", code=ExitCode.KEYS)
        return keyset

    def locate(self, kid: str) -> tuple[KeysetRef, Keyset, Key]:
        """The keyset holding key ``kid`` (a full id, or a unique prefix of at least 6 digits)."""
        wanted = kid.strip().lower()
        if len(wanted) < 6 or any(c not in "0123456789abcdef" for c in wanted):
            fail(f"{kid!r} is not a key id", hint="key ids are 32 hex digits; `isolationctl keys list` shows them")
        matches = [
            (ref, keyset, key)
            for ref in self.refs()
            for keyset in [self.load(ref)]
            for key in keyset
            if key.kid.startswith(wanted)
        ]
        if not matches:
            fail(
                f"no key {kid} in any keyset here",
                hint="`isolationctl keys list` shows the key ids",
                code=ExitCode.KEYS,
            )
        if len(matches) > 1:
            fail(
                f"key id prefix {kid} matches {len(matches)} keys",
                hint="give more digits of the key id",
                code=ExitCode.KEYS,
            )
        return matches[0]

    # -- write -------------------------------------------------------------------------

    def save(self, ref: KeysetRef, keyset: Keyset) -> list[Path]:
        """Write ``keyset`` to its master copy; a recipient keyset to the host's copy too."""
        if ref.environment is None:
            return [keyset.save(self.signer_path)]
        written = [write_keys_file(self.keys_dir(ref.environment), RECIPIENT_FILE, keyset)]
        written.append(self.keyring.save_recipient(keyset))
        return written

    def distribute_signer(self, signer: Keyset) -> list[str]:
        """Give every local environment the host's current public signer keyset."""
        public = signer.public()
        names = self.environments()
        for name in names:
            write_keys_file(self.keys_dir(name), SIGNERS_FILE, public)
        return names

    def lacking_signer_key(self, kid: str) -> list[str]:
        """The local environments whose trusted signer keysets do not accept key ``kid``."""
        signer_key = self.load(KeysetRef()).get(kid)
        lacking = []
        for name in self.environments():
            path = self.keys_dir(name) / SIGNERS_FILE
            try:
                copy = Keyset.load(path).find(kid)
            except Exception:  # unreadable or missing: it does not have the key either
                copy = None
            if copy is None or copy.public != signer_key.public or not copy.accepts:
                lacking.append(name)
        return lacking

    def trusted_signers(self) -> dict[str, tuple[Keyset, list[str]]]:
        """Other hosts' signer keysets (``signers-<name>.json``) and the environments that trust each."""
        found: dict[str, tuple[Keyset, list[str]]] = {}
        for env in self.environments():
            for path in sorted(self.keys_dir(env).glob("signers?*.json")):
                keyset = _readable(path)
                if keyset is not None:
                    found.setdefault(path.name, (keyset, []))[1].append(env)
        return found

    def environments_accepting(self, kid: str, *, besides: str = SIGNERS_FILE) -> list[str]:
        """The local environments whose signer files other than ``besides`` accept key ``kid``."""
        accepting = []
        for env in self.environments():
            for path in self.keys_dir(env).glob("signers*.json"):
                if path.name == besides:
                    continue
                keyset = _readable(path)
                key = keyset.find(kid) if keyset is not None else None
                if key is not None and key.accepts:
                    accepting.append(env)
                    break
        return accepting

    def host_copy_current(self, name: str) -> bool:
        """Whether the host's public copy of ``name``'s keyset matches the environment's."""
        try:
            host = Keyset.load(self.host_copy_path(name))
        except Exception:  # missing or unreadable: not current
            return False
        master = self.load(KeysetRef(name)).public()
        return [(k.kid, k.public, k.status) for k in host] == [(k.kid, k.public, k.status) for k in master]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One key command at a time per keyring: two rotations must not interleave their writes."""
        self.keyring.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.keyring.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _readable(path: Path) -> Keyset | None:
    """The keyset at ``path``; None when it cannot be read: the runtime then refuses to start,
    so that file trusts nothing (doctor reports it)."""
    try:
        return Keyset.load(path)
    except Exception:
        return None
