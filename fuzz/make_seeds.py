"""Write the fuzz keys and seed corpora (run once, then commit).

    python fuzz/make_seeds.py [--force]

Seeds are small valid inputs for each target, made with the keys in ``keys/`` (test-only
keys; the envelope seeds only open with them, so both are replaced together).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys

import msgpack
from _fuzzing import CORPUS, KEYS, NOW, SUBJECT

from isolation.transport import CallableRef, Keyset, Subject, _b64, _codec, envelope
from isolation.transport.payload import Payload


def payload() -> Payload:
    dag_id, task_id, run_id, map_index, try_number = SUBJECT
    return Payload.model_validate(
        {
            "operator": {
                "import_path": "pkg.mod.Operator",
                "kwargs": {
                    "f": CallableRef("pkg.mod:func"),
                    "when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                    "day": dt.date(2026, 1, 1),
                    "wait": dt.timedelta(seconds=90),
                    "raw": b"\x00\x01",
                    "items": [1, -1, 2**40, 1.5, None, True, "x"],
                },
            },
            "context": {
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id,
                "map_index": map_index,
                "try_number": try_number,
                "logical_date": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                "params": {"p": 1},
            },
            "connections": {"db": {"conn_type": "postgres", "host": "h", "password": "pw", "port": 5432}},
            "variables": {"v": "value"},
            "xcom_inputs": [{"task_id": "up", "value": {"k": [1, 2]}}],
        }
    )


def seeds(signer: Keyset, recipients: dict[int, Keyset]) -> dict[str, dict[str, bytes]]:
    wire = _codec.pack(payload().to_wire())
    subject = Subject(*SUBJECT)  # type: ignore[arg-type]
    sealed = {
        suite: envelope.seal_bytes(wire, signer=signer, recipient=keyset.public(), subject=subject, now=NOW)
        for suite, keyset in recipients.items()
    }
    header = sealed[1][7 : 7 + int.from_bytes(sealed[1][5:7], "big")]
    suite_bit = {1: 0, 2: 4}
    open_envelope = {}
    for suite, data in sealed.items():
        open_envelope[f"text-suite{suite}"] = bytes([0 | suite_bit[suite]]) + envelope.to_text(data).encode()
        open_envelope[f"binary-suite{suite}"] = bytes([1 | suite_bit[suite]]) + data
    open_envelope["plaintext"] = b"\x02" + wire
    open_envelope["header"] = b"\x03" + header
    return {
        "open_envelope": open_envelope,
        "load_keyset": {
            "signer-private": signer.to_json().encode(),
            "signer-public": signer.public().to_json().encode(),
            "recipient-suite1-private": recipients[1].to_json().encode(),
            "recipient-suite1-public": recipients[1].public().to_json().encode(),
            "recipient-suite2-public": recipients[2].public().to_json().encode(),
        },
        "codec_roundtrip": {
            "codec-payload": b"\x00" + wire,
            "codec-values": b"\x00" + _codec.pack([{"a": b"b"}, -(2**63), 2**64 - 1, 0.5, "\u00e9", []]),
            "header": b"\x01" + header,
            "header-suite2": b"\x01" + msgpack.packb([2, *msgpack.unpackb(header)[1:]], use_bin_type=True),
            "base64url": b"\x02" + _b64.encode(bytes(range(40))).encode(),
            "payload": b"\x03" + wire,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace the committed keys and seeds")
    args = parser.parse_args(argv)
    if KEYS.exists() and not args.force:
        print("fuzz/keys exists; pass --force to replace the keys and every seed", file=sys.stderr)
        return 1
    signer = Keyset.generate_signer(now=NOW - 3600)
    recipients = {suite: Keyset.generate_recipient(f"fuzz-s{suite}", suite=suite, now=NOW - 3600) for suite in (1, 2)}
    KEYS.mkdir(exist_ok=True)
    signer.save(KEYS / "signer.json")
    for suite, keyset in recipients.items():
        keyset.save(KEYS / f"recipient-s{suite}.json")
    for target, files in seeds(signer, recipients).items():
        shutil.rmtree(CORPUS / target, ignore_errors=True)
        (CORPUS / target).mkdir(parents=True)
        for name, content in files.items():
            (CORPUS / target / name).write_bytes(content)
    print(f"wrote keys and seeds under {CORPUS.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
