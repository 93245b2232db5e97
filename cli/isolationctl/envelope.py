"""``isolationctl envelope``: inspect, verify, open and seal envelopes (docs/envelope.md).

``inspect`` reads the header with no keys at all; ``verify`` checks the signature and the
validity window against public signer keysets; ``open`` decrypts with an environment's
keys directory and prints the payload with every secret-bearing value redacted unless
``--reveal``; ``seal`` builds an envelope from the payload JSON ``open --reveal --json``
prints, so the two round-trip.

The payload's JSON form is lossless: values JSON has no type for are tagged objects
(``{"$bytes": base64}``, ``{"$datetime": iso}``, ``{"$date": iso}``, ``{"$timedelta":
[days, seconds, microseconds]}``, ``{"$callable": "mod:name"}``, ``{"$float": "nan"}``),
and a real object whose only key starts with ``$`` is wrapped as ``{"$map": {...}}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from isolation.errors import EnvelopeRejected, PayloadError, RejectReason
from isolation.keyring import SIGNER_FILE, EnvironmentKeys, check_environment_name
from isolation.masking import SecretMasker, secret_strings
from isolation.transport import envelope as wire
from isolation.transport._codec import CallableRef
from isolation.transport._header import Header
from isolation.transport._suites import SUITES
from isolation.transport.keyset import Keyset, Purpose
from isolation.transport.sealed import inspect_envelope, open_envelope, seal_envelope, verify_envelope
from isolationctl import _audit
from isolationctl._files import write_atomic
from isolationctl._project import Locations
from isolationctl._ui import ExitCode, done, fail, note, printable, table, warn

app = typer.Typer(
    help="Look into envelopes: read the header (no keys), verify the signature, open with an "
    "environment's keys (secrets redacted unless --reveal), or seal a payload for debugging. "
    "Example: `isolationctl envelope verify envelope.txt`.",
    no_args_is_help=True,
)

SourceArgument = Annotated[
    str | None,
    typer.Argument(metavar="[SOURCE]", help="The envelope text: a file, or - for standard input.", show_default=False),
]
FromEnvOption = Annotated[
    str | None,
    typer.Option(
        "--from-env", metavar="VAR", help="Read the envelope text from this environment variable.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
EnvOption = Annotated[
    str | None,
    typer.Option("--environment", "-e", metavar="NAME", help="The local environment.", show_default=False),
]

REDACTED_NOTE = (
    "redacted: connection logins, passwords and extras; variable values; operator kwargs, params, "
    "dag_run_conf and XCom values (shown as type and length). Pass --reveal to show them."
)
# Free-form keys whose string values are secrets by their name (as Airflow's masker sees them).
_SENSITIVE_NAMES = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "authorization")
_CONTEXT_DATETIMES = ("logical_date", "data_interval_start", "data_interval_end", "start_date")


# --------------------------------------------------------------------------- reading envelope text


@dataclass(frozen=True)
class Source:
    """Envelope text as a transport delivered it, framing removed."""

    label: str
    text: bytes
    limit: int


def read_source(source: str | None, from_env: str | None) -> Source:
    """The envelope from a file, ``-`` (standard input) or an environment variable."""
    if (source is None) == (from_env is None):
        fail(
            "give the envelope as SOURCE (a file, or - for standard input) or with --from-env VAR, exactly one",
            hint="for example: isolationctl envelope inspect envelope.txt",
            code=ExitCode.USAGE,
        )
    if from_env is not None:
        value = os.environ.get(from_env)
        if value is None:
            fail(f"environment variable {from_env} is not set", hint=f"export {from_env}=<envelope text> first")
        return _framed(f"environment variable {from_env}", value.encode("utf-8", "surrogateescape"), wire.ENV_VAR_LIMIT)
    assert source is not None
    limit = wire.FILE_LIMIT
    if source == "-":
        return _framed("standard input", sys.stdin.buffer.read(limit + 3), limit)
    return _framed(f"file {source}", _read_file(Path(source), limit + 3), limit)


def _read_file(path: Path, most: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(most)
    except FileNotFoundError:
        fail(f"no such file {path}", hint="check the path; use - to read standard input, or --from-env VAR")
    except IsADirectoryError:
        fail(f"{path} is a folder, not an envelope file", hint="pass the file that holds the envelope text")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", hint="check that the file exists and is readable")


def _framed(label: str, data: bytes, limit: int) -> Source:
    # Trailing line breaks are transport framing (docs/envelope.md, section 3); anything
    # beyond the limit plus a CR LF is too large whatever it holds.
    if len(data) > limit + 2:
        raise EnvelopeRejected(RejectReason.TOO_LARGE, f"{label} holds more than {limit} characters")
    text = data.rstrip(b"\r\n")
    if not text:
        fail(f"{label} is empty: it holds no envelope", hint="pass the envelope text a host sealed")
    return Source(label, text, limit)


def _binary(source: Source) -> bytes:
    return wire.from_text(source.text, max_size=source.limit)


# --------------------------------------------------------------------------- the header


def _iso(stamp: int) -> str | None:
    try:
        return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # a signed header may still hold year 10000+
        return None


def _span(seconds: int) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            return f"{whole} {unit}" + (f" {rest} s" if unit == "min" and rest else "")
    return f"{seconds} s"


def header_doc(header: Header, source: Source, size: int, now: int) -> dict[str, Any]:
    """The header as JSON: every field, both time forms and the envelope's sizes."""
    subject = header.subject
    return {
        "suite": header.suite,
        "suite_name": SUITES[header.suite].name,
        "recipient_key_id": header.recipient_kid.hex(),
        "signer_key_id": header.signer_kid.hex(),
        "audience": header.audience,
        "subject": {
            "dag_id": subject.dag_id,
            "task_id": subject.task_id,
            "run_id": subject.run_id,
            "map_index": subject.map_index,
            "try_number": subject.try_number,
        },
        "issued_at": _iso(header.issued_at),
        "issued_at_unix": header.issued_at,
        "expires_at": _iso(header.expires_at),
        "expires_at_unix": header.expires_at,
        "lifetime_seconds": header.expires_at - header.issued_at,
        "expired": now > header.expires_at,
        "expires_in_seconds": header.expires_at - now,
        "envelope_id": header.envelope_id.hex(),
        "payload_schema": header.payload_schema,
        "size_characters": len(source.text),
        "size_bytes": size,
    }


def _status(doc: dict[str, Any]) -> str:
    left = doc["expires_in_seconds"]
    if not doc["expired"]:
        return f"not expired (expires in {_span(left)})"
    late = -left
    if late <= wire.DEFAULT_SKEW:
        return f"expired {_span(late)} ago (readers still accept it for {wire.DEFAULT_SKEW - late} s of clock skew)"
    return f"EXPIRED {_span(late)} ago"


def _when(doc: dict[str, Any], field: str) -> str:
    return f"{doc[field] or 'out of range'} (unix {doc[field + '_unix']})"


def show_header(doc: dict[str, Any], title: str) -> None:
    subject = doc["subject"]
    rows = [
        ("suite", f"{doc['suite']} ({doc['suite_name']})"),
        ("audience", doc["audience"]),
        ("dag_id", subject["dag_id"]),
        ("task_id", subject["task_id"]),
        ("run_id", subject["run_id"]),
        ("map_index", subject["map_index"]),
        ("try_number", subject["try_number"]),
        ("issued", _when(doc, "issued_at")),
        ("expires", _when(doc, "expires_at")),
        ("lifetime", f"{doc['lifetime_seconds']} s ({_span(doc['lifetime_seconds'])})"),
        ("status", _status(doc)),
        ("recipient key", doc["recipient_key_id"]),
        ("signer key", doc["signer_key_id"]),
        ("envelope id", doc["envelope_id"]),
        ("payload schema", doc["payload_schema"]),
        ("size", f"{doc['size_characters']} characters, {doc['size_bytes']} bytes"),
    ]
    table(title, ("field", "value"), rows)


def _summary(doc: dict[str, Any]) -> str:
    s = doc["subject"]
    return (
        f"envelope {doc['envelope_id']} for environment {doc['audience']!r}, task {s['dag_id']}.{s['task_id']} "
        f"run={s['run_id']} map_index={s['map_index']} try={s['try_number']}, signed by key {doc['signer_key_id']}, "
        f"{_status(doc)}"
    )


# --------------------------------------------------------------------------- the payload's JSON form


class PayloadJsonError(ValueError):
    """The payload JSON cannot be read back; the message names where, never the value."""


_TAGS = ("$bytes", "$datetime", "$date", "$timedelta", "$callable", "$float", "$map")


@dataclass(frozen=True)
class Redacted:
    """A value withheld from output: only its type and size are shown."""

    kind: str
    size: int | None = None
    unit: str = ""

    def __str__(self) -> str:
        return (
            f"<redacted {self.kind}, {self.size} {self.unit}>" if self.size is not None else f"<redacted {self.kind}>"
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"$redacted": self.kind}
        if self.size is not None:
            doc[self.unit] = self.size
        return doc


def to_json(value: Any) -> Any:
    """A codec value (or a whole payload's wire form) as lossless JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, CallableRef):
        return {"$callable": value.path}
    if isinstance(value, Redacted):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        body = {key: to_json(item) for key, item in value.items()}
        # A real object that looks like a tag is wrapped, so reading it back is unambiguous.
        return {"$map": body} if len(body) == 1 and next(iter(body)).startswith("$") else body
    raise TypeError(f"{type(value).__name__} has no JSON form")


def from_json(value: Any, where: str = "payload") -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) >= 1 and "$redacted" in value:
        raise PayloadJsonError(
            f"{where} was redacted; the JSON of `envelope open` without --reveal cannot be sealed again"
        )
    if len(value) == 1 and next(iter(value)).startswith("$"):
        ((tag, body),) = value.items()
        if tag == "$map" and isinstance(body, dict):
            return {key: from_json(item, f"{where}.{key}") for key, item in body.items()}
        return _tagged(tag, body, where)
    return {key: from_json(item, f"{where}.{key}") for key, item in value.items()}


def _tagged(tag: str, body: Any, where: str) -> Any:
    readers: dict[str, Callable[[Any], Any]] = {
        "$bytes": lambda b: base64.b64decode(b, validate=True),
        "$datetime": lambda b: _canonical(dt.datetime.fromisoformat(b), b),
        "$date": lambda b: _canonical(dt.date.fromisoformat(b), b),
        "$timedelta": _timedelta,
        "$callable": CallableRef,
        "$float": _special_float,
    }
    reader = readers.get(tag)
    if reader is None:
        raise PayloadJsonError(f"{where}: unknown tag {tag!r} (known: {', '.join(_TAGS)})")
    try:
        return reader(body)
    except (TypeError, ValueError, OverflowError, PayloadError) as exc:
        # The type of the failure only: the offending text may be a secret.
        raise PayloadJsonError(f"{where}: not a valid {tag[1:]} value ({type(exc).__name__})") from None


def _canonical(value: Any, text: Any) -> Any:
    if not isinstance(text, str) or value.isoformat() != text:
        raise ValueError("not in the canonical isoformat() spelling")
    return value


def _timedelta(body: Any) -> dt.timedelta:
    if not isinstance(body, list) or len(body) != 3 or not all(type(part) is int for part in body):
        raise ValueError("expected [days, seconds, microseconds]")
    value = dt.timedelta(days=body[0], seconds=body[1], microseconds=body[2])
    if [value.days, value.seconds, value.microseconds] != body:
        raise ValueError("not normalised")
    return value


def _special_float(body: Any) -> float:
    if body not in ("nan", "inf", "-inf"):
        raise ValueError("expected nan, inf or -inf")
    return float(body)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise PayloadJsonError(f"an object has the key {next(k for k in keys if keys.count(k) > 1)!r} twice")
    return dict(pairs)


def payload_from_json(text: str, label: str) -> Any:
    """A :class:`Payload` from its JSON form; errors name the field, never its value."""
    from pydantic import ValidationError

    from isolation.transport.payload import Payload

    try:
        doc = from_json(json.loads(text, object_pairs_hook=_no_duplicates))
    except PayloadJsonError as exc:
        fail(f"{label}: {exc}", hint="use the JSON `isolationctl envelope open --reveal --json` prints")
    except json.JSONDecodeError as exc:
        fail(f"{label} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if isinstance(doc, dict) and isinstance(doc.get("context"), dict):
        _parse_context_datetimes(doc["context"], label)
    try:
        return Payload.model_validate(doc)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()[:5]]
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        fail(
            f"{label} is not a payload of schema version 1: " + "; ".join(problems) + more,
            hint="see docs/envelope.md, section 10.4, or start from `isolationctl envelope open --reveal --json`",
        )


def _parse_context_datetimes(context: dict[str, Any], label: str) -> None:
    # These fields are typed datetimes: plain ISO-8601 text is accepted as well as the tag.
    for field in _CONTEXT_DATETIMES:
        value = context.get(field)
        if isinstance(value, str):
            try:
                context[field] = dt.datetime.fromisoformat(value)
            except ValueError:
                fail(f"{label}: context.{field} is not an ISO-8601 date and time")


# --------------------------------------------------------------------------- redaction


_SIZED: tuple[tuple[type | tuple[type, ...], str, str], ...] = (
    (str, "str", "characters"),
    (bytes, "bytes", "bytes"),
    ((list, tuple), "list", "items"),
    (dict, "dict", "keys"),
)
# bool before int, datetime before date: the first match names the type.
_KINDS: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (dt.datetime, "datetime"),
    (dt.date, "date"),
    (dt.timedelta, "timedelta"),
    (CallableRef, "callable"),
)


def redact(value: Any) -> Redacted:
    """A value's type and size, never the value."""
    for types, kind, unit in _SIZED:
        if isinstance(value, types):
            return Redacted(kind, len(value), unit)  # type: ignore[arg-type]
    return Redacted(next((name for types, name in _KINDS if isinstance(value, types)), "value"))


def _each_redacted(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: redact(value) for key, value in mapping.items()}


def redacted_wire(wire_form: dict[str, Any]) -> dict[str, Any]:
    """The payload's wire form with every secret-bearing value replaced by :class:`Redacted`."""
    doc = dict(wire_form)
    doc["operator"] = {**doc["operator"], "kwargs": _each_redacted(doc["operator"]["kwargs"])}
    context = dict(doc["context"])
    for field in ("params", "dag_run_conf"):
        context[field] = _each_redacted(context[field])
    doc["context"] = context
    doc["connections"] = {
        conn_id: {f: (redact(v) if f in ("login", "password", "extra") and v is not None else v) for f, v in c.items()}
        for conn_id, c in doc["connections"].items()
    }
    doc["variables"] = _each_redacted(doc["variables"])
    doc["xcom_inputs"] = [{**x, "value": redact(x["value"])} for x in doc["xcom_inputs"]]
    return doc


def _named_secrets(value: Any, sensitive: bool = False) -> Iterable[str]:
    """String leaves under keys whose name says they are secret."""
    if isinstance(value, str):
        if sensitive:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _named_secrets(item, sensitive or any(n in key.lower() for n in _SENSITIVE_NAMES))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _named_secrets(item, sensitive)


def masker_for(payload: Any) -> SecretMasker:
    """Belt and braces behind redaction: every known secret, in every spelling, becomes ``***``."""
    known = list(payload.secret_values())
    known += _named_secrets(payload.operator.kwargs)
    known += _named_secrets(payload.context.params)
    known += _named_secrets(payload.context.dag_run_conf)
    return SecretMasker(secret_strings(known))


# --------------------------------------------------------------------------- showing the payload


def _cell(value: Any) -> str:
    if isinstance(value, (str, Redacted)):
        return str(value)
    if isinstance(value, dt.datetime):  # the typed context fields: plain ISO-8601 reads best
        return value.isoformat()
    return json.dumps(to_json(value), ensure_ascii=False)


def _map_rows(prefix: str, mapping: dict[str, Any]) -> list[tuple[str, str]]:
    if not mapping:
        return [(prefix, "{}")]
    return [(f"{prefix}.{key}", _cell(value)) for key, value in mapping.items()]


def payload_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per schema field, and per entry of the free-form maps."""
    rows = [("schema_version", _cell(doc["schema_version"])), ("operator.import_path", doc["operator"]["import_path"])]
    rows += _map_rows("operator.kwargs", doc["operator"]["kwargs"])
    for field, value in doc["context"].items():
        if field in ("params", "dag_run_conf"):
            rows += _map_rows(f"context.{field}", value)
        else:
            rows.append((f"context.{field}", _cell(value)))
    if not doc["connections"]:
        rows.append(("connections", "{}"))
    for conn_id, conn in doc["connections"].items():
        rows += [(f"connections.{conn_id}.{field}", _cell(value)) for field, value in conn.items()]
    rows += _map_rows("variables", doc["variables"])
    if not doc["xcom_inputs"]:
        rows.append(("xcom_inputs", "[]"))
    for i, xcom in enumerate(doc["xcom_inputs"]):
        rows += [(f"xcom_inputs[{i}].{field}", _cell(value)) for field, value in xcom.items()]
    rows += [(f"options.{field}", _cell(value)) for field, value in doc["options"].items()]
    return rows


# --------------------------------------------------------------------------- keys


def _signer_keysets(locations: Locations, files: list[Path] | None) -> list[Keyset]:
    if not files:
        keyring = locations.keyring
        if not (keyring.path / SIGNER_FILE).is_file():
            fail(
                f"no host signer keyset in the keyring {keyring.path}",
                hint="pass a public signer keyset with --signers FILE (e.g. an environment's signers.json), "
                "or set up the keyring with `isolationctl init`",
                code=ExitCode.KEYS,
            )
        return [keyring.signer().public()]
    keysets = []
    for path in files:
        if not path.is_file():
            fail(f"no signer keyset file {path}", hint="pass an existing public signer keyset file to --signers")
        keyset = Keyset.load(path)
        if keyset.purpose is not Purpose.SIGNER:
            fail(
                f"{path} is a {keyset.purpose.value} keyset, not a signer keyset",
                hint="--signers takes the host's public signer keyset (signers.json)",
                code=ExitCode.KEYS,
            )
        keysets.append(keyset.public())
    return keysets


def _environment_keys(locations: Locations, environment: str | None, keys_dir: Path | None) -> EnvironmentKeys:
    if (environment is None) == (keys_dir is None):
        fail("say whose keys open the envelope: -e NAME or --keys-dir DIR, exactly one", code=ExitCode.USAGE)
    if keys_dir is None:
        assert environment is not None
        root = locations.home / check_environment_name(environment)
        if not root.is_dir():
            known = sorted(p.name for p in locations.home.iterdir() if p.is_dir()) if locations.home.is_dir() else []
            fail(
                f"no local environment {environment!r} in {locations.home} (there: {', '.join(known) or 'none'})",
                hint="deploy it with `isolationctl deploy --local`, or pass its keys directory with --keys-dir",
            )
        keys_dir = root / "keys"
    return EnvironmentKeys.load(keys_dir)


# --------------------------------------------------------------------------- commands


@app.command("inspect")
def inspect(
    source: SourceArgument = None,
    from_env: FromEnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an envelope's header without any key and without decrypting.

    Nothing shown is verified: use `envelope verify` for that.

    Example: `isolationctl envelope inspect envelope.txt --json`
    """
    text = read_source(source, from_env)
    data = _binary(text)
    doc = header_doc(wire.read_header(data), text, len(data), int(time.time()))
    if as_json:
        _print_json(doc)
        return
    show_header(doc, "envelope header (not verified)")
    note("header only: nothing was verified or decrypted; `isolationctl envelope verify` checks the signature")


@app.command("verify")
def verify(
    ctx: typer.Context,
    source: SourceArgument = None,
    from_env: FromEnvOption = None,
    signers: Annotated[
        list[Path] | None,
        typer.Option(
            "--signers",
            metavar="FILE",
            help="A public signer keyset to trust (repeatable; default: the host keyring's signer keyset).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check an envelope's signature and validity window; decrypt nothing.

    Exit 0 if valid, 5 with the reason code (bad-signature, expired, unknown-key, ...) if not.
    The audience and the payload are not checked: `envelope open` does that.

    Example: `isolationctl envelope verify envelope.txt --signers envs/demo/keys/signers.json`
    """
    text = read_source(source, from_env)
    trusted = _signer_keysets(ctx.obj, signers)
    now = int(time.time())
    try:
        data = _binary(text)
        header = verify_envelope(text.text, signers=trusted, max_text_size=text.limit, now=now)
    except EnvelopeRejected as exc:
        if as_json:
            _print_json({"valid": False, "reason": exc.reason.value, "error": exc.message, "header": _unverified(text)})
        raise
    doc = header_doc(header, text, len(data), now)
    if as_json:
        _print_json({"valid": True, "reason": None, "header": doc})
        return
    sys.stdout.write(f"valid: {printable(_summary(doc))}\n")


def _unverified(source: Source) -> dict[str, Any] | None:
    """The header of a refused envelope, for --json, if it can be read at all."""
    try:
        data = _binary(source)
        return header_doc(
            inspect_envelope(source.text, max_text_size=source.limit), source, len(data), int(time.time())
        )
    except EnvelopeRejected:
        return None


@app.command("open")
def open_(  # noqa: PLR0917 - Typer: one parameter per option
    ctx: typer.Context,
    source: SourceArgument = None,
    from_env: FromEnvOption = None,
    environment: EnvOption = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option("--keys-dir", metavar="DIR", help="An environment keys directory.", show_default=False),
    ] = None,
    reveal: Annotated[bool, typer.Option("--reveal", help="Show secret values instead of redacting them.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the payload's JSON form (what `envelope seal` reads).")
    ] = False,
) -> None:
    """Verify, decrypt and show an envelope's payload, as environment NAME would.

    Connection logins, passwords and extras, variable values, operator kwargs, params,
    dag_run_conf and XCom values are redacted (type and length only) unless --reveal.

    Example: `isolationctl envelope open envelope.txt -e demo`
    """
    text = read_source(source, from_env)
    keys = _environment_keys(ctx.obj, environment, keys_dir)
    data = _binary(text)
    opened = open_envelope(text.text, signers=keys.signers, recipient=keys.recipient, max_text_size=text.limit)
    wire_form = opened.payload.to_wire()
    shown = wire_form if reveal else redacted_wire(wire_form)
    masker = None if reveal else masker_for(opened.payload)
    if as_json:
        _print_json(to_json(shown), masker)
    else:
        show_header(header_doc(opened.header, text, len(data), int(time.time())), "envelope header (verified)")
        rows = payload_rows(shown)
        if masker is not None:
            rows = [(masker.mask(field), masker.mask(value)) for field, value in rows]
        table("payload", ("field", "value"), rows)
    done(f"signature valid, decrypted with the keys of environment {keys.recipient.name!r}")
    if reveal:
        warn("secret values are shown (--reveal): do not paste this output anywhere")
    else:
        note(REDACTED_NOTE)


@app.command("seal")
def seal(
    ctx: typer.Context,
    payload_file: Annotated[
        str, typer.Argument(metavar="PAYLOAD_JSON", help="The payload's JSON form: a file, or - for standard input.")
    ],
    environment: Annotated[
        str,
        typer.Option("--environment", "-e", metavar="NAME", help="Seal to this environment's public keys."),
    ],
    lifetime: Annotated[
        int, typer.Option("--lifetime", metavar="SECONDS", help="How long the envelope is valid.")
    ] = wire.DEFAULT_LIFETIME,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the envelope here (mode 0600), not to stdout."),
    ] = None,
) -> None:
    """Seal a payload JSON (as `envelope open --reveal --json` prints it) for environment NAME.

    Signed with the host keyring's signer keyset. For debugging and tests.

    Example: `isolationctl envelope seal payload.json -e demo -o envelope.txt`
    """
    label = "standard input" if payload_file == "-" else f"payload file {payload_file}"
    payload = payload_from_json(_read_payload_text(payload_file), label)
    keyring = ctx.obj.keyring
    recipient = keyring.recipient(environment)
    text = seal_envelope(payload, signer=keyring.signer(), recipient=recipient, lifetime=lifetime)
    header = inspect_envelope(text)
    # Signing arbitrary operators with the host's key is worth a line in the audit log.
    _audit.record(
        keyring.path,
        "envelope seal",
        f"recipient:{environment}",
        [header.signer_kid.hex(), header.recipient_kid.hex()],
        f"envelope {header.envelope_id.hex()} for {header.subject}",
    )
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        write_atomic(output, text + "\n", mode=0o600)
    where = "standard output" if output is None else str(output)
    done(
        f"sealed envelope {header.envelope_id.hex()} for environment {environment!r} "
        f"({header.subject}), valid for {lifetime} s, to {where}"
    )


def _read_payload_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"no such file {path}", hint="write the payload JSON there, e.g. with `envelope open --reveal --json`")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _print_json(doc: Any, masker: SecretMasker | None = None) -> None:
    """Exactly one JSON document on stdout, masked when secrets are known."""
    text = json.dumps(doc, indent=2)
    sys.stdout.write((masker.mask(text) if masker else text) + "\n")
    sys.stdout.flush()
