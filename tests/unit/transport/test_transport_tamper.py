"""Tampering: every modification of a valid envelope is refused, for the right reason.

The expected reason comes from the reference reader in ``transport_support``, not
from the project's parser, so a parse error cannot hide behind a signature error.
"""

from __future__ import annotations

from functools import cache

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_support import (
    EXAMPLES,
    NOW,
    SLOW_EXAMPLES,
    expected_reason,
    expected_text_reason,
    item_at,
    keys,
    leaf_paths,
    pack_with,
    rejected,
    simple_payload,
    split,
    subjects,
    wider_forms,
)
from transport_support import assemble as assemble_raw

from isolation.errors import RejectReason
from isolation.transport import Subject, _codec, envelope, open_envelope, seal_envelope
from isolation.transport.keyset import Keyset

R = RejectReason


@cache
def sealed(suite: int, variant: int = 0) -> bytes:
    """A few fixed valid binary envelopes per suite (variants differ in size)."""
    k = keys()
    recipient = k.recipient if suite == 1 else k.recipient_pq
    payload = simple_payload()
    if variant:
        payload = payload.model_copy(update={"variables": {f"v{i}": "x" * variant for i in range(variant)}})
    text = seal_envelope(payload, signer=k.signer, recipient=recipient.public(), now=NOW)
    return envelope.from_text(text)


def _recipient(suite: int) -> Keyset:
    return keys().recipient if suite == 1 else keys().recipient_pq


def _open_bytes(data: bytes, suite: int = 1) -> object:
    return envelope.open_bytes(data, signers=keys().trusted, recipient=_recipient(suite), now=NOW)


def _open_text(text: str, suite: int = 1) -> object:
    return open_envelope(text, signers=keys().trusted, recipient=_recipient(suite), now=NOW)


def _trusted_kids() -> list[bytes]:
    return [key.kid_bytes for key in keys().trusted]


def test_fixtures_open() -> None:
    for suite in (1, 2):
        for variant in (0, 7):
            data = sealed(suite, variant)
            assert _open_bytes(data, suite)
            assert _open_text(envelope.to_text(data), suite)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(max_examples=EXAMPLES)
@given(variant=st.sampled_from([0, 1, 7]), data=st.data())
def test_any_bit_flip_is_rejected(variant: int, data: st.DataObject) -> None:
    original = sealed(1, variant)
    bit = data.draw(st.integers(0, len(original) * 8 - 1), label="bit")
    tampered = _flip(original, bit)
    reason = expected_reason(tampered, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_bytes(tampered), reason)
    rejected(lambda: _open_text(envelope.to_text(tampered)), reason)


@settings(max_examples=EXAMPLES)
@given(variant=st.sampled_from([0, 7]), data=st.data())
def test_any_bit_flip_in_the_header_region_is_rejected(variant: int, data: st.DataObject) -> None:
    # The header is a small part of the envelope; aim half of the flips at it.
    original = sealed(1, variant)
    header_end = 7 + len(split(original)[0])
    bit = data.draw(st.integers(0, header_end * 8 - 1), label="bit")
    tampered = _flip(original, bit)
    reason = expected_reason(tampered, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_bytes(tampered), reason)


@settings(max_examples=SLOW_EXAMPLES)
@given(data=st.data())
def test_any_bit_flip_is_rejected_suite2(data: st.DataObject) -> None:
    original = sealed(2)
    bit = data.draw(st.integers(0, len(original) * 8 - 1), label="bit")
    tampered = _flip(original, bit)
    reason = expected_reason(tampered, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_bytes(tampered, 2), reason)


@settings(max_examples=EXAMPLES)
@given(suite=st.sampled_from([1, 2]), data=st.data())
def test_any_truncation_is_rejected(suite: int, data: st.DataObject) -> None:
    original = sealed(suite)
    cut = data.draw(st.integers(0, len(original) - 1), label="length")
    short = original[:cut]
    rejected(lambda: _open_bytes(short, suite), expected_reason(short, original, _trusted_kids()) or R.BAD_FORMAT)
    text = envelope.to_text(original)
    cut_text = text[: data.draw(st.integers(0, len(text) - 1), label="text length")]
    reason = expected_text_reason(cut_text, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_text(cut_text, suite), reason)


@settings(max_examples=EXAMPLES)
@given(suite=st.sampled_from([1, 2]), extra=st.binary(min_size=1, max_size=8), chars=st.text(min_size=1, max_size=4))
def test_any_appended_data_is_rejected(suite: int, extra: bytes, chars: str) -> None:
    original = sealed(suite)
    longer = original + extra
    rejected(lambda: _open_bytes(longer, suite), R.BAD_SIGNATURE)
    text = envelope.to_text(original) + chars
    reason = expected_text_reason(text, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_text(text, suite), reason)


@settings(max_examples=EXAMPLES)
@given(
    position=st.integers(0, 10**6),
    replacement=st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")),
)
def test_any_character_substitution_in_text_is_rejected(position: int, replacement: str) -> None:
    original = sealed(1)
    text = envelope.to_text(original)
    position %= len(text)
    if text[position] == replacement:
        return
    changed = text[:position] + replacement + text[position + 1 :]
    reason = expected_text_reason(changed, original, _trusted_kids())
    assert reason is not None
    rejected(lambda: _open_text(changed), reason)


# --------------------------------------------------------------------------- splicing


@cache
def _other_signer() -> Keyset:
    return Keyset.generate_signer(now=NOW)


_PARTS = ("header", "enc", "ciphertext", "signature")
_subjects = subjects(20)


@settings(max_examples=EXAMPLES)
@given(
    subjects=st.tuples(_subjects, _subjects),
    plaintexts=st.tuples(st.binary(max_size=64), st.binary(max_size=64)),
    signers=st.tuples(st.booleans(), st.booleans()),
    parts=st.sets(st.sampled_from(_PARTS), min_size=1, max_size=3),
)
def test_parts_spliced_between_envelopes_are_rejected(
    subjects: tuple[Subject, Subject],
    plaintexts: tuple[bytes, bytes],
    signers: tuple[bool, bool],
    parts: set[str],
) -> None:
    # Two hosts, both trusted, so that every splice reaches signature verification.
    k = keys()
    trusted = [k.trusted, _other_signer().public()]
    victim, donor = (
        dict(
            zip(
                _PARTS,
                split(
                    envelope.seal_bytes(
                        plaintext,
                        signer=k.signer if mine else _other_signer(),
                        recipient=k.recipient.public(),
                        subject=subject,
                        now=NOW,
                    )
                ),
                strict=True,
            )
        )
        for subject, plaintext, mine in zip(subjects, plaintexts, signers, strict=True)
    )
    for part in parts:
        victim[part] = donor[part]
    header = victim["header"]
    spliced = b"".join((envelope.PREFIX, len(header).to_bytes(2, "big"), header, *(victim[p] for p in _PARTS[1:])))
    rejected(lambda: envelope.open_bytes(spliced, signers=trusted, recipient=k.recipient, now=NOW), R.BAD_SIGNATURE)


def test_header_of_one_environment_cannot_carry_anothers_body() -> None:
    # A correctly signed header addressed to env-b, over the body sealed for env-a.
    k = keys()
    env_b = Keyset.generate_recipient("env-b", now=NOW)
    for_a = split(sealed(1))
    for_b = split(envelope.from_text(seal_envelope(simple_payload(), signer=k.signer, recipient=env_b, now=NOW)))
    mixed = assemble_parts(for_b[0], for_a[1], for_a[2], k.signer)
    rejected(lambda: envelope.open_bytes(mixed, signers=k.trusted, recipient=env_b, now=NOW), R.DECRYPT_FAILED)
    mixed = assemble_parts(for_a[0], for_b[1], for_b[2], k.signer)
    rejected(lambda: _open_bytes(mixed), R.DECRYPT_FAILED)


def assemble_parts(header: bytes, enc: bytes, ciphertext: bytes, signer: Keyset) -> bytes:
    signature = signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
    return b"".join((envelope.PREFIX, len(header).to_bytes(2, "big"), header, enc, ciphertext, signature))


# --------------------------------------------------------------------------- canonical encodings


def _header_fields(suite: int = 1) -> list[object]:
    return msgpack.unpackb(split(sealed(suite))[0])


@st.composite
def _valid_header_fields(draw: st.DrawFn) -> list[object]:
    """Header fields a trusted host could have sealed for env-a."""
    k = keys()
    subject = draw(_subjects)
    issued = draw(st.integers(NOW - 3600, NOW))
    lifetime = draw(st.integers(NOW - issued + 1, envelope.MAX_LIFETIME))
    return [
        1,
        k.recipient.primary().kid_bytes,
        k.signer.primary().kid_bytes,
        "env-a",
        subject.as_list(),
        issued,
        issued + lifetime,
        draw(st.binary(min_size=16, max_size=16)),
        1,
    ]


@settings(max_examples=EXAMPLES)
@given(fields=_valid_header_fields(), plaintext=st.binary(max_size=32), data=st.data())
def test_non_canonical_header_is_rejected_even_when_signed(
    fields: list[object], plaintext: bytes, data: st.DataObject
) -> None:
    k = keys()
    canonical = msgpack.packb(fields, use_bin_type=True)
    control = assemble_raw(canonical, plaintext, recipient=k.recipient, signer=k.signer)
    assert _open_bytes(control).plaintext == plaintext  # type: ignore[attr-defined]

    choices = [(path, form) for path in leaf_paths(fields) for form in wider_forms(item_at(fields, path))]
    path, form = data.draw(st.sampled_from(choices), label="path, form")
    header = pack_with(fields, path, form)
    assert msgpack.unpackb(header) == fields
    assert header != canonical
    forged = assemble_raw(header, plaintext, recipient=k.recipient, signer=k.signer)
    error = rejected(lambda: _open_bytes(forged), R.BAD_FORMAT)
    assert "canonical" in str(error)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f[:8], R.BAD_FORMAT),  # arity
        (lambda f: [*f, 0], R.BAD_FORMAT),
        (lambda f: [0, *f[1:]], R.BAD_FORMAT),  # suite 0
        (lambda f: [9, *f[1:]], R.UNSUPPORTED_VERSION),  # unknown suite
        (lambda f: [f[0], f[1][:15], *f[2:]], R.BAD_FORMAT),  # short key id
        (lambda f: [*f[:3], "Env-A", *f[4:]], R.BAD_FORMAT),  # not an environment name
        (lambda f: [*f[:3], b"env-a", *f[4:]], R.BAD_FORMAT),  # bin instead of str
        (lambda f: [*f[:4], f[4][:4], *f[5:]], R.BAD_FORMAT),  # subject arity
        (lambda f: [*f[:4], ["", *f[4][1:]], *f[5:]], R.BAD_FORMAT),  # empty dag_id
        (lambda f: [*f[:4], [*f[4][:3], -2, f[4][4]], *f[5:]], R.BAD_FORMAT),  # map_index
        (lambda f: [*f[:4], [*f[4][:3], True, f[4][4]], *f[5:]], R.BAD_FORMAT),  # bool is not int
        (lambda f: [*f[:5], -1, *f[6:]], R.BAD_FORMAT),  # negative iat
        (lambda f: [*f[:5], 1.5, *f[6:]], R.BAD_FORMAT),  # float iat
        (lambda f: [*f[:6], f[5], *f[7:]], R.BAD_FORMAT),  # exp == iat
        (lambda f: [*f[:6], f[5] + envelope.MAX_LIFETIME + 1, *f[7:]], R.BAD_FORMAT),  # lifetime too long
        (lambda f: [*f[:7], f[7] + b"x", f[8]], R.BAD_FORMAT),  # envelope id length
        (lambda f: [*f[:8], 0], R.BAD_FORMAT),  # payload schema 0
        (lambda f: [*f[:8], 3], R.UNSUPPORTED_VERSION),  # payload schema 3
        (lambda f: dict(enumerate(f)), R.BAD_FORMAT),  # map instead of array
    ],
)
def test_signed_but_invalid_headers(mutate: object, reason: RejectReason) -> None:
    k = keys()
    fields = _header_fields()
    header = msgpack.packb(mutate(fields), use_bin_type=True)  # type: ignore[operator]
    forged = assemble_raw(header, _codec.pack(simple_payload().to_wire()), recipient=k.recipient, signer=k.signer)
    rejected(lambda: _open_bytes(forged), reason)


def test_header_with_trailing_bytes_is_rejected() -> None:
    k = keys()
    header = msgpack.packb(_header_fields(), use_bin_type=True) + b"\xc0"
    forged = assemble_raw(header, _codec.pack(simple_payload().to_wire()), recipient=k.recipient, signer=k.signer)
    rejected(lambda: _open_bytes(forged), R.BAD_FORMAT)


def test_suite_must_match_the_recipient_key() -> None:
    # A signed header claiming suite 2 for a suite 1 recipient key: refused, not tried.
    k = keys()
    fields = _header_fields()
    fields[0] = 2
    header = msgpack.packb(fields, use_bin_type=True)
    plaintext = _codec.pack(simple_payload().to_wire())
    forged = assemble_raw(header, plaintext, recipient=k.recipient_pq, signer=k.signer, suite=2)
    rejected(lambda: _open_bytes(forged), R.UNKNOWN_KEY)


_B64_BAD = st.sampled_from(["=", "==", "+", "/", " ", "\n", "\t", "\r\n", ".", "\u00e9", "\x00"])


@settings(max_examples=EXAMPLES)
@given(insert=_B64_BAD, position=st.integers(0, 10**6), replace=st.booleans())
def test_non_canonical_base64_is_rejected(insert: str, position: int, replace: bool) -> None:
    text = envelope.to_text(sealed(1))
    position %= len(text) + 1
    end = position + 1 if replace and position < len(text) else position
    changed = text[:position] + insert + text[end:]
    rejected(lambda: _open_text(changed), R.BAD_FORMAT)


@pytest.mark.parametrize("variant", [0, 1, 2, 3, 4, 5, 6, 7])
def test_base64_padding_standard_alphabet_and_trailing_bits(variant: int) -> None:
    data = sealed(1, variant)
    text = envelope.to_text(data)
    import base64

    padded = base64.urlsafe_b64encode(data).decode()
    standard = base64.b64encode(data).decode().rstrip("=")
    if padded != text:
        rejected(lambda: _open_text(padded), R.BAD_FORMAT)
    if standard != text:
        rejected(lambda: _open_text(standard), R.BAD_FORMAT)
    rejected(lambda: _open_text(text.encode("utf-16-le").decode("latin-1")), R.BAD_FORMAT)
    if len(data) % 3:
        # Set the unused low bits of the last character: same bytes, different text.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(text[-1])
        unused = 4 if len(data) % 3 == 1 else 2
        for low in range(1, 1 << unused):
            changed = text[:-1] + alphabet[last | low]
            assert base64.urlsafe_b64decode(changed + "=" * (-len(changed) % 4)) == data
            rejected(lambda changed=changed: _open_text(changed), R.BAD_FORMAT)  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    ["", "A", "AAAAA", "ISOL", "====", b"\xff\xfe", "SVNPTA"],
)
def test_garbage_text_is_bad_format(text: str | bytes) -> None:
    rejected(lambda: _open_text(text), R.BAD_FORMAT)  # type: ignore[arg-type]


def test_non_text_is_bad_format() -> None:
    rejected(lambda: _open_text(12345), R.BAD_FORMAT)  # type: ignore[arg-type]
    rejected(lambda: _open_text(None), R.BAD_FORMAT)  # type: ignore[arg-type]


def test_bytes_like_text_is_accepted() -> None:
    text = envelope.to_text(sealed(1))
    for form in (text.encode(), bytearray(text.encode()), memoryview(text.encode())):
        assert open_envelope(form, signers=keys().trusted, recipient=keys().recipient, now=NOW)


def test_version_and_magic() -> None:
    data = sealed(1)
    rejected(lambda: _open_bytes(b"ISOX" + data[4:]), R.BAD_FORMAT)
    for version in (0, 2, 255):
        rejected(lambda version=version: _open_bytes(data[:4] + bytes([version]) + data[5:]), R.UNSUPPORTED_VERSION)  # type: ignore[misc]
    rejected(lambda: _open_bytes(data[:5] + b"\x00\x00" + data[7:]), R.BAD_FORMAT)
    rejected(lambda: _open_bytes(data[:5] + b"\x04\x01" + data[7:]), R.BAD_FORMAT)


@pytest.mark.parametrize("suite", [1, 2])
def test_every_single_bit_flip_of_one_envelope(suite: int) -> None:
    # Exhaustive for one envelope per suite (suite 2: the header region and the
    # boundaries, since its body is one large ciphertext).
    original = sealed(suite)
    bits = range(len(original) * 8)
    if suite == 2:
        header_end = (7 + len(split(original)[0])) * 8
        bits = [*range(header_end + 64), *range(len(original) * 8 - 600, len(original) * 8)]  # type: ignore[assignment]
    seen = set()
    for bit in bits:
        tampered = _flip(original, bit)
        reason = expected_reason(tampered, original, _trusted_kids())
        assert reason is not None
        rejected(lambda tampered=tampered: _open_bytes(tampered, suite), reason)  # type: ignore[misc]
        seen.add(reason)
    assert {R.BAD_FORMAT, R.UNSUPPORTED_VERSION, R.UNKNOWN_KEY, R.BAD_SIGNATURE} <= seen


@pytest.mark.parametrize("text", ["abc\u00e9", "ab\udc80c", "\u4e2d" * 8, b"ab\xff"])
def test_non_ascii_text_is_bad_format_without_quoting_it(text: str | bytes) -> None:
    error = rejected(lambda: _open_text(text), R.BAD_FORMAT)  # type: ignore[arg-type]
    assert str(error) == "envelope rejected (bad-format): not unpadded base64url"
