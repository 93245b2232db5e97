"""Bad input ends in one actionable line on stderr and the documented exit code.

Never a bare traceback, and never after any operator code ran: the tasks below
would write a marker file if they ever executed.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from tests._envs import get_env
from tests.integration._runtime import PYTHON, Run, make_payload, run_calls, run_runtime, seal

pytestmark = [pytest.mark.envs, pytest.mark.slow]

MARKER = {"python_callable": CallableRef("it_tasks:mark_ran")}
OTHER = {"legacy": "modern", "modern": "legacy"}

# name: (exit code, text the one-line message must contain)
EXPECTED = {
    "missing_envelope": (2, "no envelope"),
    "empty_stdin": (2, "standard input is empty"),
    "bad_flag": (2, "unrecognized arguments"),
    "missing_keys": (2, "keys directory"),
    "truncated": (3, "envelope rejected (bad-format)"),
    "tampered": (3, "envelope rejected (bad-signature)"),
    "expired": (3, "envelope rejected (expired)"),
    "misaddressed": (3, "envelope rejected (wrong-audience)"),
    "wrong_subject": (3, "envelope rejected (wrong-subject)"),
    "operator_not_importable": (2, "'airflow.providers.nothing.operators.Nope' cannot be imported"),
    "callable_not_importable": (2, "'it_tasks:does_not_exist' cannot be imported"),
    "kwargs_rejected": (2, "PythonOperator rejected its arguments"),
    "misspelt_argument": (
        2,
        "PythonOperator rejected its arguments: unknown argument 'python_calable' (did you mean 'python_callable'?)",
    ),
}
# The value of the misspelt argument: names are reported, values never (they may be secrets).
MISSPELT_VALUE = "value-of-the-misspelt-argument"


def _tamper(text: str) -> str:
    middle = len(text) // 2
    return text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"bad-{environment.name}")
    good = make_payload(PYTHON, MARKER)
    text = seal(environment, good)
    other = get_env(OTHER[environment.name])

    def raw(name: str, stdin: str | None, args: list[str] | None = None, **env: str) -> Run:
        extra = {"ISOLATION_RESULT_PATH": str(base / name / "result.json"), **env}
        return run_runtime(environment, base / name, stdin=stdin, args=args, extra_env=extra)

    calls = {
        "missing_envelope": partial(raw, "missing_envelope", None, []),
        "empty_stdin": partial(raw, "empty_stdin", ""),
        "bad_flag": partial(raw, "bad_flag", text, ["--stdin", "--bogus"]),
        "missing_keys": partial(raw, "missing_keys", text, ISOLATION_KEYS_DIR=str(base / "no-such-keys")),
        # Cut to a length no base64 text can have (4k + 1): a format error whatever the
        # envelope's length. A cut that still decodes is a signature error (tampered).
        "truncated": partial(raw, "truncated", text[: len(text) // 8 * 4 + 1]),
        "tampered": partial(raw, "tampered", _tamper(text)),
        "expired": partial(raw, "expired", seal(environment, good, now=int(time.time()) - 7200, lifetime=60)),
        "misaddressed": partial(raw, "misaddressed", seal(other, good)),
        "wrong_subject": partial(
            raw,
            "wrong_subject",
            text,
            ISOLATION_EXPECTED_SUBJECT=json.dumps(["isolation_it", "another_task", "run", -1, 1]),
        ),
        "operator_not_importable": partial(
            run_runtime,
            environment,
            base / "operator_not_importable",
            payload=make_payload("airflow.providers.nothing.operators.Nope", MARKER),
        ),
        "callable_not_importable": partial(
            run_runtime,
            environment,
            base / "callable_not_importable",
            payload=make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:does_not_exist")}),
        ),
        "kwargs_rejected": partial(
            run_runtime,
            environment,
            base / "kwargs_rejected",
            payload=make_payload(PYTHON, {**MARKER, "no_such_argument": 1}),
        ),
        "misspelt_argument": partial(
            run_runtime,
            environment,
            base / "misspelt_argument",
            payload=make_payload(PYTHON, {"python_calable": MISSPELT_VALUE}),
        ),
    }
    return run_calls(calls)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_ends_with_one_line_and_its_exit_code(runs: dict[str, Run], case: str) -> None:
    run = runs[case]
    code, text = EXPECTED[case]
    assert run.code == code, run.output
    assert "Traceback" not in run.output
    last = run.stderr.strip().splitlines()[-1]
    assert text in last
    if case != "bad_flag":  # argparse's own usage message
        assert last.startswith("isolation-runtime: ")
        assert "hint:" in last or code == 2


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_no_operator_code_ran(runs: dict[str, Run], case: str) -> None:
    assert "ran" not in runs[case].files


@pytest.mark.parametrize("case", [c for c, (code, _) in EXPECTED.items() if code == 3])
def test_rejection_is_recorded_with_its_reason(runs: dict[str, Run], case: str) -> None:
    result = runs[case].result
    assert result is not None
    assert result["outcome"] == "rejected"
    assert result["error"]["type"] == "EnvelopeRejected"


@pytest.mark.parametrize("case", ["operator_not_importable", "callable_not_importable", "kwargs_rejected"])
def test_operator_load_errors_are_recorded(runs: dict[str, Run], case: str) -> None:
    result = runs[case].result
    assert result is not None
    assert result["outcome"] == "failed"
    assert result["error"]["type"] == "OperatorLoadError"


def test_a_good_envelope_runs_the_marker(environment: LocalEnvironment, tmp_path: Path) -> None:
    # The control: the same task, sealed correctly, does run (and writes the marker).
    run = run_runtime(environment, tmp_path / "good", payload=make_payload(PYTHON, MARKER), transport="file")
    assert run.code == 0, run.output
    assert run.files["ran"] == "yes"


def test_rejected_envelope_never_imports_airflow(environment: LocalEnvironment, tmp_path: Path) -> None:
    import subprocess

    from tests.integration._runtime import scrubbed_env

    (tmp_path / "envelope").write_text(_tamper(seal(environment, make_payload(PYTHON, MARKER))))
    probe = (
        "import sys\n"
        "from isolation.runtime.__main__ import run\n"
        f"code = run(['--envelope-file', {str(tmp_path / 'envelope')!r}])\n"
        "print(code, any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))\n"
    )
    done = subprocess.run(
        [str(environment.python), "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=scrubbed_env(environment, tmp_path),
        timeout=120,
        check=False,
    )
    assert done.stdout.split() == ["3", "False"], done.stderr


def test_an_unknown_argument_is_named_with_the_operators_signature_in_the_environment(
    runs: dict[str, Run], environment: LocalEnvironment
) -> None:
    run = runs["misspelt_argument"]
    assert run.result is not None
    message = run.result["error"]["message"]
    assert run.result["error"]["type"] == "OperatorLoadError"
    # What this environment's PythonOperator takes, read there (inspect.signature).
    assert f"in this environment (Airflow {environment.airflow_version}, " in message, message
    assert "it is PythonOperator(*, python_callable" in message, message
    assert "plus the arguments of BaseOperator" in message
    assert MISSPELT_VALUE not in run.output
