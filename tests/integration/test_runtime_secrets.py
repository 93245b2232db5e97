"""Secrets never leak: not into logs, errors, the result file, nor child process environments.

Each task holds connection and variable values that are unmistakable strings and
tries hard to print them; the runtime must mask every occurrence. The opt-in
``export_secrets_to_env`` run is the control that shows the environment check can fail.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.masking import variants
from isolation.transport import CallableRef
from isolation.transport.payload import ConnectionSpec
from tests.integration._runtime import PYTHON, Run, bash_path, make_payload, run_many, run_runtime

pytestmark = [pytest.mark.envs, pytest.mark.slow, pytest.mark.every_version]

PASSWORD = "pw-7Hq2vK-not-for-logs"
LOGIN = "login-Zx81-not-for-logs"
EXTRA_TOKEN = "extra-Qm55-not-for-logs"
VARIABLE = "var-Lp09-not-for-logs"
SECRETS = [PASSWORD, LOGIN, EXTRA_TOKEN, VARIABLE]
# A backslash, a double quote, a space, non-ASCII letters and URL specials: its escaped
# spellings (repr, JSON, URL-quoted) all differ from it and from each other.
HARD = 'p\\ä"ss wörd/&+'
HARD_FORMS = ["raw", "repr", "json", "json_unicode", "quote", "quote_slash", "quote_plus", "bytes"]
WRITE_PATHS = ["print", "dunder_stdout", "dunder_stderr", "fd1", "fd2", "logged", "child_out", "child_err"]

DUMP_ENV = (
    'env | sort > "$ISOLATION_TEST_OUT/bash_env.txt"; '
    "cat /proc/self/environ | tr '\\0' '\\n' > \"$ISOLATION_TEST_OUT/proc_environ.txt\"; "
)


def _secret_inputs() -> dict[str, Any]:
    return {
        "connections": {
            "db": ConnectionSpec(
                conn_type="postgres",
                host="db.internal",
                login=LOGIN,
                password=PASSWORD,
                extra=json.dumps({"token": EXTRA_TOKEN}),
            )
        },
        "variables": {"token": VARIABLE},
    }


def _hard_inputs() -> dict[str, Any]:
    return {"connections": {"hard": ConnectionSpec(conn_type="http", host="api.internal", password=HARD)}}


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"secrets-{environment.name}")
    bash_operator = bash_path(environment)
    command = (
        DUMP_ENV
        + 'echo "pw={{ conn.db.password }} tok={{ var.value.token }} x={{ conn.db.extra_dejson.token }}"; echo done'
    )
    jobs = {
        "bash": (environment, make_payload(bash_operator, {"bash_command": command}, **_secret_inputs())),
        "python": (
            environment,
            make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:leak_attempts")}, **_secret_inputs()),
        ),
        "error": (
            environment,
            make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:leak_in_error")}, **_secret_inputs()),
        ),
        "escaped": (
            environment,
            make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:leak_escaped_forms")}, **_hard_inputs()),
        ),
        "escaped_error": (
            environment,
            make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:leak_escaped_in_error")}, **_hard_inputs()),
        ),
        "exported": (
            environment,
            make_payload(
                bash_operator,
                {"bash_command": DUMP_ENV + "echo done"},
                options={"export_secrets_to_env": True},
                **_secret_inputs(),
            ),
        ),
    }
    results = run_many(jobs, base)
    # The envelope itself in an environment variable: it must not reach the operator's children.
    results["env_transport"] = run_runtime(
        environment, base / "env_transport", payload=jobs["bash"][1], transport="env"
    )
    return results


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize("job", ["bash", "python", "error", "env_transport"])
def test_no_secret_in_logs_errors_or_result(runs: dict[str, Run], job: str) -> None:
    run = runs[job]
    assert run.result is not None, run.output
    assert _leaks(run.stdout) == []
    assert _leaks(run.stderr) == []
    assert _leaks(json.dumps(run.result)) == []
    assert _leaks((run.workdir / "result.json").read_text()) == []


def test_masked_values_were_really_printed(runs: dict[str, Run]) -> None:
    # Guards the test above against passing because nothing was printed at all.
    bash = runs["bash"]
    assert bash.code == 0, bash.output
    assert "pw=*** tok=*** x=***" in bash.stderr
    python = runs["python"]
    assert python.code == 0, python.output
    assert "password is ***" in python.stderr
    assert "token is ***" in python.stderr
    assert "login ***" in python.stderr


def test_secrets_are_registered_with_airflows_masker(runs: dict[str, Run]) -> None:
    assert json.loads(runs["python"].files["airflow_redact"]) == ["x *** y", "x *** y"]


def test_error_message_is_masked(runs: dict[str, Run]) -> None:
    run = runs["error"]
    assert run.code == 1
    assert run.result is not None
    assert run.result["error"] == {
        "type": "ValueError",
        "message": "could not log in with ***",
        "types": ["builtins.ValueError", "builtins.Exception", "builtins.BaseException"],
    }
    assert run.stderr.strip().splitlines()[-1].endswith("ValueError: could not log in with ***")


@pytest.mark.parametrize("job", ["bash", "env_transport"])
def test_child_process_environment_holds_no_secret(runs: dict[str, Run], job: str) -> None:
    run = runs[job]
    assert run.code == 0, run.output
    for name in ("bash_env.txt", "proc_environ.txt"):
        text = run.files[name]
        assert "AIRFLOW_HOME=" in text  # the dump worked
        assert _leaks(text) == []
        assert "ISOLATION_ENVELOPE" not in text
        assert "AIRFLOW_CONN_" not in text and "AIRFLOW_VAR_" not in text


def test_runtime_process_environment_holds_no_secret(runs: dict[str, Run]) -> None:
    text = runs["python"].files["environ"]
    assert "AIRFLOW_HOME=" in text
    assert _leaks(text) == []


def test_export_secrets_to_env_is_opt_in(runs: dict[str, Run]) -> None:
    run = runs["exported"]
    assert run.code == 0, run.output
    text = run.files["proc_environ.txt"]
    assert PASSWORD in text and VARIABLE in text
    assert "AIRFLOW_CONN_DB=" in text and "AIRFLOW_VAR_TOKEN=" in text
    # Even then, logs stay masked.
    assert _leaks(run.stderr) == []


def _hard_leaks(text: str) -> list[str]:
    return sorted(form for form in variants(HARD) if form in text)


@pytest.mark.parametrize("job", ["escaped", "escaped_error"])
def test_no_spelling_of_a_secret_by_any_write_path(runs: dict[str, Run], job: str) -> None:
    run = runs[job]
    assert run.result is not None, run.output
    assert _hard_leaks(run.stdout) == []
    assert _hard_leaks(run.stderr) == []
    assert _hard_leaks(json.dumps(run.result)) == []
    assert _hard_leaks(json.dumps(run.result, ensure_ascii=False)) == []
    assert _hard_leaks((run.workdir / "result.json").read_text(encoding="utf-8")) == []


def test_every_write_path_reached_the_log_masked(runs: dict[str, Run]) -> None:
    # Guards the test above: each labelled line arrived, with a mask where the secret was.
    run = runs["escaped"]
    assert run.code == 0, run.output
    for path in WRITE_PATHS:
        for form in HARD_FORMS:
            found = re.findall(rf"{path}-{form}=<([^>]*)>", run.stderr)
            assert found, f"{path}-{form} missing:\n{run.output}"
            assert all("***" in value for value in found), found
    # fds 1 and 2 are one masked stream, on standard error.
    assert run.stdout == ""


def test_error_message_with_escaped_secrets_is_masked(runs: dict[str, Run]) -> None:
    run = runs["escaped_error"]
    assert run.code == 1, run.output
    assert run.result is not None
    error = run.result["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == (
        'raw=<***> repr=<\'***\'> json=<"***"> json_unicode=<"***"> quote=<***> quote_slash=<***> '
        "quote_plus=<***> bytes=<b'***'>"
    )
    assert run.stderr.strip().splitlines()[-1].endswith(error["message"])
