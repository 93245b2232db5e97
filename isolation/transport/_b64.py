"""Canonical, unpadded base64url: the one text encoding of every transport."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str | bytes) -> bytes:
    """Decode canonical unpadded base64url; raise ``ValueError`` on any other form.

    Rejects padding, whitespace, the standard alphabet's ``+``/``/``, impossible
    lengths and non-zero trailing bits, so each byte string has exactly one text.
    """
    if isinstance(text, str):
        if not text.isascii():
            # Not via str.encode: its error message would quote the offending character.
            raise ValueError("not unpadded base64url")
        raw = text.encode("ascii")
    else:
        raw = bytes(text)
    if not _ALPHABET.fullmatch(raw):
        raise ValueError("not unpadded base64url")
    if len(raw) % 4 == 1:
        raise ValueError("impossible base64url length")
    try:
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error as exc:  # pragma: no cover - the regex already excludes this
        raise ValueError("not base64url") from exc
    if encode(data).encode("ascii") != raw:
        raise ValueError("non-canonical base64url (trailing bits set)")
    return data
