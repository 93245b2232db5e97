"""IsolatedOperator construction, payload pieces and host keys (no isolated process)."""

from __future__ import annotations

import datetime as dt
import json

import pendulum
import pytest
from airflow.sdk import DAG, BaseOperator

from isolation.errors import ConfigurationError, KeysetError, PayloadError
from isolation.keyring import HostKeyring
from isolation.operators import _state
from isolation.operators.isolated import IsolatedOperator, operator_path
from isolation.operators.keyring_hook import configured_keyring_path, load_host_keys
from isolation.transport import CallableRef, Keyset

BASH = "airflow.operators.bash.BashOperator"


def module_level_function():
    return 1


def make_dag():
    return DAG("unit", schedule=None, start_date=dt.datetime(2024, 1, 1), default_args={"retries": 3})


def test_kwargs_split_between_task_and_wrapped_operator():
    with make_dag():
        task = IsolatedOperator(
            task_id="t",
            operator=BASH,
            environment="legacy",
            bash_command="echo {{ ds }}",
            env={"A": "1"},
            pool="isolated",
            execution_timeout=dt.timedelta(seconds=5),
            multiple_outputs=True,
            operator_kwargs={"retries": "for the wrapped operator"},
        )
    assert task.operator_kwargs == {
        "bash_command": "echo {{ ds }}",
        "env": {"A": "1"},
        "retries": "for the wrapped operator",
    }
    assert task.pool == "isolated" and task.retries == 3 and task.multiple_outputs
    assert task.execution_timeout == dt.timedelta(seconds=5)
    assert task.template_fields == ("environment",)


def test_operator_given_as_class_is_referenced_by_path():
    assert operator_path(BaseOperator) == "airflow.sdk.bases.operator.BaseOperator"
    assert operator_path("pkg.mod:Class") == "pkg.mod:Class"
    with pytest.raises(ValueError, match="not an import path"):
        operator_path("not a path")
    with pytest.raises(TypeError, match="import path string or a class"):
        operator_path(42)  # type: ignore[arg-type]


def test_bad_arguments_fail_at_parse():
    with pytest.raises(ConfigurationError, match="invalid environment name 'Bad Name'"):
        IsolatedOperator(task_id="t", operator=BASH, environment="Bad Name")
    with pytest.raises(TypeError, match="connections must be a list of names"):
        IsolatedOperator(task_id="t", operator=BASH, environment="x", connections=[None])  # type: ignore[list-item]
    # A templated environment is checked against allowed_environments once rendered.
    task = IsolatedOperator(
        task_id="t", operator=BASH, environment="{{ params.env }}", allowed_environments=["legacy", "modern"]
    )
    assert task.environment == "{{ params.env }}"
    assert task.allowed_environments == ("legacy", "modern")
    assert "allowed_environments" not in task.operator_kwargs


@pytest.mark.parametrize("environment", ["{{ params.env }}", "{% if params.a %}a{% else %}b{% endif %}", "x{# c #}"])
def test_templated_environment_without_allowed_environments_fails_at_parse(environment):
    with pytest.raises(ConfigurationError, match="anyone who can trigger this DAG") as info:
        IsolatedOperator(task_id="t", operator=BASH, environment=environment)
    assert "allowed_environments=[" in info.value.diagnostics()


@pytest.mark.parametrize(
    ("allowed", "error", "message"),
    [
        (["{{ params.env }}"], ConfigurationError, "allowed_environments holds the template"),
        (["Bad Name"], ConfigurationError, "invalid environment name 'Bad Name'"),
        ([], ConfigurationError, "allowed_environments is empty"),
        ([None], TypeError, "allowed_environments must be a list of names"),
    ],
)
def test_allowed_environments_are_literal_valid_names(allowed, error, message):
    with pytest.raises(error, match=message):
        IsolatedOperator(task_id="t", operator=BASH, environment="{{ params.env }}", allowed_environments=allowed)


def test_literal_environment_must_be_one_of_allowed_environments():
    with pytest.raises(ConfigurationError, match="environment 'legacy' is not one of allowed_environments"):
        IsolatedOperator(task_id="t", operator=BASH, environment="legacy", allowed_environments=["modern"])
    task = IsolatedOperator(task_id="t", operator=BASH, environment="legacy", allowed_environments="legacy")
    assert task.allowed_environments == ("legacy",)


def test_allowed_environments_from_default_args():
    with DAG("unit", schedule=None, default_args={"allowed_environments": ["legacy"]}):
        task = IsolatedOperator(task_id="t", operator=BASH, environment="{{ params.env }}")
    assert task.allowed_environments == ("legacy",) and "allowed_environments" not in task.operator_kwargs


def test_environment_mapped_from_an_upstream_xcom_needs_allowed_environments():
    with DAG("unit", schedule=None):
        upstream = BaseOperator(task_id="up")
        mapped = IsolatedOperator.partial(task_id="t", operator=BASH).expand(environment=upstream.output)
        literal = IsolatedOperator.partial(task_id="lit", operator=BASH).expand(environment=["legacy", "modern"])
        fixed_list = IsolatedOperator.partial(task_id="f", operator=BASH, environment="legacy").expand(
            allowed_environments=upstream.output
        )
    # expand() builds each task when it runs, from the upstream's output.
    with pytest.raises(ConfigurationError, match="environment comes from expand"):
        mapped.unmap({"environment": "legacy"})
    # A literal list in the DAG file fixes the choices.
    assert literal.unmap({"environment": "modern"}).environment == "modern"
    with pytest.raises(ConfigurationError, match="allowed_environments of a mapped IsolatedOperator comes from"):
        fixed_list.unmap({"allowed_environments": ["legacy"]})


def test_xcomarg_in_wrapped_kwargs_sets_the_dependency():
    with make_dag():
        upstream = BaseOperator(task_id="up")
        task = IsolatedOperator(task_id="t", operator=BASH, environment="x", bash_command=upstream.output)
    assert task.upstream_task_ids == {"up"}


def test_to_plain_converts_what_the_codec_carries():
    when = pendulum.datetime(2024, 5, 6, 7, 8, 9, tz="UTC")
    plain = _state.to_plain({"when": when, "t": (1, 2), "f": module_level_function, "d": dt.date(2024, 1, 2)}, "x")
    assert type(plain["when"]) is dt.datetime and plain["when"] == when
    assert plain["t"] == [1, 2]
    assert plain["f"] == CallableRef(f"{__name__}:module_level_function")
    with pytest.raises(PayloadError, match="cannot be referenced by import path"):
        _state.to_plain({"f": lambda: 1}, "operator argument")
    with pytest.raises(PayloadError, match=r"operator argument\['s'\] has type builtins.set"):
        _state.to_plain({"s": {1}}, "operator argument")


def test_plain_datetime_keeps_offsets():
    value = pendulum.datetime(2024, 1, 1, 12, tz="Europe/Paris")
    plain = _state.plain_datetime(value)
    assert plain == value and plain.utcoffset() == dt.timedelta(hours=1)


@pytest.fixture
def keyring(tmp_path):
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    ring.save_recipient(Keyset.generate_recipient("legacy"))
    return ring


def test_keys_from_the_configured_keyring_path(keyring, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(keyring.path))
    assert configured_keyring_path() == keyring.path
    keys = load_host_keys("legacy")
    assert keys.signer.has_private and not keys.recipient.has_private
    assert keys.recipient.name == "legacy" and keys.source == f"keyring {keyring.path}"
    with pytest.raises(KeysetError, match="no public keys for environment 'modern'") as info:
        load_host_keys("modern")
    assert "hint:" in info.value.diagnostics()


def test_keys_from_an_inline_connection(keyring, monkeypatch, tmp_path):
    signer = keyring.signer()
    recipient = keyring.recipient("legacy")
    conn = {
        "conn_type": "isolation",
        "password": signer.to_json(),
        "extra": {"environments": {"legacy": json.loads(recipient.to_json())}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ISOLATION_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__ISOLATION__KEYRING_PATH", str(tmp_path / "elsewhere"))
    keys = load_host_keys("legacy")
    assert keys.source == "connection 'isolation_default'"
    assert keys.signer.primary().kid == signer.primary().kid
    assert keys.recipient.primary().kid == recipient.primary().kid
    with pytest.raises(KeysetError, match="no public keys for environment 'modern' in Airflow connection"):
        load_host_keys("modern")


def test_keys_from_a_connection_pointing_at_a_keyring(keyring, monkeypatch):
    conn = {"conn_type": "isolation", "extra": {"keyring_path": str(keyring.path)}}
    monkeypatch.setenv("AIRFLOW_CONN_MY_KEYS", json.dumps(conn))
    assert load_host_keys("legacy", "my_keys").recipient.name == "legacy"


def test_bad_keyring_connections(monkeypatch, keyring):
    with pytest.raises(ConfigurationError, match="the keyring connection 'absent' does not exist"):
        load_host_keys("legacy", "absent")
    monkeypatch.setenv("AIRFLOW_CONN_K1", json.dumps({"conn_type": "isolation"}))
    with pytest.raises(ConfigurationError, match="holds no signer key"):
        load_host_keys("legacy", "k1")
    public_signer = keyring.signer().public().to_json()
    monkeypatch.setenv("AIRFLOW_CONN_K2", json.dumps({"conn_type": "isolation", "password": public_signer}))
    with pytest.raises(KeysetError, match="is not a private signer keyset"):
        load_host_keys("legacy", "k2")
    monkeypatch.setenv("AIRFLOW_CONN_K3", json.dumps({"conn_type": "isolation", "password": "not json"}))
    with pytest.raises(KeysetError, match="signer keyset in the password") as info:
        load_host_keys("legacy", "k3")
    assert "not json" not in info.value.diagnostics()


def test_partial_and_expand_take_the_wrapped_operators_argument_names():
    from airflow.sdk import DAG as SdkDAG

    from isolation.example_dags import probes

    with SdkDAG("mapped", schedule=None, start_date=dt.datetime(2024, 1, 1)):
        python = IsolatedOperator.partial(
            task_id="py",
            operator="airflow.operators.python.PythonOperator",
            environment="legacy",
            python_callable=probes.mapped_report,
            retries=2,
        ).expand(op_args=[[1], [2], [3]])
        bash = IsolatedOperator.partial(
            task_id="sh", operator="airflow.operators.bash.BashOperator", environment="legacy"
        ).expand(bash_command=["echo 1", "echo 2"])
    # BaseOperator arguments still configure the task; the wrapped ones travel to the operator.
    assert python.partial_kwargs["retries"] == 2
    assert python.partial_kwargs["operator_kwargs"] == {"python_callable": probes.mapped_report}
    assert python.expand_input.value == {"op_args": [[1], [2], [3]]}
    assert bash.expand_input.value == {"bash_command": ["echo 1", "echo 2"]}


def test_expand_refuses_what_airflow_refuses():
    from airflow.sdk import DAG as SdkDAG

    with SdkDAG("mapped", schedule=None, start_date=dt.datetime(2024, 1, 1)):
        partial = IsolatedOperator.partial(
            task_id="sh", operator="airflow.operators.bash.BashOperator", environment="legacy", env={"A": "1"}
        )
        with pytest.raises(ValueError, match="unexpected type 'str' for keyword argument bash_command"):
            partial.expand(bash_command="echo 1")
        with pytest.raises(TypeError, match=r"already specified argument.*env"):
            partial.expand(env=[{"A": "2"}])
        with pytest.raises(TypeError, match="no arguments to expand against"):
            partial.expand()
        partial.expand(bash_command=["true"])
