"""Where keys live on disk, on the host and in an environment.

Host keyring (``ISOLATION_KEYRING``, default ``~/.config/isolation/keyring``)::

    signer.json                  the host's private signer keyset (0600)
    environments/<name>.json     each environment's public recipient keyset

Environment keys directory (``ISOLATION_KEYS_DIR``, default ``/var/run/isolation/keys``)::

    recipient.json               the environment's private recipient keyset (0600)
    signers.json                 the host's public signer keyset (``signers*.json``: several)
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from isolation.errors import ConfigurationError, KeysetError
from isolation.transport.keyset import Keyset, Purpose

RECIPIENT_FILE = "recipient.json"
SIGNERS_FILE = "signers.json"
SIGNER_FILE = "signer.json"
DEFAULT_KEYS_DIR = "/var/run/isolation/keys"

log = logging.getLogger("isolation.keyring")

# The one environment name rule (also the rule of keyset names); isolation.environments
# uses it from here.
ENVIRONMENT_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?", re.ASCII)


def check_environment_name(name: str) -> str:
    """Return ``name`` if it is a valid environment name; never build a path from any other."""
    if not isinstance(name, str) or not ENVIRONMENT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid environment name {name!r}",
            hint="use lowercase letters, digits, '.', '_' and '-', at most 63 characters",
        )
    return name


def default_keyring_path() -> Path:
    configured = os.environ.get("ISOLATION_KEYRING")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "isolation" / "keyring"


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@dataclass(frozen=True)
class HostKeyring:
    """The host's signer keyset and the environments' public recipient keysets."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> HostKeyring:
        return cls(Path(path) if path is not None else default_keyring_path())

    def init(self) -> Keyset:
        """Create the signer keyset if there is none; return it."""
        _private_dir(self.path)
        (self.path / "environments").mkdir(exist_ok=True)
        target = self.path / SIGNER_FILE
        if target.exists():
            return self.signer()
        signer = Keyset.generate_signer()
        signer.save(target)
        return signer

    def signer(self) -> Keyset:
        keyset = Keyset.load(self.path / SIGNER_FILE)
        if keyset.purpose is not Purpose.SIGNER or not keyset.has_private:
            raise KeysetError(f"{self.path / SIGNER_FILE} is not a private signer keyset")
        return keyset

    def recipient(self, environment: str) -> Keyset:
        """The public recipient keyset of ``environment``, from ``environments/<name>.json``."""
        target = self.path / "environments" / f"{check_environment_name(environment)}.json"
        if not target.exists():
            raise KeysetError(
                f"no public keys for environment {environment!r} in the keyring {self.path}",
                hint=f"build the environment (python -m isolation.environments build {environment}) or copy "
                f"its public recipient keyset to {target}",
            )
        keyset = Keyset.load(target)
        if keyset.purpose is not Purpose.RECIPIENT or keyset.name != environment:
            raise KeysetError(f"{target} is not the recipient keyset of environment {environment!r}")
        return keyset.public()

    def save_recipient(self, keyset: Keyset) -> Path:
        (self.path / "environments").mkdir(parents=True, exist_ok=True)
        return keyset.public().save(self.path / "environments" / f"{keyset.name}.json")


@dataclass(frozen=True)
class EnvironmentKeys:
    """The keys an isolated environment opens envelopes with."""

    recipient: Keyset
    signers: tuple[Keyset, ...]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> EnvironmentKeys:
        path = Path(directory)
        if not path.is_dir():
            raise KeysetError(
                f"keys directory {path} does not exist",
                hint="mount the environment's keys there or set ISOLATION_KEYS_DIR",
            )
        recipient = Keyset.load(path / RECIPIENT_FILE)
        if recipient.purpose is not Purpose.RECIPIENT or not recipient.has_private:
            raise KeysetError(f"{path / RECIPIENT_FILE} is not a private recipient keyset")
        _warn_if_exposed(path / RECIPIENT_FILE)
        signer_files = sorted(path.glob("signers*.json"))
        if not signer_files:
            raise KeysetError(f"no {SIGNERS_FILE} in {path}", hint="export the host's public signer keyset there")
        signers = tuple(Keyset.load(f) for f in signer_files)
        seen: dict[str, tuple[bytes, Path]] = {}
        for keyset, source in zip(signers, signer_files, strict=True):
            if keyset.purpose is not Purpose.SIGNER:
                raise KeysetError(f"{source} is not a signer keyset")
            for key in keyset:
                first = seen.setdefault(key.kid, (key.public, source))
                if first[0] != key.public:
                    raise KeysetError(
                        f"signer key {key.kid} has different public keys in {first[1]} and {source}",
                        hint="a key id names exactly one key: remove the wrong copy and redistribute "
                        "the host's public signer keyset",
                    )
        return cls(recipient, tuple(s.public() for s in signers))

    @staticmethod
    def provision(directory: str | os.PathLike[str], recipient: Keyset, signer: Keyset) -> Path:
        """Write an environment's keys directory (private recipient 0600, public signers)."""
        path = Path(directory)
        _private_dir(path)
        recipient.save(path / RECIPIENT_FILE)
        signer.public().save(path / SIGNERS_FILE)
        return path


def _warn_if_exposed(path: Path) -> None:
    """Log a warning if the private recipient keyset is readable beyond its owner.

    Never fails: some platforms cannot give the file a stricter mode.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "%s holds the environment's private keys but is accessible to group or others (mode %04o); "
            "restrict it to its owner: chmod 0400 %s, or for a Kubernetes Secret volume set defaultMode: 0400",
            path,
            mode,
            path,
        )
