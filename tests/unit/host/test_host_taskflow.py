"""``@task.isolated`` on the host: registration, checks at decoration, sealed source, arguments."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, task

from isolation import isolated_task
from isolation.errors import PayloadError, UnsupportedFunction
from isolation.operators._function import FUNCTION_OPERATOR, SealedFunction, sealed_function
from isolation.operators.taskflow import _IsolatedDecoratedOperator

START = dt.datetime(2024, 1, 1)


def test_registered_for_airflow_task_and_exported_from_isolation() -> None:
    assert task.isolated is isolated_task


def test_isolation_import_stays_free_of_airflow() -> None:
    code = "import sys, isolation; assert 'airflow' not in sys.modules; print(callable(isolation.isolated_task))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def _closure() -> Any:
    limit = 3

    def inner(x: int) -> int:
        return x * limit

    return inner


def _generator() -> Any:
    yield 1


async def _coroutine() -> int:
    return 1


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x: x, "cannot isolate a lambda"),
        (_closure(), "cannot isolate the nested closure '_closure.<locals>.inner': it uses limit"),
        (_generator, "does not run generator functions ('_generator')"),
        (_coroutine, "does not run async def functions ('_coroutine')"),
    ],
)
def test_unsupported_functions_are_refused_when_decorated(fn: Any, message: str) -> None:
    with pytest.raises(UnsupportedFunction) as caught:
        task.isolated(environment="modern")(fn)
    assert message in caught.value.message
    assert caught.value.hint


def test_source_has_no_decorators_keeps_its_indentation_and_knows_its_line() -> None:
    with DAG("tf_source", schedule=None, start_date=START):

        @task.isolated(
            environment="modern",
            retries=0,
        )
        def nested(x: int) -> int:
            # a comment stays
            return x + 1

        nested(1)
    sealed = sealed_function(nested.function)
    # Byte for byte as in the file (no dedent): the runtime compiles it as the body of "if True:".
    pad = " " * 8
    assert sealed.source == f"{pad}def nested(x: int) -> int:\n{pad}    # a comment stays\n{pad}    return x + 1\n"
    assert sealed.filename == "test_host_taskflow.py"
    with open(__file__) as handle:
        assert handle.read().splitlines()[sealed.first_line - 1].strip() == "def nested(x: int) -> int:"


def test_multiple_outputs_inferred_from_a_dict_return_annotation() -> None:
    with DAG("tf_outputs", schedule=None, start_date=START) as dag:

        @task.isolated(environment="modern")
        def as_dict() -> dict[str, int]:
            return {}

        @task.isolated(environment="modern")
        def plain() -> int:
            return 1

        @task.isolated(environment="modern", multiple_outputs=False)
        def forced() -> dict[str, int]:
            return {}

        as_dict()
        plain()
        forced()
    assert dag.task_dict["as_dict"].multiple_outputs is True
    assert dag.task_dict["plain"].multiple_outputs is False
    assert dag.task_dict["forced"].multiple_outputs is False


def test_arguments_discovery_and_sealed_kwargs() -> None:
    with DAG("tf_args", schedule=None, start_date=START) as dag:

        @task
        def upstream() -> int:
            return 1

        @task.isolated(environment="modern", connections=["listed"])
        def uses(n: int, source_conn_id: str, text: str) -> None:
            from airflow.sdk import BaseHook, Variable

            Variable.get("needed")
            Variable.get("optional", default="x")
            BaseHook.get_connection("in_source")

        uses(upstream(), "by_argument", "{{ var.value.templated }}")
    op = dag.task_dict["uses"]
    assert isinstance(op, _IsolatedDecoratedOperator)
    assert op.operator_path == FUNCTION_OPERATOR
    assert op.upstream_task_ids == {"upstream"}
    found = op._discover()
    assert set(found.connections) == {"by_argument", "in_source"}
    assert {name: ref.optional for name, ref in found.variables.items()} == {
        "needed": False,
        "optional": True,
        "templated": False,
    }
    assert "the source of uses (line" in found.variables["needed"].where
    # The upstream value is not the DAG file's: a placeholder in the literal arguments.
    assert op._arguments(None)[0] == [None, "by_argument", "{{ var.value.templated }}"]
    op.op_args = [5, "by_argument", "t"]  # as literal values
    kwargs = op._wrapped_kwargs({})
    assert kwargs["op_args"] == [5, "by_argument", "t"]
    assert kwargs["function"] == "uses"
    assert kwargs["source"].lstrip().startswith("def uses(")
    assert "resolved" not in kwargs


def test_unserialisable_argument_names_the_argument_and_type() -> None:
    with DAG("tf_bad_arg", schedule=None, start_date=START) as dag:

        @task.isolated(environment="modern")
        def takes(values: Any, when: dt.datetime) -> None:
            pass

        takes(values={1, 2}, when=START)
    with pytest.raises(PayloadError) as caught:
        dag.task_dict["takes"]._wrapped_kwargs({})
    assert "argument 'values' of takes() has type builtins.set" in caught.value.message


def test_unknown_operator_argument_is_refused() -> None:
    with DAG("tf_unknown", schedule=None, start_date=START), pytest.raises(TypeError, match="not_an_argument"):

        @task.isolated(environment="modern", not_an_argument=1)
        def f() -> None:
            pass

        f()


def test_mapping_with_partial_upstream_and_expand_kwargs() -> None:
    from airflow.sdk.bases.decorator import DecoratedMappedOperator

    with DAG("tf_mapped", schedule=None, start_date=START) as dag:

        @task
        def label() -> str:
            return "l"

        @task
        def numbers() -> list[int]:
            return [1, 2, 3]

        @task.isolated(environment="modern")
        def f(x: int, label: str) -> int:
            return x

        f.partial(label=label()).expand(x=numbers())
        f.expand_kwargs([{"x": 1, "label": "a"}, {"x": 2, "label": "b"}])
    mapped = dag.task_dict["f"]
    assert isinstance(mapped, DecoratedMappedOperator)
    assert mapped.operator_class is _IsolatedDecoratedOperator
    assert mapped.upstream_task_ids == {"label", "numbers"}
    assert isinstance(dag.task_dict["f__1"], DecoratedMappedOperator)


def test_methods_are_refused() -> None:
    class Holder:
        def method(self) -> None:
            pass

    with pytest.raises(TypeError, match=r"@task\.isolated does not support methods"):
        isolated_task(environment="modern")(Holder.method)


# -- the sealed source is what the DAG file defined, captured once -------------------------


def _load(path: Path) -> Any:
    """Import a DAG file as Airflow's parser does (its own module, its source in linecache)."""
    spec = importlib.util.spec_from_file_location(f"tf_dag_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))  # linecache sees the change


DAG_FILE = """import datetime as dt
from airflow.sdk import DAG, task

with DAG("tf_edited", schedule=None, start_date=dt.datetime(2024, 1, 1)) as dag:

    @task.isolated(environment="modern")
    def f() -> str:
        return "as-decorated"

    f()
"""


def test_editing_the_dag_file_after_decoration_does_not_change_what_is_sealed(tmp_path: Path) -> None:
    path = tmp_path / "tf_edited_dag.py"
    path.write_text(DAG_FILE, encoding="utf-8")
    op = _load(path).dag.task_dict["f"]
    _rewrite(path, DAG_FILE.replace('"as-decorated"', '"EDITED-later"'))
    source = op._wrapped_kwargs({})["source"]
    assert '"as-decorated"' in source and "EDITED" not in source
    # An operator built later from the same function (a mapped task unmapped at run time) too.
    rebuilt = _IsolatedDecoratedOperator(python_callable=op.python_callable, task_id="again", environment="modern")
    assert "EDITED" not in rebuilt._wrapped_kwargs({})["source"]


def test_source_that_does_not_compile_to_the_function_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tf_mismatch_dag.py"
    path.write_text('def f() -> str:\n    return "loaded"\n', encoding="utf-8")
    module = _load(path)
    # The file now has another body at the same line than the function object that runs.
    _rewrite(path, 'def f() -> str:\n    return "other!"\n')
    with pytest.raises(UnsupportedFunction) as caught:
        task.isolated(environment="modern")(module.f)
    assert "does not compile to the function's own code" in caught.value.message
    assert caught.value.hint


def test_source_with_anything_but_one_undecorated_def_is_refused() -> None:
    from isolation.operators._function import check_sealed

    def f() -> int:
        return 1

    good = sealed_function(f)
    for source in (
        good.source + "import os\n",
        "import os\n" + good.source.lstrip(),
        "@functools.cache\n" + good.source.lstrip(),
    ):
        bad = SealedFunction(name="f", source=source, filename=good.filename, first_line=good.first_line)
        with pytest.raises(UnsupportedFunction, match="not a single undecorated def statement"):
            check_sealed(bad, f)


def test_wrapped_functions_are_refused() -> None:
    def elsewhere() -> int:
        return 2

    @functools.wraps(elsewhere)
    def shown() -> int:
        return 1

    with pytest.raises(UnsupportedFunction) as caught:
        task.isolated(environment="modern")(shown)
    assert "__wrapped__" in caught.value.message


SMUGGLED = (
    "from airflow.sdk import task\n"
    "\n"
    '@task.isolated(environment="modern")  # note\u2028import os; os.system("touch smuggled-ran")\n'
    "def f() -> int:\n"
    "    return 1\n"
)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_line_separators_python_does_not_break_on_smuggle_no_code(tmp_path: Path, separator: str) -> None:
    path = tmp_path / "tf_smuggle_dag.py"
    path.write_text(SMUGGLED.replace("\u2028", separator), encoding="utf-8")
    sealed = sealed_function(_load(path).f.function)
    assert sealed.source == "def f() -> int:\n    return 1\n"
    assert "os.system" not in sealed.source
    assert sealed.first_line == 4


def test_string_literals_survive_byte_for_byte() -> None:
    def literal() -> list[str]:
        # A backslash-continued line and a whitespace-only line inside strings: dedent changed both.
        return [
            "continued \
        here",
            """first
    
last""",  # noqa: W293 - the whitespace-only line is the point
        ]

    sealed = sealed_function(literal)
    namespace: dict[str, Any] = {}
    exec(compile("if True:\n" + sealed.source, "x.py", "exec"), namespace)
    assert namespace["literal"]() == literal()


def _choose(target: str) -> str:
    return target


def test_branch_and_short_circuit_forms_wrap_the_environments_deciding_operators() -> None:
    from isolation.operators import _downstream
    from isolation.operators._function import BRANCH_OPERATOR, SHORT_CIRCUIT_OPERATOR

    with DAG("tf_deciders", schedule=None, start_date=START):
        branch = task.isolated_branch(task_id="b", environment="modern")(_choose)("x").operator
        short = task.isolated_short_circuit(task_id="s", environment="modern", ignore_downstream_trigger_rules=False)(
            _choose
        )("y").operator
    assert (branch.operator_path, short.operator_path) == (BRANCH_OPERATOR, SHORT_CIRCUIT_OPERATOR)
    # The host sees SkipMixin operators: the DAG's structure is sent, decisions are applied here.
    assert _downstream.may_skip(branch.operator_path) and _downstream.may_skip(short.operator_path)
    assert branch._can_skip_downstream and short._can_skip_downstream
    assert short.operator_kwargs == {"ignore_downstream_trigger_rules": False}
    assert short._wrapped_kwargs({"ti": None})["ignore_downstream_trigger_rules"] is False
    # Only the short circuit takes that argument, as with @task.branch and @task.short_circuit.
    with DAG("tf_deciders_bad", schedule=None, start_date=START), pytest.raises(TypeError) as info:
        task.isolated_branch(task_id="b", environment="modern", ignore_downstream_trigger_rules=False)(_choose)("x")
    assert "@task.isolated_branch got unexpected argument(s): ignore_downstream_trigger_rules" in str(info.value)
