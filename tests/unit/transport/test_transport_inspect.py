"""Reading a header without keys, and verifying an envelope without decrypting it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from transport_support import NOW, SECRET, keys, rejected, simple_payload

from isolation.errors import EnvelopeRejected, RejectReason
from isolation.transport import Subject, envelope, open_envelope, seal_envelope
from isolation.transport.keyset import Keyset
from isolation.transport.sealed import inspect_envelope, verify_envelope

R = RejectReason
LIFETIME = 600


def _sealed(now: int = NOW, signer: Keyset | None = None) -> str:
    k = keys()
    return seal_envelope(
        simple_payload(), signer=signer or k.signer, recipient=k.recipient.public(), lifetime=LIFETIME, now=now
    )


def _flip(text: str, offset_from_end: int) -> str:
    data = bytearray(envelope.from_text(text))
    data[len(data) - offset_from_end] ^= 0x01
    return envelope.to_text(bytes(data))


# --------------------------------------------------------------------------- read_header


def test_header_reads_without_any_key() -> None:
    k = keys()
    header = inspect_envelope(_sealed())
    assert header.audience == "env-a"
    assert header.subject == Subject("dag", "task", "manual__1", -1, 1)
    assert (header.issued_at, header.expires_at) == (NOW, NOW + LIFETIME)
    assert header.signer_kid.hex() == k.signer.primary().kid
    assert header.recipient_kid.hex() == k.recipient.primary().kid
    assert header.suite == 1 and header.payload_schema == 2 and len(header.envelope_id) == 16


def test_header_of_bytes_equals_header_of_text() -> None:
    text = _sealed()
    assert envelope.read_header(envelope.from_text(text)) == inspect_envelope(text)


def test_header_reads_even_when_the_signature_is_broken() -> None:
    # Inspecting is for debugging: a damaged signature must not hide the header.
    assert inspect_envelope(_flip(_sealed(), 1)).audience == "env-a"


def test_header_never_shows_payload_content() -> None:
    assert SECRET not in repr(inspect_envelope(_sealed()))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", R.BAD_FORMAT),
        ("not an envelope!", R.BAD_FORMAT),
        ("SVNPTAE", R.BAD_FORMAT),
        (envelope.to_text(b"XXXX\x01\x00\x10" + b"\x00" * 200), R.BAD_FORMAT),
        (envelope.to_text(b"ISOL\x02\x00\x10" + b"\x00" * 200), R.UNSUPPORTED_VERSION),
        ("A" * (envelope.FILE_LIMIT + 1), R.TOO_LARGE),
    ],
    ids=["empty", "not-base64url", "prefix-only", "bad-magic", "version-2", "too-large"],
)
def test_header_refuses_what_is_not_an_envelope(text: str, reason: RejectReason) -> None:
    rejected(lambda: inspect_envelope(text), reason)


def test_envelope_cut_inside_header_or_body_is_bad_format() -> None:
    data = envelope.from_text(_sealed())
    body = 7 + int.from_bytes(data[5:7], "big")
    rejected(lambda: envelope.read_header(data[: body - 1]), R.BAD_FORMAT)
    rejected(lambda: envelope.read_header(data[: body + 32 + 16 + 63]), R.BAD_FORMAT)


def test_envelope_cut_inside_ciphertext_is_only_found_by_the_signature() -> None:
    # The ciphertext has no length field: the header still reads, verification refuses.
    text = envelope.to_text(envelope.from_text(_sealed())[:-10])
    assert inspect_envelope(text).audience == "env-a"
    rejected(lambda: verify_envelope(text, signers=keys().trusted, now=NOW), R.BAD_SIGNATURE)


# --------------------------------------------------------------------------- verify


def test_verify_accepts_a_valid_envelope_and_returns_its_header() -> None:
    text = _sealed()
    header = verify_envelope(text, signers=keys().trusted, now=NOW + 1)
    assert header == inspect_envelope(text)


def test_verify_needs_no_recipient_key() -> None:
    # Sealed to another environment than any key here: verify still succeeds.
    k = keys()
    text = seal_envelope(simple_payload(), signer=k.signer, recipient=k.recipient_pq.public(), now=NOW)
    assert verify_envelope(text, signers=k.trusted, now=NOW).audience == "env-pq"


@pytest.mark.parametrize("offset_from_end", [1, 64, 65], ids=["signature", "signature-start", "ciphertext"])
def test_tampered_envelope_is_bad_signature(offset_from_end: int) -> None:
    tampered = _flip(_sealed(), offset_from_end)
    error = rejected(lambda: verify_envelope(tampered, signers=keys().trusted, now=NOW), R.BAD_SIGNATURE)
    assert error.key_id == keys().signer.primary().kid


def test_expired_envelope_is_expired() -> None:
    text = _sealed()
    late = NOW + LIFETIME + envelope.DEFAULT_SKEW + 1
    rejected(lambda: verify_envelope(text, signers=keys().trusted, now=late), R.EXPIRED)
    # Up to the skew after expiry it is still valid, as in open_envelope.
    verify_envelope(text, signers=keys().trusted, now=late - 1)


def test_envelope_from_the_future_is_not_yet_valid() -> None:
    early = NOW - envelope.DEFAULT_SKEW - 1
    rejected(lambda: verify_envelope(_sealed(), signers=keys().trusted, now=early), R.NOT_YET_VALID)


def test_revoked_signer_key_is_revoked_key() -> None:
    k = keys()
    text = _sealed()
    old = k.signer.primary().kid
    rotated, new = k.signer.add(now=NOW)
    revoked = rotated.promote(new.kid, now=NOW).revoke(old, now=NOW, force=True)
    rejected(lambda: verify_envelope(text, signers=revoked.public(), now=NOW), R.REVOKED_KEY)
    # A stale copy that still trusts the key does not undo the revocation.
    rejected(lambda: verify_envelope(text, signers=[k.trusted, revoked.public()], now=NOW), R.REVOKED_KEY)


def test_untrusted_signer_is_unknown_key() -> None:
    text = _sealed(signer=keys().untrusted)
    rejected(lambda: verify_envelope(text, signers=keys().trusted, now=NOW), R.UNKNOWN_KEY)


def test_a_recipient_keyset_is_no_signer() -> None:
    rejected(lambda: verify_envelope(_sealed(), signers=keys().recipient.public(), now=NOW), R.UNKNOWN_KEY)


def test_smaller_max_lifetime_refuses_longer_envelopes() -> None:
    text = _sealed()
    rejected(lambda: verify_envelope(text, signers=keys().trusted, now=NOW, max_lifetime=LIFETIME - 1), R.BAD_FORMAT)


@pytest.mark.parametrize(
    ("mutate", "now"),
    [
        (lambda t: _flip(t, 1), NOW),
        (lambda t: t, NOW + LIFETIME + envelope.DEFAULT_SKEW + 1),
        (lambda t: t, NOW - envelope.DEFAULT_SKEW - 1),
        (lambda t: t[:-200], NOW),
    ],
    ids=["bad-signature", "expired", "not-yet-valid", "truncated"],
)
def test_verify_gives_the_reason_open_gives(mutate: Callable[[str], str], now: int) -> None:
    k = keys()
    text = mutate(_sealed())
    with pytest.raises(EnvelopeRejected) as opened:
        open_envelope(text, signers=k.trusted, recipient=k.recipient, now=now)
    verified = rejected(lambda: verify_envelope(text, signers=k.trusted, now=now), opened.value.reason)
    assert verified.message == opened.value.message
