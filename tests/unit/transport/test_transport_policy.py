"""Policy: keys, clock, audience, subject, schema and payload checks, each with its reason."""

from __future__ import annotations

import datetime as dt
import struct
from functools import cache

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transport_support import (
    EXAMPLES,
    NOW,
    assemble,
    keys,
    rejected,
    simple_payload,
    split,
    subject_of,
    subjects,
)

from isolation.errors import EnvelopeRejected, RejectReason
from isolation.transport import Keyset, Subject, _codec, envelope, open_envelope, seal_envelope
from isolation.transport.keyset import Purpose
from isolation.transport.payload import Payload

R = RejectReason
SUBJECT = Subject("dag", "task", "manual__1")


def _seal(plaintext: bytes = b"x", **kw: object) -> bytes:
    k = keys()
    args: dict[str, object] = {"signer": k.signer, "recipient": k.recipient.public(), "subject": SUBJECT, "now": NOW}
    args.update(kw)
    return envelope.seal_bytes(plaintext, **args)  # type: ignore[arg-type]


def _open(data: bytes, **kw: object) -> envelope.OpenedBytes:
    k = keys()
    args: dict[str, object] = {"signers": k.trusted, "recipient": k.recipient, "now": NOW}
    args.update(kw)
    return envelope.open_bytes(data, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keys


def test_wrong_recipient_key_is_unknown_key() -> None:
    # Same environment name, another key: exact key-id match fails, nothing is tried.
    error = rejected(lambda: _open(_seal(), recipient=keys().impostor), R.UNKNOWN_KEY)
    assert error.key_id == keys().recipient.primary().kid


def test_public_recipient_keyset_cannot_open() -> None:
    rejected(lambda: _open(_seal(), recipient=keys().recipient.public()), R.UNKNOWN_KEY)


def test_untrusted_signer_is_unknown_key() -> None:
    k = keys()
    data = _seal(signer=k.untrusted)
    error = rejected(lambda: _open(data), R.UNKNOWN_KEY)
    assert error.key_id == k.untrusted.primary().kid
    rejected(lambda: _open(_seal(), signers=[]), R.UNKNOWN_KEY)
    assert _open(data, signers=[k.trusted, k.untrusted.public()]).plaintext == b"x"


def test_revoked_signer_and_recipient() -> None:
    k = keys()
    data = _seal()
    signer_kid = k.signer.primary().kid
    signer, _ = k.signer.add(now=NOW)
    signer = signer.promote(signer.keys[-1].kid, now=NOW)
    # Still verifies while retiring; refused once revoked (after the overlap, or forced).
    assert _open(data, signers=signer.public()).plaintext == b"x"
    revoked = signer.revoke(signer_kid, now=NOW + signer.overlap_seconds + 1)
    error = rejected(lambda: _open(data, signers=revoked.public()), R.REVOKED_KEY)
    assert error.key_id == signer_kid
    rejected(lambda: _open(data, signers=signer.revoke(signer_kid, now=NOW, force=True).public()), R.REVOKED_KEY)

    recipient, _ = k.recipient.add(now=NOW)
    recipient = recipient.promote(recipient.keys[-1].kid, now=NOW)
    assert _open(data, recipient=recipient).plaintext == b"x"
    recipient = recipient.revoke(k.recipient.primary().kid, now=NOW, force=True)
    rejected(lambda: _open(data, recipient=recipient), R.REVOKED_KEY)


def _revoked_elsewhere(keyset: Keyset) -> Keyset:
    """The public form of ``keyset`` after its primary was replaced and revoked."""
    rotated, new = keyset.add(now=NOW)
    return rotated.promote(new.kid, now=NOW).revoke(keyset.primary().kid, now=NOW, force=True).public()


def test_a_revocation_in_any_trusted_signer_keyset_wins() -> None:
    # Regression (revocation bypass across several signer keysets): the runtime trusts
    # every signers*.json, and a stale copy listing the key as primary used to decide
    # alone whenever it came first in file-name order.
    k = keys()
    data = _seal()
    stale, revoked = k.trusted, _revoked_elsewhere(k.signer)
    for order in ([stale, revoked], [revoked, stale], [stale, stale, revoked]):
        error = rejected(lambda order=order: _open(data, signers=order), R.REVOKED_KEY)  # type: ignore[misc]
        assert error.key_id == k.signer.primary().kid
    # Another host's revocations do not touch this host's keys.
    assert _open(data, signers=[stale, _revoked_elsewhere(k.untrusted)]).plaintext == b"x"
    # Keysets of another purpose are not consulted, for trust or for revocation.
    assert _open(data, signers=[k.recipient.public(), stale]).plaintext == b"x"


def test_trusted_signer_keysets_that_disagree_on_a_key_id_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from isolation.transport import keyset as keyset_module

    k = keys()
    data = _seal()
    kid = k.signer.primary().kid
    # Only a key id collision (or a forged keyset file) gives two keys one id: fake one.
    monkeypatch.setattr(keyset_module, "key_id", lambda algorithm, public: kid)
    other = Keyset.generate_signer(now=NOW).public()
    monkeypatch.undo()
    assert other.primary().kid == kid
    assert other.primary().public != k.trusted.primary().public
    for order in ([k.trusted, other], [other, k.trusted]):
        error = rejected(lambda order=order: _open(data, signers=order), R.UNKNOWN_KEY)  # type: ignore[misc]
        assert "disagree" in str(error)
    assert _open(data, signers=[k.trusted, k.trusted]).plaintext == b"x"


def test_a_recipient_key_is_never_a_signer() -> None:
    # A header naming a recipient key as its signer, with that recipient keyset
    # (wrongly) among the trusted signers: refused as unknown, never used to verify.
    k = keys()
    fields = msgpack.unpackb(split(_seal())[0])
    fields[2] = k.recipient.primary().kid_bytes
    forged = assemble(msgpack.packb(fields, use_bin_type=True), b"x", recipient=k.recipient, signer=k.signer)
    rejected(lambda: _open(forged, signers=[k.trusted, k.recipient]), R.UNKNOWN_KEY)


def test_suite_2_key_cannot_open_suite_1_envelope() -> None:
    k = keys()
    pq_named_a = Keyset(Purpose.RECIPIENT, "env-a", k.recipient_pq.keys)
    rejected(lambda: _open(_seal(), recipient=pq_named_a), R.UNKNOWN_KEY)


def test_seal_needs_the_right_keyset_purposes() -> None:
    from isolation.errors import KeysetError

    k = keys()
    with pytest.raises(KeysetError):
        envelope.seal_bytes(b"", signer=k.recipient, recipient=k.signer, subject=SUBJECT, now=NOW)
    with pytest.raises(KeysetError, match=r"public keyset|no private part"):
        envelope.seal_bytes(b"", signer=k.trusted, recipient=k.recipient, subject=SUBJECT, now=NOW)


@cache
def _rotated() -> tuple[Keyset, Keyset]:
    """The test signer and recipient keysets after a rotation whose old key A was revoked."""
    k = keys()
    signer, new_signer = k.signer.add(now=NOW)
    signer = signer.promote(new_signer.kid, now=NOW).revoke(k.signer.primary().kid, now=NOW, force=True)
    recipient, new_recipient = k.recipient.add(now=NOW)
    recipient = recipient.promote(new_recipient.kid, now=NOW)
    recipient = recipient.revoke(k.recipient.primary().kid, now=NOW, force=True)
    return signer.public(), recipient


_KEY_FAULTS = {
    "impostor recipient": (lambda: {"recipient": keys().impostor}, R.UNKNOWN_KEY),
    "public recipient keyset": (lambda: {"recipient": keys().recipient.public()}, R.UNKNOWN_KEY),
    "untrusted signer": (lambda: {"signers": keys().untrusted.public()}, R.UNKNOWN_KEY),
    "no trusted signers": (lambda: {"signers": []}, R.UNKNOWN_KEY),
    "revoked signer": (lambda: {"signers": _rotated()[0]}, R.REVOKED_KEY),
    "revoked recipient": (lambda: {"recipient": _rotated()[1]}, R.REVOKED_KEY),
    "both revoked": (lambda: {"signers": _rotated()[0], "recipient": _rotated()[1]}, R.REVOKED_KEY),
}


@settings(max_examples=EXAMPLES)
@given(
    fault=st.sampled_from(sorted(_KEY_FAULTS)),
    plaintext=st.binary(max_size=256),
    subject=st.builds(Subject, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.just("r")),
    lifetime=st.integers(1, envelope.MAX_LIFETIME),
    age=st.integers(0, 10**6),
)
def test_wrong_untrusted_and_revoked_keys(
    fault: str, plaintext: bytes, subject: Subject, lifetime: int, age: int
) -> None:
    options, reason = _KEY_FAULTS[fault]
    data = _seal(plaintext, subject=subject, lifetime=lifetime)
    clock = NOW + min(age, lifetime)
    assert _open(data, now=clock).plaintext == plaintext  # the control: it opens with the right keys
    error = rejected(lambda: _open(data, now=clock, **options()), reason)
    assert error.key_id in (keys().signer.primary().kid, keys().recipient.primary().kid)


# --------------------------------------------------------------------------- clock


@settings(max_examples=EXAMPLES)
@given(
    lifetime=st.integers(1, envelope.MAX_LIFETIME),
    skew=st.integers(0, 900),
    offset=st.integers(-2000, 2000),
    anchor=st.sampled_from(["issued", "expires"]),
)
def test_validity_window(lifetime: int, skew: int, offset: int, anchor: str) -> None:
    data = _seal(lifetime=lifetime)
    clock = (NOW if anchor == "issued" else NOW + lifetime) + offset
    if clock > NOW + lifetime + skew:
        rejected(lambda: _open(data, now=clock, skew=skew), R.EXPIRED)
    elif clock < NOW - skew:
        rejected(lambda: _open(data, now=clock, skew=skew), R.NOT_YET_VALID)
    else:
        assert _open(data, now=clock, skew=skew).plaintext == b"x"


@settings(max_examples=EXAMPLES)
@given(lifetime=st.integers(1, envelope.MAX_LIFETIME), late=st.integers(1, 10**9), early=st.integers(1, 10**9))
def test_expired_and_future_envelopes_through_the_recipe(lifetime: int, late: int, early: int) -> None:
    k = keys()
    payload = simple_payload()
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW, lifetime=lifetime)
    skew = envelope.DEFAULT_SKEW

    def at(clock: int) -> Payload:
        return open_envelope(text, signers=k.trusted, recipient=k.recipient, now=clock).payload

    rejected(lambda: at(NOW + lifetime + skew + late), R.EXPIRED)
    rejected(lambda: at(NOW - skew - early), R.NOT_YET_VALID)
    assert at(NOW + lifetime + skew) == payload
    assert at(NOW - skew) == payload


def test_clock_defaults_to_now() -> None:
    import time

    data = _seal(now=int(time.time()))
    assert _open(data, now=None).plaintext == b"x"
    rejected(lambda: _open(_seal(now=int(time.time()) - 7200), now=None), R.EXPIRED)


def test_lifetime_beyond_the_readers_maximum_is_refused() -> None:
    rejected(lambda: _open(_seal(lifetime=3600), max_lifetime=600), R.BAD_FORMAT)


def test_open_envelope_takes_a_tighter_max_lifetime() -> None:
    k = keys()
    payload = simple_payload()
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW, lifetime=3600)

    def at_most(seconds: int) -> Payload:
        return open_envelope(text, signers=k.trusted, recipient=k.recipient, now=NOW, max_lifetime=seconds).payload

    rejected(lambda: at_most(3599), R.BAD_FORMAT)
    assert at_most(3600) == payload
    assert open_envelope(text, signers=k.trusted, recipient=k.recipient, now=NOW).payload == payload


# --------------------------------------------------------------------------- audience and subject

_env_names = st.from_regex(r"\A[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?\Z").filter(lambda n: n != "env-a")


@settings(max_examples=EXAMPLES)
@given(name=_env_names)
def test_wrong_audience(name: str) -> None:
    k = keys()
    rejected(lambda: _open(_seal(), audience=name), R.WRONG_AUDIENCE)
    # The same keys under another environment name: the header says env-a.
    renamed = Keyset(Purpose.RECIPIENT, name, k.recipient.keys)
    rejected(lambda: _open(_seal(), recipient=renamed), R.WRONG_AUDIENCE)
    # And the other way round: sealed for `name` with env-a's keys.
    data = _seal(recipient=renamed.public())
    rejected(lambda: _open(data), R.WRONG_AUDIENCE)
    assert _open(data, audience=name).plaintext == b"x"


_subjects = subjects()


@settings(max_examples=EXAMPLES)
@given(sealed_for=_subjects, asked=_subjects)
def test_wrong_subject(sealed_for: Subject, asked: Subject) -> None:
    data = _seal(subject=sealed_for)
    if asked == sealed_for:
        assert _open(data, subject=asked).header.subject == sealed_for
    else:
        rejected(lambda: _open(data, subject=asked), R.WRONG_SUBJECT)
    assert _open(data).header.subject == sealed_for  # no subject asked: not checked


def _other_int(value: int) -> int:
    return value + 1 if value < 2**31 - 1 else value - 1


@settings(max_examples=EXAMPLES)
@given(subject=_subjects, field=st.sampled_from(["dag_id", "task_id", "run_id", "map_index", "try_number"]))
def test_payload_context_must_match_the_signed_header(subject: Subject, field: str) -> None:
    payload = simple_payload()
    payload = payload.model_copy(update={"context": payload.context.model_copy(update=subject.__dict__)})
    k = keys()
    header_subject = subject_of(payload)
    changed = {
        "dag_id": header_subject.dag_id + "x",
        "task_id": header_subject.task_id + "x",
        "run_id": header_subject.run_id + "x",
        "map_index": _other_int(header_subject.map_index),
        "try_number": _other_int(header_subject.try_number),
    }[field]
    header_subject = Subject(**{**header_subject.__dict__, field: changed})
    data = envelope.seal_bytes(
        _codec.pack(payload.to_wire()),
        signer=k.signer,
        recipient=k.recipient.public(),
        subject=header_subject,
        now=NOW,
    )
    text = envelope.to_text(data)
    rejected(lambda: open_envelope(text, signers=k.trusted, recipient=k.recipient, now=NOW), R.WRONG_SUBJECT)


# --------------------------------------------------------------------------- schema, payload, decryption


def test_unsupported_payload_schema() -> None:
    data = _seal(payload_schema=3)
    rejected(lambda: _open(data), R.UNSUPPORTED_VERSION)
    assert _open(data, supported_schemas=(1, 2, 3)).header.payload_schema == 3
    # A reader that implements only schema 1 refuses schema 2 the same way.
    rejected(lambda: _open(_seal(payload_schema=2), supported_schemas=(1,)), R.UNSUPPORTED_VERSION)


def _wire() -> dict[str, object]:
    return simple_payload().to_wire()


_BAD_PLAINTEXTS = {
    "empty": b"",
    "not msgpack": b"\xc1",
    "truncated": _codec.pack({"a": 1})[:-1],
    "trailing byte": _codec.pack(simple_payload().to_wire()) + b"\xc0",
    "array": _codec.pack([1, 2]),
    "missing field": _codec.pack({k: v for k, v in simple_payload().to_wire().items() if k != "operator"}),
    "unknown field": _codec.pack({**simple_payload().to_wire(), "surprise": 1}),
    "wrong type": _codec.pack({**simple_payload().to_wire(), "variables": {"v": b"bytes"}}),
    "wider int": b"\x81\xa1a\xcd\x00\x01",
    "float32": b"\x81\xa1a\xca\x3f\x80\x00\x00",
    "duplicate map key": b"\x82\xa1a\x01\xa1a\x02",
    "non-string map key": b"\x81\x01\x01",
    "timestamp ext": msgpack.packb(msgpack.Timestamp(1)),
    "unknown ext": msgpack.packb(msgpack.ExtType(99, b"")),
    "datetime not canonical": msgpack.packb(msgpack.ExtType(1, b"2024-01-01 00:00:00")),
    "datetime garbage": msgpack.packb(msgpack.ExtType(1, b"\xff\xfe")),
    "date not canonical": msgpack.packb(msgpack.ExtType(2, b"20240101")),
    "timedelta not normalised": msgpack.packb(msgpack.ExtType(3, struct.pack(">iiI", 0, 86400, 0))),
    "timedelta short": msgpack.packb(msgpack.ExtType(3, b"\x00")),
    "timedelta overflow": msgpack.packb(msgpack.ExtType(3, struct.pack(">iiI", 2**31 - 1, 0, 0))),
    "callable bad path": msgpack.packb(msgpack.ExtType(4, b"not a path")),
    "str not utf-8": b"\xa1\xff",
    "too deep": b"\x91" * 40 + b"\xc0",
    "schema_version 3": _codec.pack({**simple_payload().to_wire(), "schema_version": 3}),
    "schema_version 1 under a schema 2 header": _codec.pack({**simple_payload().to_wire(), "schema_version": 1}),
    # One encoding per payload: each of these validated before the canonical check.
    "schema_version true": _codec.pack({**_wire(), "schema_version": True}),
    "omitted top-level default": _codec.pack({k: v for k, v in _wire().items() if k != "options"}),
    "omitted nested default": _codec.pack(
        {**_wire(), "context": {k: v for k, v in _wire()["context"].items() if k != "owner"}}  # type: ignore[attr-defined]
    ),
    "schema_ for schema": _codec.pack(
        {
            **_wire(),
            "connections": {
                "db": {("schema_" if k == "schema" else k): v for k, v in _wire()["connections"]["db"].items()}  # type: ignore[index]
            },
        }
    ),
    "fields reordered": _codec.pack(dict(reversed(list(_wire().items())))),
    "nested fields reordered": _codec.pack(
        {**_wire(), "options": dict(reversed(list(_wire()["options"].items())))}  # type: ignore[attr-defined]
    ),
    # Identifiers are ASCII only (a Cyrillic "o" below).
    "non-ascii import path": _codec.pack(
        {**_wire(), "operator": {**_wire()["operator"], "import_path": "pkg.m\u043ed.Operator"}}  # type: ignore[dict-item]
    ),
    "non-ascii callable": msgpack.packb(
        {
            **_wire(),
            "operator": {
                "import_path": "pkg.mod.Operator",
                "kwargs": {"f": msgpack.ExtType(4, "pkg.m\u043ed:f".encode())},
            },
        },
        use_bin_type=True,
    ),
}


@pytest.mark.parametrize("name", sorted(_BAD_PLAINTEXTS))
def test_bad_payloads(name: str) -> None:
    k = keys()
    payload = simple_payload()
    data = envelope.seal_bytes(
        _BAD_PLAINTEXTS[name], signer=k.signer, recipient=k.recipient.public(), subject=subject_of(payload), now=NOW
    )
    rejected(
        lambda: open_envelope(envelope.to_text(data), signers=k.trusted, recipient=k.recipient, now=NOW),
        R.BAD_PAYLOAD,
    )


def test_free_form_maps_keep_the_senders_order() -> None:
    # Canonical means "the encoding of this payload value": the order of the schema's own
    # keys is fixed, the order inside free-form maps is part of the value and is kept.
    k = keys()
    wire = _wire()
    wire["operator"] = {"import_path": "pkg.mod.Operator", "kwargs": {"z": 1, "a": {"y": 2, "b": 3}}}
    wire["variables"] = {"b": "1", "a": "2"}
    plaintext = _codec.pack(wire)
    data = envelope.seal_bytes(
        plaintext, signer=k.signer, recipient=k.recipient.public(), subject=subject_of(simple_payload()), now=NOW
    )
    opened = open_envelope(envelope.to_text(data), signers=k.trusted, recipient=k.recipient, now=NOW).payload
    assert list(opened.operator.kwargs) == ["z", "a"]
    assert list(opened.operator.kwargs["a"]) == ["y", "b"]
    assert list(opened.variables) == ["b", "a"]
    assert _codec.pack(opened.to_wire()) == plaintext


def test_connection_schema_has_one_name() -> None:
    from pydantic import ValidationError

    from isolation.transport.payload import ConnectionSpec

    spec = ConnectionSpec(conn_type="postgres", schema="public")
    assert spec.schema_ == "public"
    assert spec.model_dump(by_alias=True)["schema"] == "public"
    with pytest.raises(ValidationError):
        ConnectionSpec.model_validate({"conn_type": "postgres", "schema_": "public"})


def test_decryption_failures() -> None:
    k = keys()
    header = split(_seal())[0]
    # Encrypted to another key under env-a's key id, then properly signed.
    wrong_key = assemble(header, b"x", recipient=k.impostor, signer=k.signer)
    rejected(lambda: _open(wrong_key), R.DECRYPT_FAILED)
    # HPKE info not bound to this header.
    wrong_info = assemble(header, b"x", recipient=k.recipient, signer=k.signer, info=b"ISOL\x01")
    rejected(lambda: _open(wrong_info), R.DECRYPT_FAILED)
    # The HPKE enc is not a point of the curve / all zeros.
    _, _, ciphertext, _ = split(_seal())
    for bad_enc in (bytes(32), b"\xff" * 32, bytes([1]) + bytes(31)):
        signature = k.signer.primary().private_key().sign(envelope.signed_message(header, bad_enc, ciphertext))
        forged = b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, bad_enc, ciphertext, signature))
        rejected(lambda forged=forged: _open(forged), R.DECRYPT_FAILED)  # type: ignore[misc]


def test_check_order() -> None:
    """When several checks fail, the first in the documented order names the reason."""
    k = keys()
    renamed = Keyset(Purpose.RECIPIENT, "env-b", k.impostor.keys)
    late = NOW + 10**6
    bad = _seal(lifetime=60, subject=SUBJECT, payload_schema=3)
    flipped = bad[:-1] + bytes([bad[-1] ^ 1])
    # signature before the clock; clock before audience; audience before subject;
    # subject before schema; schema before the recipient key.
    rejected(lambda: _open(flipped, now=late, recipient=renamed), R.BAD_SIGNATURE)
    rejected(lambda: _open(bad, now=late, recipient=renamed), R.EXPIRED)
    rejected(lambda: _open(bad, recipient=renamed), R.WRONG_AUDIENCE)
    rejected(lambda: _open(bad, recipient=k.impostor, subject=Subject("a", "b", "c")), R.WRONG_SUBJECT)
    rejected(lambda: _open(bad, recipient=k.impostor), R.UNSUPPORTED_VERSION)
    rejected(lambda: _open(_seal(), recipient=k.impostor), R.UNKNOWN_KEY)


def test_text_size_limits() -> None:
    k = keys()
    text = envelope.to_text(_seal(b"x" * 2000))
    rejected(
        lambda: open_envelope(text, signers=k.trusted, recipient=k.recipient, max_text_size=len(text) - 1),
        R.TOO_LARGE,
    )
    # The limit is checked before decoding: oversized garbage is too-large, not bad-format.
    rejected(
        lambda: open_envelope("!" * (envelope.FILE_LIMIT + 1), signers=k.trusted, recipient=k.recipient), R.TOO_LARGE
    )
    rejected(
        lambda: open_envelope(
            "A" * (envelope.ENV_VAR_LIMIT + 1),
            signers=k.trusted,
            recipient=k.recipient,
            max_text_size=envelope.ENV_VAR_LIMIT,
        ),
        R.TOO_LARGE,
    )


def test_reject_reason_strings_are_stable() -> None:
    assert {r.value for r in RejectReason} == {
        "bad-format",
        "unsupported-version",
        "too-large",
        "unknown-key",
        "revoked-key",
        "bad-signature",
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-subject",
        "decrypt-failed",
        "bad-payload",
    }
    error = EnvelopeRejected(R.EXPIRED, "expired 5 s ago", key_id="ab" * 16)
    assert str(error) == f"envelope rejected (expired): expired 5 s ago [key {'ab' * 16}]"
    assert "hint:" in error.diagnostics()


def test_datetimes_keep_their_instant_and_offset() -> None:
    k = keys()
    when = dt.datetime(2030, 3, 31, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45)))
    payload = simple_payload()
    payload = payload.model_copy(update={"context": payload.context.model_copy(update={"logical_date": when})})
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW)
    opened = open_envelope(text, signers=k.trusted, recipient=k.recipient, now=NOW).payload.context.logical_date
    assert opened == when
    assert opened is not None
    assert opened.utcoffset() == when.utcoffset()
