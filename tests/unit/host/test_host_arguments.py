"""The DAG-parse check of the wrapped operator's argument names, against the host's real operators.

Each refusal is compared with what Airflow does with the same operator used directly (the
"twin"): the same error type, at the same moment, for the same names.
"""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseOperator

from isolation import _signature
from isolation.errors import InvalidOperatorArguments
from isolation.operators.isolated import IsolatedOperator

BASH = "airflow.providers.standard.operators.bash.BashOperator"
BASH_V2 = "airflow.operators.bash.BashOperator"
CORE_TRIGGER = "airflow.operators.trigger_dagrun.TriggerDagRunOperator"


def make_dag(dag_id: str = "unit_arguments") -> DAG:
    return DAG(dag_id, schedule=None, start_date=dt.datetime(2024, 1, 1))


def refusal(**kwargs: Any) -> str:
    with make_dag(), pytest.raises(InvalidOperatorArguments) as caught:
        IsolatedOperator(task_id="t", environment="legacy", **kwargs)
    return str(caught.value)


def test_a_misspelt_argument_fails_at_parse_time_as_with_the_operator_itself():
    with make_dag(), pytest.raises(TypeError) as twin:
        BashOperator(task_id="t", bash_command="true", bash_comand="true")
    with make_dag(), pytest.raises(TypeError) as wrapped:
        IsolatedOperator(task_id="t", operator=BASH, environment="legacy", bash_command="true", bash_comand="true")
    # Airflow's own wording and type, so the DAG file fails to import the same way.
    assert str(twin.value).startswith("Invalid arguments were passed to BashOperator (task_id: t)")
    assert str(wrapped.value).startswith(
        "Invalid arguments were passed to BashOperator (task_id: t) through IsolatedOperator"
    )
    assert isinstance(wrapped.value, InvalidOperatorArguments)


def test_the_message_names_the_argument_the_guess_and_the_hosts_version():
    message = refusal(operator=BASH, bash_command="true", bash_comand="value-never-shown")
    assert "unknown argument 'bash_comand' (did you mean 'bash_command'?)" in message
    import airflow.providers.standard as standard

    assert (
        f"against the host's version of the operator ({BASH}, airflow.providers.standard {standard.__version__})"
        in message
    )
    assert "if environment 'legacy' has a version that takes it, pass check_arguments=False" in message
    # Names, never values (they may be secrets).
    assert "value-never-shown" not in message


def test_several_unknown_arguments_are_all_named():
    message = refusal(operator=BASH, bash_command="true", bash_comand="x", nonsense=1)
    assert "unknown arguments 'bash_comand' (did you mean 'bash_command'?), 'nonsense'." in message
    assert "takes them" in message


def test_an_airflow_2_spelling_is_checked_against_what_the_host_imports_for_it():
    message = refusal(operator=BASH_V2, bash_command="true", bash_comand="true")
    assert f"({BASH}, airflow.providers.standard" in message


def test_operator_and_base_operator_arguments_pass():
    with make_dag():
        task = IsolatedOperator(
            task_id="t",
            operator=BASH,
            environment="legacy",
            bash_command="true",
            env={"A": "1"},
            cwd="/tmp",
            retries=2,  # the IsolatedOperator's own
            operator_kwargs={"retries": 5, "pool": "p", "task_id": "ignored", "dag": None},
        )
    assert task.retries == 2 and task.operator_kwargs["retries"] == 5


def test_explicit_operator_kwargs_are_checked_too():
    message = refusal(operator=BASH, bash_command="true", operator_kwargs={"retires": 3})
    assert "unknown argument 'retires' (did you mean 'retries'?)" in message


def test_a_class_given_directly_is_checked():
    message = refusal(operator=PythonOperator, python_calable=print)
    assert "Invalid arguments were passed to PythonOperator" in message
    assert "'python_calable' (did you mean 'python_callable'?)" in message


def test_check_arguments_false_lets_an_argument_only_the_environment_knows_through():
    # Airflow 2.11's core TriggerDagRunOperator takes execution_date; the host's does not.
    message = refusal(operator=CORE_TRIGGER, trigger_dag_id="x", execution_date="2024-01-01")
    assert "unknown argument 'execution_date'" in message
    with make_dag():
        task = IsolatedOperator(
            task_id="t",
            operator=CORE_TRIGGER,
            environment="legacy",
            trigger_dag_id="x",
            execution_date="2024-01-01",
            check_arguments=False,
        )
    assert task.operator_kwargs == {"trigger_dag_id": "x", "execution_date": "2024-01-01"}


def test_an_operator_the_host_cannot_import_is_left_to_the_environment():
    with make_dag():
        task = IsolatedOperator(
            task_id="t", operator="not_on_this_host.operators.ThingOperator", environment="legacy", anything=1
        )
    assert task.operator_kwargs == {"anything": 1}
    assert "not_on_this_host" not in sys.modules


def test_without_wrapped_arguments_nothing_is_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "import_marker_op.py").write_text("raise RuntimeError('imported at parse time')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with make_dag():
        IsolatedOperator(task_id="t", operator="import_marker_op.Op", environment="legacy")
    assert "import_marker_op" not in sys.modules


def test_a_module_that_fails_to_import_on_the_host_is_left_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "broken_on_host_op.py").write_text("raise RuntimeError('needs the environment')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with make_dag():
        task = IsolatedOperator(task_id="t", operator="broken_on_host_op.Op", environment="legacy", x=1)
    assert task.operator_kwargs == {"x": 1}


class Consuming(BaseOperator):
    """Takes ``legacy_name`` through **kwargs, as constructors handling deprecated arguments do."""

    def __init__(self, **kwargs: Any) -> None:
        self.legacy = kwargs.pop("legacy_name", None)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> None:
        return None


class Reading(BaseOperator):
    """Reads and adds to its **kwargs but passes every name on."""

    def __init__(self, *, own: int = 0, **kwargs: Any) -> None:
        if "retries" not in kwargs:
            kwargs["retries"] = 1
        kwargs.setdefault("pool", "p")
        super().__init__(**kwargs)

    def execute(self, context: Any) -> None:
        return None


def test_a_constructor_that_consumes_kwargs_is_not_second_guessed():
    # Airflow itself takes it: the signature cannot tell, so the check does not refuse.
    with make_dag():
        twin = Consuming(task_id="twin", legacy_name=1)
        IsolatedOperator(task_id="t", operator=Consuming, environment="legacy", legacy_name=1)
    assert twin.legacy == 1
    assert _signature.accepted_arguments(Consuming, BaseOperator) is None


def test_a_constructor_that_only_reads_its_kwargs_is_checked():
    accepted = _signature.accepted_arguments(Reading, BaseOperator)
    assert accepted is not None and "own" in accepted and "retries" in accepted
    with make_dag(), pytest.raises(TypeError, match="Invalid arguments were passed to Reading"):
        Reading(task_id="twin", own_value=1)
    assert "unknown argument 'own_value'" in refusal(operator=Reading, own_value=1)


def test_partial_checks_the_wrapped_names_it_is_given():
    with make_dag(), pytest.raises(InvalidOperatorArguments, match=r"unknown argument 'bash_comand'"):
        IsolatedOperator.partial(task_id="t", operator=BASH, environment="modern", bash_comand="x").expand(
            env=[{"A": "1"}]
        )


def test_expand_checks_the_wrapped_names_it_maps_over():
    with make_dag() as dag, pytest.raises(InvalidOperatorArguments, match=r"unknown argument 'bash_comand'"):
        IsolatedOperator.partial(task_id="t", operator=BASH, environment="modern").expand(bash_comand=["a", "b"])
    with make_dag("unit_arguments_ok") as dag:
        IsolatedOperator.partial(task_id="t", operator=BASH, environment="modern").expand(bash_command=["a", "b"])
    assert "t" in dag.task_dict


def test_mapping_with_check_arguments_false_is_not_checked():
    with make_dag() as dag:
        IsolatedOperator.partial(
            task_id="t", operator=CORE_TRIGGER, environment="legacy", check_arguments=False, trigger_dag_id="x"
        ).expand(execution_date=["2024-01-01"])
    assert "t" in dag.task_dict


def test_the_dag_file_fails_to_import_with_the_message_as_its_twin_does(tmp_path: Path):
    from airflow.dag_processing.dagbag import DagBag

    body = """
        import datetime as dt
        from airflow.sdk import DAG
        {imports}
        with DAG("{dag_id}", schedule=None, start_date=dt.datetime(2024, 1, 1)):
            {task}
    """
    files = {
        "wrapped.py": body.format(
            dag_id="wrapped",
            imports="from isolation import IsolatedOperator",
            task=f'IsolatedOperator(task_id="t", operator="{BASH}", environment="legacy", bash_comand="true")',
        ),
        "twin.py": body.format(
            dag_id="twin",
            imports=f"from {BASH.rsplit('.', 1)[0]} import BashOperator",
            task='BashOperator(task_id="t", bash_command="true", bash_comand="true")',
        ),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    bag = DagBag(dag_folder=str(tmp_path))
    errors = {Path(path).name: text for path, text in bag.import_errors.items()}
    assert set(errors) == {"wrapped.py", "twin.py"} and not bag.dags
    assert "TypeError: Invalid arguments were passed to BashOperator" in errors["twin.py"]
    assert "InvalidOperatorArguments: Invalid arguments were passed to BashOperator" in errors["wrapped.py"]
    assert "Checked at DAG parse time against the host's version of the operator" in errors["wrapped.py"]
