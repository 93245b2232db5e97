"""Write the golden envelopes under tests/vectors/envelopes/ (run once, then commit).

    python tests/vectors/make_golden.py [--force]

Each case is an envelope text file plus an entry in ``manifest.json`` saying how to
open it (keyset files, clock, options) and what must happen: ``"expect": "success"``
with the payload as JSON-safe data, or ``"expect": "<reject reason>"``. The keys are
generated afresh, so regenerating replaces every file; the committed files are the
vectors, and every future version must open them exactly as the manifest says.

JSON-safe payload data: JSON values as they are, and one-key objects for the codec's
other types: ``{"$bytes": base64url}``, ``{"$datetime": isoformat}``,
``{"$date": isoformat}``, ``{"$timedelta": [days, seconds, microseconds]}``,
``{"$callable": "module:qualname"}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack

from isolation.transport import CallableRef, Keyset, Subject, _b64, _codec, envelope
from isolation.transport._suites import SUITES
from isolation.transport.payload import Payload

HERE = Path(__file__).resolve().parent / "envelopes"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: every envelope is issued then
LIFETIME = 3600
OPEN_AT = NOW + 600


def tagged(value: Any) -> Any:
    """Codec value -> JSON-safe data (see the module docstring)."""
    if isinstance(value, bytes):
        return {"$bytes": _b64.encode(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, CallableRef):
        return {"$callable": value.path}
    if isinstance(value, (list, tuple)):
        return [tagged(v) for v in value]
    if isinstance(value, dict):
        assert not any(k.startswith("$") for k in value), "golden payload keys must not start with $"
        return {k: tagged(v) for k, v in value.items()}
    assert value is None or isinstance(value, (bool, int, float, str))
    return value


def full_payload(task_id: str) -> Payload:
    """A payload using every model and every codec type."""
    utc = dt.UTC
    return Payload.model_validate(
        {
            "operator": {
                "import_path": "airflow.providers.standard.operators.python.PythonOperator",
                "kwargs": {
                    "python_callable": CallableRef("etl.jobs:load_orders"),
                    "op_args": [1, -2, 2**63, 3.5, True, None, "text \u00e9\u4e2d", b"\x00\xffbytes"],
                    "op_kwargs": {
                        "since": dt.datetime(2025, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                        "day": dt.date(2025, 12, 31),
                        "window": dt.timedelta(days=-1, seconds=3600, microseconds=5),
                        "nested": {"a": [{"b": []}, {}], "empty": ""},
                        "naive": dt.datetime(2025, 1, 2, 3, 4, 5, 6),
                    },
                },
            },
            "context": {
                "dag_id": "orders",
                "task_id": task_id,
                "run_id": "scheduled__2025-12-31T00:00:00+00:00",
                "map_index": 3,
                "try_number": 2,
                "max_tries": 4,
                "logical_date": dt.datetime(2025, 12, 31, tzinfo=utc),
                "data_interval_start": dt.datetime(2025, 12, 30, tzinfo=utc),
                "data_interval_end": dt.datetime(2025, 12, 31, tzinfo=utc),
                "start_date": dt.datetime(2025, 12, 31, 0, 5, 1, 250000, tzinfo=utc),
                "run_type": "scheduled",
                "params": {"limit": 100, "dry_run": False},
                "dag_run_conf": {"source": "s3://bucket/key"},
                "owner": "data-eng",
            },
            "connections": {
                "warehouse": {
                    "conn_type": "postgres",
                    "description": "the warehouse",
                    "host": "db.internal",
                    "login": "etl",
                    "password": "golden-password",
                    "schema": "orders",
                    "port": 5432,
                    "extra": '{"sslmode": "require"}',
                },
                "api": {"conn_type": "http", "host": "https://api.example.com"},
            },
            "variables": {"region": "eu-west-1", "api_key": "golden-variable"},
            "xcom_inputs": [
                {"task_id": "extract", "value": {"rows": 42, "at": dt.datetime(2025, 12, 31, 1, tzinfo=utc)}},
                {"task_id": "extract", "key": "path", "map_index": 3, "dag_id": "orders", "run_id": "r", "value": "p"},
            ],
            "options": {"log_level": "DEBUG", "result_path": "/airflow/xcom/return.json", "render_templates": False},
        }
    )


def minimal_payload() -> Payload:
    return Payload.model_validate(
        {
            "operator": {"import_path": "pkg.mod.Op"},
            "context": {"dag_id": "d", "task_id": "minimal", "run_id": "r"},
        }
    )


def subject_of(payload: Payload) -> Subject:
    c = payload.context
    return Subject(c.dag_id, c.task_id, c.run_id, c.map_index, c.try_number)


def envelope_id(name: str) -> bytes:
    return hashlib.sha256(b"golden:" + name.encode()).digest()[:16]


def split(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    (length,) = struct.unpack(">H", data[5:7])
    header = data[7 : 7 + length]
    enc_length = SUITES[msgpack.unpackb(header)[0]].enc_length
    body = data[7 + length :]
    return header, body[:enc_length], body[enc_length:-64], body[-64:]


def assemble(header: bytes, enc: bytes, ciphertext: bytes, signer: Keyset) -> bytes:
    signature = signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
    return b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, enc, ciphertext, signature))


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


class Golden:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cases: list[dict[str, Any]] = []

    def keyset(self, name: str, keyset: Keyset) -> str:
        path = f"keys/{name}.json"
        self.files[path] = keyset.to_json().encode()
        return path

    def case(
        self,
        name: str,
        suite: int,
        text: str | bytes,
        expect: str,
        *,
        note: str,
        signers: list[str],
        recipient: str,
        payload: Payload | None = None,
        now: int = OPEN_AT,
        **options: Any,
    ) -> None:
        content = text.encode() if isinstance(text, str) else text
        # Cases that only open the same envelope differently share its file.
        path = next((p for p, c in self.files.items() if c == content), f"suite{suite}/{name}.txt")
        self.files[path] = content
        entry: dict[str, Any] = {
            "name": f"suite{suite}/{name}",
            "suite": suite,
            "file": path,
            "note": note,
            "open": {"signers": signers, "recipient": recipient, "now": now, **options},
            "expect": expect,
        }
        if expect == "success":
            assert payload is not None
            entry["payload"] = tagged(payload.to_wire())
        self.cases.append(entry)


def padded(text: str) -> str:
    """Envelope text with base64 padding (one '=' even where none would be due)."""
    return text + "=" * ((-len(text) % 4) or 1)


class Env:
    """One environment's recipient keyset, rotated once, and the sealing helpers."""

    def __init__(self, g: Golden, suite: int, signer: Keyset) -> None:
        self.suite = suite
        self.signer = signer
        name = f"golden-s{suite}"
        # Key A was primary until an hour ago; key B is primary now.
        self.keyset_a = Keyset.generate_recipient(name, suite=suite, now=NOW - 86400)
        rotated, key_b = self.keyset_a.add(now=NOW - 7200)
        self.keyset = rotated.promote(key_b.kid, now=NOW - 3600)
        self.file = g.keyset(f"recipient-s{suite}", self.keyset)
        self.stranger = Keyset.generate_recipient(name, suite=suite, now=NOW)

    def seal(
        self,
        payload: Payload,
        name: str,
        *,
        signer: Keyset | None = None,
        recipient: Keyset | None = None,
        schema: int = 1,
        subject: Subject | None = None,
        plaintext: bytes | None = None,
    ) -> bytes:
        return envelope.seal_bytes(
            _codec.pack(payload.to_wire()) if plaintext is None else plaintext,
            signer=signer or self.signer,
            recipient=(recipient or self.keyset).public(),
            subject=subject or subject_of(payload),
            payload_schema=schema,
            lifetime=LIFETIME,
            now=NOW,
            envelope_id=envelope_id(f"s{self.suite}/{name}"),
        )

    def reseal(self, header: bytes, plaintext: bytes, to: Keyset | None = None) -> bytes:
        """Correctly encrypted (to ``to``, default this environment) and signed around any header."""
        key = (to or self.keyset).primary()
        hpke = SUITES[key.algorithm.suite]
        enc, ciphertext = hpke.encrypt(plaintext, key.public_key(), envelope.hpke_info(header))
        return assemble(header, enc, ciphertext, self.signer)


def build() -> Golden:
    g = Golden()
    untrusted = Keyset.generate_signer("other-host", now=NOW - 86400)
    # The host rotated its signer once as well: key A retiring, key B primary.
    signer_a = Keyset.generate_signer(now=NOW - 86400)
    signer, signer_b = signer_a.add(now=NOW - 7200)
    signer = signer.promote(signer_b.kid, now=NOW - 3600)
    signers = [g.keyset("signer.public", signer.public())]
    revoked_signer = signer.revoke(signer_a.primary().kid, now=NOW, force=True)
    revoked_signers = [g.keyset("signer-a-revoked.public", revoked_signer.public())]

    for suite in (1, 2):
        env = Env(g, suite, signer)
        kw: dict[str, Any] = {"signers": signers, "recipient": env.file}

        def case(name: str, data: bytes | str, expect: str, note: str, **options: Any) -> None:
            text = envelope.to_text(data) if isinstance(data, bytes) else data
            g.case(name, suite, text, expect, note=note, **{**kw, **options})  # noqa: B023

        full = full_payload(f"full_s{suite}")
        minimal = minimal_payload()
        good = env.seal(full, "success-full")
        text = envelope.to_text(good)
        header = split(good)[0]
        fields = msgpack.unpackb(header)
        plaintext = _codec.pack(full.to_wire())

        # -- success
        case("success-full", good, "success", "every payload field and codec type", payload=full)
        if suite == 1:
            old = env.seal(minimal, "success-minimal", signer=signer_a, recipient=env.keyset_a)
            case("success-retiring-keys", old, "success", "sealed under the now retiring keys A", payload=minimal)
        else:
            case("success-minimal", env.seal(minimal, "success-minimal"), "success", "defaults only", payload=minimal)
        case(
            "success-at-expiry-plus-skew",
            good,
            "success",
            "the last second of validity, with the default 60 s skew",
            payload=full,
            now=NOW + LIFETIME + envelope.DEFAULT_SKEW,
        )

        # -- format
        case("bad-magic", b"ISOX" + good[4:], "bad-format", "magic is not ISOL")
        case("truncated-header", good[:20], "bad-format", "cut inside the header")
        case("padded-base64", padded(text), "bad-format", "base64 padding is not canonical")
        case("trailing-newline", text + "\n", "bad-format", "a newline after the text")
        case("standard-alphabet", text.replace("-", "+").replace("_", "/") + "+", "bad-format", "'+' and '/'")
        wide = b"\x99\xcc" + bytes([fields[0]]) + header[2:]
        assert msgpack.unpackb(wide) == fields
        case("non-canonical-header", env.reseal(wide, plaintext), "bad-format", "suite as uint8, correctly signed")
        too_long = msgpack.packb([*fields[:6], fields[5] + envelope.MAX_LIFETIME + 1, *fields[7:]])
        case("lifetime-too-long", env.reseal(too_long, plaintext), "bad-format", "lifetime over 7 days, signed")

        # -- versions
        case("version-2", good[:4] + b"\x02" + good[5:], "unsupported-version", "envelope version byte 2")
        suite_9 = msgpack.packb([9, *fields[1:]], use_bin_type=True)
        case("suite-9", env.reseal(suite_9, plaintext), "unsupported-version", "header names suite 9, signed")
        case(
            "payload-schema-2",
            env.seal(full, "schema-2", schema=2),
            "bad-payload",
            "a schema 1 body under a payload schema 2 header: schema 2 has more keys (10.5)",
        )

        # -- size
        case("too-large", good, "too-large", "the reader allows 512 characters", max_text_size=512)

        # -- keys
        case("untrusted-signer", env.seal(full, "untrusted", signer=untrusted), "unknown-key", "untrusted host")
        stranger = env.seal(full, "stranger", recipient=env.stranger)
        case("unknown-recipient-key", stranger, "unknown-key", "sealed to a key the environment lacks")
        if suite == 1:
            revoked = env.seal(minimal, "revoked-signer", signer=signer_a)
            case("revoked-signer", revoked, "revoked-key", "signer key A, revoked since", signers=revoked_signers)
            keyset = env.keyset.revoke(env.keyset_a.primary().kid, now=NOW, force=True)
            revoked = env.seal(minimal, "revoked-recipient", recipient=env.keyset_a)
            case(
                "revoked-recipient",
                revoked,
                "revoked-key",
                "recipient key A, revoked since",
                recipient=g.keyset("recipient-s1-a-revoked", keyset),
            )
        else:
            claims_1 = msgpack.packb([1, *fields[1:]], use_bin_type=True)
            x25519_only = Keyset.generate_recipient("golden-s2", suite=1, now=NOW)
            forged = env.reseal(claims_1, plaintext, to=x25519_only)
            case("suite-1-header", forged, "unknown-key", "suite 1 HPKE under a suite 2 key id, signed")

        # -- signature
        case("truncated", good[:-1], "bad-signature", "one byte short: the signature moves")
        case("appended-byte", good + b"\x00", "bad-signature", "one byte appended")
        case("flipped-ciphertext", flip(good, len(good) - 80), "bad-signature", "a ciphertext bit flipped")
        case("flipped-signature", flip(good, len(good) - 1), "bad-signature", "a signature bit flipped")
        donor = split(env.seal(minimal, "donor"))[0]
        spliced = envelope.PREFIX + struct.pack(">H", len(donor)) + donor + good[7 + len(header) :]
        case("spliced-header", spliced, "bad-signature", "the header of another valid envelope")

        # -- clock, audience, subject
        late = NOW + LIFETIME + envelope.DEFAULT_SKEW + 1
        case("expired", good, "expired", "one second past expiry plus skew", now=late)
        early = NOW - envelope.DEFAULT_SKEW - 1
        case("not-yet-valid", good, "not-yet-valid", "issued more than the skew ahead", now=early)
        elsewhere = Keyset(env.keyset.purpose, "elsewhere", env.keyset.keys)
        case("wrong-audience", env.seal(full, "elsewhere", recipient=elsewhere), "wrong-audience", "for 'elsewhere'")
        asked = ["orders", "another_task", full.context.run_id, 3, 2]
        case("wrong-subject-asked", good, "wrong-subject", "the reader expects another task", subject=asked)
        disagree = env.seal(full, "disagree", subject=Subject("orders", f"full_s{suite}", "another-run", 3, 2))
        case("context-disagrees", disagree, "wrong-subject", "payload context and signed header differ")

        # -- decryption and payload
        enc, ciphertext = SUITES[suite].encrypt(
            plaintext, env.stranger.primary().public_key(), envelope.hpke_info(header)
        )
        forged = assemble(header, enc, ciphertext, signer)
        case("encrypted-to-another-key", forged, "decrypt-failed", "HPKE to a stranger under this key id, signed")
        unknown_field = _codec.pack({**full.to_wire(), "surprise": 1})
        case("payload-unknown-field", env.seal(full, "unknown", plaintext=unknown_field), "bad-payload", "extra field")
        wider = env.seal(full, "wider", plaintext=b"\x81\xa1a\xcd\x00\x01")
        case("payload-non-canonical", wider, "bad-payload", "msgpack int wider than needed")
    return g


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace the committed golden files")
    args = parser.parse_args(argv)
    if (HERE / "manifest.json").exists() and not args.force:
        print(f"{HERE / 'manifest.json'} exists; the committed vectors must not change (use --force)", file=sys.stderr)
        return 1
    golden = build()
    for path, content in golden.files.items():
        target = HERE / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    manifest = {
        "format": "isolation-golden/v1",
        "description": "Golden envelope v1 vectors; written by tests/vectors/make_golden.py. Keys are test-only.",
        "payload_encoding": "JSON, plus one-key objects $bytes (base64url), $datetime, $date (isoformat), "
        "$timedelta ([days, seconds, microseconds]) and $callable (module:qualname)",
        "cases": golden.cases,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(golden.cases)} cases and {len(golden.files)} files under {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
