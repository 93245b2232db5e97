"""Keysets: the signer keys of a host and the recipient keys of an environment.

A keyset is a list of keys with statuses (``pending`` -> ``primary`` -> ``retiring`` ->
``revoked``), rotated in stages as in Tink. Its JSON form is documented in
``docs/keys.md``; the public form (no ``private`` fields) is safe to commit, the
private form is written with mode 0600.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from isolation._atomic import write_atomic
from isolation.errors import KeysetError, RotationError
from isolation.transport import _b64, _suites

FORMAT = "isolation-keyset/v1"
MAX_KEYSET_BYTES = 1024 * 1024
MAX_KEYS = 64
DEFAULT_OVERLAP_SECONDS = 2 * 3600
MAX_OVERLAP_SECONDS = 366 * 86400
_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?", re.ASCII)
_KID = re.compile(r"[0-9a-f]{32}", re.ASCII)


class KeyStatus(str, enum.Enum):
    PENDING = "pending"
    PRIMARY = "primary"
    RETIRING = "retiring"
    REVOKED = "revoked"


class Purpose(str, enum.Enum):
    SIGNER = "signer"
    RECIPIENT = "recipient"


class Algorithm(str, enum.Enum):
    ED25519 = "ed25519"
    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"

    @property
    def suite(self) -> int:
        return _SUITE_OF_ALG[self]


_SUITE_OF_ALG = {
    Algorithm.ED25519: 0,
    Algorithm.X25519: _suites.SUITE_X25519,
    Algorithm.MLKEM768_X25519: _suites.SUITE_MLKEM768_X25519,
}
_ALG_OF_SUITE = {_suites.SUITE_X25519: Algorithm.X25519, _suites.SUITE_MLKEM768_X25519: Algorithm.MLKEM768_X25519}


def key_id(algorithm: Algorithm, public: bytes) -> str:
    """The key id: 16 bytes of a domain-separated SHA-256 of the public key, as hex."""
    digest = hashlib.sha256(b"isolation/key-id/v1\x00" + algorithm.value.encode() + b"\x00" + public)
    return digest.digest()[:16].hex()


@dataclass(frozen=True)
class Key:
    """One key of a keyset. ``private`` is ``None`` in a public keyset."""

    kid: str
    algorithm: Algorithm
    status: KeyStatus
    public: bytes
    private: bytes | None
    created_at: int
    status_changed_at: int
    _loaded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def kid_bytes(self) -> bytes:
        # Cached in the instance dict (no __setattr__, so frozen does not object):
        # every seal and open needs it.
        return bytes.fromhex(self.kid)

    @property
    def accepts(self) -> bool:
        """Whether envelopes naming this key may still be opened or verified."""
        return self.status is not KeyStatus.REVOKED

    def public_key(self) -> Any:
        if "public" not in self._loaded:
            if self.algorithm is Algorithm.ED25519:
                self._loaded["public"] = _suites.load_signer_public(self.public)
            else:
                self._loaded["public"] = _suites.load_recipient_public(self.algorithm.suite, self.public)
        return self._loaded["public"]

    def private_key(self) -> Any:
        if self.private is None:
            raise KeysetError(f"key {self.kid} has no private part in this keyset")
        if "private" not in self._loaded:
            if self.algorithm is Algorithm.ED25519:
                self._loaded["private"] = _suites.load_signer_private(self.private)
            else:
                self._loaded["private"] = _suites.load_recipient_private(self.algorithm.suite, self.private)
        return self._loaded["private"]

    def without_private(self) -> Key:
        return replace(self, private=None, _loaded={})

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kid": self.kid,
            "algorithm": self.algorithm.value,
            "status": self.status.value,
            "created_at": self.created_at,
            "status_changed_at": self.status_changed_at,
            "public": _b64.encode(self.public),
        }
        if self.private is not None:
            data["private"] = _b64.encode(self.private)
        return data


def _generate(algorithm: Algorithm, status: KeyStatus, now: int) -> Key:
    if algorithm is Algorithm.ED25519:
        private, public = _suites.generate_signer()
    else:
        private, public = _suites.generate_recipient(algorithm.suite)
    return Key(key_id(algorithm, public), algorithm, status, public, private, now, now)


def _now(now: int | float | None) -> int:
    return int(time.time() if now is None else now)


@dataclass(frozen=True)
class Keyset:
    """An immutable keyset; rotation operations return a new keyset."""

    purpose: Purpose
    name: str
    keys: tuple[Key, ...]
    overlap_seconds: int = DEFAULT_OVERLAP_SECONDS
    _by_kid: dict[str, Key] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        # Key ids are unique (validated), so this is the exact-match index of find().
        object.__setattr__(self, "_by_kid", {key.kid: key for key in self.keys})

    # -- construction -------------------------------------------------------------

    @classmethod
    def generate_signer(cls, name: str = "host", *, now: int | None = None) -> Keyset:
        """A new host signer keyset with one primary Ed25519 key."""
        return cls(Purpose.SIGNER, name, (_generate(Algorithm.ED25519, KeyStatus.PRIMARY, _now(now)),))

    @classmethod
    def generate_recipient(cls, environment: str, *, suite: int = 1, now: int | None = None) -> Keyset:
        """A new recipient keyset for ``environment`` with one primary key of ``suite``."""
        algorithm = _ALG_OF_SUITE.get(suite)
        if algorithm is None:
            raise KeysetError(f"unknown suite {suite}", hint="use suite 1 (X25519) or 2 (ML-KEM-768+X25519)")
        return cls(Purpose.RECIPIENT, environment, (_generate(algorithm, KeyStatus.PRIMARY, _now(now)),))

    # -- lookups ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def find(self, kid: str) -> Key | None:
        """Exact-match lookup; never a trial of several keys."""
        return self._by_kid.get(kid)

    def get(self, kid: str) -> Key:
        key = self.find(kid)
        if key is None:
            raise KeysetError(f"no key {kid} in the {self.purpose.value} keyset {self.name!r}")
        return key

    def primary(self) -> Key:
        for key in self.keys:
            if key.status is KeyStatus.PRIMARY:
                return key
        raise KeysetError(
            f"the {self.purpose.value} keyset {self.name!r} has no primary key",
            hint="promote a pending key (Keyset.promote; see docs/keys.md)",
        )

    @property
    def has_private(self) -> bool:
        return all(key.private is not None for key in self.keys)

    def public(self) -> Keyset:
        """The same keyset without private parts: safe to commit and distribute."""
        return replace(self, keys=tuple(k.without_private() for k in self.keys))

    # -- staged rotation ----------------------------------------------------------

    def add(self, *, algorithm: Algorithm | None = None, now: int | None = None) -> tuple[Keyset, Key]:
        """Stage a new ``pending`` key: distributed, accepted, not yet used to seal."""
        self._require_private("add a key")
        if algorithm is None:
            algorithm = self.primary().algorithm if self.purpose is Purpose.RECIPIENT else Algorithm.ED25519
        key = _generate(algorithm, KeyStatus.PENDING, _now(now))
        return replace(self, keys=(*self.keys, key)), key

    def promote(self, kid: str, *, now: int | None = None) -> Keyset:
        """Make ``kid`` the primary; the previous primary becomes ``retiring``."""
        target = self.get(kid)
        if target.status not in (KeyStatus.PENDING, KeyStatus.RETIRING):
            raise RotationError(f"key {kid} is {target.status.value}; only pending or retiring keys can be promoted")
        stamp = _now(now)
        keys = []
        for key in self.keys:
            if key.kid == kid:
                keys.append(replace(key, status=KeyStatus.PRIMARY, status_changed_at=stamp, _loaded={}))
            elif key.status is KeyStatus.PRIMARY:
                keys.append(replace(key, status=KeyStatus.RETIRING, status_changed_at=stamp, _loaded={}))
            else:
                keys.append(key)
        return replace(self, keys=tuple(keys))

    def retire(self, kid: str, *, now: int | None = None) -> Keyset:
        """Withdraw a ``pending`` key without ever using it; it is still accepted."""
        target = self.get(kid)
        if target.status is not KeyStatus.PENDING:
            raise RotationError(
                f"key {kid} is {target.status.value}; only a pending key can be retired directly",
                hint="a primary key retires when another key is promoted",
            )
        return self._set_status(kid, KeyStatus.RETIRING, _now(now))

    def revoke(self, kid: str, *, now: int | None = None, force: bool = False) -> Keyset:
        """Refuse ``kid`` from now on.

        A retiring key may be revoked only once the overlap window since it stopped
        sealing has passed, so no envelope sealed under it while it was primary can
        still be in flight: one sealed at ``status_changed_at`` with a lifetime of the
        whole window is still valid at ``status_changed_at + overlap_seconds``, so the
        earliest revocation is the second after. ``force`` skips that wait: for a
        compromised key.
        """
        target = self.get(kid)
        stamp = _now(now)
        if target.status is KeyStatus.PRIMARY:
            raise RotationError(f"key {kid} is the primary", hint="promote another key first, then revoke this one")
        if target.status is KeyStatus.REVOKED:
            return self
        ready_at = target.status_changed_at + self.overlap_seconds
        if target.status is KeyStatus.RETIRING and stamp <= ready_at and not force:
            raise RotationError(
                f"key {kid} stopped sealing less than the overlap window ({self.overlap_seconds} s) ago; "
                f"envelopes sealed under it may still be in flight until {ready_at} (unix time)",
                hint="wait, or pass --force if the key is compromised",
            )
        return self._set_status(kid, KeyStatus.REVOKED, stamp)

    def remove(self, kid: str) -> Keyset:
        """Delete a revoked key from the keyset for good."""
        if self.get(kid).status is not KeyStatus.REVOKED:
            raise RotationError(f"key {kid} is not revoked", hint="revoke it first")
        return replace(self, keys=tuple(k for k in self.keys if k.kid != kid))

    def with_overlap(self, seconds: int) -> Keyset:
        """The same keyset with another overlap window (0 to 366 days, in seconds)."""
        return replace(self, overlap_seconds=seconds)

    def _set_status(self, kid: str, status: KeyStatus, stamp: int) -> Keyset:
        keys = tuple(
            replace(k, status=status, status_changed_at=stamp, _loaded={}) if k.kid == kid else k for k in self.keys
        )
        return replace(self, keys=keys)

    def _require_private(self, action: str) -> None:
        if not self.has_private:
            raise KeysetError(f"cannot {action} in a public keyset", hint="run this on the private keyset")

    # -- serialisation --------------------------------------------------------------

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "purpose": self.purpose.value,
            "name": self.name,
            "overlap_seconds": self.overlap_seconds,
            "keys": [key.to_json() for key in self.keys],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Keyset:
        """Parse and validate a keyset document; any defect raises :class:`KeysetError`.

        Bytes must be UTF-8 (no byte order mark; ``json`` would also guess UTF-16 and
        UTF-32), and text must encode to UTF-8; the size limit counts UTF-8 bytes.
        """
        too_large = KeysetError(f"keyset is larger than {MAX_KEYSET_BYTES} bytes")
        # Each character is at least one byte: a cheap refusal before any copy.
        if len(text) > MAX_KEYSET_BYTES:
            raise too_large
        try:
            if isinstance(text, str):
                if len(text.encode("utf-8")) > MAX_KEYSET_BYTES:
                    raise too_large
            else:
                text = bytes(text).decode("utf-8")
        except UnicodeError:
            # Neither message quotes the offending bytes: they may be key material.
            raise KeysetError("keyset is not valid JSON: not UTF-8 text") from None
        try:
            document = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            # exc.msg never quotes the document, which may hold private keys.
            raise KeysetError(f"keyset is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except _Malformed as exc:
            raise KeysetError(f"keyset is not valid JSON: {exc}") from None
        except RecursionError:
            raise KeysetError("keyset is not valid JSON: nested too deeply") from None
        except ValueError as exc:
            raise KeysetError(f"keyset is not valid JSON ({type(exc).__name__})") from None
        return _from_document(document)

    def save(self, path: str | os.PathLike[str], *, staging: str | os.PathLike[str] | None = None) -> Path:
        """Write atomically; 0600 whenever private parts are present.

        The temporary file is made in ``staging`` (default: the target's folder; it must be
        on the same file system). An environment's keys directory is written with the
        folder above it as ``staging``: a runtime that starts mid-write must find only the
        names it accepts there, never a temporary one.

        Raises :class:`KeysetError` (with the path and the system's reason) if the file
        cannot be written.
        """
        target = Path(path)
        mode = 0o600 if any(k.private is not None for k in self.keys) else 0o644
        try:
            return write_atomic(target, self.to_json(), mode=mode, staging=staging)
        except OSError as exc:
            raise _save_error(target, exc) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyset:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_KEYSET_BYTES + 1)
        except OSError as exc:
            raise KeysetError(
                f"cannot read keyset {os.fspath(path)!r}: {exc.strerror}",
                hint="check the keys directory (ISOLATION_KEYS_DIR); docs/keys.md says where each keyset lives",
            ) from None
        try:
            return cls.from_json(data)
        except KeysetError as exc:
            raise KeysetError(f"{os.fspath(path)}: {exc.message}", hint=exc.hint) from None


def _save_error(target: Path, exc: OSError) -> KeysetError:
    return KeysetError(
        f"cannot write keyset {os.fspath(target)!r}: {exc.strerror or type(exc).__name__}",
        hint="check that the directory exists, is writable by this user and is not a read-only mount, "
        "and that the path is not a directory",
    )


class _Malformed(ValueError):
    """A JSON defect the standard parser accepts but a keyset must not have."""


_PLAIN_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}", re.ASCII)


def _field_name(name: str) -> str:
    # A misplaced value (a private key pasted as a field name) must never reach a message:
    # only names shaped like the format's own field names are quoted.
    if _PLAIN_FIELD_NAME.fullmatch(name):
        return repr(name)
    return f"(a name of {len(name)} characters, not shown)"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _Malformed(f"duplicate field {_field_name(name)}")
        result[name] = value
    return result


def _no_constants(name: str) -> Any:
    raise _Malformed(f"{name} is not allowed")


_DOC_FIELDS = {"format", "purpose", "name", "overlap_seconds", "keys"}
_KEY_FIELDS = {"kid", "algorithm", "status", "created_at", "status_changed_at", "public"}


def _check_fields(where: str, data: Any, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    expected = f"{sorted(required)}" + (f" and optionally {sorted(optional)}" if optional else "")
    if not isinstance(data, dict):
        raise KeysetError(f"{where} must be an object with the fields {expected}")
    unknown = sorted(set(data) - required - optional)
    if unknown:
        names = ", ".join(_field_name(n) for n in unknown[:5])
        raise KeysetError(f"{where} has unknown fields: {names}", hint=f"a keyset v1 {where} has the fields {expected}")
    missing = sorted(required - set(data))
    if missing:
        names = ", ".join(_field_name(n) for n in missing)
        raise KeysetError(f"{where} has missing fields: {names}", hint=f"a keyset v1 {where} has the fields {expected}")


def _from_document(doc: Any) -> Keyset:
    _check_fields("keyset", doc, _DOC_FIELDS)
    if doc["format"] != FORMAT:
        raise KeysetError("unsupported keyset format", hint=f"expected format {FORMAT!r}")
    try:
        purpose = Purpose(doc["purpose"])
    except (ValueError, TypeError):
        raise KeysetError("keyset purpose must be 'signer' or 'recipient'") from None
    if not isinstance(doc["keys"], list) or not 1 <= len(doc["keys"]) <= MAX_KEYS:
        raise KeysetError(f"keyset must hold 1 to {MAX_KEYS} keys")
    overlap = doc["overlap_seconds"]
    name = doc["name"]
    if not isinstance(name, str):
        raise KeysetError("keyset name must be a string")
    return Keyset(purpose, name, tuple(_key_from_json(k, i) for i, k in enumerate(doc["keys"])), overlap)


def _key_from_json(data: Any, index: int) -> Key:
    where = f"key #{index}"
    _check_fields(where, data, _KEY_FIELDS, frozenset({"private"}))
    try:
        algorithm = Algorithm(data["algorithm"])
        status = KeyStatus(data["status"])
    except (ValueError, TypeError):
        raise KeysetError(f"{where} has an unknown algorithm or status") from None
    for stamp in ("created_at", "status_changed_at"):
        if type(data[stamp]) is not int or data[stamp] < 0:
            raise KeysetError(f"{where}: {stamp} must be a non-negative integer (unix seconds)")
    try:
        public = _b64.decode(data["public"]) if isinstance(data["public"], str) else None
        private = _b64.decode(data["private"]) if isinstance(data.get("private"), str) else None
    except ValueError:
        raise KeysetError(f"{where}: key material is not canonical base64url") from None
    if public is None or ("private" in data and private is None):
        raise KeysetError(f"{where}: key material must be base64url strings")
    if not isinstance(data["kid"], str):
        # Never str() it: 32 decimal digits would pass for a hex key id.
        raise KeysetError(f"{where}: key id must be 32 lowercase hex digits, as a JSON string")
    return Key(data["kid"], algorithm, status, public, private, data["created_at"], data["status_changed_at"])


def _validate(keyset: Keyset) -> None:
    if not isinstance(keyset.purpose, Purpose):
        raise KeysetError("keyset purpose must be Purpose.SIGNER or Purpose.RECIPIENT")
    overlap = keyset.overlap_seconds
    if type(overlap) is not int or not 0 <= overlap <= MAX_OVERLAP_SECONDS:
        raise KeysetError(
            f"overlap_seconds must be an integer number of seconds from 0 to {MAX_OVERLAP_SECONDS} (366 days)",
            hint="at least the longest envelope lifetime + the longest pod start + 60 s of clock skew "
            "(default 7200); see docs/keys.md",
        )
    if not isinstance(keyset.name, str) or not _NAME.fullmatch(keyset.name):
        raise KeysetError(
            # Not quoted: a misplaced private key would be printed.
            f"invalid keyset name ({len(keyset.name)} characters, not shown)",
            hint="use lowercase letters, digits, '.', '_' and '-' (an environment name), at most 63 characters",
        )
    seen: set[str] = set()
    primaries = 0
    with_private = sum(k.private is not None for k in keyset.keys)
    if with_private not in (0, len(keyset.keys)):
        raise KeysetError("keyset mixes keys with and without private parts")
    for index, key in enumerate(keyset.keys):
        _validate_key(keyset.purpose, key, index)
        if key.kid in seen:
            raise KeysetError(f"key {key.kid} appears twice")
        seen.add(key.kid)
        primaries += key.status is KeyStatus.PRIMARY
    if primaries > 1:
        raise KeysetError("keyset has more than one primary key")


def _validate_key(purpose: Purpose, key: Key, index: int) -> None:
    if not isinstance(key.kid, str) or not _KID.fullmatch(key.kid):
        raise KeysetError(f"key #{index}: key id must be 32 lowercase hex digits")
    signer = key.algorithm is Algorithm.ED25519
    if signer != (purpose is Purpose.SIGNER):
        raise KeysetError(f"key {key.kid}: algorithm {key.algorithm.value} does not fit a {purpose.value} keyset")
    try:
        if signer:
            if len(key.public) != 32:
                raise ValueError("length")
            _suites.load_signer_public(key.public)
            derived = _suites.load_signer_private(key.private).public_key().public_bytes_raw() if key.private else None
        else:
            suite = _suites.SUITES[key.algorithm.suite]
            _suites.check_recipient_public(suite.id, key.public)
            if key.private is not None and len(key.private) != suite.private_length:
                raise ValueError("length")
            derived = _suites.recipient_public_from_private(suite.id, key.private) if key.private else None
    except ValueError:
        raise KeysetError(
            f"key {key.kid}: key material is not a valid {key.algorithm.value} key "
            "(wrong length, out of range, or a low-order point)"
        ) from None
    if derived is not None and derived != key.public:
        raise KeysetError(f"key {key.kid}: private part does not match the public part")
    if key_id(key.algorithm, key.public) != key.kid:
        raise KeysetError(f"key {key.kid}: key id does not match the public key")
