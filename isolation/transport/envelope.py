"""Seal and open envelope v1: HPKE for confidentiality, Ed25519 for origin.

Encrypt-then-sign with cross-binding: the header is part of the HPKE ``info`` and
the signature covers a length-prefixed encoding of magic, version, header, HPKE
``enc`` and ciphertext. Opening authenticates the received bytes before it
decrypts anything, and every failure is :class:`~isolation.errors.EnvelopeRejected`.
The byte layout and every rule are normative in ``docs/envelope.md``.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from isolation.errors import EnvelopeRejected, KeysetError, PayloadError
from isolation.errors import RejectReason as R
from isolation.transport import _b64, _header, _suites
from isolation.transport._header import Header, Subject
from isolation.transport.keyset import Key, Keyset, KeyStatus, Purpose

MAGIC = b"ISOL"
VERSION = 1
PREFIX = MAGIC + bytes([VERSION])
SIGNATURE_LENGTH = 64
TAG_LENGTH = 16

ENV_VAR_LIMIT = 96 * 1024
"""Largest envelope text for the environment-variable transport (characters)."""
FILE_LIMIT = 1024 * 1024
"""Largest envelope text for file, Secret and pipe transports (characters)."""

DEFAULT_LIFETIME = 3600
MAX_LIFETIME = 7 * 86400
DEFAULT_SKEW = 60

_SIGNATURE_DST = b"isolation/envelope/v1/signature\x00"
_LEN = struct.Struct(">Q")
_HEADER_LEN = struct.Struct(">H")
_FIXED = len(PREFIX) + _HEADER_LEN.size
_MAX_SCHEMA = 65535


@dataclass(frozen=True)
class OpenedBytes:
    header: Header
    plaintext: bytes


def _lp(part: bytes) -> bytes:
    return _LEN.pack(len(part)) + part


# The constant start of every signed message: DST || LP(PREFIX).
_SIGNED_PREFIX = _SIGNATURE_DST + _lp(PREFIX)


def _signed_message(header: bytes, sealed: memoryview, enc_length: int) -> bytes:
    """The signed message over ``header`` and ``sealed`` = ``enc || ciphertext``.

    Length prefixes and parts go to one join as separate items, so the ciphertext
    is copied once, into the message Ed25519 needs in one piece.
    """
    ciphertext_length = len(sealed) - enc_length
    return b"".join(
        (
            _SIGNED_PREFIX,
            _LEN.pack(len(header)),
            header,
            _LEN.pack(enc_length),
            sealed[:enc_length],
            _LEN.pack(ciphertext_length),
            sealed[enc_length:],
        )
    )


def signed_message(header: bytes, enc: bytes, ciphertext: bytes) -> bytes:
    """The exact bytes the Ed25519 signature covers."""
    return b"".join(
        (
            _SIGNED_PREFIX,
            _LEN.pack(len(header)),
            header,
            _LEN.pack(len(enc)),
            enc,
            _LEN.pack(len(ciphertext)),
            ciphertext,
        )
    )


def hpke_info(header: bytes) -> bytes:
    """HPKE ``info``: magic, version and the header bytes as sent."""
    return PREFIX + header


def _check_lifetime(lifetime: int, signer: Keyset, recipient: Keyset) -> None:
    if type(lifetime) is not int or not 0 < lifetime <= MAX_LIFETIME:
        raise PayloadError(f"envelope lifetime must be an integer from 1 to {MAX_LIFETIME} seconds")
    # A key may be revoked one overlap window after it stopped sealing. An envelope that
    # lives longer than that window (plus the skew readers allow) could be refused while
    # it is still valid, by a rotation done by the book.
    for keyset in (signer, recipient):
        if lifetime + DEFAULT_SKEW > keyset.overlap_seconds:
            raise PayloadError(
                f"envelope lifetime {lifetime} s plus {DEFAULT_SKEW} s of clock skew exceeds the overlap window "
                f"of the {keyset.purpose.value} keyset {keyset.name!r} ({keyset.overlap_seconds} s)",
                hint="use a shorter lifetime, or raise overlap_seconds of the signer and recipient keysets "
                "(Keyset.with_overlap) to at least the longest lifetime + the longest pod start + "
                f"{DEFAULT_SKEW} s; see docs/keys.md, section 5",
            )


def seal_bytes(
    plaintext: bytes,
    *,
    signer: Keyset,
    recipient: Keyset,
    subject: Subject,
    payload_schema: int = 2,  # the current payload schema (payload.SCHEMA_VERSION)
    lifetime: int = DEFAULT_LIFETIME,
    now: int | None = None,
    envelope_id: bytes | None = None,
) -> bytes:
    """Seal raw bytes to the primary key of ``recipient``, signed by ``signer``'s primary.

    ``now`` and ``envelope_id`` exist so tests and vectors can be exact. Refuses a
    ``lifetime`` that, with the clock skew readers allow, outlasts the overlap window
    of either keyset (see docs/keys.md).
    """
    if signer.purpose is not Purpose.SIGNER or recipient.purpose is not Purpose.RECIPIENT:
        raise KeysetError("seal needs a signer keyset and a recipient keyset, in that order")
    _check_lifetime(lifetime, signer, recipient)
    try:
        _header.check_subject(subject)
    except ValueError as exc:
        raise PayloadError(f"cannot address the envelope: {exc}") from None
    # The audience is recipient.name, which Keyset validation already holds to the
    # header's audience rule.
    if envelope_id is None:
        envelope_id = os.urandom(16)
    elif type(envelope_id) is not bytes or len(envelope_id) != 16:
        raise PayloadError("envelope_id must be 16 bytes")
    if type(payload_schema) is not int or not 0 < payload_schema <= _MAX_SCHEMA:
        raise PayloadError(f"payload schema must be an integer from 1 to {_MAX_SCHEMA}")
    sign_key = signer.primary()
    seal_key = recipient.primary()
    suite_id = seal_key.algorithm.suite
    issued = int(time.time()) if now is None else int(now)
    # The field list of Header.encode, packed without building a Header first.
    header = _header.pack_fields(
        [
            suite_id,
            seal_key.kid_bytes,
            sign_key.kid_bytes,
            recipient.name,
            [subject.dag_id, subject.task_id, subject.run_id, subject.map_index, subject.try_number],
            issued,
            issued + lifetime,
            envelope_id,
            payload_schema,
        ]
    )
    if len(header) > _header.MAX_HEADER_BYTES:
        raise PayloadError(f"envelope header exceeds {_header.MAX_HEADER_BYTES} bytes; shorten the ids")
    suite = _suites.SUITES[suite_id]
    # enc || ciphertext, already in wire order: signed through views, joined whole.
    sealed = suite.seal(plaintext, seal_key.public_key(), PREFIX + header)
    signature = sign_key.private_key().sign(_signed_message(header, memoryview(sealed), suite.enc_length))
    return b"".join((PREFIX, _HEADER_LEN.pack(len(header)), header, sealed, signature))


def _lookup(keysets: Sequence[Keyset], kid: bytes, role: Purpose) -> Key:
    """The trusted key ``kid`` of purpose ``role``, consulting every keyset of that purpose.

    A key that any of them marks revoked is refused: a stale copy elsewhere that still
    lists it as primary must not undo a revocation. Copies that disagree on the public
    key are refused too (the key id would no longer name one key).
    """
    hexkid = kid.hex()
    found: Key | None = None
    for keyset in keysets:
        # A key only ever serves its keyset's purpose: a recipient keyset passed among
        # the signers by mistake must not make an X25519 key a "trusted signer".
        if keyset.purpose is not role:
            continue
        key = keyset.find(hexkid)
        if key is None:
            continue
        if key.status is KeyStatus.REVOKED:
            raise EnvelopeRejected(R.REVOKED_KEY, f"{role.value} key is revoked", key_id=hexkid)
        if found is None:
            found = key
        elif key.public != found.public or key.algorithm is not found.algorithm:
            raise EnvelopeRejected(
                R.UNKNOWN_KEY, f"trusted {role.value} keysets disagree on this key id", key_id=hexkid
            )
    if found is None:
        raise EnvelopeRejected(R.UNKNOWN_KEY, f"no trusted {role.value} key has this id", key_id=hexkid)
    return found


@dataclass(frozen=True)
class _Parsed:
    """An envelope split into its parts; only the structure has been checked."""

    header: Header
    header_bytes: bytes
    suite: _suites.Suite
    sealed: memoryview  # enc || ciphertext
    signature: memoryview


def _parse(data: bytes) -> _Parsed:
    """Check the prefix, the header and the body's length; no keys, no cryptography."""
    size = len(data)
    if size < _FIXED:
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope is truncated")
    if not data.startswith(MAGIC):
        raise EnvelopeRejected(R.BAD_FORMAT, "not an isolation envelope (bad magic)")
    if data[len(MAGIC)] != VERSION:
        raise EnvelopeRejected(R.UNSUPPORTED_VERSION, f"envelope version {data[len(MAGIC)]} is not supported")
    (header_length,) = _HEADER_LEN.unpack_from(data, len(PREFIX))
    if not 0 < header_length <= _header.MAX_HEADER_BYTES:
        raise EnvelopeRejected(R.BAD_FORMAT, "header length out of range")
    body_start = _FIXED + header_length
    if size < body_start:
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope is truncated")
    header_bytes = data[_FIXED:body_start]
    try:
        header = _header.decode(header_bytes)
    except ValueError as exc:
        raise EnvelopeRejected(R.BAD_FORMAT, str(exc)) from None
    suite = _suites.SUITES.get(header.suite)
    if suite is None:
        raise EnvelopeRejected(R.UNSUPPORTED_VERSION, f"suite {header.suite} is not supported")
    if size - body_start < suite.enc_length + TAG_LENGTH + SIGNATURE_LENGTH:
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope is truncated")
    # Views, not copies: enc || ciphertext is contiguous on the wire and goes to HPKE as is.
    view = memoryview(data)
    return _Parsed(
        header, header_bytes, suite, view[body_start : size - SIGNATURE_LENGTH], view[size - SIGNATURE_LENGTH :]
    )


def _authenticate(parsed: _Parsed, trusted: Sequence[Keyset], now: int | None, skew: int, max_lifetime: int) -> None:
    """The signature, then the lifetime and the clock: the checks before anything is decrypted."""
    header = parsed.header
    # Origin first: nothing below runs for bytes a trusted host did not sign.
    signer_key = _lookup(trusted, header.signer_kid, Purpose.SIGNER)
    message = _signed_message(parsed.header_bytes, parsed.sealed, parsed.suite.enc_length)
    if not _suites.verify(signer_key.public_key(), parsed.signature, message):
        raise EnvelopeRejected(R.BAD_SIGNATURE, "signature does not verify", key_id=signer_key.kid)
    del message

    clock = int(time.time()) if now is None else int(now)
    if header.expires_at <= header.issued_at or header.expires_at - header.issued_at > max_lifetime:
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope lifetime is out of range")
    if clock > header.expires_at + skew:
        raise EnvelopeRejected(R.EXPIRED, f"expired {clock - header.expires_at} s ago")
    if header.issued_at > clock + skew:
        raise EnvelopeRejected(R.NOT_YET_VALID, f"issued {header.issued_at - clock} s in the future")


def _trusted(signers: Keyset | Sequence[Keyset]) -> tuple[Keyset, ...]:
    return (signers,) if isinstance(signers, Keyset) else tuple(signers)


def read_header(data: bytes) -> Header:
    """The header of a binary envelope, without keys: only its structure is checked.

    Nothing in it is authenticated yet (see :func:`verify_bytes`). Raises
    :class:`EnvelopeRejected` (``bad-format``, ``unsupported-version``).
    """
    return _parse(data if type(data) is bytes else bytes(data)).header


def verify_bytes(
    data: bytes,
    *,
    signers: Keyset | Sequence[Keyset],
    now: int | None = None,
    skew: int = DEFAULT_SKEW,
    max_lifetime: int = MAX_LIFETIME,
) -> Header:
    """Check a binary envelope's signature and validity window; decrypt nothing.

    The same checks, in the same order and with the same reasons, as the first part of
    :func:`open_bytes`; audience, subject, payload schema and decryption are not checked.
    Returns the (now authenticated) header; raises only :class:`EnvelopeRejected`.
    """
    trusted = _trusted(signers)
    parsed = _parse(data if type(data) is bytes else bytes(data))
    _authenticate(parsed, trusted, now, skew, max_lifetime)
    return parsed.header


def open_bytes(
    data: bytes,
    *,
    signers: Keyset | Sequence[Keyset],
    recipient: Keyset,
    audience: str | None = None,
    subject: Subject | None = None,
    now: int | None = None,
    skew: int = DEFAULT_SKEW,
    max_lifetime: int = MAX_LIFETIME,
    supported_schemas: tuple[int, ...] = (1, 2),
) -> OpenedBytes:
    """Verify, check and decrypt a binary envelope. Raises only :class:`EnvelopeRejected`.

    ``audience`` defaults to the recipient keyset's environment name. ``subject``,
    when given, must equal the header's subject exactly. A reader may pass a smaller
    ``skew`` or ``max_lifetime``; the spec forbids larger ones (docs/envelope.md, section 11).
    """
    trusted = _trusted(signers)
    if type(data) is not bytes:
        data = bytes(data)
    parsed = _parse(data)
    _authenticate(parsed, trusted, now, skew, max_lifetime)
    header = parsed.header

    expected_audience = recipient.name if audience is None else audience
    if header.audience != expected_audience:
        raise EnvelopeRejected(R.WRONG_AUDIENCE, f"sealed for environment {header.audience!r}")
    if subject is not None and header.subject != subject:
        raise EnvelopeRejected(R.WRONG_SUBJECT, f"sealed for {header.subject}")
    if header.payload_schema not in supported_schemas:
        raise EnvelopeRejected(R.UNSUPPORTED_VERSION, f"payload schema {header.payload_schema} is not supported")

    recipient_key = _lookup((recipient,), header.recipient_kid, Purpose.RECIPIENT)
    if recipient_key.algorithm.suite != header.suite:
        raise EnvelopeRejected(R.UNKNOWN_KEY, "recipient key is for another suite", key_id=recipient_key.kid)
    try:
        plaintext = parsed.suite.open(parsed.sealed, recipient_key.private_key(), PREFIX + parsed.header_bytes)
    except KeysetError:
        raise EnvelopeRejected(
            R.UNKNOWN_KEY, "recipient keyset has no private keys", key_id=recipient_key.kid
        ) from None
    except Exception:  # InvalidTag, ValueError: one reason, no detail
        raise EnvelopeRejected(R.DECRYPT_FAILED, key_id=recipient_key.kid) from None
    return OpenedBytes(header, plaintext)


def to_text(envelope: bytes) -> str:
    """The canonical unpadded base64url text used by every transport."""
    return _b64.encode(envelope)


def from_text(text: str | bytes, *, max_size: int = FILE_LIMIT) -> bytes:
    """Size-check, then decode envelope text; non-canonical text is rejected."""
    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope must be text")
    if len(text) > max_size:
        raise EnvelopeRejected(R.TOO_LARGE, f"envelope text is {len(text)} characters, limit {max_size}")
    if len(text) == 0:
        raise EnvelopeRejected(R.BAD_FORMAT, "envelope is empty")
    try:
        return _b64.decode(bytes(text) if not isinstance(text, str) else text)
    except ValueError as exc:
        raise EnvelopeRejected(R.BAD_FORMAT, str(exc)) from None
