"""``isolationctl envelope inspect|verify|open|seal``, in this process (``_cli``); a pipe read by the console script."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from _cli import Result, Sandbox

from isolation.environments.local import provision_keys
from isolation.keyring import HostKeyring
from isolation.masking import variants
from isolation.transport import Keyset, envelope, seal_envelope
from isolation.transport.payload import Payload

PASSWORD = "s3cr3t-Pa55"
LOGIN = "alice-Login-3"
EXTRA_TOKEN = "xtra-T0ken-1"
VARIABLE = "vär-Value-42"  # non-ASCII: JSON shows it escaped
KWARG = "kw-Secret-99"
PARAM = "param-Secret-7"
XCOM = "xcom-Secret-8"
SECRETS = (PASSWORD, LOGIN, EXTRA_TOKEN, VARIABLE, KWARG, PARAM, XCOM)
LIFETIME = 600


def payload() -> Payload:
    return Payload.model_validate(
        {
            "operator": {"import_path": "pkg.mod.Operator", "kwargs": {"api_token": KWARG, "retries": 3}},
            "context": {"dag_id": "etl", "task_id": "load", "run_id": "manual__7", "params": {"p": PARAM}},
            "connections": {
                "db": {
                    "conn_type": "postgres",
                    "host": "db.internal",
                    "login": LOGIN,
                    "password": PASSWORD,
                    "extra": json.dumps({"token": EXTRA_TOKEN}),
                }
            },
            "variables": {"api_key": VARIABLE},
            "xcom_inputs": [{"task_id": "up", "value": {"rows": [XCOM]}}],
        }
    )


def keyring(cli: Sandbox) -> HostKeyring:
    return HostKeyring.open(cli.keyring)


def provision(cli: Sandbox, name: str = "demo") -> Path:
    return provision_keys(name, cli.envs / name / "keys", keyring(cli))


def seal(cli: Sandbox, *, env: str = "demo", now: int | None = None, signer: Keyset | None = None) -> str:
    ring = keyring(cli)
    return seal_envelope(
        payload(), signer=signer or ring.signer(), recipient=ring.recipient(env), lifetime=LIFETIME, now=now
    )


@pytest.fixture
def sealed(cli: Sandbox) -> Path:
    """Environment "demo" with keys, and a file with an envelope sealed to it."""
    provision(cli)
    path = cli.root / "envelope.txt"
    path.write_text(seal(cli) + "\n")
    return path


def leaked(result: Result) -> list[str]:
    """Every secret spelling (raw, repr, JSON-escaped, URL-quoted) found in stdout or stderr."""
    return sorted(form for secret in SECRETS for form in variants(secret) if form in result.output)


def rejected(result: Result, reason: str) -> None:
    assert result.code == 5, str(result)
    assert f"envelope rejected ({reason})" in result.stderr, str(result)
    assert "Traceback" not in result.output


def tamper(text: str) -> str:
    data = bytearray(envelope.from_text(text))
    data[-1] ^= 0x01
    return envelope.to_text(bytes(data))


# --------------------------------------------------------------------------- inspect


def test_inspect_shows_the_header(cli: Sandbox, sealed: Path) -> None:
    text = sealed.read_text().strip()
    header = envelope.read_header(envelope.from_text(text))
    result = cli.ok("envelope", "inspect", str(sealed))
    for shown in (
        "demo",
        "etl",
        "load",
        "manual__7",
        header.signer_kid.hex(),
        header.recipient_kid.hex(),
        header.envelope_id.hex(),
        f"unix {header.issued_at}",
        f"unix {header.expires_at}",
        f"{len(text)} characters",
        f"{len(envelope.from_text(text))} bytes",
        "not expired",
    ):
        assert shown in result.stdout, shown
    assert "nothing was verified" in result.stderr
    assert leaked(result) == []


def test_inspect_json_has_every_field(cli: Sandbox, sealed: Path) -> None:
    text = sealed.read_text().strip()
    doc = cli.ok("envelope", "inspect", str(sealed), "--json").json()
    assert doc["audience"] == "demo"
    assert doc["subject"] == {
        "dag_id": "etl",
        "task_id": "load",
        "run_id": "manual__7",
        "map_index": -1,
        "try_number": 1,
    }
    assert doc["expires_at_unix"] - doc["issued_at_unix"] == doc["lifetime_seconds"] == LIFETIME
    assert doc["issued_at"].endswith("Z") and doc["issued_at"][:4].isdigit()
    assert doc["expired"] is False and 0 < doc["expires_in_seconds"] <= LIFETIME
    assert doc["signer_key_id"] == keyring(cli).signer().primary().kid
    assert doc["recipient_key_id"] == keyring(cli).recipient("demo").primary().kid
    assert (doc["suite"], doc["payload_schema"]) == (1, 2)
    assert (doc["size_characters"], doc["size_bytes"]) == (len(text), len(envelope.from_text(text)))


def test_inspect_needs_no_keys(cli: Sandbox, sealed: Path) -> None:
    env = cli.environ(ISOLATION_KEYRING=str(cli.root / "no-keyring"), ISOLATION_ENVS_HOME=str(cli.root / "none"))
    result = cli.ok("envelope", "inspect", str(sealed), env=env)
    assert "manual__7" in result.stdout
    assert not (cli.root / "no-keyring").exists()


def test_inspect_reports_an_expired_envelope(cli: Sandbox) -> None:
    provision(cli)
    (cli.root / "old.txt").write_text(seal(cli, now=int(time.time()) - 3 * 3600))
    doc = cli.ok("envelope", "inspect", str(cli.root / "old.txt"), "--json").json()
    assert doc["expired"] is True and doc["expires_in_seconds"] < -3600
    assert "EXPIRED" in cli.ok("envelope", "inspect", str(cli.root / "old.txt")).stdout


def test_inspect_reads_standard_input(cli: Sandbox, sealed: Path) -> None:
    result = cli.ok("envelope", "inspect", "-", "--json", input=sealed.read_text(), real=True)
    assert result.json()["subject"]["run_id"] == "manual__7"


def test_inspect_reads_an_environment_variable(cli: Sandbox, sealed: Path) -> None:
    env = cli.environ(ISOLATION_ENVELOPE=sealed.read_text().strip())
    doc = cli.ok("envelope", "inspect", "--from-env", "ISOLATION_ENVELOPE", "--json", env=env).json()
    assert doc["audience"] == "demo"


def test_from_env_uses_the_environment_variable_limit(cli: Sandbox) -> None:
    env = cli.environ(BIG="A" * (envelope.ENV_VAR_LIMIT + 1))
    rejected(cli.run("envelope", "inspect", "--from-env", "BIG", env=env), "too-large")


# --------------------------------------------------------------------------- bad input


def _garbage(cli: Sandbox) -> list[str]:
    (cli.root / "garbage.txt").write_text("hello, I am not an envelope\n")
    return [str(cli.root / "garbage.txt")]


def _truncated(cli: Sandbox) -> list[str]:
    provision(cli)
    (cli.root / "cut.txt").write_text(seal(cli)[:40])
    return [str(cli.root / "cut.txt")]


def _not_base64url(cli: Sandbox) -> list[str]:
    provision(cli)
    (cli.root / "padded.txt").write_text(seal(cli) + "==")
    return [str(cli.root / "padded.txt")]


def _missing(cli: Sandbox) -> list[str]:
    return [str(cli.root / "nothing-here.txt")]


def _empty(cli: Sandbox) -> list[str]:
    (cli.root / "empty.txt").write_text("\n")
    return [str(cli.root / "empty.txt")]


def _folder(cli: Sandbox) -> list[str]:
    return [str(cli.root)]


def _too_large(cli: Sandbox) -> list[str]:
    (cli.root / "big.txt").write_text("A" * (envelope.FILE_LIMIT + 10))
    return [str(cli.root / "big.txt")]


def _unset_variable(cli: Sandbox) -> list[str]:
    return ["--from-env", "NO_SUCH_VARIABLE_HERE"]


def _both_sources(cli: Sandbox) -> list[str]:
    return ["-", "--from-env", "X"]


def _no_source(cli: Sandbox) -> list[str]:
    return []


BAD_INPUTS = [
    (_garbage, 5, "bad-format"),
    (_truncated, 5, "bad-format"),
    (_not_base64url, 5, "bad-format"),
    (_too_large, 5, "too-large"),
    (_missing, 3, "no such file"),
    (_empty, 3, "is empty"),
    (_folder, 3, "is a folder"),
    (_unset_variable, 3, "NO_SUCH_VARIABLE_HERE is not set"),
    (_both_sources, 2, "exactly one"),
    (_no_source, 2, "exactly one"),
]


@pytest.mark.parametrize("command", ["inspect", "verify"])
@pytest.mark.parametrize(("make", "code", "words"), BAD_INPUTS, ids=[m.__name__[1:] for m, _, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_an_exit_code(cli: Sandbox, command: str, make, code: int, words: str) -> None:
    provision(cli)
    result = cli.run("envelope", command, *make(cli))
    assert result.code == code, str(result)
    assert words in result.stderr, str(result)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert result.stdout == ""


# --------------------------------------------------------------------------- verify


def test_verify_a_valid_envelope(cli: Sandbox, sealed: Path) -> None:
    result = cli.ok("envelope", "verify", str(sealed))
    assert result.stdout.startswith("valid: envelope ")
    assert "'demo'" in result.stdout and "etl.load run=manual__7" in result.stdout
    assert leaked(result) == []


def test_verify_json(cli: Sandbox, sealed: Path) -> None:
    doc = cli.ok("envelope", "verify", str(sealed), "--json").json()
    assert doc["valid"] is True and doc["reason"] is None
    assert doc["header"]["audience"] == "demo"


def test_verify_with_a_signers_file_needs_no_keyring(cli: Sandbox, sealed: Path) -> None:
    env = cli.environ(ISOLATION_KEYRING=str(cli.root / "no-keyring"))
    signers = cli.envs / "demo" / "keys" / "signers.json"
    assert cli.ok("envelope", "verify", str(sealed), "--signers", str(signers), env=env).stdout.startswith("valid:")


def test_verify_without_a_keyring_says_how(cli: Sandbox, sealed: Path) -> None:
    env = cli.environ(ISOLATION_KEYRING=str(cli.root / "no-keyring"))
    result = cli.run("envelope", "verify", str(sealed), env=env)
    assert result.code == 4, str(result)
    assert "no host signer keyset" in result.stderr and "--signers" in result.stderr


def test_verify_tampered_is_bad_signature(cli: Sandbox, sealed: Path) -> None:
    (cli.root / "tampered.txt").write_text(tamper(sealed.read_text().strip()))
    rejected(cli.run("envelope", "verify", str(cli.root / "tampered.txt")), "bad-signature")


def test_verify_tampered_json_says_why(cli: Sandbox, sealed: Path) -> None:
    (cli.root / "tampered.txt").write_text(tamper(sealed.read_text().strip()))
    result = cli.run("envelope", "verify", str(cli.root / "tampered.txt"), "--json")
    rejected(result, "bad-signature")
    doc = result.json()
    assert doc["valid"] is False and doc["reason"] == "bad-signature"
    assert doc["header"]["audience"] == "demo"


def test_verify_expired(cli: Sandbox) -> None:
    provision(cli)
    (cli.root / "old.txt").write_text(seal(cli, now=int(time.time()) - 3 * 3600))
    rejected(cli.run("envelope", "verify", str(cli.root / "old.txt")), "expired")


def test_verify_untrusted_signer_is_unknown_key(cli: Sandbox) -> None:
    provision(cli)
    (cli.root / "other.txt").write_text(seal(cli, signer=Keyset.generate_signer()))
    rejected(cli.run("envelope", "verify", str(cli.root / "other.txt")), "unknown-key")


def test_verify_revoked_signer_key(cli: Sandbox, sealed: Path) -> None:
    signer = keyring(cli).signer()
    old = signer.primary().kid
    rotated, new = signer.add()
    revoked = rotated.promote(new.kid).revoke(old, force=True)
    revoked.public().save(cli.root / "signers-revoked.json")
    result = cli.run("envelope", "verify", str(sealed), "--signers", str(cli.root / "signers-revoked.json"))
    rejected(result, "revoked-key")


def test_verify_refuses_a_recipient_keyset_as_signers(cli: Sandbox, sealed: Path) -> None:
    public = cli.keyring / "environments" / "demo.json"
    result = cli.run("envelope", "verify", str(sealed), "--signers", str(public))
    assert result.code == 4, str(result)
    assert "not a signer keyset" in result.stderr


# --------------------------------------------------------------------------- open


def test_open_redacts_every_secret(cli: Sandbox, sealed: Path) -> None:
    result = cli.ok("envelope", "open", str(sealed), "-e", "demo")
    assert leaked(result) == []
    assert "<redacted str, 11 characters>" in result.stdout  # the password: its length only
    assert "connections.db.host" in result.stdout and "db.internal" in result.stdout
    assert "operator.kwargs.api_token" in result.stdout and "variables.api_key" in result.stdout
    assert "redacted: connection logins, passwords and extras" in result.stderr


def test_open_json_is_redacted_and_parses(cli: Sandbox, sealed: Path) -> None:
    result = cli.ok("envelope", "open", str(sealed), "-e", "demo", "--json")
    assert leaked(result) == []
    doc = result.json()
    assert doc["connections"]["db"]["password"] == {"$redacted": "str", "characters": len(PASSWORD)}
    assert doc["operator"]["kwargs"]["retries"] == {"$redacted": "int"}
    assert doc["xcom_inputs"][0]["value"] == {"$redacted": "dict", "keys": 1}
    assert doc["context"]["dag_id"] == "etl"


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_open_reveal_shows_the_secrets(cli: Sandbox, sealed: Path, as_json: bool) -> None:
    result = cli.ok("envelope", "open", str(sealed), "-e", "demo", "--reveal", *(["--json"] if as_json else []))
    for secret in (PASSWORD, LOGIN, KWARG, PARAM, XCOM):
        assert secret in result.stdout, secret
    assert (json.dumps(VARIABLE)[1:-1] if as_json else VARIABLE) in result.stdout
    assert "secret values are shown" in result.stderr


def test_open_with_a_keys_dir(cli: Sandbox, sealed: Path) -> None:
    keys = cli.envs / "demo" / "keys"
    doc = cli.ok("envelope", "open", str(sealed), "--keys-dir", str(keys), "--reveal", "--json").json()
    assert doc["variables"] == {"api_key": VARIABLE}


def test_open_with_the_wrong_environments_keys_is_wrong_audience(cli: Sandbox, sealed: Path) -> None:
    provision(cli, "other")
    result = cli.run("envelope", "open", str(sealed), "-e", "other")
    rejected(result, "wrong-audience")
    assert leaked(result) == []


def test_open_unknown_environment(cli: Sandbox, sealed: Path) -> None:
    result = cli.run("envelope", "open", str(sealed), "-e", "nosuch")
    assert result.code == 3, str(result)
    assert "no local environment 'nosuch'" in result.stderr and "demo" in result.stderr


def test_open_invalid_environment_name(cli: Sandbox, sealed: Path) -> None:
    result = cli.run("envelope", "open", str(sealed), "-e", "../demo")
    assert result.code == 3, str(result)
    assert "invalid environment name" in result.stderr


def test_open_needs_exactly_one_set_of_keys(cli: Sandbox, sealed: Path) -> None:
    result = cli.run("envelope", "open", str(sealed))
    assert result.code == 2, str(result)
    assert "-e NAME or --keys-dir DIR" in result.stderr


def test_open_tampered_is_bad_signature(cli: Sandbox, sealed: Path) -> None:
    (cli.root / "tampered.txt").write_text(tamper(sealed.read_text().strip()))
    result = cli.run("envelope", "open", str(cli.root / "tampered.txt"), "-e", "demo", "--reveal")
    rejected(result, "bad-signature")
    assert leaked(result) == []


# --------------------------------------------------------------------------- seal


def test_open_then_seal_round_trips(cli: Sandbox, sealed: Path) -> None:
    revealed = cli.ok("envelope", "open", str(sealed), "-e", "demo", "--reveal", "--json").stdout
    (cli.root / "payload.json").write_text(revealed)
    out = cli.root / "resealed.txt"
    result = cli.ok("envelope", "seal", str(cli.root / "payload.json"), "-e", "demo", "-o", str(out))
    assert result.stdout == "" and leaked(result) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().strip() != sealed.read_text().strip()  # a fresh envelope id and time
    assert cli.ok("envelope", "open", str(out), "-e", "demo", "--reveal", "--json").stdout == revealed


def test_seal_to_stdout_then_open_from_stdin(cli: Sandbox) -> None:
    provision(cli)
    doc = {
        "operator": {"import_path": "pkg.mod.Op"},
        "context": {"dag_id": "d", "task_id": "t", "run_id": "r", "logical_date": "2024-05-01T00:00:00+00:00"},
    }
    text = cli.ok("envelope", "seal", "-", "-e", "demo", "--lifetime", "120", input=json.dumps(doc)).stdout
    header = cli.ok("envelope", "inspect", "-", "--json", input=text).json()
    assert header["lifetime_seconds"] == 120
    opened = cli.ok("envelope", "open", "-", "-e", "demo", "--json", input=text).json()
    assert opened["context"]["logical_date"] == {"$datetime": "2024-05-01T00:00:00+00:00"}
    assert opened["operator"]["kwargs"] == {}
    # Signing an arbitrary operator with the host's key leaves a line in the audit log.
    sealing = [e for e in cli.ok("keys", "audit", "--json").json() if e["command"] == "envelope seal"]
    assert len(sealing) == 1 and sealing[0]["keyset"] == "recipient:demo"
    assert header["signer_key_id"] in sealing[0]["key_ids"]


def test_tagged_values_round_trip(cli: Sandbox) -> None:
    provision(cli)
    kwargs = {
        "blob": {"$bytes": "AAEC/w=="},
        "when": {"$datetime": "2024-01-02T03:04:05.000006+02:00"},
        "day": {"$date": "2024-02-29"},
        "wait": {"$timedelta": [-1, 86399, 5]},
        "fn": {"$callable": "os.path:join"},
        "nan": {"$float": "nan"},
        "looks_tagged": {"$map": {"$bytes": "not bytes"}},
        "nested": [1, 2.5, None, True, {"a": {"$date": "2000-01-01"}}],
    }
    doc = {
        "operator": {"import_path": "pkg.mod.Op", "kwargs": kwargs},
        "context": {"dag_id": "d", "task_id": "t", "run_id": "r"},
    }
    text = cli.ok("envelope", "seal", "-", "-e", "demo", input=json.dumps(doc)).stdout
    opened = cli.ok("envelope", "open", "-", "-e", "demo", "--reveal", "--json", input=text).json()
    assert opened["operator"]["kwargs"] == kwargs


def _redacted_json(cli: Sandbox, sealed: Path) -> str:
    return cli.ok("envelope", "open", str(sealed), "-e", "demo", "--json").stdout


SEAL_ERRORS = [
    (_redacted_json, 3, "was redacted"),
    (lambda cli, sealed: "{not json", 3, "is not JSON"),
    (lambda cli, sealed: '{"operator": {"import_path": "x"}}', 3, "not a payload of schema version 1"),
    (lambda cli, sealed: '{"operator": {}, "context": {}, "operator": {}}', 3, "'operator' twice"),
    (
        lambda cli, sealed: json.dumps({"operator": {"import_path": "a.B", "kwargs": {"k": {"$nope": 1}}}}),
        3,
        "unknown tag",
    ),
]


@pytest.mark.parametrize(
    ("make", "code", "words"), SEAL_ERRORS, ids=["redacted", "not-json", "schema", "duplicate", "tag"]
)
def test_seal_refuses_bad_payload_json(cli: Sandbox, sealed: Path, make, code: int, words: str) -> None:
    (cli.root / "p.json").write_text(make(cli, sealed))
    result = cli.run("envelope", "seal", str(cli.root / "p.json"), "-e", "demo")
    assert result.code == code, str(result)
    assert words in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_seal_error_never_quotes_a_value(cli: Sandbox) -> None:
    provision(cli)
    doc = {"operator": {"import_path": "a.B"}, "context": {"dag_id": "d", "task_id": "t", "run_id": "r"}}
    doc["variables"] = {"k": 12345678}  # a variable must be a string
    doc["connections"] = {"c": {"conn_type": "x", "password": {"$bytes": PASSWORD}}}
    result = cli.run("envelope", "seal", "-", "-e", "demo", input=json.dumps(doc))
    assert result.code == 3, str(result)
    assert "12345678" not in result.output and leaked(result) == []


def test_seal_for_an_unknown_environment(cli: Sandbox) -> None:
    provision(cli)
    doc = {"operator": {"import_path": "a.B"}, "context": {"dag_id": "d", "task_id": "t", "run_id": "r"}}
    result = cli.run("envelope", "seal", "-", "-e", "nosuch", input=json.dumps(doc))
    assert result.code == 4, str(result)
    assert "no public keys for environment 'nosuch'" in result.stderr


def test_seal_refuses_a_lifetime_beyond_the_overlap_window(cli: Sandbox) -> None:
    provision(cli)
    doc = {"operator": {"import_path": "a.B"}, "context": {"dag_id": "d", "task_id": "t", "run_id": "r"}}
    result = cli.run("envelope", "seal", "-", "-e", "demo", "--lifetime", "86400", input=json.dumps(doc))
    assert result.code == 3, str(result)
    assert "overlap window" in result.stderr and result.stdout == ""


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["inspect", "verify", "open", "seal"])
def test_help_has_an_example(cli: Sandbox, command: str) -> None:
    result = cli.ok("envelope", command, "--help")
    assert f"isolationctl envelope {command}" in result.stdout


def test_group_help_lists_the_commands(cli: Sandbox) -> None:
    result = cli.ok("envelope", "--help")
    for command in ("inspect", "verify", "open", "seal"):
        assert command in result.stdout


def test_terminal_controls_in_an_envelope_never_reach_the_terminal(cli: Sandbox) -> None:
    # inspect reads envelopes from anyone, without keys: its output must not be able to
    # retitle the terminal, clear it, or rewrite the "valid:" line.
    provision(cli)
    hostile = "d\x1b]0;pwned\x07\x1b[2J\r\x1b[Kfake: valid\u202e"
    doc = {
        "operator": {"import_path": "pkg.mod.Op"},
        "context": {
            "dag_id": hostile,
            "task_id": "t",
            "run_id": "r\nfake",
            "logical_date": "2024-05-01T00:00:00+00:00",
        },
    }
    text = cli.ok("envelope", "seal", "-", "-e", "demo", input=json.dumps(doc)).stdout
    for args in (("inspect", "-"), ("verify", "-"), ("open", "-", "-e", "demo")):
        result = cli.ok("envelope", *args, input=text)
        for control in ("\x1b", "\x07", "\r", "\u202e"):
            assert control not in result.output, (args, result.output)
        assert "fake" not in "".join(line[:4] for line in result.stdout.splitlines()), result.stdout
