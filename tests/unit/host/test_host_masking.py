"""The host masks every line it forwards from the isolated task, in every spelling, itself."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from isolation.operators import isolated
from isolation.operators.isolated import IsolatedOperator
from isolation.transport.payload import ConnectionSpec

PASSWORD = 'p\\ä"ss wörd/&+'
LOGIN = "login-Zx81"
TOKEN = "tok-Qm55"
VARIABLE = "var-Lp09"


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, message: str, *args: Any) -> None:
        self.lines.append(message % args)


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> tuple[IsolatedOperator, _Log, list[str]]:
    registered: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", registered.append)
    log = _Log()
    monkeypatch.setattr(IsolatedOperator, "log", property(lambda self: log))
    op = IsolatedOperator(task_id="t", operator="a.b.C", environment="env")
    connections = {
        "db": ConnectionSpec(conn_type="postgres", login=LOGIN, password=PASSWORD, extra=json.dumps({"token": TOKEN}))
    }
    op._log_masker = isolated._mask(isolated._secret_values(connections, {"v": VARIABLE}))
    return op, log, registered


def test_forwarded_lines_are_masked_in_every_spelling(operator: tuple[IsolatedOperator, _Log, list[str]]) -> None:
    op, log, _ = operator
    forms = [
        PASSWORD,
        repr(PASSWORD)[1:-1],
        json.dumps(PASSWORD)[1:-1],
        json.dumps(PASSWORD, ensure_ascii=False)[1:-1],
        quote(PASSWORD, safe=""),
        quote(PASSWORD),
        quote_plus(PASSWORD),
    ]
    for form in forms:
        op._log_line(f"before {form} after")
    op._log_line(f"login={LOGIN} token={TOKEN!r} var={json.dumps(VARIABLE)}")
    op._log_line("nothing secret here")
    assert log.lines == ["before *** after"] * len(forms) + ["login=*** token='***' var=\"***\"", "nothing secret here"]


def test_secrets_are_also_registered_with_airflow(operator: tuple[IsolatedOperator, _Log, list[str]]) -> None:
    _, _, registered = operator
    # The same strings the runtime hides: the extra and its JSON leaves too.
    assert set(registered) == {PASSWORD, LOGIN, json.dumps({"token": TOKEN}), TOKEN, VARIABLE}


def test_airflows_secret_mask_adapter_adds_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value: None)
    monkeypatch.setenv("AIRFLOW__LOGGING__SECRET_MASK_ADAPTER", "html.escape")
    assert isolated._airflow_mask_adapter() is html.escape
    masker = isolated._mask(["pass&word<1"])
    assert masker.mask("<b>pass&amp;word&lt;1</b>") == "<b>***</b>"
    monkeypatch.delenv("AIRFLOW__LOGGING__SECRET_MASK_ADAPTER")
    assert isolated._airflow_mask_adapter() is None


def test_errors_built_from_the_isolated_side_are_masked():
    # The last log lines and the result's error go into exceptions Airflow prints as tracebacks.
    from isolation.backends import RunOutcome
    from isolation.errors import IsolatedTaskFailed
    from isolation.masking import SecretMasker
    from isolation.operators.isolated import _interpret

    secret = 'p\\ä"ss wörd-tail'
    masker = SecretMasker([secret])
    crashed = RunOutcome(2, None, ("starting", f"boom {secret!r}", "bye"))
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(crashed, "legacy", masker)
    assert "boom" in str(info.value) and "***" in str(info.value)
    assert "ss w" not in str(info.value) and "s\\\\" not in str(info.value)
    document = {
        "format": "isolation-result/v1",
        "outcome": "failed",
        "error": {"type": "ValueError", "message": f"bad {secret}"},
    }
    failed = RunOutcome(1, json.dumps(document).encode(), ())
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(failed, "legacy", masker)
    assert "ValueError: bad ***" in str(info.value)
    # What callbacks read besides the message: the type names are the environment's words too.
    document["error"] = {"type": f"E_{secret}", "message": "x", "types": [f"m.E_{secret}", "builtins.Exception"]}
    with pytest.raises(IsolatedTaskFailed) as info:
        _interpret(RunOutcome(1, json.dumps(document).encode(), ()), "legacy", masker)
    assert info.value.isolated_type == "E_***"
    assert info.value.isolated_types == ("m.E_***", "builtins.Exception")
