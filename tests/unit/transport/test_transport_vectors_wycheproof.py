"""Wycheproof Ed25519 and X25519 vectors through the project's own key loading.

Origin and licence: tests/vectors/wycheproof/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isolation.errors import KeysetError
from isolation.transport import Algorithm, Keyset, KeyStatus, Purpose, _suites
from isolation.transport.keyset import Key, key_id

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "wycheproof"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def _cases(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = _load(name)
    cases = [(group, test) for group in data["testGroups"] for test in group["tests"]]
    assert len(cases) == data["numberOfTests"]
    return cases


ED25519 = _cases("ed25519_test.json")
X25519 = _cases("x25519_test.json")


def _signer_keyset(public: bytes) -> Keyset:
    key = Key(key_id(Algorithm.ED25519, public), Algorithm.ED25519, KeyStatus.PRIMARY, public, None, 0, 0)
    return Keyset(Purpose.SIGNER, "wycheproof", (key,))


def _recipient_keyset(public: bytes, private: bytes | None = None) -> Keyset:
    key = Key(key_id(Algorithm.X25519, public), Algorithm.X25519, KeyStatus.PRIMARY, public, private, 0, 0)
    return Keyset(Purpose.RECIPIENT, "wycheproof", (key,))


@pytest.mark.parametrize(("group", "test"), ED25519, ids=[f"tc{t['tcId']}" for _, t in ED25519])
def test_ed25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    public = bytes.fromhex(group["publicKey"]["pk"])
    message, signature = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    assert test["result"] in ("valid", "invalid")
    expected = test["result"] == "valid"
    # The loader the opener uses, and the same key as a member of a signer keyset.
    loaded = _suites.load_signer_public(public)
    assert _suites.verify(loaded, signature, message) is expected
    keyset = _signer_keyset(public)
    assert _suites.verify(keyset.primary().public_key(), signature, message) is expected
    assert Keyset.from_json(keyset.to_json()).primary().public == public


def test_ed25519_covers_the_interesting_flags() -> None:
    flags = {flag for _, test in ED25519 for flag in test["flags"]}
    assert {"SignatureMalleability", "InvalidEncoding", "TruncatedSignature", "SignatureWithGarbage"} <= flags
    assert sum(test["result"] == "invalid" for _, test in ED25519) > 50


@pytest.mark.parametrize(("group", "test"), X25519, ids=[f"tc{t['tcId']}" for _, t in X25519])
def test_x25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    assert group["curve"] == "curve25519"
    public, private = bytes.fromhex(test["public"]), bytes.fromhex(test["private"])
    shared = bytes.fromhex(test["shared"])
    assert test["result"] in ("valid", "acceptable")
    private_key = _suites.load_recipient_private(1, private)

    if shared == bytes(32):
        # A low-order point: DH gives the all-zero secret whatever the private key.
        assert "ZeroSharedSecret" in test["flags"]
        with pytest.raises(ValueError, match="low-order"):
            _suites.load_recipient_public(1, public)
        with pytest.raises(ValueError):
            _suites.check_recipient_public(1, public)
        with pytest.raises(KeysetError, match="not a valid x25519 key"):
            _recipient_keyset(public)
        return

    public_key = _suites.load_recipient_public(1, public)
    _suites.check_recipient_public(1, public)
    assert private_key.exchange(public_key) == shared
    keyset = _recipient_keyset(public)
    assert keyset.primary().public_key().public_bytes_raw() == public_key.public_bytes_raw()
    # The vector's private key, as a keyset's own key pair (its public half derived).
    own_public = _suites.recipient_public_from_private(1, private)
    own = _recipient_keyset(own_public, private)
    assert own.primary().private_key().exchange(keyset.primary().public_key()) == shared


def test_x25519_covers_low_order_points() -> None:
    zero = [test for _, test in X25519 if test["shared"] == "00" * 32]
    assert len(zero) >= 30
    assert all("LowOrderPublic" in test["flags"] or "ZeroSharedSecret" in test["flags"] for test in zero)
