"""Canonical, unpadded base64url: the one text encoding of every transport."""

from __future__ import annotations

import base64
import binascii

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
# Low bits of the last character that must be zero, by length mod 4: 2 characters
# carry 12 bits for one byte (4 spare), 3 characters 18 bits for two bytes (2 spare).
_SPARE_BITS = (0, 0, 0x0F, 0x03)
_VALUE = {char: index for index, char in enumerate(ALPHABET)}


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
    if raw.translate(None, ALPHABET):
        raise ValueError("not unpadded base64url")
    tail = len(raw) % 4
    if tail == 1:
        raise ValueError("impossible base64url length")
    if tail and _VALUE[raw[-1]] & _SPARE_BITS[tail]:
        raise ValueError("non-canonical base64url (trailing bits set)")
    try:
        return binascii.a2b_base64(raw.translate(_TO_STANDARD) + _PADDING[tail])
    except binascii.Error as exc:  # pragma: no cover - the checks above exclude this
        raise ValueError("not base64url") from exc
