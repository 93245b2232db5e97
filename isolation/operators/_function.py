"""A ``@task.isolated`` function as sealed source: checks, extraction, discovery.

Pure functions over Python objects and source text: no Airflow import. The decorator
checks a function when it is decorated and reads its source when the task runs; the
source, not a pickle or an import path, is what travels in the envelope.
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isolation.errors import UnsupportedFunction
from isolation.operators.discovery import Discovered, Reference

FUNCTION_OPERATOR = "isolation.runtime.taskflow.SealedFunctionOperator"
"""The runtime's operator that compiles and runs a sealed function (the envelope's import path)."""

_VARIABLE_GETS = {("Variable", "get")}
_CONNECTION_GETS = {
    ("BaseHook", "get_connection"),
    ("Connection", "get"),
    ("Connection", "get_connection_from_secrets"),
}


@dataclass(frozen=True)
class SealedFunction:
    """What the envelope carries of a decorated function."""

    name: str
    source: str
    filename: str
    first_line: int

    def as_kwargs(self) -> dict[str, Any]:
        return {"function": self.name, "source": self.source, "filename": self.filename, "first_line": self.first_line}


def check_function(fn: Callable[..., Any]) -> None:
    """Refuse what cannot run from its own source in a fresh module; say which and why."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not isinstance(fn, types.FunctionType):
        raise UnsupportedFunction(
            f"@task.isolated needs a plain function defined with def, not {type(fn).__name__}",
            hint="decorate a module-level def function",
        )
    if fn.__name__ == "<lambda>":
        raise UnsupportedFunction(
            "@task.isolated cannot isolate a lambda: its source is part of another expression",
            hint="write it as a def function",
        )
    if fn.__code__.co_freevars:
        names = ", ".join(fn.__code__.co_freevars)
        raise UnsupportedFunction(
            f"@task.isolated cannot isolate the nested closure {name!r}: it uses {names} from the "
            "function around it, which does not travel with its source",
            hint="define the function at module level and pass those values as arguments",
        )
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise UnsupportedFunction(
            f"@task.isolated does not run async def functions ({name!r}): Airflow 2 environments cannot await it",
            hint="write a def function (asyncio.run(...) inside it runs a coroutine)",
        )
    if inspect.isgeneratorfunction(fn):
        raise UnsupportedFunction(
            f"@task.isolated does not run generator functions ({name!r}): a generator is not an XCom value",
            hint="return a list instead of yielding values",
        )


def sealed_function(fn: Callable[..., Any]) -> SealedFunction:
    """The function's own source, decorators stripped, dedented, with its place in the DAG file."""
    check_function(fn)
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError) as exc:
        raise UnsupportedFunction(
            f"the source of {fn.__qualname__!r} cannot be read ({exc})",
            hint="@task.isolated functions must be defined in a .py file the worker can read",
        ) from None
    text = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise UnsupportedFunction(f"the source of {fn.__qualname__!r} cannot be parsed ({exc.msg})") from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef) or node.name != fn.__name__:
        raise UnsupportedFunction(f"the source of {fn.__qualname__!r} is not a single def statement")
    # Decorators sit above the def line: dropping those lines keeps the rest byte for byte.
    body = text.splitlines(keepends=True)[node.lineno - 1 :]
    return SealedFunction(
        name=fn.__name__,
        source="".join(body),
        filename=os.path.basename(inspect.getsourcefile(fn) or "<dag file>"),
        first_line=start + node.lineno - 1,
    )


def discover_in_source(fn: SealedFunction, found: Discovered) -> None:
    """``Variable.get("x")`` and ``BaseHook.get_connection("c")`` calls with literal names."""
    for node in ast.walk(ast.parse(fn.source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not isinstance(owner, ast.Name):
            continue
        call = (owner.id, node.func.attr)
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        where = f"the source of {fn.name} (line {fn.first_line + node.lineno - 1})"
        if call in _VARIABLE_GETS:
            key = _literal(node.args[0] if node.args else keywords.get("key"))
            # A default makes the variable optional, as it is for Variable.get itself.
            optional = len(node.args) > 1 or bool({"default", "default_var"} & set(keywords))
            if key is not None:
                found.add_variable(Reference(key, where, optional=optional))
        elif call in _CONNECTION_GETS:
            conn_id = _literal(node.args[0] if node.args else keywords.get("conn_id"))
            if conn_id is not None:
                found.add_connection(Reference(conn_id, where))


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
        return node.value
    return None
