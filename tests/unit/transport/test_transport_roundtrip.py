"""Round trips: whatever is sealed opens to exactly the same payload."""

from __future__ import annotations

import datetime as dt
import math
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_support import (
    EXAMPLES,
    NOW,
    SLOW_EXAMPLES,
    as_carried,
    codec_values,
    keys,
    payloads,
    same_payload,
    simple_payload,
    subject_of,
    subjects,
)

from isolation.errors import PayloadError
from isolation.transport import (
    ENV_VAR_LIMIT,
    CallableRef,
    Header,
    Subject,
    _codec,
    envelope,
    open_envelope,
    seal_envelope,
)
from isolation.transport.payload import Payload


@settings(max_examples=EXAMPLES)
@given(payload=payloads(), lifetime=st.integers(1, envelope.MAX_LIFETIME), age=st.integers(0, 2**16))
def test_suite1_round_trip(payload: Payload, lifetime: int, age: int) -> None:
    k = keys()
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), lifetime=lifetime, now=NOW)
    opened = open_envelope(
        text, signers=k.trusted, recipient=k.recipient, subject=subject_of(payload), now=NOW + min(age, lifetime)
    )
    same_payload(opened.payload, payload)
    assert opened.header.suite == 1
    assert opened.header.audience == "env-a"
    assert opened.header.subject == subject_of(payload)
    assert (opened.header.issued_at, opened.header.expires_at) == (NOW, NOW + lifetime)
    assert opened.header.recipient_kid.hex() == k.recipient.primary().kid
    assert opened.header.signer_kid.hex() == k.signer.primary().kid


@settings(max_examples=SLOW_EXAMPLES)
@given(payload=payloads())
def test_suite2_round_trip(payload: Payload) -> None:
    k = keys()
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient_pq.public(), now=NOW)
    opened = open_envelope(text, signers=k.trusted, recipient=k.recipient_pq, now=NOW + 1)
    same_payload(opened.payload, payload)
    assert opened.header.suite == 2
    assert opened.header.audience == "env-pq"


@settings(max_examples=EXAMPLES)
@given(value=codec_values)
def test_codec_round_trip_is_exact(value: object) -> None:
    packed = _codec.pack(value)
    decoded = _codec.unpack(packed)
    assert decoded == as_carried(value)
    assert _codec.pack(decoded) == packed


_subjects = subjects()


@settings(max_examples=EXAMPLES)
@given(
    plaintext=st.binary(max_size=2048),
    subject=_subjects,
    envelope_id=st.binary(min_size=16, max_size=16),
    suite=st.sampled_from([1, 1, 1, 2]),
)
def test_bytes_round_trip_and_text_form(plaintext: bytes, subject: Subject, envelope_id: bytes, suite: int) -> None:
    k = keys()
    recipient = k.recipient if suite == 1 else k.recipient_pq
    data = envelope.seal_bytes(
        plaintext, signer=k.signer, recipient=recipient.public(), subject=subject, now=NOW, envelope_id=envelope_id
    )
    text = envelope.to_text(data)
    assert envelope.from_text(text) == data
    opened = envelope.open_bytes(data, signers=k.trusted, recipient=recipient, subject=subject, now=NOW)
    assert opened.plaintext == plaintext
    assert opened.header.envelope_id == envelope_id
    assert opened.header.subject == subject
    assert opened.header.suite == suite


def test_each_seal_is_fresh() -> None:
    k = keys()
    payload = simple_payload()
    first = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW)
    second = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW)
    assert first != second  # fresh envelope id and HPKE ephemeral key
    for text in (first, second):
        assert open_envelope(text, signers=k.trusted, recipient=k.recipient, now=NOW).payload == payload


def test_codec_special_values() -> None:
    # Tuples arrive as lists; NaN survives bit for bit; datetimes keep their offset.
    assert _codec.unpack(_codec.pack({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}
    nan = _codec.unpack(_codec.pack(float("nan")))
    assert isinstance(nan, float)
    assert math.isnan(nan)
    when = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30)))
    back = _codec.unpack(_codec.pack(when))
    assert back == when
    assert back.utcoffset() == when.utcoffset()
    assert _codec.unpack(_codec.pack(CallableRef("pkg.mod:Class.method"))) == CallableRef("pkg.mod:Class.method")
    assert _codec.unpack(_codec.pack(dt.timedelta(days=-1, microseconds=1))) == dt.timedelta(days=-1, microseconds=1)


@pytest.mark.parametrize(
    "path",
    [
        "pkg.m\u043ed:f",  # Cyrillic o
        "pkg.mod:f\u0661",  # Arabic-Indic digit one: a \\w character
        "p\u00e4ckage.mod:f",
        "pkg.mod:\u00b5",  # micro sign
        "pkg.mod:f\n",
    ],
)
def test_callable_references_are_ascii_only(path: str) -> None:
    with pytest.raises(PayloadError, match="invalid callable reference"):
        CallableRef(path)
    with pytest.raises(ValueError):
        _codec.unpack(msgpack.packb(msgpack.ExtType(_codec.EXT_CALLABLE, path.encode())))
    CallableRef(path.encode("ascii", "replace").decode().replace("?", "x").strip())


def test_import_paths_are_ascii_only() -> None:
    from pydantic import ValidationError

    from isolation.transport.payload import OperatorSpec

    assert OperatorSpec(import_path="pkg.mod_2.Operator").import_path == "pkg.mod_2.Operator"
    for path in ("pkg.m\u043ed.Operator", "pkg.mod.Operator\u0661", "\u00e4.B"):
        with pytest.raises(ValidationError):
            OperatorSpec(import_path=path)


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {1: "non-string key"},
        {"set": {1, 2}},
        2**64,
        -(2**63) - 1,
        bytearray(b"x"),
        object(),
        _nested(40),
    ],
)
def test_codec_refuses_what_cannot_travel(value: object) -> None:
    with pytest.raises(PayloadError):
        _codec.pack(value)


def test_seal_refuses_oversize_and_bad_addressing() -> None:
    k = keys()
    big = simple_payload().model_copy(update={"variables": {"blob": "x" * ENV_VAR_LIMIT}})
    with pytest.raises(PayloadError, match="transport limit"):
        seal_envelope(big, signer=k.signer, recipient=k.recipient.public(), now=NOW, max_text_size=ENV_VAR_LIMIT)
    long_ids = simple_payload(dag_id="d" * 250, task_id="t" * 250)
    long_ids = long_ids.model_copy(
        update={"context": long_ids.context.model_copy(update={"run_id": "r" * 250, "dag_id": "\U0001f600" * 250})}
    )
    with pytest.raises(PayloadError, match="header exceeds"):
        seal_envelope(long_ids, signer=k.signer, recipient=k.recipient.public(), now=NOW)
    with pytest.raises(PayloadError, match="lifetime"):
        seal_envelope(simple_payload(), signer=k.signer, recipient=k.recipient.public(), now=NOW, lifetime=0)
    with pytest.raises(PayloadError, match="cannot address"):
        envelope.seal_bytes(b"", signer=k.signer, recipient=k.recipient, subject=Subject("", "t", "r"), now=NOW)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lifetime", 1.5, "lifetime"),
        ("lifetime", True, "lifetime"),
        ("lifetime", envelope.MAX_LIFETIME + 1, "lifetime"),
        ("envelope_id", b"short", "envelope_id"),
        ("envelope_id", "0123456789abcdef", "envelope_id"),
        ("payload_schema", 0, "payload schema"),
        ("payload_schema", 65536, "payload schema"),
        ("payload_schema", True, "payload schema"),
    ],
)
def test_seal_refuses_fields_a_reader_would_refuse(option: str, value: object, message: str) -> None:
    k = keys()
    with pytest.raises(PayloadError, match=message):
        envelope.seal_bytes(
            b"",
            signer=k.signer,
            recipient=k.recipient.public(),
            subject=Subject("d", "t", "r"),
            now=NOW,
            **{option: value},
        )


def test_sealed_header_is_header_encode() -> None:
    # Sealing packs the header field list directly; it must stay byte for byte what
    # Header.encode (msgpack.packb, the spec's reference) gives.
    k = keys()
    subject = Subject("d\u00e4g", "t" * 40, "manual__2026-01-01T00:00:00+00:00", 2**31 - 1, 0)
    for recipient in (k.recipient, k.recipient_pq):
        data = envelope.seal_bytes(
            b"x", signer=k.signer, recipient=recipient.public(), subject=subject, now=NOW, envelope_id=bytes(range(16))
        )
        (length,) = struct.unpack(">H", data[5:7])
        header = Header(
            suite=recipient.primary().algorithm.suite,
            recipient_kid=recipient.primary().kid_bytes,
            signer_kid=k.signer.primary().kid_bytes,
            audience=recipient.name,
            subject=subject,
            issued_at=NOW,
            expires_at=NOW + envelope.DEFAULT_LIFETIME,
            envelope_id=bytes(range(16)),
            payload_schema=2,
        )
        assert data[7 : 7 + length] == header.encode()
