"""Differential test of the envelope's HPKE layer against pyhpke.

pyhpke implements the RFC 9180 key schedule, KEM and context on its own (it borrows
only the raw X25519 and AES-GCM primitives), so agreement with it shows that the
envelope's ``enc`` and ciphertext are plain HPKE base mode with
``info = envelope.hpke_info(header)`` and an empty AAD, as docs/envelope.md specifies,
and that an independent reader could decrypt them.

Suite 1 only: pyhpke has no ML-KEM-768+X25519 hybrid KEM (its KEMs are the DHKEMs
over P-256, P-384, P-521, X25519 and X448), so suite 2 has no independent HPKE
implementation to compare against here; its golden envelopes under tests/vectors/
pin its behaviour instead.
"""

from __future__ import annotations

import struct

import pyhpke
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_support import EXAMPLES, NOW, keys, rejected, split, subjects

from isolation.errors import RejectReason
from isolation.transport import Subject, envelope
from isolation.transport._suites import SUITES

SUITE = pyhpke.CipherSuite.new(
    pyhpke.KEMId.DHKEM_X25519_HKDF_SHA256, pyhpke.KDFId.HKDF_SHA256, pyhpke.AEADId.AES256_GCM
)

_subjects = subjects()


def _pyhpke_open(enc: bytes, ciphertext: bytes, info: bytes) -> bytes:
    # pyhpke's single-shot open() is not implemented; a fresh context with sequence
    # number 0 is exactly HPKE's single-shot API.
    context = SUITE.create_recipient_context(enc, _their_private(), info=info)
    opened: bytes = context.open(ciphertext, aad=b"")
    return opened


def _pyhpke_seal(plaintext: bytes, info: bytes) -> tuple[bytes, bytes]:
    enc, context = SUITE.create_sender_context(_their_public(), info=info)
    return enc, context.seal(plaintext, aad=b"")


def _their_private() -> pyhpke.KEMKeyInterface:
    private = keys().recipient.primary().private
    assert private is not None
    return SUITE.kem.deserialize_private_key(private)


def _their_public() -> pyhpke.KEMKeyInterface:
    return SUITE.kem.deserialize_public_key(keys().recipient.primary().public)


def test_pyhpke_has_no_hybrid_kem() -> None:
    # If this starts failing, extend the tests below to suite 2.
    assert not any("MLKEM" in name or "KYBER" in name.upper() for name in pyhpke.KEMId.__members__)


@settings(max_examples=EXAMPLES)
@given(plaintext=st.binary(max_size=4096), subject=_subjects)
def test_our_envelopes_open_with_pyhpke(plaintext: bytes, subject: Subject) -> None:
    k = keys()
    data = envelope.seal_bytes(plaintext, signer=k.signer, recipient=k.recipient.public(), subject=subject, now=NOW)
    header, enc, ciphertext, _ = split(data)
    assert len(enc) == 32
    opened = _pyhpke_open(enc, ciphertext, envelope.hpke_info(header))
    assert opened == plaintext
    # The binding is real: the same ciphertext under another header's info does not open.
    with pytest.raises(pyhpke.OpenError):
        _pyhpke_open(enc, ciphertext, envelope.hpke_info(header + b"\x00"))


@settings(max_examples=EXAMPLES)
@given(plaintext=st.binary(max_size=4096), subject=_subjects)
def test_pyhpke_ciphertexts_open_with_our_suite_and_envelope(plaintext: bytes, subject: Subject) -> None:
    k = keys()
    # Take a real header (for its exact bytes), then replace the HPKE part with pyhpke's.
    template = envelope.seal_bytes(b"", signer=k.signer, recipient=k.recipient.public(), subject=subject, now=NOW)
    header = split(template)[0]
    info = envelope.hpke_info(header)
    enc, ciphertext = _pyhpke_seal(plaintext, info)

    ours = SUITES[1].decrypt(enc, ciphertext, k.recipient.primary().private_key(), info)
    assert ours == plaintext

    signature = k.signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
    data = b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, enc, ciphertext, signature))
    opened = envelope.open_bytes(data, signers=k.trusted, recipient=k.recipient, subject=subject, now=NOW)
    assert opened.plaintext == plaintext

    # pyhpke sealed under the wrong info: signed correctly, but HPKE refuses it.
    enc, ciphertext = _pyhpke_seal(plaintext, b"ISOL\x01")
    signature = k.signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
    data = b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, enc, ciphertext, signature))
    rejected(
        lambda: envelope.open_bytes(data, signers=k.trusted, recipient=k.recipient, now=NOW),
        RejectReason.DECRYPT_FAILED,
    )
