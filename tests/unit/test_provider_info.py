"""The provider's metadata is what Airflow's ProvidersManager expects."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from isolation.provider_info import get_provider_info


def test_provider_info_matches_airflow_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_is_registered() -> None:
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("isolation.")]
    assert [ep.load()()["package-name"] for ep in found] == ["apache-airflow-providers-isolation"]


def test_declared_modules_import() -> None:
    info = get_provider_info()
    for group in info["operators"] + info["hooks"]:
        for module in group["python-modules"]:
            assert importlib.import_module(module)


def test_task_decorators_import_and_are_found_by_airflow() -> None:
    from airflow.sdk import task

    import isolation

    declared = {d["name"]: d["class-name"] for d in get_provider_info()["task-decorators"]}
    expected = {
        "isolated": isolation.isolated_task,
        "isolated_branch": isolation.isolated_branch_task,
        "isolated_short_circuit": isolation.isolated_short_circuit_task,
    }
    assert set(declared) == set(expected)
    for decorator, function in expected.items():
        module, _, name = declared[decorator].rpartition(".")
        assert getattr(importlib.import_module(module), name) is function
        assert getattr(task, decorator) is function


def test_connection_type_names_its_hook() -> None:
    (declared,) = get_provider_info()["connection-types"]
    module, _, name = declared["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == declared["connection-type"] == "isolation"


def test_providers_manager_finds_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "apache-airflow-providers-isolation" in manager.providers
    assert "isolation" in manager.hooks


def test_shim_reexports_the_operator() -> None:
    from airflow.providers.isolation.operators import IsolatedOperator

    import isolation

    assert IsolatedOperator is isolation.IsolatedOperator
