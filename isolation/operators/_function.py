"""A ``@task.isolated`` function as sealed source: checks, extraction, discovery.

Pure functions over Python objects and source text: no Airflow import. The decorator
checks a function and captures its source once, when it is decorated (never re-read
when the task runs), and checks that the source compiles to the function's own code;
the source, not a pickle or an import path, is what travels in the envelope.
"""

from __future__ import annotations
import __future__

import ast
import inspect
import io
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isolation.errors import UnsupportedFunction
from isolation.operators.discovery import Discovered, Reference

FUNCTION_OPERATOR = "isolation.runtime.taskflow.SealedFunctionOperator"
"""The runtime's operator that compiles and runs a sealed function (the envelope's import path)."""
BRANCH_OPERATOR = "isolation.runtime.taskflow.SealedBranchOperator"
"""The same, run by the environment's BranchPythonOperator (``@task.isolated_branch``)."""
SHORT_CIRCUIT_OPERATOR = "isolation.runtime.taskflow.SealedShortCircuitOperator"
"""The same, run by the environment's ShortCircuitOperator (``@task.isolated_short_circuit``)."""

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
    """The function's own source as the DAG file has it, decorators stripped, checked against ``fn``.

    The source is the DAG file's lines from the ``def`` line on, byte for byte (no dedent:
    an indented function compiles as the body of ``if True:``). It must parse as exactly
    one undecorated ``def`` of ``fn``'s name, and compile to ``fn``'s own code, else the
    function is refused: what is sealed is what the DAG file defined.
    """
    check_function(fn)
    name = fn.__qualname__
    if hasattr(fn, "__wrapped__"):
        raise UnsupportedFunction(
            f"@task.isolated cannot isolate {name!r}: it wraps another function (__wrapped__), whose "
            "source is not the code that would run",
            hint="decorate the plain def function itself, with @task.isolated as its only decorator",
        )
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError) as exc:
        raise UnsupportedFunction(
            f"the source of {name!r} cannot be read ({exc})",
            hint="@task.isolated functions must be defined in a .py file the worker can read",
        ) from None
    # Python's own lines: only \n, \r\n and \r end one (str.splitlines also splits on \x0b,
    # \x0c, \x1c-\x1e, \x85, \u2028 and \u2029, which Python reads as part of a line).
    lines = python_lines("".join(lines))
    try:
        node, offset = parse_sealed("".join(lines), allow_decorators=True)
    except SyntaxError as exc:
        raise UnsupportedFunction(f"the source of {name!r} cannot be parsed ({exc.msg})") from None
    except ValueError:
        node, offset = None, 0
    if node is None or node.name != fn.__name__:
        raise UnsupportedFunction(f"the source of {name!r} is not a single def statement")
    def_line = node.lineno - offset  # 1-based, in the lines of the block
    source = "".join(lines[def_line - 1 :])
    sealed = SealedFunction(
        name=fn.__name__,
        source=source,
        filename=os.path.basename(inspect.getsourcefile(fn) or "<dag file>"),
        first_line=start + def_line - 1,
    )
    check_sealed(sealed, fn)
    return sealed


def python_lines(text: str) -> list[str]:
    """``text`` split where Python ends a line (``\\n``, ``\\r\\n``, ``\\r``), line ends kept."""
    return io.StringIO(text, newline="").readlines()


def sealed_module_source(source: str) -> tuple[str, int]:
    """What compiles ``source``: itself, or the body of ``if True:`` when it is indented; and
    how many lines that adds before it."""
    if source[:1] in (" ", "\t", "\x0c"):
        return "if True:\n" + source, 1
    return source, 0


def parse_sealed(source: str, *, allow_decorators: bool = False) -> tuple[ast.FunctionDef, int]:
    """The one ``def`` that ``source`` is, and the line offset of :func:`sealed_module_source`.

    ValueError when ``source`` holds anything but one (undecorated) ``def`` statement.
    """
    text, offset = sealed_module_source(source)
    tree = ast.parse(text)
    body = tree.body
    if offset:
        if not (len(body) == 1 and isinstance(body[0], ast.If) and not body[0].orelse):
            raise ValueError("not a single def statement")
        body = body[0].body
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
        raise ValueError("not a single def statement")
    node = body[0]
    if node.decorator_list and not allow_decorators:
        raise ValueError("a decorated def statement")
    return node, offset


def check_sealed(sealed: SealedFunction, fn: Callable[..., Any]) -> None:
    """Refuse ``sealed`` unless it is one undecorated ``def`` compiling to ``fn.__code__``."""
    where = f"the source of {fn.__qualname__!r} ({sealed.filename} line {sealed.first_line})"
    hint = (
        "the DAG file must define the function as it runs: was the file changed after it was loaded, "
        "or is the function built or replaced at run time?"
    )
    try:
        node, _ = parse_sealed(sealed.source)
    except (SyntaxError, ValueError) as exc:
        raise UnsupportedFunction(f"{where} is not a single undecorated def statement ({exc})", hint=hint) from None
    code: types.CodeType = fn.__code__
    text, _ = sealed_module_source(sealed.source)
    # The DAG file's __future__ imports, as the function was compiled with them.
    flags = code.co_flags & _FUTURE_FLAGS
    module = compile(text, sealed.filename, "exec", flags=flags, dont_inherit=True)
    compiled = [c for c in _code_constants(module) if c.co_name == node.name]
    if len(compiled) != 1 or not _same_code(compiled[0], code):
        raise UnsupportedFunction(f"{where} does not compile to the function's own code", hint=hint)


_FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag
# Set for a function defined inside another one; the sealed source is compiled at module level.
_CO_NESTED = inspect.CO_NESTED


def _code_constants(code: types.CodeType) -> list[types.CodeType]:
    return [c for c in code.co_consts if isinstance(c, types.CodeType)]


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Same bytecode, names and constants (nested code objects compared alike); line
    numbers, positions and file names are not compared."""
    if (a.co_code, a.co_names, a.co_varnames, a.co_freevars, a.co_cellvars, a.co_argcount) != (
        b.co_code,
        b.co_names,
        b.co_varnames,
        b.co_freevars,
        b.co_cellvars,
        b.co_argcount,
    ):
        return False
    if (a.co_posonlyargcount, a.co_kwonlyargcount, a.co_name) != (b.co_posonlyargcount, b.co_kwonlyargcount, b.co_name):
        return False
    if (a.co_flags & ~_CO_NESTED) != (b.co_flags & ~_CO_NESTED):
        return False
    return _same_constant(a.co_consts, b.co_consts)


def _same_constant(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, types.CodeType):
        return _same_code(a, b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same_constant(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, frozenset):
        return bool(a == b)
    if isinstance(a, (float, complex)):
        return repr(a) == repr(b)
    return bool(a == b)


def discover_in_source(fn: SealedFunction, found: Discovered) -> None:
    """``Variable.get("x")`` and ``BaseHook.get_connection("c")`` calls with literal names."""
    node_, offset = parse_sealed(fn.source)
    for node in ast.walk(node_):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not isinstance(owner, ast.Name):
            continue
        call = (owner.id, node.func.attr)
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        where = f"the source of {fn.name} (line {fn.first_line + node.lineno - offset - 1})"
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
