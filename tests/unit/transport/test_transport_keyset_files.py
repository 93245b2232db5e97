"""Keyset files: public and private forms, atomic 0600 writes, and every malformed input."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from transport_support import NOW

from isolation.errors import KeysetError
from isolation.transport import Algorithm, Keyset, KeyStatus, Purpose
from isolation.transport import keyset as keyset_module
from isolation.transport._b64 import encode as b64

# Order-4 point of Curve25519 (from the Wycheproof X25519 vectors): DH with it is all zeros.
LOW_ORDER_X25519 = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def _private_keysets() -> list[Keyset]:
    signer = Keyset.generate_signer(now=NOW)
    signer, _ = signer.add(now=NOW + 1)
    recipient = Keyset.generate_recipient("env-a", now=NOW)
    recipient, _ = recipient.add(now=NOW + 1)
    return [signer, recipient, Keyset.generate_recipient("env-pq", suite=2, now=NOW)]


KEYSETS = _private_keysets()


def _private_strings(keyset: Keyset) -> list[str]:
    return [b64(key.private) for key in keyset if key.private]


@pytest.mark.parametrize("keyset", KEYSETS, ids=["signer", "recipient", "recipient-pq"])
def test_json_round_trip_and_public_form(keyset: Keyset) -> None:
    assert Keyset.from_json(keyset.to_json()) == keyset
    assert keyset.has_private
    public = keyset.public()
    text = public.to_json()
    assert '"private"' not in text
    for secret in _private_strings(keyset):
        assert secret not in text
    assert all("private" not in key for key in json.loads(text)["keys"])
    loaded = Keyset.from_json(text)
    assert loaded == public
    assert not loaded.has_private
    assert [k.public for k in loaded] == [k.public for k in keyset]
    assert loaded.public() == loaded


@pytest.mark.parametrize("keyset", KEYSETS, ids=["signer", "recipient", "recipient-pq"])
def test_save_modes_and_load(tmp_path: Path, keyset: Keyset) -> None:
    with _umask(0):
        private = keyset.save(tmp_path / "private.json")
        public = keyset.public().save(tmp_path / "public.json")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert Keyset.load(private) == keyset
    assert Keyset.load(str(public)) == keyset.public()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.json", "public.json"]


def test_save_replaces_atomically(tmp_path: Path) -> None:
    old, new = KEYSETS[1].public(), KEYSETS[1]
    target = old.save(tmp_path / "keys.json")
    before = target.stat().st_ino
    with open(target, encoding="utf-8") as reader:
        new.save(target)
        # A reader that opened the old file still sees it whole: the new one was renamed in.
        assert Keyset.from_json(reader.read()) == old
    assert target.stat().st_ino != before
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert Keyset.load(target) == new
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_save_never_writes_through_a_planted_temporary_file(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    decoy = elsewhere / "stolen.json"
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    # Someone with write access to the directory guesses a temporary name.
    for name in (f".env.json.{os.getpid()}.tmp", ".env.json.tmp"):
        (keys_dir / name).symlink_to(decoy)
    KEYSETS[1].save(keys_dir / "env.json")
    assert not decoy.exists()
    assert Keyset.load(keys_dir / "env.json") == KEYSETS[1]


def test_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "is-a-directory"
    target.mkdir()
    with pytest.raises(KeysetError, match="cannot write keyset") as info:
        KEYSETS[0].save(target)
    assert "is-a-directory" in str(info.value)
    assert "hint:" in info.value.diagnostics()
    assert [p.name for p in tmp_path.iterdir()] == ["is-a-directory"]
    with pytest.raises(KeysetError, match="cannot write keyset") as info:
        KEYSETS[0].save(tmp_path / "missing" / "keys.json")
    assert "missing" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_failed_write_after_the_temporary_file_is_a_keyset_error(tmp_path: Path, monkeypatch: Any) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(keyset_module.os, "replace", refuse)
    with pytest.raises(KeysetError, match=r"cannot write keyset.*Permission denied"):
        KEYSETS[0].save(tmp_path / "keys.json")
    assert list(tmp_path.iterdir()) == []


def test_load_errors_name_the_file_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeysetError, match="cannot read keyset") as info:
        Keyset.load(tmp_path / "absent.json")
    assert "absent.json" in str(info.value)
    assert "hint:" in info.value.diagnostics()
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(KeysetError, match=r"broken\.json: keyset is not valid JSON"):
        Keyset.load(broken)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- malformed documents


def _doc(index: int = 1) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(KEYSETS[index].to_json())
    return doc


def _edit(change: Callable[[dict[str, Any]], object], index: int = 1) -> str:
    doc = _doc(index)
    change(doc)
    return json.dumps(doc)


def _key(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    key: dict[str, Any] = doc["keys"][i]
    return key


def _duplicate(text: str, field: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith(f'"{field}"'))
    return text.replace(line, line.rstrip(",") + ",\n" + line, 1)


def _other_recipient_key() -> dict[str, Any]:
    key: dict[str, Any] = json.loads(Keyset.generate_recipient("x", now=NOW).to_json())["keys"][0]
    return key


def _low_order(doc: dict[str, Any], private: bool) -> None:
    key = _key(doc)
    public = LOW_ORDER_X25519
    key["public"] = b64(public)
    key["kid"] = keyset_module.key_id(Algorithm.X25519, public)
    if not private:
        del key["private"]
    key["status"] = "primary"
    del doc["keys"][1:]


def _low_order_pq(doc: dict[str, Any]) -> None:
    key = _key(doc)
    public = keyset_module._b64.decode(key["public"])[:-32] + LOW_ORDER_X25519
    key["public"] = b64(public)
    key["kid"] = keyset_module.key_id(Algorithm.MLKEM768_X25519, public)
    del key["private"]


def _set(target: dict[str, Any], name: str, value: object) -> None:
    target[name] = value


_TEXT = KEYSETS[1].to_json()

MALFORMED: dict[str, tuple[str | bytes, str]] = {
    "not json": ("{", r"not valid JSON"),
    "empty": ("", r"not valid JSON"),
    "not utf-8": (b'{"format": "\xff"}', r"not valid JSON"),
    "nan": (_TEXT.replace('"overlap_seconds": 7200', '"overlap_seconds": NaN'), r"NaN is not allowed"),
    "deep": ("[" * 100_000 + "]" * 100_000, r"nested too deeply"),
    "too large": (" " * (keyset_module.MAX_KEYSET_BYTES + 1), r"larger than"),
    "array": ("[]", r"keyset must be an object with the fields"),
    "duplicate top-level field": (_duplicate(_TEXT, "name"), r"duplicate field 'name'"),
    "duplicate key field": (_duplicate(_TEXT, "kid"), r"duplicate field 'kid'"),
    "unknown field": (_edit(lambda d: _set(d, "comment", "hi")), r"unknown field.*'comment'"),
    "missing field": (_edit(lambda d: d.pop("overlap_seconds")), r"missing field.*'overlap_seconds'"),
    "wrong format": (_edit(lambda d: _set(d, "format", "isolation-keyset/v2")), r"unsupported keyset format"),
    "wrong purpose": (_edit(lambda d: _set(d, "purpose", "both")), r"purpose must be"),
    "purpose not a string": (_edit(lambda d: _set(d, "purpose", ["signer"])), r"purpose must be"),
    "no keys": (_edit(lambda d: _set(d, "keys", [])), r"1 to 64 keys"),
    "too many keys": (_edit(lambda d: _set(d, "keys", d["keys"] * 40)), r"1 to 64 keys"),
    "keys not a list": (_edit(lambda d: _set(d, "keys", {})), r"1 to 64 keys"),
    "overlap negative": (_edit(lambda d: _set(d, "overlap_seconds", -1)), r"overlap_seconds"),
    "overlap bool": (_edit(lambda d: _set(d, "overlap_seconds", True)), r"overlap_seconds"),
    "overlap float": (_edit(lambda d: _set(d, "overlap_seconds", 60.0)), r"overlap_seconds"),
    "name not a string": (_edit(lambda d: _set(d, "name", 7)), r"name must be a string"),
    # A private key pasted where a name belongs is never quoted back.
    "private key as the keyset name": (
        _edit(lambda d: _set(d, "name", _key(d)["private"])),
        r"invalid keyset name \(43 characters, not shown\)",
    ),
    "private key as a field name": (
        _edit(lambda d: _set(d, _key(d)["private"], 1)),
        r"unknown fields: \(a name of 43 characters, not shown\)",
    ),
    "private key as a key's field name": (
        _edit(lambda d: _set(_key(d), _key(d)["private"], 1)),
        r"unknown fields: \(a name of 43 characters, not shown\)",
    ),
    "name invalid": (_edit(lambda d: _set(d, "name", "Env A")), r"invalid keyset name"),
    "key not an object": (_edit(lambda d: _set(d, "keys", ["k"])), r"key #0 must be an object with the fields"),
    "key unknown field": (_edit(lambda d: _set(_key(d), "note", "x")), r"key #0.*unknown field.*'note'"),
    "key missing field": (_edit(lambda d: _key(d).pop("created_at")), r"key #0.*missing field.*'created_at'"),
    "unknown algorithm": (_edit(lambda d: _set(_key(d), "algorithm", "rsa")), r"unknown algorithm or status"),
    "unknown status": (_edit(lambda d: _set(_key(d), "status", "active")), r"unknown algorithm or status"),
    "negative timestamp": (_edit(lambda d: _set(_key(d), "created_at", -1)), r"created_at must be"),
    "bool timestamp": (_edit(lambda d: _set(_key(d), "status_changed_at", False)), r"status_changed_at must be"),
    "public not a string": (_edit(lambda d: _set(_key(d), "public", 1)), r"must be base64url strings"),
    "private not a string": (_edit(lambda d: _set(_key(d), "private", None)), r"must be base64url strings"),
    "padded base64": (_edit(lambda d: _set(_key(d), "public", _key(d)["public"] + "=")), r"not canonical base64url"),
    "standard alphabet": (
        _edit(lambda d: _set(_key(d), "public", _key(d)["public"].replace("-", "+").replace("_", "/") + "+")),
        r"not canonical base64url",
    ),
    "whitespace in base64": (
        _edit(lambda d: _set(_key(d), "private", " " + _key(d)["private"])),
        r"not canonical base64url",
    ),
    "base64 trailing bits": (
        _edit(lambda d: _set(_key(d), "public", _key(d)["public"][:-1] + "B")),
        r"not canonical base64url|key id does not match",
    ),
    "kid of another key": (_edit(lambda d: _set(_key(d), "kid", _key(d, 1)["kid"])), r"key id does not match"),
    "kid not hex": (_edit(lambda d: _set(_key(d), "kid", "z" * 32)), r"key #0: key id must be 32 lowercase hex"),
    "kid upper case": (
        _edit(lambda d: _set(_key(d), "kid", _key(d)["kid"].upper())),
        r"key #0: key id must be 32 lowercase hex",
    ),
    "kid not a string": (_edit(lambda d: _set(_key(d), "kid", 12)), r"key #0: key id must be 32 lowercase hex"),
    "kid a 32-digit number": (_edit(lambda d: _set(_key(d), "kid", 10**31)), r"key #0: key id .* JSON string"),
    "overlap over 366 days": (
        _edit(lambda d: _set(d, "overlap_seconds", keyset_module.MAX_OVERLAP_SECONDS + 1)),
        r"overlap_seconds",
    ),
    "utf-16": (_TEXT.encode("utf-16"), r"not UTF-8 text"),
    "utf-16-le without bom": (_TEXT.encode("utf-16-le"), r"not valid JSON"),
    "utf-32": (_TEXT.encode("utf-32"), r"not UTF-8 text"),
    "utf-8 byte order mark": (_TEXT.encode("utf-8-sig"), r"not valid JSON"),
    "lone surrogate in text": (_TEXT.replace('"env-a"', '"env-a\ud800"'), r"not UTF-8 text"),
    "text over the limit in utf-8 bytes": (
        " " * (keyset_module.MAX_KEYSET_BYTES // 2) + "\u00e9" * (keyset_module.MAX_KEYSET_BYTES // 4 + 1),
        r"larger than",
    ),
    "private of another key": (
        _edit(lambda d: _set(_key(d), "private", _key(d, 1)["private"])),
        r"private part does not match",
    ),
    "two primaries": (_edit(lambda d: _set(_key(d, 1), "status", "primary")), r"more than one primary"),
    "same key twice": (_edit(lambda d: _set(d, "keys", [_key(d), _key(d)])), r"appears twice"),
    "mixed private and public": (_edit(lambda d: _key(d, 1).pop("private")), r"mixes keys"),
    "recipient key in signer keyset": (
        _edit(lambda d: _set(d, "keys", [_other_recipient_key()]), index=0),
        r"does not fit a signer keyset",
    ),
    "signer key in recipient keyset": (
        _edit(lambda d: _set(d, "keys", [json.loads(KEYSETS[0].to_json())["keys"][0]])),
        r"does not fit a recipient keyset",
    ),
    "public key too short": (
        _edit(lambda d: _set(_key(d), "public", b64(b"\x09" * 31))),
        r"not a valid x25519 key",
    ),
    "private key too long": (
        _edit(lambda d: _set(_key(d), "private", b64(b"\x01" * 33))),
        r"not a valid x25519 key",
    ),
    "signer private key too short": (
        _edit(lambda d: _set(_key(d), "private", b64(b"\x01" * 31)), index=0),
        r"not a valid ed25519 key",
    ),
    "low-order x25519 public key": (_edit(lambda d: _low_order(d, private=False)), r"not a valid x25519 key"),
    "low-order x25519 public key with private": (
        _edit(lambda d: _low_order(d, private=True)),
        r"not a valid x25519 key|private part does not match",
    ),
    "low-order x25519 part of a hybrid key": (
        _edit(_low_order_pq, index=2),
        r"not a valid mlkem768-x25519 key",
    ),
    "ml-kem public key out of range": (
        _edit(lambda d: _set(_key(d), "public", b64(b"\xff" * 1184 + b"\x09" + bytes(31))), index=2),
        r"not a valid mlkem768-x25519 key|key id does not match",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_keysets_are_refused_with_a_useful_message(case: str) -> None:
    text, pattern = MALFORMED[case]
    with pytest.raises(KeysetError, match=pattern) as info:
        Keyset.from_json(text)
    assert type(info.value) is KeysetError
    message = info.value.diagnostics()
    for keyset in KEYSETS:
        for secret in _private_strings(keyset):
            assert secret not in message
            assert secret[:16] not in message


def test_malformed_file_errors_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    path.write_text(MALFORMED["two primaries"][0], encoding="utf-8")
    with pytest.raises(KeysetError, match=r"env\.json: keyset has more than one primary key"):
        Keyset.load(path)


def test_low_order_points_never_become_recipient_keys() -> None:
    from isolation.transport import _suites

    with pytest.raises(ValueError):
        _suites.check_recipient_public(1, LOW_ORDER_X25519)
    with pytest.raises(ValueError):
        _suites.check_recipient_public(1, bytes(32))
    for public in (LOW_ORDER_X25519, bytes(32)):
        key = keyset_module.Key(
            keyset_module.key_id(Algorithm.X25519, public), Algorithm.X25519, KeyStatus.PRIMARY, public, None, 0, 0
        )
        with pytest.raises(KeysetError, match="not a valid x25519 key"):
            Keyset(Purpose.RECIPIENT, "env", (key,))


def test_generated_keys_are_accepted_by_their_own_checks() -> None:
    for suite in (1, 2):
        for _ in range(20):
            keyset = Keyset.generate_recipient("env", suite=suite, now=NOW)
            assert Keyset.from_json(keyset.public().to_json()).primary().public == keyset.primary().public


def test_unknown_suite_is_refused() -> None:
    with pytest.raises(KeysetError, match="unknown suite") as info:
        Keyset.generate_recipient("env", suite=3)
    assert "suite 1" in info.value.diagnostics()


# --------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("overlap", [-1, keyset_module.MAX_OVERLAP_SECONDS + 1, True, 60.0, "7200", None])
def test_overlap_is_validated_by_the_constructor_and_with_overlap(overlap: object) -> None:
    keyset = KEYSETS[1]
    with pytest.raises(KeysetError, match="overlap_seconds") as info:
        Keyset(keyset.purpose, keyset.name, keyset.keys, overlap)  # type: ignore[arg-type]
    assert "docs/keys.md" in info.value.diagnostics()
    with pytest.raises(KeysetError, match="overlap_seconds"):
        keyset.with_overlap(overlap)  # type: ignore[arg-type]
    for ok in (0, 61, keyset_module.MAX_OVERLAP_SECONDS):
        assert keyset.with_overlap(ok).overlap_seconds == ok


def test_purpose_must_be_a_purpose() -> None:
    keyset = KEYSETS[0]
    with pytest.raises(KeysetError, match="purpose"):
        Keyset("signer", keyset.name, keyset.keys)  # type: ignore[arg-type]


def test_a_numeric_key_id_is_refused_even_when_its_digits_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key id of 32 decimal digits happens (about 3 in 10 million keys); str() of a JSON
    # number would then have passed for the key id.
    digits = "1" * 32
    monkeypatch.setattr(keyset_module, "key_id", lambda algorithm, public: digits)
    doc = _doc(0)
    del doc["keys"][1:]
    _key(doc)["kid"] = digits
    assert Keyset.from_json(json.dumps(doc)).primary().kid == digits
    _key(doc)["kid"] = int(digits)
    with pytest.raises(KeysetError, match="JSON string"):
        Keyset.from_json(json.dumps(doc))


def test_utf_16_keysets_are_refused_although_json_would_read_them() -> None:
    data = _TEXT.encode("utf-16")
    assert json.loads(data)["name"] == "env-a"
    with pytest.raises(KeysetError, match="not UTF-8 text"):
        Keyset.from_json(data)
    assert Keyset.from_json(_TEXT.encode("utf-8")) == Keyset.from_json(_TEXT)


def test_size_limit_counts_utf8_bytes_of_text() -> None:
    limit = keyset_module.MAX_KEYSET_BYTES
    # Within the limit in characters, over it in bytes: refused for size, not parsed.
    text = " " * (limit - 11) + "\u00e9" * 10 + "{"
    assert len(text) <= limit < len(text.encode())
    with pytest.raises(KeysetError, match="larger than"):
        Keyset.from_json(text)
    with pytest.raises(KeysetError, match="larger than"):
        Keyset.from_json(text.encode())
    # Exactly at the limit in bytes: parsed (and refused as JSON, not for its size).
    at_limit = " " * (limit - 12) + "\u00e9" * 5 + "{"
    assert len(at_limit.encode()) == limit - 1
    with pytest.raises(KeysetError, match="not valid JSON"):
        Keyset.from_json(at_limit)


def test_find_uses_the_index_and_stays_exact() -> None:
    keyset = KEYSETS[1]
    for key in keyset:
        assert keyset.find(key.kid) is key
    assert keyset.find(keyset.keys[0].kid.upper()) is None
    assert keyset.find("") is None
    promoted = keyset.promote(keyset.keys[1].kid, now=NOW + 5)
    assert promoted.find(keyset.keys[1].kid).status is KeyStatus.PRIMARY  # type: ignore[union-attr]
    assert promoted.public().find(keyset.keys[1].kid).private is None  # type: ignore[union-attr]
    assert keyset.keys[0].kid_bytes == bytes.fromhex(keyset.keys[0].kid)
