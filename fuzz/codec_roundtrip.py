"""Fuzz target: decode-then-encode gives back the same bytes, for every decoder.

The first input byte picks the decoder for the rest:

- ``0``: the payload value codec (``_codec.unpack`` then ``_codec.pack``);
- ``1``: the envelope header (``_header.decode`` then ``Header.encode``);
- ``2``: base64url text (``_b64.decode`` then ``_b64.encode``);
- ``3``: a payload (codec, then ``Payload``): what validates re-validates identically.

Decoders may only refuse with ``ValueError`` (and the payload schema with pydantic's
``ValidationError``). Run with ``python fuzz/codec_roundtrip.py <corpus dir>``.
"""

from __future__ import annotations

from _fuzzing import Target, run


def build() -> Target:
    from pydantic import ValidationError

    from isolation.errors import PayloadError
    from isolation.transport import _b64, _codec, _header
    from isolation.transport.payload import Payload

    def one_input(data: bytes) -> None:
        if not data:
            return
        mode, body = data[0] & 3, data[1:]
        if mode == 0:
            try:
                value = _codec.unpack(body)
            except ValueError:
                return
            assert _codec.pack(value) == body
        elif mode == 1:
            try:
                header = _header.decode(body)
            except ValueError:
                return
            assert header.encode() == body
        elif mode == 2:
            try:
                raw = _b64.decode(body)
            except ValueError:
                return
            assert _b64.encode(raw).encode() == body
        else:
            try:
                payload = Payload.model_validate(_codec.unpack(body))
            except (ValueError, ValidationError, PayloadError):
                return
            wire = _codec.pack(payload.to_wire())
            again = Payload.model_validate(_codec.unpack(wire))
            assert _codec.pack(again.to_wire()) == wire

    return one_input


if __name__ == "__main__":
    run(build)
