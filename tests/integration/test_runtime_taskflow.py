"""The runtime side of ``@task.isolated`` in the real environments (Airflow 2.11 and 3.3).

A ``@task.isolated`` envelope names the runtime's SealedFunctionOperator and carries the
function's source as its arguments. These tests seal such payloads as the host does,
run the real runtime in the sandbox, and check that the sealed source, and only it, runs:
an envelope whose source was changed after sealing is refused before anything executes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _runtime import make_payload, run_runtime, seal

from isolation.environments import LocalEnvironment
from isolation.operators._function import FUNCTION_OPERATOR, sealed_function
from isolation.runtime.exitcodes import ExitCode
from isolation.transport import ConnectionSpec, envelope, seal_envelope
from isolation.transport.keyset import Keyset
from tests._envs import host_keyring

pytestmark = [pytest.mark.envs, pytest.mark.slow]

SOURCE = """def double(x, ti=None, ds=None):
    import humanize

    return {"x": x * 2, "map_index": ti.map_index, "ds": ds, "big": humanize.intcomma(1234567)}
"""
# What an attacker would run instead: it leaves a file behind if it ever executes.
EVIL = """def double(x, ti=None, ds=None):
    import os

    open(os.path.join(os.environ["ISOLATION_TEST_OUT"], "evil-ran"), "w").write("yes")
    return {"x": "evil"}
"""


def _function(source: str, **args: object) -> dict[str, object]:
    return {"function": "double", "source": source, "filename": "dag_file.py", "first_line": 10, "op_kwargs": args}


def test_sealed_function_runs_with_context_and_environment_library(environment: LocalEnvironment, tmp_path: Path):
    run = run_runtime(
        environment, tmp_path, payload=make_payload(FUNCTION_OPERATOR, _function(SOURCE, x=21), map_index=2)
    )
    assert run.code == ExitCode.SUCCESS, run.output[-3000:]
    assert run.result is not None
    assert run.result["return_value"] == {"x": 42, "map_index": 2, "ds": "2024-03-05", "big": "1,234,567"}


def test_module_scope_name_fails_naming_it_and_the_fix(environment: LocalEnvironment, tmp_path: Path):
    source = "def double(x):\n    return LIMIT * x\n"
    run = run_runtime(environment, tmp_path, payload=make_payload(FUNCTION_OPERATOR, _function(source, x=1)))
    assert run.code == ExitCode.FAILED, run.output[-3000:]
    assert run.result is not None
    error = run.result["error"]
    assert error["type"] == "ModuleScopeName"
    assert "name 'LIMIT' is not defined in the isolated function 'double'" in error["message"]
    assert "dag_file.py line 11: return LIMIT * x" in error["message"]
    assert "import LIMIT inside the function, or pass it as an argument" in error["message"]


def test_failing_function_logs_its_error_and_the_dag_file_line(environment: LocalEnvironment, tmp_path: Path):
    source = "def double(x):\n    y = x + 1\n    raise ValueError(f'boom-{y}')\n"
    run = run_runtime(environment, tmp_path, payload=make_payload(FUNCTION_OPERATOR, _function(source, x=1)))
    assert run.code == ExitCode.FAILED
    assert 'File "dag_file.py", line 12, in double' in run.output, run.output[-3000:]
    assert "raise ValueError(f'boom-{y}')" in run.output
    assert run.result is not None
    assert run.result["error"] == {
        "type": "ValueError",
        "message": "boom-2",
        "types": ["builtins.ValueError", "builtins.Exception", "builtins.BaseException"],
    }


def test_source_altered_after_sealing_is_refused(environment: LocalEnvironment, tmp_path: Path):
    honest = make_payload(FUNCTION_OPERATOR, _function(SOURCE, x=21))
    sealed = envelope.from_text(seal(environment, honest))
    # 1. Bytes of the ciphertext (which holds the source) changed in transit.
    signature_size = 64
    for n, offset in enumerate((signature_size + 1, signature_size + 40, len(sealed) // 2)):
        altered = bytearray(sealed)
        altered[-offset] ^= 0x01
        run = run_runtime(environment, tmp_path / f"flip{n}", stdin=envelope.to_text(bytes(altered)))
        assert run.code == ExitCode.REJECTED, run.output[-2000:]
        assert "bad-signature" in run.output or "decrypt-failed" in run.output
    # 2. A whole new envelope with other source, sealed for this environment's public key
    #    (public keys are not secret) but signed by a key the environment does not trust.
    forged = make_payload(FUNCTION_OPERATOR, _function(EVIL, x=21))
    workdir = tmp_path / "forged"
    workdir.mkdir()
    forged = forged.model_copy(
        update={"options": forged.options.model_copy(update={"result_path": str(workdir / "result.json")})}
    )
    recipient = host_keyring().recipient(environment.name).public()
    text = seal_envelope(forged, signer=Keyset.generate_signer("attacker"), recipient=recipient)
    run = run_runtime(environment, workdir, stdin=text)
    assert run.code == ExitCode.REJECTED, run.output[-2000:]
    assert "unknown-key" in run.output
    for directory in (tmp_path / "flip0", tmp_path / "flip1", tmp_path / "flip2", workdir):
        assert not (directory / "out" / "evil-ran").exists()
    # The honest envelope still runs: the refusals were about the changes, not the task.
    run = run_runtime(environment, tmp_path / "honest", payload=honest)
    assert run.code == ExitCode.SUCCESS, run.output[-2000:]


def test_upstream_values_arrive_verbatim_never_rendered(environment: LocalEnvironment, tmp_path: Path):
    # The host carries values resolved from upstream XComs apart from the DAG file's literal
    # arguments: only the literals render. The connection is in the envelope, so a rendered
    # upstream template would really become its password.
    source = "def double(literal, upstream, nested, ds=None):\n    return [literal, upstream, nested, ds]\n"
    kwargs = _function(source, literal="{{ ds }}", upstream=None, nested={"keep": "{{ ds }}", "x": None})
    kwargs["resolved"] = [
        {"path": ["op_kwargs", "upstream"], "value": "{{ conn.my_db.password }}"},
        {"path": ["op_kwargs", "nested", "x"], "value": ["{{ var.value.v }}"]},
    ]
    run = run_runtime(
        environment,
        tmp_path,
        payload=make_payload(
            FUNCTION_OPERATOR,
            kwargs,
            connections={"my_db": ConnectionSpec(conn_type="http", password="pw-must-not-appear")},
            variables={"v": "var-must-not-appear"},
        ),
    )
    assert run.code == ExitCode.SUCCESS, run.output[-3000:]
    assert run.result is not None
    assert run.result["return_value"] == [
        "2024-03-05",
        "{{ conn.my_db.password }}",
        {"keep": "2024-03-05", "x": ["{{ var.value.v }}"]},
        "2024-03-05",
    ]


def _indented() -> Any:
    def literal() -> list[str]:
        # A backslash-continued line and a whitespace-only line inside strings: dedent changed both.
        return [
            "continued \
        here",
            """first
    
last""",  # noqa: W293 - the whitespace-only line is the point
        ]

    return literal


def test_indented_function_runs_byte_for_byte(environment: LocalEnvironment, tmp_path: Path):
    fn = _indented()
    sealed = sealed_function(fn)
    assert sealed.source.startswith("    def literal()")
    run = run_runtime(environment, tmp_path, payload=make_payload(FUNCTION_OPERATOR, sealed.as_kwargs()))
    assert run.code == ExitCode.SUCCESS, run.output[-3000:]
    assert run.result is not None
    assert run.result["return_value"] == fn()


def test_return_value_is_not_in_the_task_log(environment: LocalEnvironment, tmp_path: Path):
    source = "def double(x):\n    return 'derived-' + str(x * 7) + '-value'\n"
    run = run_runtime(environment, tmp_path, payload=make_payload(FUNCTION_OPERATOR, _function(source, x=6)))
    assert run.code == ExitCode.SUCCESS, run.output[-3000:]
    assert run.result is not None and run.result["return_value"] == "derived-42-value"
    assert "derived-42-value" not in run.output
