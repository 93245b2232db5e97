"""Payload schema 2 (docs/envelope.md, section 10.5) next to schema 1: one encoding each.

Schema 2 adds the DAG's structure, more context and the XCom-pull policy. A reader
implements both; the header's payload schema decides which keys a payload must have,
and a payload with the keys of the other schema is ``bad-payload``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError
from transport_support import NOW, keys, rejected, same_payload, simple_payload, subject_of

from isolation.errors import RejectReason
from isolation.transport import _codec, envelope, open_envelope, seal_envelope
from isolation.transport.payload import SCHEMA_2_KEYS, SCHEMA_VERSION, Payload

R = RejectReason
UTC = dt.timezone.utc


def _shape() -> dict[str, Any]:
    return {
        "tasks": [
            {"task_id": "task", "downstream": ["g.a", "join"]},
            {"task_id": "g.a", "downstream": ["join"], "task_group": "g"},
            {"task_id": "join", "trigger_rule": "none_failed_min_one_success", "is_teardown": True},
        ],
        "task_groups": [{"group_id": "g"}],
        "timetable_type": "airflow.timetables.trigger.CronTriggerTimetable",
        "timetable": {"expression": "0 0 * * *", "timezone": "UTC", "interval": 0.0, "run_immediately": False},
    }


def _schema_2() -> Payload:
    wire = simple_payload().to_wire()
    wire["context"]["prev_start_date_success"] = dt.datetime(2026, 1, 1, 5, tzinfo=UTC)
    wire["dag"] = _shape()
    return Payload.model_validate(wire)


def _open_bytes(plaintext: bytes, schema: int) -> Any:
    k = keys()
    data = envelope.seal_bytes(
        plaintext,
        signer=k.signer,
        recipient=k.recipient.public(),
        subject=subject_of(simple_payload()),
        payload_schema=schema,
        now=NOW,
    )
    return open_envelope(envelope.to_text(data), signers=k.signer.public(), recipient=k.recipient, now=NOW)


def _seal_and_open(payload: Payload) -> Payload:
    k = keys()
    text = seal_envelope(payload, signer=k.signer, recipient=k.recipient.public(), now=NOW)
    opened = open_envelope(text, signers=k.signer.public(), recipient=k.recipient, now=NOW)
    assert opened.header.payload_schema == payload.schema_version
    return opened.payload


def test_the_host_writes_schema_2_and_it_round_trips() -> None:
    assert SCHEMA_VERSION == 2 and simple_payload().schema_version == 2
    sealed = _schema_2()
    opened = _seal_and_open(sealed)
    same_payload(opened, sealed)
    assert opened.dag is not None and [t.task_id for t in opened.dag.tasks] == ["task", "g.a", "join"]
    assert opened.options.strict_xcom_pull is True


def test_schema_2_wire_keys_come_last_in_each_map() -> None:
    wire = _schema_2().to_wire()
    assert list(wire)[-1] == "dag"
    assert list(wire["context"])[-len(SCHEMA_2_KEYS["context"]) :] == list(SCHEMA_2_KEYS["context"])
    assert list(wire["options"])[-1] == "strict_xcom_pull"


def test_a_schema_1_payload_still_opens_with_its_own_meaning() -> None:
    wire = simple_payload().to_wire()
    wire["schema_version"] = 1
    v1 = Payload.model_validate(
        {
            **{k: v for k, v in wire.items() if k != "dag"},
            "options": {k: v for k, v in wire["options"].items() if k != "strict_xcom_pull"},
        }
    )
    # Schema 1 knew no strict XCom pulls: an undeclared pull returned None there.
    assert v1.options.strict_xcom_pull is False and v1.dag is None
    encoded = v1.to_wire()
    assert "dag" not in encoded and "strict_xcom_pull" not in encoded["options"]
    assert not set(SCHEMA_2_KEYS["context"]) & set(encoded["context"])
    opened = _seal_and_open(v1)
    assert opened.schema_version == 1 and opened.options.strict_xcom_pull is False
    same_payload(opened, v1)


def test_schema_1_cannot_carry_schema_2_values() -> None:
    wire = _schema_2().to_wire()
    with pytest.raises(ValidationError, match="use schema version 2"):
        Payload.model_validate({**wire, "schema_version": 1})


@pytest.mark.parametrize(
    ("name", "schema", "edit"),
    [
        ("schema 2 header, no dag key", 2, lambda w: {k: v for k, v in w.items() if k != "dag"}),
        (
            "schema 2 header, no strict_xcom_pull",
            2,
            lambda w: {**w, "options": {k: v for k, v in w["options"].items() if k != "strict_xcom_pull"}},
        ),
        ("schema 1 header over a schema 2 body", 1, lambda w: w),
        ("schema 1 body with a dag key", 1, lambda w: {**w, "schema_version": 1}),
        ("dag of the wrong type", 2, lambda w: {**w, "dag": ["task"]}),
        ("unknown key in the dag", 2, lambda w: {**w, "dag": {**w["dag"], "edges": []}}),
    ],
)
def test_a_payload_with_the_other_schemas_keys_is_bad(name: str, schema: int, edit: Any) -> None:
    plaintext = _codec.pack(edit(_schema_2().to_wire()))
    rejected(lambda: _open_bytes(plaintext, schema), R.BAD_PAYLOAD)


def test_schema_2_keys_out_of_order_are_bad() -> None:
    wire = _schema_2().to_wire()
    dag = wire.pop("dag")
    reordered = {"dag": dag, **wire}
    rejected(lambda: _open_bytes(_codec.pack(reordered), 2), R.BAD_PAYLOAD)
