"""Discovery of connections, variables and XCom inputs in an operator's arguments and callables."""

from __future__ import annotations

import inspect
import logging

import pytest

from isolation.operators import discovery
from isolation.operators.discovery import discover, normalise_xcom_inputs
from isolation.transport import CallableRef


def names(table):
    return sorted(table)


def test_conn_id_arguments():
    found = discover({"http_conn_id": "api", "conn_id": "db", "other": "not_a_conn", "aws_conn_id": None})
    assert names(found.connections) == ["api", "db"]
    assert found.connections["api"].where == "argument http_conn_id"
    assert not found.connections["api"].optional


def test_templated_conn_id_is_left_to_the_allow_list():
    assert names(discover({"postgres_conn_id": "{{ params.conn }}"}).connections) == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ conn.my_conn.host }}", ["my_conn"]),
        ("{{ conn['my.conn-1'].host }}", ["my.conn-1"]),
        ('{{ conn["db-2"].password }}', ["db-2"]),
        ("{{ conn.get('opt.ional-3').login }}", ["opt.ional-3"]),
        ("{{conn.a.host}} and {{ conn.b.port }}", ["a", "b"]),
        ("{% if conn.flagged.extra %}x{% endif %}", ["flagged"]),
        ("plain text about conn.not_in_jinja", []),
        ("{{ reconn.x }}", []),
    ],
)
def test_conn_templates(template, expected):
    assert names(discover({"bash_command": template}).connections) == expected


def test_get_is_optional_unless_also_required():
    found = discover({"a": "{{ conn.get('c1') }}", "b": "{{ var.value.get('v1', 'd') }}"})
    assert found.connections["c1"].optional and found.variables["v1"].optional
    found = discover({"a": "{{ conn.get('c1') }}", "b": "{{ conn.c1.host }}"})
    assert not found.connections["c1"].optional


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ var.value.my_var }}", ["my_var"]),
        ("{{ var.json.settings.key }}", ["settings"]),
        ("{{ var.value['my.var-2'] }}", ["my.var-2"]),
        ("{{ var.json.get('cfg', {}) }}", ["cfg"]),
        ("var.value.outside", []),
    ],
)
def test_var_templates(template, expected):
    assert names(discover({"sql": template}).variables) == expected


def test_nested_arguments_are_scanned_with_their_path():
    found = discover({"env": {"TOKEN": "{{ var.value.token }}"}, "op_args": ["{{ conn.c.host }}"]})
    assert found.variables["token"].where == "argument env['TOKEN']"
    assert found.connections["c"].where == "argument op_args[0]"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ ti.xcom_pull(task_ids='push') }}", [("push", "return_value")]),
        ("{{ ti.xcom_pull('push') }}", [("push", "return_value")]),
        ("{{ task_instance.xcom_pull(task_ids=['a', 'b'], key='k') }}", [("a", "k"), ("b", "k")]),
        ('{{ ti.xcom_pull(task_ids="x", key="n")["f"] }}', [("x", "n")]),
        ("{{ ti.xcom_pull(task_ids=params.t) }}", []),
        ("{{ ti.xcom_pull(task_ids='t', dag_id=dag.dag_id) }}", []),
        ("{{ ti.xcom_pull( }}", []),
    ],
)
def test_xcom_pull_templates(template, expected):
    assert sorted(discover({"bash_command": template}).xcoms) == expected


def test_normalise_xcom_inputs():
    assert normalise_xcom_inputs(["a", "b:key", ("c", "k2"), "a"]) == [
        ("a", "return_value"),
        ("b", "key"),
        ("c", "k2"),
    ]
    with pytest.raises(TypeError, match="xcom_inputs entries"):
        normalise_xcom_inputs([3])
    with pytest.raises(TypeError, match="empty task id"):
        normalise_xcom_inputs([":k"])


# -- XCom pulls in the source of the wrapped operator's callables -------------------------


def pulls_literals(ti, **context):
    rows = ti.xcom_pull(task_ids="extract", key="rows")
    loaded = ti.xcom_pull("load")
    both = context["ti"].xcom_pull(task_ids=["x", "y"])
    computed = ti.xcom_pull(task_ids=context["params"]["t"])  # known only when it runs: declare it
    elsewhere = ti.xcom_pull(task_ids="t", dag_id="other_dag")  # other DAGs are not served
    return rows, loaded, both, computed, elsewhere


class Holder:
    @staticmethod
    def pull(ti):
        return ti.xcom_pull(task_ids="from_a_method")


def _line_of(fn, text):
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


@pytest.fixture
def fresh_log(monkeypatch):
    """Discovery logs each unreadable callable once per process: start each test afresh."""
    monkeypatch.setattr(discovery, "_UNREAD", set())


def test_literal_pulls_in_the_callables_source_are_found_with_their_line():
    found = discover({"python_callable": pulls_literals})
    assert sorted(found.xcoms) == [
        ("extract", "rows"),
        ("load", "return_value"),
        ("x", "return_value"),
        ("y", "return_value"),
    ]
    where = found.xcoms[("extract", "rows")].where
    name = f"{pulls_literals.__module__}:pulls_literals"
    assert where == f"the source of {name} (argument python_callable), line {_line_of(pulls_literals, 'rows =')}"


def test_a_callable_ref_that_imports_on_the_host_is_read_like_the_function():
    ref = CallableRef(f"{pulls_literals.__module__}:pulls_literals")
    assert sorted(discover({"python_callable": ref}).xcoms) == sorted(
        discover({"python_callable": pulls_literals}).xcoms
    )


def test_callables_anywhere_in_the_arguments_and_methods_are_read():
    found = discover({"op_kwargs": {"hooks": [Holder.pull]}})
    assert list(found.xcoms) == [("from_a_method", "return_value")]
    assert "(argument op_kwargs['hooks'][0])" in found.xcoms[("from_a_method", "return_value")].where
    assert f"line {_line_of(Holder.pull, 'from_a_method')}" in found.xcoms[("from_a_method", "return_value")].where


def test_a_callable_that_does_not_import_on_the_host_is_logged_once_with_the_fix(caplog, fresh_log):
    ref = CallableRef("module_only_in_the_environment:transform")
    with caplog.at_level(logging.WARNING, logger="isolation.operators.discovery"):
        assert discover({"python_callable": ref}).xcoms == {}
        discover({"python_callable": ref})
    messages = [r.getMessage() for r in caplog.records if r.name == "isolation.operators.discovery"]
    assert len(messages) == 1, messages
    assert "module_only_in_the_environment:transform (argument python_callable)" in messages[0]
    assert "could not be discovered: it does not import on the host (ModuleNotFoundError)" in messages[0]
    assert "xcom_inputs=['task_id', 'task_id:key']" in messages[0]
    assert "lenient_xcom_pull=True" in messages[0]


def test_a_function_without_a_source_file_is_logged(caplog, fresh_log):
    namespace: dict = {"__name__": "generated"}
    exec(compile("def made(ti):\n    return ti.xcom_pull('z')\n", "<generated>", "exec"), namespace)
    with caplog.at_level(logging.WARNING, logger="isolation.operators.discovery"):
        assert discover({"python_callable": namespace["made"]}).xcoms == {}
    assert any("generated:made" in r.getMessage() and "source cannot be read" in r.getMessage() for r in caplog.records)


def test_lambdas_and_classes_are_left_to_sealing(caplog, fresh_log):
    with caplog.at_level(logging.WARNING, logger="isolation.operators.discovery"):
        found = discover(
            {"python_callable": lambda ti: ti.xcom_pull("q"), "cls": CallableRef("collections:OrderedDict")}
        )
    assert found.xcoms == {}
    assert not [r for r in caplog.records if r.name == "isolation.operators.discovery"]
