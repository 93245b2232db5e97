"""Fuzz target: loading keysets. Only KeysetError may ever escape.

A document that loads must survive its own round trip, in private and public form.
Run with ``python fuzz/load_keyset.py <corpus dir> [libFuzzer flags]`` (see README).
"""

from __future__ import annotations

from _fuzzing import Target, run


def build() -> Target:
    from isolation.errors import KeysetError
    from isolation.transport import Keyset

    def check(document: str | bytes) -> None:
        try:
            keyset = Keyset.from_json(document)
        except KeysetError as exc:
            assert type(exc) is KeysetError
            exc.diagnostics()
            return
        assert Keyset.from_json(keyset.to_json()) == keyset
        public = keyset.public()
        assert Keyset.from_json(public.to_json()) == public
        assert not any(key.private for key in public)

    def one_input(data: bytes) -> None:
        check(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        check(text)

    return one_input


if __name__ == "__main__":
    run(build)
