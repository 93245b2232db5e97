"""No rejection ever reveals payload content: not in the message, the diagnostics,
the formatted traceback, nor any exception chained to it."""

from __future__ import annotations

import traceback
from collections.abc import Callable

import msgpack
import pytest
from transport_support import NOW, SECRET, assemble, keys, simple_payload, split, subject_of

from isolation.errors import EnvelopeRejected, RejectReason
from isolation.transport import Subject, _codec, envelope, open_envelope, seal_envelope
from isolation.transport.keyset import Keyset, Purpose

R = RejectReason


def _text(payload_wire: object | None = None, **kw: object) -> str:
    k = keys()
    payload = simple_payload()
    if payload_wire is None:
        return seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW, **kw)  # type: ignore[arg-type]
    plaintext = payload_wire if isinstance(payload_wire, bytes) else msgpack.packb(payload_wire, use_bin_type=True)
    data = envelope.seal_bytes(
        plaintext, signer=k.signer, recipient=k.recipient.public(), subject=subject_of(payload), now=NOW
    )
    return envelope.to_text(data)


def _open(text: str | bytes, **kw: object) -> object:
    k = keys()
    args: dict[str, object] = {"signers": k.trusted, "recipient": k.recipient, "now": NOW}
    args.update(kw)
    return open_envelope(text, **args)  # type: ignore[arg-type]


def _flip_byte(text: str, index: int) -> str:
    data = bytearray(envelope.from_text(text))
    data[index] ^= 1
    return envelope.to_text(bytes(data))


def _wire_with(**changes: object) -> dict[str, object]:
    return {**simple_payload().to_wire(), **changes}


def _revoked_recipient() -> Keyset:
    k = keys()
    recipient, new = k.recipient.add(now=NOW)
    recipient = recipient.promote(new.kid, now=NOW)
    return recipient.revoke(k.recipient.primary().kid, now=NOW, force=True)


def _wrong_key_envelope() -> str:
    k = keys()
    header = split(envelope.from_text(_text()))[0]
    plaintext = _codec.pack(simple_payload().to_wire())
    return envelope.to_text(assemble(header, plaintext, recipient=k.impostor, signer=k.signer))


CASES: dict[str, tuple[Callable[[], object], RejectReason]] = {
    "bad magic": (lambda: _open(_flip_byte(_text(), 0)), R.BAD_FORMAT),
    "bad base64": (lambda: _open(_text() + "="), R.BAD_FORMAT),
    "truncated": (lambda: _open(_text()[:40]), R.BAD_FORMAT),
    "version": (lambda: _open(_flip_byte(_text(), 4)), R.UNSUPPORTED_VERSION),
    "too large": (lambda: _open(_text(), max_text_size=100), R.TOO_LARGE),
    "untrusted signer": (lambda: _open(_text(), signers=keys().untrusted.public()), R.UNKNOWN_KEY),
    "unknown recipient": (lambda: _open(_text(), recipient=keys().impostor), R.UNKNOWN_KEY),
    "revoked recipient": (lambda: _open(_text(), recipient=_revoked_recipient()), R.REVOKED_KEY),
    "bad signature": (lambda: _open(_flip_byte(_text(), -70)), R.BAD_SIGNATURE),
    "expired": (lambda: _open(_text(), now=NOW + 10**6), R.EXPIRED),
    "not yet valid": (lambda: _open(_text(), now=NOW - 10**6), R.NOT_YET_VALID),
    "wrong audience": (
        lambda: _open(_text(), recipient=Keyset(Purpose.RECIPIENT, "env-b", keys().recipient.keys)),
        R.WRONG_AUDIENCE,
    ),
    "wrong subject": (lambda: _open(_text(), subject=Subject("other", "task", "run")), R.WRONG_SUBJECT),
    "context disagrees with header": (
        lambda: _open(
            envelope.to_text(
                envelope.seal_bytes(
                    _codec.pack(simple_payload().to_wire()),
                    signer=keys().signer,
                    recipient=keys().recipient.public(),
                    subject=Subject("dag", "task", "another-run"),
                    now=NOW,
                )
            )
        ),
        R.WRONG_SUBJECT,
    ),
    "decrypt failed": (lambda: _open(_wrong_key_envelope()), R.DECRYPT_FAILED),
    "payload: bytes for a string": (lambda: _open(_text(_wire_with(variables={"v": SECRET.encode()}))), R.BAD_PAYLOAD),
    "payload: unknown field": (lambda: _open(_text(_wire_with(leak=SECRET))), R.BAD_PAYLOAD),
    "payload: bad port": (
        lambda: _open(_text(_wire_with(connections={"c": {"conn_type": "x", "password": SECRET, "port": SECRET}}))),
        R.BAD_PAYLOAD,
    ),
    "payload: bad import path": (
        lambda: _open(_text(_wire_with(operator={"import_path": SECRET + " x", "kwargs": {}}))),
        R.BAD_PAYLOAD,
    ),
    "payload: non-canonical msgpack": (
        lambda: _open(_text(_codec.pack(_wire_with(variables={"v": SECRET}))[:-1] + b"\xc3")),
        R.BAD_PAYLOAD,
    ),
    "payload: bad callable ext": (
        lambda: _open(
            _text(_wire_with(operator={"import_path": "a.B", "kwargs": {"f": msgpack.ExtType(4, SECRET.encode())}}))
        ),
        R.BAD_PAYLOAD,
    ),
    "payload: bad datetime ext": (
        lambda: _open(
            _text(_wire_with(operator={"import_path": "a.B", "kwargs": {"d": msgpack.ExtType(1, SECRET.encode())}}))
        ),
        R.BAD_PAYLOAD,
    ),
}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejections_never_reveal_the_payload(case: str) -> None:
    call, reason = CASES[case]
    with pytest.raises(EnvelopeRejected) as info:
        call()
    error = info.value
    assert error.reason is reason
    rendered = [
        str(error),
        repr(error),
        error.diagnostics(),
        "".join(traceback.format_exception(error)),
        *(f"{e!s} {e!r} {e.args!r}" for e in _chain(error)),
    ]
    for text in rendered:
        assert SECRET not in text
        assert SECRET.encode().hex() not in text
        assert repr(SECRET.encode())[2:-1] not in text


def test_the_secret_really_travels() -> None:
    # The control: the cases above would pass vacuously if the secret were not sealed.
    opened = _open(_text())
    assert SECRET in opened.payload.secret_values()  # type: ignore[attr-defined]
    assert opened.payload.operator.kwargs["token"] == SECRET  # type: ignore[attr-defined]
    assert SECRET not in _text()
