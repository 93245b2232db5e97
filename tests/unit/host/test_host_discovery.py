"""Discovery of connections, variables and XCom inputs in an operator's arguments."""

from __future__ import annotations

import pytest

from isolation.operators.discovery import discover, normalise_xcom_inputs


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
