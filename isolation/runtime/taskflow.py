"""The runtime side of ``@task.isolated``: compile the sealed source, run it as a PythonOperator.

The envelope names :class:`SealedFunctionOperator` as its operator and carries the
function's source, name and place in the DAG file as its arguments, inside the signed
ciphertext: what runs here is exactly what the host sealed. The source is compiled in a
fresh module (only builtins), so the DAG file's module scope is not there; a name looked
up there fails with :class:`~isolation.errors.ModuleScopeName`, which says how to fix it.
This environment's own PythonOperator does the rest, as for ``@task``: the DAG file's
literal arguments rendered as templates, the context injected by parameter name. Values
the host resolved from upstream XComs travel apart (``resolved``) and are put in place
after rendering, so they are never rendered, as in Airflow; the return value is not logged.

Imports Airflow: the runtime imports this module only after the envelope is verified.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import io
import linecache
import types
from typing import Any

from isolation.errors import ModuleScopeName, OperatorLoadError
from isolation.runtime import compat

_PythonOperator: Any = compat.import_operator(compat.PYTHON_OPERATOR)
_BranchPythonOperator: Any = compat.import_operator(
    compat.PYTHON_OPERATOR.replace("PythonOperator", "BranchPythonOperator")
)
_ShortCircuitOperator: Any = compat.import_operator(
    compat.PYTHON_OPERATOR.replace("PythonOperator", "ShortCircuitOperator")
)


def compile_function(
    source: str, name: str, filename: str, first_line: int
) -> tuple[types.FunctionType, dict[str, Any]]:
    """The function ``name`` defined by ``source``, and the fresh module namespace it lives in.

    The source is the DAG file's text, byte for byte: an indented function (defined inside
    ``with DAG(...)``) compiles as the body of ``if True:``, so nothing in it is re-indented.
    Line numbers are the DAG file's, and the source is registered with ``linecache``, so
    a traceback shows the failing line as the DAG author wrote it.
    """
    wrapped = source[:1] in (" ", "\t", "\x0c")
    text = "if True:\n" + source if wrapped else source
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise OperatorLoadError(f"the sealed source of {name!r} does not parse ({exc.msg})") from None
    body = tree.body[0].body if wrapped and len(tree.body) == 1 and isinstance(tree.body[0], ast.If) else tree.body
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef) or body[0].name != name or body[0].decorator_list:
        raise OperatorLoadError(f"the sealed source of {name!r} is not one undecorated def statement")
    first = max(first_line, 2 if wrapped else 1)
    ast.increment_lineno(tree, first - 1 - (1 if wrapped else 0))
    # Postponed annotations: a return type named in the DAG file's scope is not looked up.
    code = compile(tree, filename, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)
    # Python's own line ends only (str.splitlines also splits on \u2028 and the like).
    lines = ["\n"] * (first - 1) + io.StringIO(source, newline="").readlines()
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


def _place(op_args: list[Any], op_kwargs: dict[str, Any], path: list[Any], value: Any) -> None:
    """Put ``value`` at ``path`` (``["op_args", 0, "key", ...]`` or ``["op_kwargs", "name", ...]``)."""
    if len(path) < 2 or path[0] not in ("op_args", "op_kwargs"):
        raise OperatorLoadError("a resolved argument of the sealed function has no valid place")
    target: Any = op_args if path[0] == "op_args" else op_kwargs
    for step in path[1:-1]:
        target = target[step]
    target[path[-1]] = value


class _SealedFunction:
    """A PythonOperator-family operator of this environment around a function compiled from sealed source."""

    def __init__(
        self,
        *,
        function: str,
        source: str,
        filename: str,
        first_line: int = 1,
        resolved: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        callable_, namespace = compile_function(source, function, filename, first_line)
        # The return value is the task's XCom, not a log line: it may hold derived secrets.
        kwargs.setdefault("show_return_value_in_logs", False)
        super().__init__(python_callable=callable_, **kwargs)  # type: ignore[call-arg]
        self._function_name = function
        self._namespace = namespace
        # Upstream XCom values: not template fields, so never rendered (as in Airflow).
        self._resolved = list(resolved or [])

    def execute(self, context: Any) -> Any:
        # After op_args and op_kwargs (the DAG file's literal arguments) were rendered.
        op_args: list[Any] = list(getattr(self, "op_args", None) or [])
        op_kwargs: dict[str, Any] = dict(getattr(self, "op_kwargs", None) or {})
        for item in self._resolved:
            _place(op_args, op_kwargs, list(item["path"]), item["value"])
        self.op_args, self.op_kwargs = op_args, op_kwargs
        return super().execute(context)  # type: ignore[misc]

    def execute_callable(self) -> Any:
        try:
            return super().execute_callable()  # type: ignore[misc]
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


class SealedFunctionOperator(_SealedFunction, _PythonOperator):  # type: ignore[misc]
    """``@task.isolated``: the sealed function run by this environment's PythonOperator."""

    # Defined here, so Airflow's operator metaclass wraps them for this class as it expects.
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        return super().execute(context)


class SealedBranchOperator(_SealedFunction, _BranchPythonOperator):  # type: ignore[misc]
    """``@task.isolated_branch``: the function returns the task ids to follow, as ``@task.branch``."""

    # Defined here, so Airflow's operator metaclass wraps them for this class as it expects.
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        return super().execute(context)


class SealedShortCircuitOperator(_SealedFunction, _ShortCircuitOperator):  # type: ignore[misc]
    """``@task.isolated_short_circuit``: a falsy return skips downstream, as ``@task.short_circuit``."""

    # Defined here, so Airflow's operator metaclass wraps them for this class as it expects.
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        return super().execute(context)
