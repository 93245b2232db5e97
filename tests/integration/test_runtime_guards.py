"""The no-callback contract: every way back into Airflow raises IsolationViolation, with no effect.

One run per environment attempts every forbidden call from inside a PythonOperator,
catching each violation and recording what it saw afterwards (the variable's value,
the files in the private AIRFLOW_HOME); the last attempt is left uncaught, so the
run must end with exit code 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from isolation.environments import LocalEnvironment
from isolation.transport import CallableRef
from tests.integration._runtime import PYTHON, Run, make_payload, run_many

pytestmark = [pytest.mark.envs, pytest.mark.slow, pytest.mark.every_version]

GUARDS = [
    "variable_set",
    "variable_delete",
    "variable_update",
    "connection_write",
    "settings_session",
    "create_session",
    "provide_session",
    "engine",
    "callback_channel",
]
CONTRACT = "isolation no-callback contract"


@pytest.fixture(scope="module")
def runs(environment: LocalEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp(f"guards-{environment.name}")
    probe = make_payload(
        PYTHON,
        {"python_callable": CallableRef("it_tasks:try_forbidden"), "op_args": ["variable_set"]},
        variables={"existing": "original"},
    )
    marker = make_payload(PYTHON, {"python_callable": CallableRef("it_tasks:mark_ran")})
    leaked = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{base / 'leaked.db'}"}
    return run_many(
        {"probe": (environment, probe), "db_url": (environment, marker, leaked), "control": (environment, marker)},
        base,
    )


def _report(runs: dict[str, Run]) -> dict[str, Any]:
    import json

    return json.loads(runs["probe"].files["guards.json"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("guard", GUARDS)
def test_forbidden_call_raises_and_changes_nothing(runs: dict[str, Run], guard: str) -> None:
    seen = _report(runs)[guard]
    assert seen["raised"] == "IsolationViolation", seen
    assert CONTRACT in seen["message"]
    assert seen["existing_after"] == "original"
    # The private AIRFLOW_HOME holds only the empty config the runtime wrote: no database file.
    assert seen["home_files"] == ["airflow.cfg"]


def test_uncaught_violation_is_exit_4(runs: dict[str, Run]) -> None:
    run = runs["probe"]
    assert run.code == 4, run.output
    assert run.result is not None
    assert run.result["outcome"] == "violation"
    assert run.result["error"]["type"] == "IsolationViolation"
    assert "Variable.set('existing')" in run.result["error"]["message"]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("isolation-runtime: violation (exit 4): ")
    assert CONTRACT in last


def test_nothing_is_written_outside_the_task(runs: dict[str, Run]) -> None:
    for run in runs.values():
        written = [p for p in Path(run.workdir).rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3")]
        assert written == []
        # The private AIRFLOW_HOME is removed when the runtime exits.
        assert not list(Path(run.workdir).glob("isolation-airflow-home-*"))


def test_database_url_in_environment_is_a_violation_before_any_operator_code(runs: dict[str, Run]) -> None:
    run = runs["db_url"]
    assert run.code == 4, run.output
    assert run.result is not None and run.result["outcome"] == "violation"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in run.result["error"]["message"]
    assert "ran" not in run.files
    assert not (run.workdir.parent / "leaked.db").exists()


def test_same_task_without_database_url_runs(runs: dict[str, Run]) -> None:
    # The control for the test above: the task itself is fine and does run.
    run = runs["control"]
    assert run.code == 0, run.output
    assert run.files["ran"] == "yes"
