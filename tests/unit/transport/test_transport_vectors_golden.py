"""Golden envelopes: every committed case opens (or is refused) exactly as its manifest says.

The files under tests/vectors/envelopes/ were written once by
tests/vectors/make_golden.py; see the README there.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from transport_support import rejected

from isolation.errors import RejectReason
from isolation.transport import CallableRef, Keyset, Subject, _b64, _codec, open_envelope

GOLDEN = Path(__file__).resolve().parents[2] / "vectors" / "envelopes"
MANIFEST: dict[str, Any] = json.loads((GOLDEN / "manifest.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = MANIFEST["cases"]


def untag(value: Any) -> Any:
    """JSON-safe payload data (the manifest's payload_encoding) -> codec values."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith("$"):
            ((tag, data),) = value.items()
            decoders = {
                "$bytes": _b64.decode,
                "$datetime": dt.datetime.fromisoformat,
                "$date": dt.date.fromisoformat,
                "$timedelta": lambda d: dt.timedelta(days=d[0], seconds=d[1], microseconds=d[2]),
                "$callable": CallableRef,
            }
            return decoders[tag](data)
        return {k: untag(v) for k, v in value.items()}
    return value


def _open(case: dict[str, Any], text: str | bytes) -> Any:
    options = case["open"]
    kwargs: dict[str, Any] = {
        "signers": [Keyset.load(GOLDEN / path) for path in options["signers"]],
        "recipient": Keyset.load(GOLDEN / options["recipient"]),
        "now": options["now"],
    }
    if "audience" in options:
        kwargs["audience"] = options["audience"]
    if "subject" in options:
        kwargs["subject"] = Subject(*options["subject"])
    if "max_text_size" in options:
        kwargs["max_text_size"] = options["max_text_size"]
    return open_envelope(text, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_case(case: dict[str, Any]) -> None:
    data = (GOLDEN / case["file"]).read_bytes()
    if case["expect"] == "success":
        expected = untag(case["payload"])
        for text in (data, data.decode("ascii")):
            opened = _open(case, text)
            assert opened.header.suite == case["suite"]
            assert opened.payload.to_wire() == expected
            assert _codec.pack(opened.payload.to_wire()) == _codec.pack(expected)
    else:
        reason = RejectReason(case["expect"])
        rejected(lambda: _open(case, data), reason)


def test_manifest_covers_every_reason_and_both_suites() -> None:
    expectations = {(case["suite"], case["expect"]) for case in CASES}
    assert {(1, "success"), (2, "success")} <= expectations
    assert {reason.value for reason in RejectReason} <= {expect for _, expect in expectations}
    for suite in (1, 2):
        suite_expects = {expect for s, expect in expectations if s == suite}
        assert {"bad-format", "bad-signature", "decrypt-failed", "unknown-key", "bad-payload"} <= suite_expects
    assert len({case["name"] for case in CASES}) == len(CASES)


def test_every_file_is_a_case_or_a_referenced_keyset() -> None:
    referenced = {case["file"] for case in CASES}
    for case in CASES:
        referenced |= {*case["open"]["signers"], case["open"]["recipient"]}
    present = {
        path.relative_to(GOLDEN).as_posix()
        for path in GOLDEN.rglob("*")
        if path.is_file() and path.name not in ("manifest.json", "README.md", ".gitattributes")
    }
    assert present == referenced


def test_public_keysets_hold_no_private_keys() -> None:
    for path in GOLDEN.glob("keys/*.public.json"):
        keyset = Keyset.load(path)
        assert not any(key.private for key in keyset)
        assert "private" not in path.read_text(encoding="utf-8")


def test_the_worked_example_of_the_spec_opens() -> None:
    spec = (Path(__file__).resolve().parents[3] / "docs" / "envelope.md").read_text(encoding="utf-8")
    example = spec[spec.index("## 18. Worked example") :]
    recipient_json, signer_json = re.findall(r"```json\n(.*?)```", example, re.S)[:2]
    (text,) = re.findall(r"```\n(SVNP.*?)```", example, re.S)
    opened = open_envelope(
        "".join(text.split()),
        signers=Keyset.from_json(signer_json),
        recipient=Keyset.from_json(recipient_json),
        now=1767225600,
    )
    assert opened.header.subject == Subject("example", "hello", "manual__1", -1, 1)
    assert opened.payload.operator.kwargs == {"bash_command": "echo hi"}
    assert opened.payload.variables == {"region": "eu"}
