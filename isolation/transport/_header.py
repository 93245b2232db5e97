"""The envelope header: a canonical msgpack array of fixed arity (see docs/envelope.md)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import msgpack

MAX_HEADER_BYTES = 1024
_AUDIENCE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?", re.ASCII)
_MAX_TEXT = 250
_U63 = 2**63 - 1


@dataclass(frozen=True)
class Subject:
    """The task instance an envelope is for."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1

    def as_list(self) -> list[Any]:
        return [self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number]

    def __str__(self) -> str:
        return f"{self.dag_id}.{self.task_id} run={self.run_id} map_index={self.map_index} try={self.try_number}"


@dataclass(frozen=True)
class Header:
    suite: int
    recipient_kid: bytes
    signer_kid: bytes
    audience: str
    subject: Subject
    issued_at: int
    expires_at: int
    envelope_id: bytes
    payload_schema: int

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [
                self.suite,
                self.recipient_kid,
                self.signer_kid,
                self.audience,
                self.subject.as_list(),
                self.issued_at,
                self.expires_at,
                self.envelope_id,
                self.payload_schema,
            ],
            use_bin_type=True,
        )
        return packed


_local = threading.local()


def pack_fields(fields: list[Any]) -> bytes:
    """Canonical msgpack of a header field list (the same bytes as :meth:`Header.encode`).

    Reuses one ``Packer`` per thread: building one per call is a measurable share of
    sealing a small envelope, and msgpack documents no ``Packer`` as safe to share
    between threads.
    """
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    try:
        packed: bytes = packer.pack(fields)
    except BaseException:
        packer.reset()  # never leave a partial object in the buffer for the next call
        raise
    return packed


def _text(value: Any, *, pattern: re.Pattern[str] | None = None) -> str:
    if type(value) is not str or not 0 < len(value) <= _MAX_TEXT:
        raise ValueError("header text field has the wrong type or length")
    if pattern is not None and not pattern.fullmatch(value):
        raise ValueError("header audience is not a valid environment name")
    return value


def _int(value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError("header integer field out of range")
    return value


def _bin16(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != 16:
        raise ValueError("header id field must be 16 bytes")
    return value


def check_subject(subject: Subject) -> None:
    """Validate a subject on the sealing side, with the same rules as decoding."""
    _text(subject.dag_id)
    _text(subject.task_id)
    _text(subject.run_id)
    _int(subject.map_index, -1, 2**31 - 1)
    _int(subject.try_number, 0, 2**31 - 1)


def check_audience(audience: str) -> str:
    return _text(audience, pattern=_AUDIENCE)


def decode(data: bytes) -> Header:
    """Decode header bytes; raise ``ValueError`` unless they are canonical and well-typed."""
    try:
        fields = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.ExtraData) as exc:
        raise ValueError(f"header is not msgpack ({type(exc).__name__})") from None
    if type(fields) is not list or len(fields) != 9:
        raise ValueError("header must be an array of 9 fields")
    subject = fields[4]
    if type(subject) is not list or len(subject) != 5:
        raise ValueError("header subject must be an array of 5 fields")
    header = Header(
        suite=_int(fields[0], 1, 255),
        recipient_kid=_bin16(fields[1]),
        signer_kid=_bin16(fields[2]),
        audience=_text(fields[3], pattern=_AUDIENCE),
        subject=Subject(
            _text(subject[0]),
            _text(subject[1]),
            _text(subject[2]),
            _int(subject[3], -1, 2**31 - 1),
            _int(subject[4], 0, 2**31 - 1),
        ),
        issued_at=_int(fields[5], 0, _U63),
        expires_at=_int(fields[6], 0, _U63),
        envelope_id=_bin16(fields[7]),
        payload_schema=_int(fields[8], 1, 65535),
    )
    # Every field now has its exact type, so packing the decoded list gives the
    # canonical form; anything else on the wire was a longer or different encoding.
    if pack_fields(fields) != data:
        raise ValueError("header is not canonical msgpack")
    return header
