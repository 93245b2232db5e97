"""The recipe: seal a :class:`Payload` to text, open text back to a payload."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from isolation.errors import EnvelopeRejected, PayloadError
from isolation.errors import RejectReason as R
from isolation.transport import _codec, envelope
from isolation.transport._header import Header, Subject
from isolation.transport.keyset import Keyset

# The payload schemas this reader implements (docs/envelope.md, sections 10.4 and 10.5);
# kept here so that opening an envelope does not import pydantic before it must.
SUPPORTED_SCHEMAS = (1, 2)

if TYPE_CHECKING:
    from isolation.transport.payload import Payload


@dataclass(frozen=True)
class OpenedEnvelope:
    header: Header
    payload: Payload


def subject_of(payload: Payload) -> Subject:
    ctx = payload.context
    return Subject(ctx.dag_id, ctx.task_id, ctx.run_id, ctx.map_index, ctx.try_number)


def seal_envelope(
    payload: Payload,
    *,
    signer: Keyset,
    recipient: Keyset,
    lifetime: int = envelope.DEFAULT_LIFETIME,
    max_text_size: int = envelope.FILE_LIMIT,
    now: int | None = None,
    envelope_id: bytes | None = None,
) -> str:
    """Seal ``payload`` for the environment named by ``recipient``; return envelope text.

    The subject is taken from ``payload.context``. Raises :class:`PayloadError` if the
    text would exceed ``max_text_size`` (use ``envelope.ENV_VAR_LIMIT`` for env vars).
    """
    plaintext = _codec.pack(payload.to_wire())
    sealed = envelope.seal_bytes(
        plaintext,
        signer=signer,
        recipient=recipient,
        subject=subject_of(payload),
        payload_schema=payload.schema_version,
        lifetime=lifetime,
        now=now,
        envelope_id=envelope_id,
    )
    text = envelope.to_text(sealed)
    if len(text) > max_text_size:
        raise PayloadError(
            f"sealed envelope is {len(text)} characters, over the transport limit of {max_text_size}",
            hint="pass fewer or smaller connections, variables, arguments or XCom inputs",
        )
    return text


def open_envelope(
    text: str | bytes,
    *,
    signers: Keyset | Sequence[Keyset],
    recipient: Keyset,
    audience: str | None = None,
    subject: Subject | None = None,
    max_text_size: int = envelope.FILE_LIMIT,
    now: int | None = None,
    skew: int = envelope.DEFAULT_SKEW,
    max_lifetime: int = envelope.MAX_LIFETIME,
) -> OpenedEnvelope:
    """Open envelope text. Every failure is :class:`EnvelopeRejected` with a reason code.

    ``max_lifetime`` (seconds, default and maximum 7 days) lets a reader refuse
    envelopes sealed with a longer lifetime than it is willing to honour.
    """
    data = envelope.from_text(text, max_size=max_text_size)
    opened = envelope.open_bytes(
        data,
        signers=signers,
        recipient=recipient,
        audience=audience,
        subject=subject,
        now=now,
        skew=skew,
        max_lifetime=max_lifetime,
        supported_schemas=SUPPORTED_SCHEMAS,
    )
    from pydantic import ValidationError

    from isolation.transport.payload import Payload

    schema = opened.header.payload_schema
    payload: Payload | None
    try:
        payload = Payload.model_validate(_codec.unpack(opened.plaintext))
        # One encoding per payload: every key of its schema present, in schema order,
        # under its wire name, with its exact type, and no key of another schema.
        # Defaults and aliases must not let two byte strings mean the same payload.
        if payload.schema_version != schema or _codec.pack(payload.to_wire()) != opened.plaintext:
            payload = None
    except (ValueError, ValidationError, PayloadError):
        payload = None
    if payload is None:
        # Raised outside the handler so that not even __context__ keeps the validation
        # error: pydantic and datetime errors quote their input, i.e. payload content.
        raise EnvelopeRejected(R.BAD_PAYLOAD, f"payload does not match schema version {schema}")
    if subject_of(payload) != opened.header.subject:
        raise EnvelopeRejected(R.WRONG_SUBJECT, "payload context disagrees with the signed header")
    return OpenedEnvelope(opened.header, payload)


def inspect_envelope(text: str | bytes, *, max_text_size: int = envelope.FILE_LIMIT) -> Header:
    """The header of envelope text, read without any key and without decrypting.

    Only the text encoding and the structure are checked: nothing in the header is
    authenticated (use :func:`verify_envelope`). Raises :class:`EnvelopeRejected`.
    """
    return envelope.read_header(envelope.from_text(text, max_size=max_text_size))


def verify_envelope(
    text: str | bytes,
    *,
    signers: Keyset | Sequence[Keyset],
    max_text_size: int = envelope.FILE_LIMIT,
    now: int | None = None,
    skew: int = envelope.DEFAULT_SKEW,
    max_lifetime: int = envelope.MAX_LIFETIME,
) -> Header:
    """Check the signature and validity window of envelope text; decrypt nothing.

    Returns the authenticated header. Audience, subject and payload are not checked,
    so a valid result does not mean an environment will open it. Raises
    :class:`EnvelopeRejected` with the same reasons :func:`open_envelope` would.
    """
    data = envelope.from_text(text, max_size=max_text_size)
    return envelope.verify_bytes(data, signers=signers, now=now, skew=skew, max_lifetime=max_lifetime)
