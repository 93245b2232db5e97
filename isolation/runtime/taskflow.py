"""The runtime side of ``@task.isolated``: compile the sealed source, run it as a PythonOperator.

The envelope names :class:`SealedFunctionOperator` as its operator and carries the
function's source, name and place in the DAG file as its arguments, inside the signed
ciphertext: what runs here is exactly what the host sealed. The source is compiled in a
fresh module (only builtins), so the DAG file's module scope is not there; a name looked
up there fails with :class:`~isolation.errors.ModuleScopeName`, which says how to fix it.
This environment's own PythonOperator does the rest, as for ``@task``: arguments rendered
as templates, the context injected by parameter name.

Imports Airflow: the runtime imports this module only after the envelope is verified.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import linecache
import types
from typing import Any

from isolation.errors import ModuleScopeName, OperatorLoadError
from isolation.runtime import compat

_PythonOperator: Any = compat.import_operator(compat.PYTHON_OPERATOR)


def compile_function(
    source: str, name: str, filename: str, first_line: int
) -> tuple[types.FunctionType, dict[str, Any]]:
    """The function ``name`` defined by ``source``, and the fresh module namespace it lives in.

    Line numbers are the DAG file's, and the source is registered with ``linecache``, so
    a traceback shows the failing line as the DAG author wrote it.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise OperatorLoadError(f"the sealed source of {name!r} does not parse ({exc.msg})") from None
    ast.increment_lineno(tree, max(first_line, 1) - 1)
    # Postponed annotations: a return type named in the DAG file's scope is not looked up.
    code = compile(tree, filename, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)
    lines = ["\n"] * (max(first_line, 1) - 1) + source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    namespace: dict[str, Any] = {"__name__": f"isolated_{name}", "__builtins__": builtins}
    try:
        exec(code, namespace)  # noqa: S102 - the host's signed source, the point of this module
    except NameError as exc:  # a default value from the DAG file's scope
        raise ModuleScopeName(exc.name or str(exc), name, "in its signature") from exc
    function = namespace.get(name)
    if not isinstance(function, types.FunctionType):
        raise OperatorLoadError(f"the sealed source does not define the function {name!r}")
    return function, namespace


class SealedFunctionOperator(_PythonOperator):  # type: ignore[misc]
    """This environment's PythonOperator around a function compiled from sealed source."""

    def __init__(self, *, function: str, source: str, filename: str, first_line: int = 1, **kwargs: Any) -> None:
        callable_, namespace = compile_function(source, function, filename, first_line)
        super().__init__(python_callable=callable_, **kwargs)
        self._function_name = function
        self._namespace = namespace

    def execute_callable(self) -> Any:
        try:
            return super().execute_callable()
        except NameError as exc:
            if isinstance(exc, UnboundLocalError) or not exc.name or not self._raised_here(exc):
                raise
            raise ModuleScopeName(exc.name, self._function_name, self._line(exc)) from exc

    def _raised_here(self, exc: BaseException) -> bool:
        """Whether the name was missing in the sealed module itself (not in a library it called)."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return tb is not None and tb.tb_frame.f_globals is self._namespace

    @staticmethod
    def _line(exc: BaseException) -> str:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None:
            return ""
        filename = tb.tb_frame.f_code.co_filename
        text = linecache.getline(filename, tb.tb_lineno).strip()
        return f"{filename} line {tb.tb_lineno}: {text}" if text else f"{filename} line {tb.tb_lineno}"
