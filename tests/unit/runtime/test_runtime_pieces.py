"""The runtime's pieces that run before Airflow is imported: reading, redaction, secrets, results."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from isolation.errors import ConfigurationError, IsolationViolation, ResultError
from isolation.runtime import logs, result, sandbox, secrets, source
from isolation.runtime.__main__ import run
from isolation.transport import ENV_VAR_LIMIT
from isolation.transport.payload import ConnectionSpec, OperatorSpec, Payload, TaskContext


def _payload(**kwargs: object) -> Payload:
    return Payload(
        operator=OperatorSpec(import_path="a.b.C"),
        context=TaskContext(dag_id="d", task_id="t", run_id="r"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_envelope_variable_is_removed_from_the_environment() -> None:
    env = {"ISOLATION_ENVELOPE": "abc\n", "ISOLATION_ENVELOPE_FILE": "/x", "OTHER": "1"}
    text = source.read_envelope(environ=env)
    assert text.data == b"abc"
    assert text.limit == ENV_VAR_LIMIT
    assert env == {"OTHER": "1"}


def test_stdin_flag_wins_over_the_variable() -> None:
    env = {"ISOLATION_ENVELOPE": "from-env"}
    text = source.read_envelope(use_stdin=True, environ=env, stdin=io.BytesIO(b"from-stdin"))
    assert text.data == b"from-stdin"
    assert env == {}


def test_missing_and_empty_envelopes_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        source.read_envelope(envelope_file=str(tmp_path / "nope"), environ={})
    with pytest.raises(ConfigurationError, match="is empty"):
        source.read_envelope(use_stdin=True, environ={}, stdin=io.BytesIO(b"\n"))


def test_expected_subject_is_parsed_strictly() -> None:
    subject = source.expected_subject({"ISOLATION_EXPECTED_SUBJECT": '["d", "t", "r", -1, 1]'})
    assert subject is not None and subject.as_list() == ["d", "t", "r", -1, 1]
    with pytest.raises(ConfigurationError):
        source.expected_subject({"ISOLATION_EXPECTED_SUBJECT": '["d", "t", "r", "-1", 1]'})


def test_result_path_precedence(tmp_path: Path) -> None:
    env = {"ISOLATION_RESULT_PATH": "/from/env"}
    assert source.result_path("/payload", "/flag", opened=True, environ=env) == "/payload"
    assert source.result_path(None, "/flag", opened=True, environ=env) == "/flag"
    assert source.result_path(None, None, opened=True, environ=env) == "/from/env"
    assert source.result_path(None, None, opened=True, environ={}) == source.DEFAULT_RESULT_PATH


def test_redacting_stream_masks_secrets_split_across_writes() -> None:
    redact = logs.Redactor()
    redact.add(["s3cr3t", "s3cr3t-longer"])
    target = io.StringIO()
    stream = logs.RedactingStream(target, redact)
    stream.write("a s3c")
    assert target.getvalue() == ""  # held until the newline
    stream.write("r3t and s3cr3t-longer\npartial s3cr3t")
    stream.drain()
    assert target.getvalue() == "a *** and ***\npartial ***"


def test_secret_values_include_json_leaves_and_lines() -> None:
    payload = _payload(
        connections={"c": ConnectionSpec(conn_type="http", password="pw-1", extra='{"token": "tok-1", "n": 1}')},
        variables={"v": '{"k": ["deep-1"]}', "key": "-----BEGIN-----\nline-two\n-----END-----", "short": "ab"},
    )
    values = secrets.secret_values(payload)
    for expected in ("pw-1", "tok-1", "deep-1", "line-two", "-----BEGIN-----"):
        assert expected in values
    assert "ab" not in values


def test_secrets_stay_out_of_the_environment_unless_exported() -> None:
    payload = _payload(connections={"my_db": ConnectionSpec(conn_type="sqlite", host="/x")}, variables={"k": "v"})
    secrets.provide(payload)
    assert secrets.has_connection("my_db") and not secrets.has_connection("other")
    assert json.loads(secrets.connection_json("my_db") or "") == {"conn_type": "sqlite", "host": "/x"}
    environ: dict[str, str] = {}
    secrets.export_to_environment(environ)
    assert set(environ) == {"AIRFLOW_CONN_MY_DB", "AIRFLOW_VAR_K"}


def test_database_url_in_environment_is_a_violation() -> None:
    sandbox.check_no_database_url({"AIRFLOW__CORE__DAGS_FOLDER": "/d"})
    with pytest.raises(IsolationViolation, match="AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"):
        sandbox.check_no_database_url({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat x"})


def test_sandbox_owns_airflow_settings() -> None:
    env = {"AIRFLOW__SECRETS__BACKEND": "elsewhere", "AIRFLOW_ENABLE_AIP_44": "true", "KEEP": "1"}
    home = sandbox.prepare(env)
    assert env["AIRFLOW_HOME"] == home
    assert env["AIRFLOW__SECRETS__BACKEND"] == sandbox.SECRETS_BACKEND
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == sandbox.UNUSABLE_DB_URL
    assert "AIRFLOW_ENABLE_AIP_44" not in env and env["KEEP"] == "1"
    assert Path(home, "airflow.cfg").read_text() == ""


def test_result_values_name_the_failing_key(tmp_path: Path) -> None:
    assert result.values((1, 2), [("k", {"a": None})]) == ([1, 2], [{"key": "k", "value": {"a": None}}])
    with pytest.raises(ResultError, match="XCom 'bad' is not JSON-serialisable"):
        result.values(None, [("bad", object())])
    path = tmp_path / "sub" / "result.json"
    result.write(str(path), result.document("success", return_value=1))
    assert json.loads(path.read_text())["format"] == "isolation-result/v1"
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_main_reports_a_missing_keys_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = tmp_path / "envelope"
    envelope.write_text("AAAA")
    code = run(
        ["--envelope-file", str(envelope), "--keys-dir", str(tmp_path / "none"), "--result-path", str(tmp_path / "r")]
    )
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("isolation-runtime: failed (exit 2): keys directory")
    assert json.loads((tmp_path / "r").read_text())["error"]["type"] == "KeysetError"


def test_the_result_documents_error_type_and_message_are_masked():
    # Both come from the operator's code: an exception class may be named from data too.
    from isolation.masking import SecretMasker
    from isolation.runtime import result

    secret = "hunter2-secret-name"
    error_type = type(f"Bad_{secret.replace('-', '_')}", (Exception,), {})
    masker = SecretMasker([secret, secret.replace("-", "_")])
    doc = result.document("failed", error=error_type(f"could not log in with {secret}"), redact=masker)
    assert doc["error"] == {
        "type": "Bad_***",
        "message": "could not log in with ***",
        "types": ["test_runtime_pieces.Bad_***", "builtins.Exception", "builtins.BaseException"],
    }
