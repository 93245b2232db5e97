"""Shared keys, strategies and an independent reference reader for the transport tests.

The reference reader (``expected_reason``) re-derives from the wire spec which reason
an envelope must be refused with. It is deliberately written without the project's
parsers, so a property cannot pass just because the parser agrees with itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from isolation.errors import EnvelopeRejected, RejectReason
from isolation.transport import CallableRef, Keyset, Subject, _codec, envelope
from isolation.transport._suites import SUITES
from isolation.transport.payload import Payload

NOW = 1_700_000_000
"""The fixed clock of every test: envelopes are sealed and opened relative to it."""

EXAMPLES = max(500, settings.default.max_examples)
"""Examples per property (at least 500; more under HYPOTHESIS_PROFILE=thorough)."""

SLOW_EXAMPLES = max(100, settings.default.max_examples // 5)
"""Examples per suite 2 property: ML-KEM keys and envelopes are larger and slower."""

SECRET = "s3cr3t-Payload-Marker-7f1d"
"""A string no message, diagnostic or traceback may ever contain."""

# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keys:
    signer: Keyset  # host: private signer keyset
    trusted: Keyset  # environment: the host's public signer keyset
    untrusted: Keyset  # another host's private signer keyset
    recipient: Keyset  # environment "env-a", suite 1, private
    impostor: Keyset  # also named "env-a", another suite 1 key, private
    recipient_pq: Keyset  # environment "env-pq", suite 2, private


OVERLAP = envelope.MAX_LIFETIME + envelope.DEFAULT_SKEW
"""The test keysets' overlap window: long enough to seal any lifetime the format allows."""


@cache
def keys() -> Keys:
    signer = Keyset.generate_signer(now=NOW - 86400).with_overlap(OVERLAP)
    return Keys(
        signer=signer,
        trusted=signer.public(),
        untrusted=Keyset.generate_signer(now=NOW - 86400).with_overlap(OVERLAP),
        recipient=Keyset.generate_recipient("env-a", now=NOW - 86400).with_overlap(OVERLAP),
        impostor=Keyset.generate_recipient("env-a", now=NOW - 86400).with_overlap(OVERLAP),
        recipient_pq=Keyset.generate_recipient("env-pq", suite=2, now=NOW - 86400).with_overlap(OVERLAP),
    )


# --------------------------------------------------------------------------- strategies

_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,11}"
_CALLABLE = st.from_regex(rf"\A{_IDENT}(\.{_IDENT}){{0,3}}:{_IDENT}(\.{_IDENT}){{0,2}}\Z").map(CallableRef)
_IMPORT_PATH = st.from_regex(rf"\A{_IDENT}(\.{_IDENT}){{0,3}}\.{_IDENT}\Z")


def subjects(max_text: int = 30) -> st.SearchStrategy[Subject]:
    """Task instances an envelope may be addressed to (the header's subject field)."""
    text = st.text(min_size=1, max_size=max_text)
    return st.builds(Subject, text, text, text, st.integers(-1, 2**31 - 1), st.integers(0, 2**31 - 1))


_offsets = st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59))
_fixed_zones = st.builds(dt.timezone, _offsets.map(lambda d: dt.timedelta(minutes=d // dt.timedelta(minutes=1))))
aware_datetimes = st.datetimes(timezones=st.one_of(st.just(dt.UTC), _fixed_zones, st.timezones()))
"""Timezone-aware datetimes: UTC, fixed offsets and IANA zones."""

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    aware_datetimes,
    st.datetimes(),
    st.dates(),
    st.timedeltas(),
    _CALLABLE,
)

codec_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
"""Values the pickle-free codec carries (tuples excluded: they arrive as lists)."""

codec_dicts = st.dictionaries(st.text(max_size=8), codec_values, max_size=4)

# Header ids are at most 250 characters; keep them short enough that three of them,
# four UTF-8 bytes each, stay inside the 1 KiB header.
_ids = st.text(min_size=1, max_size=40)
_opt_text = st.none() | st.text(max_size=24)


@st.composite
def payloads(draw: st.DrawFn, secret: str | None = None) -> Payload:
    """Real Payload objects covering every model and codec type."""
    connections = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=12),
            st.fixed_dictionaries(
                {"conn_type": st.text(min_size=1, max_size=12)},
                optional={
                    "description": _opt_text,
                    "host": _opt_text,
                    "login": _opt_text,
                    "password": _opt_text,
                    "schema": _opt_text,
                    "port": st.none() | st.integers(0, 65535),
                    "extra": _opt_text,
                },
            ),
            max_size=3,
        )
    )
    variables = draw(st.dictionaries(st.text(max_size=12), st.text(max_size=24), max_size=4))
    kwargs = draw(codec_dicts)
    if secret is not None:
        connections["secret_conn"] = {"conn_type": "http", "password": secret, "extra": secret}
        variables["secret_var"] = secret
        kwargs["secret_kwarg"] = [secret, secret.encode()]
    data: dict[str, Any] = {
        "operator": {"import_path": draw(_IMPORT_PATH), "kwargs": kwargs},
        "context": draw(
            st.fixed_dictionaries(
                {"dag_id": _ids, "task_id": _ids, "run_id": _ids},
                optional={
                    "map_index": st.integers(-1, 2**31 - 1),
                    "try_number": st.integers(0, 2**31 - 1),
                    "max_tries": st.integers(0, 100),
                    "logical_date": st.none() | aware_datetimes,
                    "data_interval_start": st.none() | aware_datetimes,
                    "data_interval_end": st.none() | aware_datetimes,
                    "start_date": st.none() | aware_datetimes,
                    "run_type": _opt_text,
                    "params": codec_dicts,
                    "dag_run_conf": codec_dicts,
                    "owner": _opt_text,
                    "prev_data_interval_start_success": st.none() | aware_datetimes,
                    "prev_start_date_success": st.none() | aware_datetimes,
                    "next_logical_date": st.none() | aware_datetimes,
                },
            )
        ),
        "connections": connections,
        "variables": variables,
        "xcom_inputs": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"task_id": _ids},
                    optional={
                        "key": st.text(max_size=12),
                        "map_index": st.integers(-1, 1000),
                        "dag_id": _opt_text,
                        "run_id": _opt_text,
                        "value": codec_values,
                    },
                ),
                max_size=3,
            )
        ),
        "options": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "log_level": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR"]),
                    "result_path": _opt_text,
                    "export_secrets_to_env": st.booleans(),
                    "reschedule_to_poke": st.booleans(),
                    "render_templates": st.booleans(),
                    "strict_xcom_pull": st.booleans(),
                },
            )
        ),
        "dag": draw(st.none() | dag_shapes()),
    }
    if secret is not None:
        data["context"]["params"] = {"secret_param": secret}
        data["xcom_inputs"].append({"task_id": "upstream", "value": {"token": secret}})
    return Payload.model_validate(data)


def dag_shapes() -> st.SearchStrategy[dict[str, Any]]:
    """Schema 2's DAG structure: tasks with edges and groups, and the next run."""
    task = st.fixed_dictionaries(
        {"task_id": _ids},
        optional={
            "downstream": st.lists(_ids, max_size=3),
            "task_group": _opt_text,
            "trigger_rule": st.sampled_from(["all_success", "none_failed_min_one_success"]),
            "is_setup": st.booleans(),
            "is_teardown": st.booleans(),
        },
    )
    group = st.fixed_dictionaries({"group_id": _ids}, optional={"parent": _opt_text})
    return st.fixed_dictionaries(
        {},
        optional={
            "tasks": st.lists(task, max_size=4),
            "task_groups": st.lists(group, max_size=2),
            "timetable_type": _opt_text,
            "timetable": st.none() | codec_dicts,
        },
    )


def simple_payload(secret: str = SECRET, *, dag_id: str = "dag", task_id: str = "task") -> Payload:
    """A small fixed payload carrying ``secret`` in every secret-bearing place."""
    return Payload.model_validate(
        {
            "operator": {"import_path": "pkg.mod.Operator", "kwargs": {"token": secret, "n": 1}},
            "context": {"dag_id": dag_id, "task_id": task_id, "run_id": "manual__1", "params": {"p": secret}},
            "connections": {"db": {"conn_type": "postgres", "login": "u", "password": secret, "extra": secret}},
            "variables": {"api_key": secret},
            "xcom_inputs": [{"task_id": "up", "value": [secret]}],
        }
    )


def as_carried(value: Any) -> Any:
    """``value`` as the codec carries it: an aware datetime keeps its instant and UTC
    offset, not its zone name (so a wall time in a DST gap or fold stays comparable)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=dt.timezone(value.utcoffset()))  # type: ignore[arg-type]
    if isinstance(value, (list, tuple)):
        return [as_carried(v) for v in value]
    if isinstance(value, dict):
        return {k: as_carried(v) for k, v in value.items()}
    return value


def same_payload(opened: Payload, sealed: Payload) -> None:
    """Assert ``opened`` is exactly ``sealed`` as carried, types included."""
    assert opened.to_wire() == as_carried(sealed.to_wire())
    # Equality alone would accept True for 1 or 1.0 for 1; the codec bytes are type-exact.
    assert _codec.pack(opened.to_wire()) == _codec.pack(sealed.to_wire())


def subject_of(payload: Payload) -> Subject:
    c = payload.context
    return Subject(c.dag_id, c.task_id, c.run_id, c.map_index, c.try_number)


# --------------------------------------------------------------------------- assertions


def rejected(call: Callable[[], object], reason: RejectReason) -> EnvelopeRejected:
    """Run ``call``; it must raise exactly EnvelopeRejected with ``reason``."""
    with pytest.raises(EnvelopeRejected) as info:
        call()
    assert type(info.value) is EnvelopeRejected
    assert info.value.reason is reason, f"expected {reason.value}, got {info.value.reason.value}: {info.value}"
    return info.value


# --------------------------------------------------------------------------- reference reader

_FIXED = 7
_SIG = 64
_TAG = 16
_AUDIENCE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
_U63 = 2**63 - 1
_I32 = 2**31 - 1


def ref_b64decode(text: str) -> bytes | None:
    """Canonical unpadded base64url per RFC 4648 section 3.5, or None."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != text:
        return None
    return data


def _is_text(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= 250


def _is_int(v: Any, low: int, high: int) -> bool:
    return type(v) is int and low <= v <= high


def _is_id(v: Any) -> bool:
    return type(v) is bytes and len(v) == 16


def ref_header(data: bytes) -> list[Any] | None:
    """The header fields if ``data`` is a canonical, well-typed v1 header, else None."""
    try:
        fields = msgpack.unpackb(data, raw=False)
    except Exception:
        return None
    if type(fields) is not list or len(fields) != 9:
        return None
    suite, rkid, skid, aud, subject, iat, exp, eid, schema = fields
    if type(subject) is not list or len(subject) != 5:
        return None
    ok = (
        _is_int(suite, 1, 255)
        and _is_id(rkid)
        and _is_id(skid)
        and _is_text(aud)
        and bool(_AUDIENCE.fullmatch(aud))
        and all(_is_text(s) for s in subject[:3])
        and _is_int(subject[3], -1, _I32)
        and _is_int(subject[4], 0, _I32)
        and _is_int(iat, 0, _U63)
        and _is_int(exp, 0, _U63)
        and _is_id(eid)
        and _is_int(schema, 1, 65535)
    )
    if not ok or msgpack.packb(fields, use_bin_type=True) != data:
        return None
    return fields


def expected_reason(data: bytes, original: bytes, trusted_signer_kids: Iterable[bytes]) -> RejectReason | None:
    """The reason a reader must give for ``data``, a modification of the valid ``original``.

    Assumes the keys and clock under which ``original`` opens: any change to the
    signed bytes or the signature then fails verification.
    """
    if data == original:
        return None
    if len(data) < _FIXED or data[:4] != b"ISOL":
        return RejectReason.BAD_FORMAT
    if data[4] != 1:
        return RejectReason.UNSUPPORTED_VERSION
    (length,) = struct.unpack(">H", data[5:7])
    header = data[_FIXED : _FIXED + length]
    if not 0 < length <= 1024 or len(header) != length:
        return RejectReason.BAD_FORMAT
    fields = ref_header(header)
    if fields is None:
        return RejectReason.BAD_FORMAT
    enc_length = {1: 32, 2: 1120}.get(fields[0])
    if enc_length is None:
        return RejectReason.UNSUPPORTED_VERSION
    if len(data) - _FIXED - length < enc_length + _TAG + _SIG:
        return RejectReason.BAD_FORMAT
    if fields[2] not in set(trusted_signer_kids):
        return RejectReason.UNKNOWN_KEY
    return RejectReason.BAD_SIGNATURE


def expected_text_reason(text: str, original: bytes, trusted_signer_kids: Iterable[bytes]) -> RejectReason | None:
    if not text:
        return RejectReason.BAD_FORMAT
    data = ref_b64decode(text)
    if data is None:
        return RejectReason.BAD_FORMAT
    return expected_reason(data, original, trusted_signer_kids)


# --------------------------------------------------------------------------- raw envelopes


def split(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """``(header, enc, ciphertext, signature)`` of a well-formed binary envelope."""
    (length,) = struct.unpack(">H", data[5:7])
    header = data[_FIXED : _FIXED + length]
    enc_length = SUITES[msgpack.unpackb(header)[0]].enc_length
    body = data[_FIXED + length :]
    return header, body[:enc_length], body[enc_length:-_SIG], body[-_SIG:]


def assemble(
    header: bytes,
    plaintext: bytes,
    *,
    recipient: Keyset,
    signer: Keyset,
    suite: int | None = None,
    info: bytes | None = None,
) -> bytes:
    """Build an envelope around arbitrary ``header`` bytes, signed by ``signer``'s primary.

    Uses the project's HPKE suite and signed-message layout, so the only defect of the
    result is whatever the caller put in ``header`` (or a deliberately wrong ``info``).
    """
    key = recipient.primary()
    hpke = SUITES[suite if suite is not None else key.algorithm.suite]
    enc, ciphertext = hpke.encrypt(plaintext, key.public_key(), envelope.hpke_info(header) if info is None else info)
    signature = signer.primary().private_key().sign(envelope.signed_message(header, enc, ciphertext))
    return b"".join((envelope.PREFIX, struct.pack(">H", len(header)), header, enc, ciphertext, signature))


# --------------------------------------------------------------------------- wide msgpack

INT_FORMS = {
    "u8": (0xCC, ">B", 0, 2**8 - 1),
    "u16": (0xCD, ">H", 0, 2**16 - 1),
    "u32": (0xCE, ">I", 0, 2**32 - 1),
    "u64": (0xCF, ">Q", 0, 2**64 - 1),
    "i8": (0xD0, ">b", -(2**7), 2**7 - 1),
    "i16": (0xD1, ">h", -(2**15), 2**15 - 1),
    "i32": (0xD2, ">i", -(2**31), 2**31 - 1),
    "i64": (0xD3, ">q", -(2**63), 2**63 - 1),
}
STR_FORMS = {"s8": (0xD9, ">B"), "s16": (0xDA, ">H"), "s32": (0xDB, ">I")}
BIN_FORMS = {"b8": (0xC4, ">B"), "b16": (0xC5, ">H"), "b32": (0xC6, ">I")}
ARRAY_FORMS = {"a16": (0xDC, ">H"), "a32": (0xDD, ">I")}


def int_forms(value: int) -> list[str]:
    return [name for name, (_, _, low, high) in INT_FORMS.items() if low <= value <= high]


def _canonical(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _array_head(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 2**16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def pack_with(value: Any, path: tuple[int, ...], form: str) -> bytes:
    """msgpack ``value`` canonically except the item at ``path``, written in ``form``.

    ``path`` indexes into nested lists; ``()`` is ``value`` itself. For a list, ``form``
    applies to its array header only.
    """
    if path:
        return _array_head(len(value)) + b"".join(
            pack_with(item, path[1:], form) if i == path[0] else _canonical(item) for i, item in enumerate(value)
        )
    if isinstance(value, list):
        tag, fmt = ARRAY_FORMS[form]
        return bytes([tag]) + struct.pack(fmt, len(value)) + b"".join(_canonical(item) for item in value)
    if isinstance(value, bool) or value is None:
        raise ValueError("no alternative form")
    if isinstance(value, int):
        tag, fmt, _, _ = INT_FORMS[form]
        return bytes([tag]) + struct.pack(fmt, value)
    if isinstance(value, str):
        raw = value.encode()
        tag, fmt = STR_FORMS[form]
        return bytes([tag]) + struct.pack(fmt, len(raw)) + raw
    if isinstance(value, bytes):
        tag, fmt = BIN_FORMS[form]
        return bytes([tag]) + struct.pack(fmt, len(value)) + value
    raise ValueError(f"unsupported type {type(value).__name__}")


def wider_forms(value: Any) -> list[str]:
    """Every encoding of ``value`` wider than the canonical one."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        canonical = _canonical(value)
        return [f for f in int_forms(value) if pack_with(value, (), f) != canonical]
    if isinstance(value, str):
        n = len(value.encode())
        smallest = "fixstr" if n < 32 else "s8" if n < 256 else "s16"
        order = ["fixstr", "s8", "s16", "s32"]
        return order[order.index(smallest) + 1 :]
    if isinstance(value, bytes):
        smallest = "b8" if len(value) < 256 else "b16"
        order = ["b8", "b16", "b32"]
        return order[order.index(smallest) + 1 :]
    if isinstance(value, list):
        return ["a16", "a32"] if len(value) < 16 else ["a32"]
    return []


def leaf_paths(value: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths to every item (lists included) of a nested list."""
    paths = [prefix]
    if isinstance(value, list):
        for i, item in enumerate(value):
            paths += leaf_paths(item, (*prefix, i))
    return paths


def item_at(value: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        value = value[i]
    return value
