"""Fuzz target: opening envelopes. Only EnvelopeRejected may ever escape.

The first input byte says what the rest is (bit 2 picks suite 1 or 2):

- ``0``: envelope text, to ``open_envelope``;
- ``1``: a binary envelope, to ``envelope.open_bytes``;
- ``2``: a plaintext, sealed correctly and then opened, so the payload codec and
  schema are fuzzed behind a valid signature (only bad-payload or wrong-subject). A
  payload that opens must be canonical: encoding it again gives back the plaintext;
- ``3``: header bytes, encrypted and signed correctly and then opened, so header
  parsing and every check after verification are fuzzed. A header that opens must
  be canonical: decoding then encoding it gives back the same bytes.

Run with ``python fuzz/open_envelope.py <corpus dir> [libFuzzer flags]`` (see README).
"""

from __future__ import annotations

import struct

from _fuzzing import KEYS, NOW, SUBJECT, Target, run


def build() -> Target:
    from isolation.errors import EnvelopeRejected, RejectReason
    from isolation.transport import Keyset, Subject, _codec, envelope, open_envelope
    from isolation.transport._suites import SUITES

    signer = Keyset.load(KEYS / "signer.json")
    trusted = signer.public()
    recipients = {1: Keyset.load(KEYS / "recipient-s1.json"), 2: Keyset.load(KEYS / "recipient-s2.json")}
    subject = Subject(*SUBJECT)  # type: ignore[arg-type]
    clock = NOW + 1

    def sealed_around(header: bytes, recipient: Keyset) -> bytes:
        key = recipient.primary()
        enc, ciphertext = SUITES[key.algorithm.suite].encrypt(b"", key.public_key(), envelope.hpke_info(header))
        signature = signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
        return b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, enc, ciphertext, signature))

    def one_input(data: bytes) -> None:
        if not data:
            return
        mode, recipient, body = data[0] & 3, recipients[1 + (data[0] >> 2 & 1)], data[1:]
        try:
            if mode == 0:
                open_envelope(body, signers=trusted, recipient=recipient, now=clock)
            elif mode == 1:
                envelope.open_bytes(body, signers=trusted, recipient=recipient, now=clock)
            elif mode == 2:
                sealed = envelope.seal_bytes(body, signer=signer, recipient=recipient, subject=subject, now=NOW)
                try:
                    opened = open_envelope(envelope.to_text(sealed), signers=trusted, recipient=recipient, now=clock)
                except EnvelopeRejected as exc:
                    assert exc.reason in (RejectReason.BAD_PAYLOAD, RejectReason.WRONG_SUBJECT), exc.reason
                    raise
                assert _codec.pack(opened.payload.to_wire()) == body, "a non-canonical payload opened"
            elif len(body) <= 0xFFFF:
                opened = envelope.open_bytes(
                    sealed_around(body, recipient),
                    signers=trusted,
                    recipient=recipient,
                    now=clock,
                    supported_schemas=tuple(range(1, 65536)),
                )
                assert opened.header.encode() == body, "a non-canonical header opened"
        except EnvelopeRejected as exc:
            assert type(exc) is EnvelopeRejected
            assert isinstance(exc.reason, RejectReason)
            exc.diagnostics()

    return one_input


if __name__ == "__main__":
    run(build)
