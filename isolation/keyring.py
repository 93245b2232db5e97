"""Where keys live on disk, on the host and in an environment.

Host keyring (``ISOLATION_KEYRING``, default ``~/.config/isolation/keyring``)::

    signer.json                  the host's private signer keyset (0600)
    environments/<name>.json     each environment's public recipient keyset

Environment keys directory (``ISOLATION_KEYS_DIR``, default ``/var/run/isolation/keys``)::

    recipient.json               the environment's private recipient keyset (0600 or 0400)
    signers.json                 the host's public signer keyset (``signers*.json``: several)

The runtime trusts whatever signer keysets this directory holds and keeps its private
key there, so it reads it strictly and refuses, never warns about, anything that
would let another user read the private key or plant a signer:

- the directory must be a real directory (not a symbolic link), owned by this user or
  root, and not writable by group or others;
- it may hold only ``recipient.json`` and ``signers*.json`` (``signers`` followed by
  letters, digits, ``.``, ``_`` or ``-``): any other name, hidden ones included, is
  refused;
- each file must be a regular file (no symbolic link, FIFO, socket, device or
  directory), owned by this user or root, at most ``MAX_KEYSET_BYTES``; signer files
  must not be writable by group or others, and ``recipient.json`` must not be
  accessible to group or others at all.

The directory is opened once (``O_NOFOLLOW | O_DIRECTORY``) and every file through
that descriptor (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat``), so a path swapped while
the runtime reads cannot redirect it, and a FIFO cannot make it wait.
``EnvironmentKeys.provision`` writes directories that pass these checks.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from isolation.errors import ConfigurationError, KeysetError
from isolation.transport.keyset import MAX_KEYSET_BYTES, Keyset, Purpose

RECIPIENT_FILE = "recipient.json"
SIGNERS_FILE = "signers.json"
SIGNER_FILE = "signer.json"
DEFAULT_KEYS_DIR = "/var/run/isolation/keys"
# The signer keysets an environment trusts: signers.json, signers-<host>.json, ...
SIGNERS_FILES = re.compile(r"signers[A-Za-z0-9._-]*\.json", re.ASCII)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer (the fstat check then refuses it).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open(O_NOFOLLOW) fails with on a symbolic link: ELOOP (Linux, macOS), EMLINK (FreeBSD).
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)
_READABLE = "check that the runtime's user can read the keys directory and its files"
_REPROVISION = "provision its keys again: isolationctl deploy --local -e <name>"

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
                hint=f"build the environment (isolationctl deploy --local -e {environment}) or import "
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
    def load(cls, directory: str | os.PathLike[str], *, secret_volume: bool = False) -> EnvironmentKeys:
        """Read the keys directory strictly (see the module docstring); refuse with :class:`KeysetError`.

        ``secret_volume``: the directory is a Kubernetes Secret volume, mounted read-only in a
        pod. Its files are root's and readable by the pod's user through their group or
        other bits, as the kubelet (or podman) writes them, so the private key's mode is not
        checked; in exchange the mount must be read-only. The kubelet's layout (the files
        are links through ``..data`` to a hidden directory) is read through that directory.
        """
        path = _secret_volume_files(Path(directory)) if secret_volume else Path(directory)
        dir_fd = _open_keys_dir(path)
        try:
            if secret_volume and not os.fstatvfs(dir_fd).f_flag & os.ST_RDONLY:
                raise KeysetError(
                    f"the keys Secret volume at {directory} is not mounted read-only",
                    hint="mount it with readOnly: true (the isolation Kubernetes backend does)",
                )
            names = _expected_names(dir_fd, path)
            if RECIPIENT_FILE not in names:
                raise KeysetError(
                    f"no {RECIPIENT_FILE} in the keys directory {path}",
                    hint="mount the environment's keys there or set ISOLATION_KEYS_DIR",
                )
            recipient = _read_keyset(dir_fd, path, RECIPIENT_FILE, private=not secret_volume)
            if recipient.purpose is not Purpose.RECIPIENT or not recipient.has_private:
                raise KeysetError(
                    f"{path / RECIPIENT_FILE} is not a private recipient keyset",
                    hint=f"put the environment's private recipient keyset there; {_REPROVISION}",
                )
            signer_files = sorted(name for name in names if SIGNERS_FILES.fullmatch(name))
            if not signer_files:
                raise KeysetError(f"no {SIGNERS_FILE} in {path}", hint="export the host's public signer keyset there")
            signers = tuple(_read_keyset(dir_fd, path, name, private=False) for name in signer_files)
        finally:
            os.close(dir_fd)
        seen: dict[str, tuple[bytes, Path]] = {}
        for keyset, name in zip(signers, signer_files, strict=True):
            source = path / name
            if keyset.purpose is not Purpose.SIGNER:
                raise KeysetError(
                    f"{source} is not a signer keyset",
                    hint=f"put the host's public signer keyset there; {_REPROVISION}",
                )
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
        """Write an environment's keys directory as ``load`` accepts it.

        The directory 0700, the private recipient keyset 0600, the public signer keyset 0644.
        """
        path = Path(directory)
        _private_dir(path)
        write_keys_file(path, RECIPIENT_FILE, recipient)
        write_keys_file(path, SIGNERS_FILE, signer.public())
        return path


def write_keys_file(directory: str | os.PathLike[str], name: str, keyset: Keyset) -> Path:
    """Replace one file of a keys directory atomically, staging it in the folder above.

    A runtime that reads the directory meanwhile sees the old file or the new one, and
    never a temporary name, which its strict reading would refuse.
    """
    path = Path(directory)
    return keyset.save(path / name, staging=path.parent)


# --------------------------------------------------------------------------- strict reading

_KUBELET_DATA = "..data"


def _secret_volume_files(path: Path) -> Path:
    """Where a Secret volume's files really are: the kubelet's ``..data`` target, else ``path``.

    The kubelet writes the files into a hidden directory ``..<timestamp>`` and links
    ``..data`` to it; only a link to such a sibling is followed, never one leading elsewhere.
    """
    try:
        target = os.readlink(path / _KUBELET_DATA)
    except FileNotFoundError:
        return path  # podman writes the files themselves
    except OSError as exc:
        raise KeysetError(f"cannot read the keys Secret volume at {path}: {exc.strerror}", hint=_READABLE) from None
    if "/" in target or not target.startswith("..") or target in ("..", _KUBELET_DATA):
        raise KeysetError(
            f"{path / _KUBELET_DATA} links outside the Secret volume", hint="mount the keys Secret itself there"
        )
    return path / target


def _open_keys_dir(path: Path) -> int:
    """Open the keys directory itself (never through a symbolic link) and check it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise KeysetError(
            f"keys directory {path} does not exist",
            hint="mount the environment's keys there or set ISOLATION_KEYS_DIR",
        ) from None
    except OSError as exc:
        raise KeysetError(f"cannot read the keys directory {path}: {exc.strerror}", hint=_READABLE) from None
    if stat.S_ISLNK(info.st_mode):
        raise _symlink(f"keys directory {path}")
    if not stat.S_ISDIR(info.st_mode):
        raise KeysetError(
            f"keys directory {path} is not a directory (it is {_kind(info.st_mode)})",
            hint="mount the environment's keys there or set ISOLATION_KEYS_DIR",
        )
    try:
        dir_fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS:
            raise _symlink(f"keys directory {path}") from None
        raise KeysetError(f"cannot open the keys directory {path}: {exc.strerror}", hint=_READABLE) from None
    try:
        info = os.fstat(dir_fd)
        _check_owner(info, f"keys directory {path}", path)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            raise KeysetError(
                f"keys directory {path} is writable by group or others (mode {mode:04o}): "
                "whoever can write there can plant a signer keyset this environment would trust",
                hint=f"chmod go-w {path}",
            )
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd


def _expected_names(dir_fd: int, path: Path) -> set[str]:
    """The directory's entries, listed through its descriptor; refuse any unexpected name."""
    try:
        names = os.listdir(dir_fd)
    except OSError as exc:
        raise KeysetError(f"cannot list the keys directory {path}: {exc.strerror}", hint=_READABLE) from None
    unexpected = sorted(name for name in names if name != RECIPIENT_FILE and not SIGNERS_FILES.fullmatch(name))
    if unexpected:
        shown = ", ".join(repr(name if len(name) <= 60 else name[:60] + "...") for name in unexpected[:5])
        if len(unexpected) > 5:
            shown += f" and {len(unexpected) - 5} more"
        raise KeysetError(
            f"keys directory {path} holds files the runtime does not expect: {shown}",
            hint=f"only {RECIPIENT_FILE} and signers*.json ({SIGNERS_FILES.pattern}) belong there; "
            "remove everything else",
        )
    return set(names)


def _read_keyset(dir_fd: int, directory: Path, name: str, *, private: bool) -> Keyset:
    """Read one keyset file of the keys directory, refusing anything but a safe regular file."""
    where = directory / name
    try:
        # lstat first: a device or socket is refused without ever being opened.
        _check_regular(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), where)
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _SYMLINK_ERRNOS:
            raise _symlink(str(where)) from None
        raise KeysetError(
            f"cannot read keyset {where}: {exc.strerror}",
            hint="check the keys directory (ISOLATION_KEYS_DIR); docs/keys.md says where each keyset lives",
        ) from None
    try:
        # fstat of what was opened is the truth; the lstat above may describe a swapped path.
        info = os.fstat(fd)
        _check_regular(info, where)
        _check_owner(info, str(where), where)
        _check_mode(stat.S_IMODE(info.st_mode), where, private=private)
        if info.st_size > MAX_KEYSET_BYTES:
            raise _too_large(where)
        data = _read_at_most(fd, MAX_KEYSET_BYTES + 1, where)
    finally:
        os.close(fd)
    if len(data) > MAX_KEYSET_BYTES:
        raise _too_large(where)
    try:
        return Keyset.from_json(data)
    except KeysetError as exc:
        raise KeysetError(f"{where}: {exc.message}", hint=exc.hint or _REPROVISION) from None


def _read_at_most(fd: int, limit: int, where: Path) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise KeysetError(f"cannot read keyset {where}: {exc.strerror}", hint=_READABLE) from None
    return b"".join(chunks)


def _check_regular(info: os.stat_result, where: Path) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise _symlink(str(where))
    if not stat.S_ISREG(info.st_mode):
        raise KeysetError(
            f"{where} is not a regular file (it is {_kind(info.st_mode)})",
            hint=f"the keys directory holds only regular files: {RECIPIENT_FILE} and signers*.json; "
            f"remove {where} and provision the keys again",
        )


def _check_owner(info: os.stat_result, what: str, path: Path) -> None:
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise KeysetError(
            f"{what} is owned by uid {info.st_uid}, not by this user (uid {me}) or root: "
            "its owner could change the keys this environment uses",
            hint=f"chown {me} {path}, or provision the keys as the user the runtime runs as",
        )


def _check_mode(mode: int, where: Path, *, private: bool) -> None:
    if private and mode & 0o077:
        raise KeysetError(
            f"{where} holds the environment's private keys but is readable or writable by group or others "
            f"(mode {mode:04o})",
            hint=f"chmod 0600 {where} (or 0400)",
        )
    if mode & 0o022:
        raise KeysetError(
            f"signer keyset {where} is writable by group or others (mode {mode:04o}): "
            "whoever can change it decides which hosts this environment trusts",
            hint=f"chmod go-w {where}",
        )


def _symlink(what: str) -> KeysetError:
    return KeysetError(
        f"{what} is a symbolic link; the runtime follows no symbolic links in its keys directory",
        hint="put the directory and its files there themselves (a copy or a bind mount), not links to them",
    )


def _too_large(where: Path) -> KeysetError:
    return KeysetError(
        f"{where} is larger than {MAX_KEYSET_BYTES} bytes; no keyset is that large",
        hint="check that the file in the keys directory is the keyset docs/keys.md describes",
    )


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((name for test, name in kinds if test(mode)), "of an unknown type")
