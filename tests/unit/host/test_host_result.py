"""The result document as untrusted input, and how each exit code becomes an Airflow outcome."""

from __future__ import annotations

import json
import re

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from isolation.backends import RunOutcome
from isolation.errors import IsolatedTaskFailed, IsolatedTaskFailedNoRetry, IsolatedTaskRejected, IsolatedTaskViolation
from isolation.operators.isolated import _interpret
from isolation.operators.result import parse_result

SECRET = "result-secret-value-42"


def doc(**fields):
    base = {"format": "isolation-result/v1", "outcome": "success", "return_value": None, "xcoms": [], "error": None}
    base.update(fields)
    return json.dumps(base).encode()


def test_valid_document():
    result = parse_result(
        doc(
            return_value={"a": [1, 2]},
            xcoms=[{"key": "k", "value": 3}],
            environment={"python": "3.12.1", "airflow": "2.11.2", "name": "legacy"},
        ),
        environment="legacy",
    )
    assert result.return_value == {"a": [1, 2]}
    assert [(x.key, x.value) for x in result.xcoms] == [("k", 3)]
    assert result.environment.airflow == "2.11.2"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"format": "isolation-result/v1", "outcome": "success", "return_value": NaN}', "not valid JSON"),
        (doc(format="isolation-result/v2"), "fields: format"),
        (doc(outcome="exploded"), "fields: outcome"),
        (doc(extra_field=SECRET), "fields: extra_field"),
        (doc(xcoms=[{"key": "return_value", "value": SECRET}]), "reserved XCom key 'return_value'"),
        (doc(xcoms=[{"key": "", "value": 1}]), "fields: xcoms.0.key"),
        (doc(error={"type": "X"}), "fields: error.message"),
        (doc(environment={"python": "3.12.1\nfake log line"}), "fields: environment.python"),
        (doc(environment={"airflow": "3.3.2 (patched)"}), "fields: environment.airflow"),
        (doc(environment={"name": "other"}), "claims to come from environment 'other'"),
        (doc(return_value=json.loads("[" * 100 + "]" * 100)), "nests deeper"),
        (b" " * (16 * 1024 * 1024 + 1), "larger than"),
    ],
)
def test_bad_documents_fail_without_quoting_them(data, message):
    with pytest.raises(IsolatedTaskFailed, match=message) as info:
        parse_result(data, environment="legacy")
    assert SECRET not in info.value.diagnostics()


def raw(return_value="null", xcoms="[]"):
    """A document with literal number text in it (json.dumps never writes 1e999)."""
    text = (
        f'{{"format": "isolation-result/v1", "outcome": "success", "return_value": {return_value}, "xcoms": {xcoms}}}'
    )
    return text.encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw(return_value="1e999"), "non-finite number in its return value"),
        (raw(return_value="-1e999"), "non-finite number in its return value"),
        (raw(return_value='{"a": [1, {"b": [2.5, -1e999]}]}'), "non-finite number in its return value"),
        (raw(xcoms='[{"key": "ok", "value": 1.5}, {"key": "big", "value": 1e999}]'), "non-finite number in XCom 'big'"),
        (raw(xcoms='[{"key": "neg", "value": -1e999}]'), "non-finite number in XCom 'neg'"),
        (raw(xcoms='[{"key": "deep", "value": {"x": [[-1E400]]}}]'), "non-finite number in XCom 'deep'"),
    ],
)
def test_overflowing_numbers_are_refused_naming_where(data, message):
    with pytest.raises(IsolatedTaskFailed, match=message) as info:
        parse_result(data, environment="legacy")
    text = info.value.diagnostics().lower()
    assert "e999" not in text and "e400" not in text and "inf" not in text.replace("infinity", "")


def test_finite_numbers_pass():
    result = parse_result(raw(return_value="[1e308, -2.5e-999, 0.0]"), environment="legacy")
    assert result.return_value == [1e308, -0.0, 0.0]


@pytest.mark.parametrize(
    "key",
    [
        "isolation_environment",
        "isolation_anything_new",
        "ISOLATION_Environment",
        " isolation_environment ",
        "return_value",
        "Return_Value",
        "skipmixin_key",
        "past_depends_met",
        "_link_ExternalLink",
    ],
)
def test_reserved_xcom_keys_are_refused_naming_the_key(key):
    data = doc(xcoms=[{"key": "fine", "value": 1}, {"key": key, "value": SECRET}])
    with pytest.raises(IsolatedTaskFailed, match=f"reserved XCom key {re.escape(repr(key))}") as info:
        parse_result(data, environment="legacy")
    assert SECRET not in info.value.diagnostics()
    assert "isolation_" in info.value.diagnostics()


def test_keys_outside_the_reserved_ones_pass():
    keys = ["isolation", "isolationist", "my_isolation_key", "return_values", "link_", "skipmixin"]
    result = parse_result(doc(xcoms=[{"key": key, "value": 1} for key in keys]), environment="legacy")
    assert [x.key for x in result.xcoms] == keys


def test_long_reserved_key_is_shown_shortened():
    key = "isolation_" + "x" * 500
    with pytest.raises(IsolatedTaskFailed) as info:
        parse_result(doc(xcoms=[{"key": key, "value": 1}]), environment="legacy")
    assert key not in str(info.value) and "isolation_xxx" in str(info.value)


def outcome(code, result=None, tail=()):
    return RunOutcome(code, result, tuple(tail))


def test_success_returns_the_result():
    result = _interpret(outcome(0, doc(return_value=5)), "legacy")
    assert result.return_value == 5


def test_failure_carries_the_isolated_error():
    types = ["builtins.ValueError", "builtins.Exception", "builtins.BaseException"]
    data = doc(outcome="failed", error={"type": "ValueError", "message": "boom in isolation", "types": types})
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(1, data), "legacy")
    # What on_failure_callback sees as context["exception"]: the original type and message.
    assert str(info.value) == "ValueError: boom in isolation"
    assert info.value.isolated_type == "ValueError"
    assert info.value.isolated_types == tuple(types)
    assert info.value.isolated_message == "boom in isolation"
    assert info.value.diagnostics().startswith(
        "the isolated task in environment 'legacy' failed: ValueError: boom in isolation"
    )
    # An ordinary failure is retried, as on the host.
    assert not isinstance(info.value, (AirflowFailException, IsolatedTaskFailedNoRetry))


def test_a_result_without_type_names_is_an_ordinary_failure():
    # A runtime older than the "types" field.
    data = doc(outcome="failed", error={"type": "AirflowFailException", "message": "stop"})
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(1, data), "legacy")
    assert info.value.isolated_types == () and not isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("AirflowFailException", "airflow.exceptions"),  # Airflow 2 and 3.0
        ("AirflowFailException", "airflow.sdk.exceptions"),  # Airflow 3.1+
        ("AirflowSensorTimeout", "airflow.exceptions"),
        ("AirflowSensorTimeout", "airflow.sdk.exceptions"),
    ],
)
def test_exceptions_airflow_never_retries_fail_without_retry_on_the_host(name, module):
    types = [f"{module}.{name}", f"{module}.AirflowException", "builtins.Exception", "builtins.BaseException"]
    data = doc(outcome="failed", error={"type": name, "message": "no point in trying again", "types": types})
    with pytest.raises(AirflowFailException) as info:
        _interpret(outcome(1, data), "modern")
    assert isinstance(info.value, IsolatedTaskFailedNoRetry)
    assert str(info.value) == f"{name}: no point in trying again"
    assert info.value.isolated_type == name and info.value.isolated_types == tuple(types)
    assert "not retried" in info.value.diagnostics()


def test_a_subclass_of_airflow_fail_exception_is_not_retried_either():
    types = ["mypkg.errors.Fatal", "airflow.exceptions.AirflowFailException", "builtins.Exception"]
    data = doc(outcome="failed", error={"type": "Fatal", "message": "bad data", "types": types})
    with pytest.raises(AirflowFailException, match=r"^Fatal: bad data$"):
        _interpret(outcome(1, data), "legacy")


def test_a_class_named_like_airflows_outside_airflow_is_retried():
    types = ["mypkg.AirflowFailException", "builtins.Exception"]
    data = doc(outcome="failed", error={"type": "AirflowFailException", "message": "x", "types": types})
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(1, data), "legacy")
    assert not isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(
    ("name", "types"),
    [
        ("ConnectionNotProvided", ["isolation.runtime.compat.ConnectionNotProvided", "isolation.errors.NotProvided"]),
        ("VariableNotProvided", ["isolation.runtime.compat.VariableNotProvided", "isolation.errors.NotProvided"]),
        ("XComNotProvided", ["isolation.errors.XComNotProvided", "isolation.errors.NotProvided"]),
        ("ContextNotAvailable", ["isolation.errors.ContextNotAvailable", "isolation.errors.NotProvided"]),
    ],
)
def test_asking_for_what_was_not_sent_fails_without_retry(name, types):
    # Every try is sent the same connections, variables, XComs and context: a retry cannot help.
    types = [*types, "isolation.errors.IsolationError", "builtins.Exception"]
    data = doc(outcome="failed", error={"type": name, "message": "declare it with connections=['db']", "types": types})
    with pytest.raises(AirflowFailException) as info:
        _interpret(outcome(1, data), "modern")
    assert isinstance(info.value, IsolatedTaskFailedNoRetry)
    assert str(info.value) == f"{name}: declare it with connections=['db']"
    assert "not retried" in info.value.diagnostics()
    assert "names what to declare" in info.value.diagnostics()


LOAD_ERROR = ["isolation.errors.OperatorLoadError", "isolation.errors.IsolationError", "builtins.Exception"]


def test_an_operator_the_environment_cannot_build_fails_without_retry_naming_path_and_arguments():
    message = "BashOperator rejected its arguments (TypeError: unexpected keyword argument 'bash_comand')"
    data = doc(outcome="failed", error={"type": "OperatorLoadError", "message": message, "types": LOAD_ERROR})
    with pytest.raises(AirflowFailException) as info:
        _interpret(outcome(2, data, ["isolation-runtime: failed (exit 2): ..."]), "legacy")
    assert isinstance(info.value, IsolatedTaskFailedNoRetry)
    assert str(info.value) == f"OperatorLoadError: {message}"
    text = info.value.diagnostics()
    assert "check the operator path/arguments" in text and "environments/legacy/requirements.txt" in text
    assert "keys directory" not in text


def test_keys_problems_at_start_keep_the_keys_hint():
    types = ["isolation.errors.KeysetError", "isolation.errors.IsolationError", "builtins.Exception"]
    data = doc(
        outcome="failed", error={"type": "KeysetError", "message": "keys directory /x is missing", "types": types}
    )
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(2, data), "legacy")
    assert not isinstance(info.value, AirflowFailException)
    assert "keys directory /x is missing" in str(info.value)
    assert "check the environment's keys directory" in info.value.diagnostics()
    assert "operator path" not in info.value.diagnostics()


def test_other_start_problems_do_not_blame_the_keys():
    types = ["isolation.errors.ConfigurationError", "isolation.errors.IsolationError", "builtins.Exception"]
    data = doc(outcome="failed", error={"type": "ConfigurationError", "message": "no envelope", "types": types})
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(2, data), "legacy")
    assert "no envelope" in str(info.value) and "keys directory" not in info.value.diagnostics()
    assert not isinstance(info.value, AirflowFailException)


def test_exit_2_must_report_failed():
    with pytest.raises(IsolatedTaskFailed, match="exited with code 2 but reported 'success'"):
        _interpret(outcome(2, doc()), "legacy")


def test_too_many_type_names_are_refused():
    data = doc(outcome="failed", error={"type": "E", "message": "m", "types": ["a.E"] * 33})
    with pytest.raises(IsolatedTaskFailed, match=r"fields: error\.types"):
        _interpret(outcome(1, data), "legacy")


def test_import_error_hints_at_the_environment():
    data = doc(outcome="failed", error={"type": "ModuleNotFoundError", "message": "No module named 'nope'"})
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(outcome(1, data), "legacy")
    assert "environments/legacy/requirements.txt" in info.value.diagnostics()


def test_skip():
    data = doc(outcome="skipped", error={"type": "AirflowSkipException", "message": "nothing to do"})
    with pytest.raises(AirflowSkipException, match="nothing to do"):
        _interpret(outcome(99, data), "legacy")
    with pytest.raises(AirflowSkipException, match="skipped"):
        _interpret(outcome(99), "legacy")


def test_rejected_names_reason_and_hint():
    data = doc(outcome="rejected", error={"type": "EnvelopeRejected", "message": "envelope rejected (unknown-key)"})
    with pytest.raises(IsolatedTaskRejected, match="unknown-key") as info:
        _interpret(outcome(3, data), "legacy")
    assert "public signer keyset into this environment's keys" in info.value.diagnostics()
    with pytest.raises(IsolatedTaskRejected, match="expired") as info:
        _interpret(outcome(3, None, ["error: envelope rejected (expired)"]), "legacy")
    assert "lifetime" in info.value.diagnostics()


def test_violation():
    data = doc(outcome="violation", error={"type": "IsolationViolation", "message": "Variable.set is forbidden"})
    with pytest.raises(IsolatedTaskViolation, match=r"Variable\.set is forbidden"):
        _interpret(outcome(4, data), "legacy")


def test_a_violation_is_never_retried():
    # The same code meets the same refusal on every try; Airflow does not retry an AirflowFailException.
    message = "TriggerDagRunOperator cannot trigger a DAG run from isolation (...): run it on the host"
    data = doc(outcome="violation", error={"type": "IsolationViolation", "message": message})
    with pytest.raises(AirflowFailException) as info:
        _interpret(outcome(4, data), "modern")
    assert isinstance(info.value, IsolatedTaskViolation)
    assert "broke the no-callback contract (not retried)" in str(info.value)
    assert message in str(info.value)


def test_could_not_start_shows_the_log_tail():
    with pytest.raises(IsolatedTaskFailed, match="could not start") as info:
        _interpret(outcome(2, None, ["", "error: keys directory missing"]), "legacy")
    assert "keys directory missing" in str(info.value)


def test_unexpected_exit_code_means_no_runtime():
    with pytest.raises(IsolatedTaskFailed, match="exited with code 127") as info:
        _interpret(outcome(127, None, ["No module named isolation"]), "legacy")
    assert "isolationctl deploy --local -e legacy" in info.value.diagnostics()


def test_killed():
    with pytest.raises(IsolatedTaskFailed, match="killed by signal 9"):
        _interpret(outcome(-9), "legacy")


def test_exit_code_and_outcome_must_agree():
    with pytest.raises(IsolatedTaskFailed, match="exited with code 0 but reported 'failed'"):
        _interpret(outcome(0, doc(outcome="failed")), "legacy")


def test_success_without_result_fails():
    with pytest.raises(IsolatedTaskFailed, match="wrote no result"):
        _interpret(outcome(0), "legacy")


def test_failure_without_result_uses_the_log():
    with pytest.raises(IsolatedTaskFailed, match="before writing a result") as info:
        _interpret(outcome(1, None, ["Traceback", "SyntaxError: bad"]), "legacy")
    assert "SyntaxError: bad" in str(info.value)
