"""The host checks the wrapped operator's argument names against its own copy of the operator; the
environment's copy may be another version. Both directions, with real environments:

- the host's standard provider is newer than the one in ``airflow-2-9``: an argument the
  host's TriggerDagRunOperator takes passes at parse time, and the environment refuses it
  when the task runs, naming it and showing its own signature (exit 2, not retried);
- Airflow 2.11's core TriggerDagRunOperator takes an argument the host's does not: the
  host refuses it at parse time, the environment would have built the operator, so
  ``check_arguments=False`` is the way through.
"""

from __future__ import annotations

import pytest

from isolation.errors import InvalidOperatorArguments
from isolation.operators._arguments import check_wrapped_arguments
from tests._envs import LEGACY, OLDEST_2, get_env
from tests.integration._runtime import Run, make_payload, run_many

pytestmark = [pytest.mark.envs, pytest.mark.slow]

STANDARD_TRIGGER = "airflow.providers.standard.operators.trigger_dagrun.TriggerDagRunOperator"
CORE_TRIGGER = "airflow.operators.trigger_dagrun.TriggerDagRunOperator"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("arguments")
    return run_many(
        {
            "newer_on_the_host": (
                get_env(OLDEST_2),
                make_payload(STANDARD_TRIGGER, {"trigger_dag_id": "other_dag", "note": "a note"}),
            ),
            "newer_in_the_environment": (
                get_env(LEGACY),
                make_payload(CORE_TRIGGER, {"trigger_dag_id": "other_dag", "execution_date": "2024-01-01"}),
            ),
        },
        base,
    )


def test_an_argument_only_the_hosts_version_takes_is_refused_by_the_environment(runs: dict[str, Run]) -> None:
    # The host's copy takes it: nothing to refuse at parse time.
    check_wrapped_arguments(STANDARD_TRIGGER, ["trigger_dag_id", "note"], task_id="t", environment=OLDEST_2)
    run = runs["newer_on_the_host"]
    assert run.code == 2, run.output
    assert run.result is not None and run.result["error"]["type"] == "OperatorLoadError"
    message = run.result["error"]["message"]
    assert message.startswith("TriggerDagRunOperator rejected its arguments: unknown argument 'note'"), message
    # Its own signature, as the environment has it: no note there.
    assert "in this environment (Airflow 2.9." in message and "TriggerDagRunOperator(*, trigger_dag_id" in message
    assert "note" not in message.split(" it is ", 1)[1], message
    assert "a note" not in run.output


def test_an_argument_only_the_environments_version_takes_needs_check_arguments_false(runs: dict[str, Run]) -> None:
    with pytest.raises(InvalidOperatorArguments, match=r"unknown argument 'execution_date'.*check_arguments=False"):
        check_wrapped_arguments(CORE_TRIGGER, ["trigger_dag_id", "execution_date"], task_id="t", environment=LEGACY)
    # The environment's own TriggerDagRunOperator took it: it was built and ran, up to the
    # contract (it cannot trigger a DAG run from isolation), not refused as an argument.
    run = runs["newer_in_the_environment"]
    assert run.code == 4, run.output
    assert run.result is not None
    assert run.result["error"]["message"].startswith("TriggerDagRunOperator cannot trigger a DAG run from isolation")
