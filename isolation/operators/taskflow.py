"""``@task.isolated``: a TaskFlow function run in an isolated environment, its source sealed.

``from airflow.sdk import task`` then ``@task.isolated(environment="name")`` (registered as
``task-decorators`` in the provider metadata), or ``from isolation import isolated_task``.

The decorated task is an :class:`~isolation.operators.isolated.IsolatedOperator` whose
wrapped operator is the runtime's :data:`~isolation.operators._function.FUNCTION_OPERATOR`:
the function's source and its arguments are that operator's kwargs, so they travel inside
the signed, encrypted envelope like any operator's arguments (no payload schema change)
and every backend runs them the same way. In the environment the source is compiled in a
fresh module and run by that Airflow's own PythonOperator (context injection by parameter
name, templates in string arguments rendered there). See docs/howto-taskflow.md.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import attr
from airflow.sdk.bases.decorator import DecoratedOperator, _TaskDecorator
from airflow.sdk.definitions.xcom_arg import XComArg

from isolation.errors import IsolatedTaskFailed
from isolation.operators import _state, discovery
from isolation.operators._function import (
    BRANCH_OPERATOR,
    FUNCTION_OPERATOR,
    SHORT_CIRCUIT_OPERATOR,
    SealedFunction,
    check_function,
    discover_in_source,
    sealed_function,
)
from isolation.operators.isolated import IsolatedOperator, _resolver
from isolation.operators.result import reserved_xcom_key

__all__ = ["isolated_branch_task", "isolated_short_circuit_task", "isolated_task"]


# Captured once, when the function is decorated: the task seals this, never a re-read file.
_CAPTURED: weakref.WeakKeyDictionary[Callable[..., Any], SealedFunction] = weakref.WeakKeyDictionary()
_PLACEHOLDER = None  # where a resolved value goes, in the literal arguments


def capture(fn: Callable[..., Any]) -> SealedFunction:
    """The sealed function of ``fn``, read and checked the first time it is asked for."""
    sealed = _CAPTURED.get(fn)
    if sealed is None:
        sealed = _CAPTURED[fn] = sealed_function(fn)
    return sealed


class _IsolatedDecoratedOperator(DecoratedOperator, IsolatedOperator):
    """The operator behind ``@task.isolated`` (built by Airflow's TaskFlow machinery)."""

    custom_operator_name = "@task.isolated"
    # The runtime's operator that runs the sealed function (see isolation/runtime/taskflow.py).
    function_operator: ClassVar[str] = FUNCTION_OPERATOR
    # Arguments of that operator itself, beyond the function's (passed to it as they are).
    function_operator_args: ClassVar[frozenset[str]] = frozenset()
    # Only the environment renders on the host: the arguments render in isolation, so a
    # template reading a variable or a connection never stores its value here (RTIF).
    template_fields: Sequence[str] = ("environment",)
    template_fields_renderers: ClassVar[dict[str, str]] = {}
    shallow_copy_attrs: Sequence[str] = ("python_callable", "backend")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_function(python_callable)
        sealed = capture(python_callable)
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            operator=self.function_operator,
            **kwargs,
        )
        unexpected = set(self.operator_kwargs) - self.function_operator_args
        if unexpected:
            names = ", ".join(sorted(unexpected))
            raise TypeError(f"{self.custom_operator_name} got unexpected argument(s): {names}")
        # Not template fields (they render in isolation), so upstream tasks are set here.
        XComArg.apply_upstream_relationship(self, (self.op_args, self.op_kwargs))
        self.sealed = sealed
        self._from_xcom: frozenset[str] = frozenset()

    def execute(self, context: Any) -> Any:
        self._from_xcom = self._mapped_from_xcom(context)
        result = super().execute(context)
        if self.multiple_outputs and isinstance(result, Mapping):
            # Each key becomes an XCom pushed by the host: the reserved keys are refused here
            # as they are for pushed XComs (isolation_environment is the host's record).
            for key in result:
                why = reserved_xcom_key(key) if isinstance(key, str) else None
                if why is not None:
                    raise IsolatedTaskFailed(
                        f"{self.sealed.name}() returned the reserved key {key[:80]!r} with multiple_outputs ({why})",
                        hint="return the value under another key; keys starting with 'isolation_' and Airflow's own "
                        "keys are refused",
                    )
        return result

    def _mapped_from_xcom(self, context: Any) -> frozenset[str]:
        """The keyword arguments that ``expand()`` / ``expand_kwargs()`` mapped from an upstream XCom.

        At run time a mapped task's arguments hold the mapped values themselves; only the
        DAG's mapped task says whether a value came from a literal list or from an XCom.
        """
        from airflow.sdk.bases.decorator import DecoratedMappedOperator
        from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput

        dag = self.get_dag()
        defined = dag.task_dict.get(self.task_id) if dag is not None else None
        if not isinstance(defined, DecoratedMappedOperator):
            return frozenset()
        mapped = defined.op_kwargs_expand_input
        value = getattr(mapped, "value", None)
        if isinstance(mapped, DictOfListsExpandInput) and isinstance(value, Mapping):
            return frozenset(key for key, item in value.items() if _holds_resolvable(item))
        # expand_kwargs(): a literal list of literal dicts is the DAG file's; otherwise every
        # mapped key came from an XCom (all but the partial() arguments, taken as they are).
        map_index = getattr(context["ti"], "map_index", -1)
        if isinstance(value, (list, tuple)) and 0 <= map_index < len(value) and not _holds_resolvable(value[map_index]):
            return frozenset()
        partial = defined.partial_kwargs.get("op_kwargs") or {}
        return frozenset(key for key, item in self.op_kwargs.items() if not (key in partial and partial[key] is item))

    def _arguments(self, resolve: Callable[[Any], Any] | None) -> tuple[list[Any], dict[str, Any], list[Any]]:
        """The DAG file's literal arguments, and the values resolved from upstream XComs apart.

        With ``resolve`` None nothing is resolved (for discovery): the literal arguments, a
        placeholder where a resolved value goes. Else the literal arguments in codec types,
        and ``[{"path": [...], "value": ...}]`` of every value resolved out of an XComArg or
        mapped from an XCom.
        """
        where = f"of {self.sealed.name}()"
        names = list(self._named_arguments())
        resolved: list[Any] = []
        op_args = [
            _split(value, ["op_args", i], f"argument {names[i]!r} {where}", resolve, resolved)
            for i, value in enumerate(self.op_args)
        ]
        op_kwargs: dict[str, Any] = {}
        for key, value in self.op_kwargs.items():
            label = f"argument {key!r} {where}"
            if key in self._from_xcom:
                if resolve is not None:
                    resolved.append({"path": ["op_kwargs", key], "value": _state.to_plain(value, label, resolve)})
                op_kwargs[key] = _PLACEHOLDER
            else:
                op_kwargs[key] = _split(value, ["op_kwargs", key], label, resolve, resolved)
        return op_args, op_kwargs, resolved

    def _named_arguments(
        self, op_args: Sequence[Any] | None = None, op_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Positional arguments under their parameter names, then the keyword arguments."""
        args = self.op_args if op_args is None else op_args
        kwargs = self.op_kwargs if op_kwargs is None else op_kwargs
        names = [
            p.name
            for p in inspect.signature(self.python_callable).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        named = {(names[i] if i < len(names) else f"*args[{i}]"): value for i, value in enumerate(args)}
        return {**named, **kwargs}

    def _discover(self) -> discovery.Discovered:
        # Only what the DAG file fixed: never a value resolved from an upstream XCom.
        op_args, op_kwargs, _ = self._arguments(None)
        found = discovery.discover(self._named_arguments(op_args, op_kwargs))
        discover_in_source(self.sealed, found)
        # Literal ti.xcom_pull(...) calls of the function's own source, as for any callable.
        discovery.scan_source(self.sealed.source, f"the source of {self.sealed.name}()", found, self.sealed.first_line)
        return found

    def _wrapped_kwargs(self, context: Any) -> dict[str, Any]:
        op_args, op_kwargs, resolved = self._arguments(_resolver(context))
        own = _state.to_plain(self.operator_kwargs, f"argument of {self.custom_operator_name}")
        kwargs = {**own, **self.sealed.as_kwargs(), "op_args": op_args, "op_kwargs": op_kwargs}
        if resolved:
            kwargs["resolved"] = resolved
        return kwargs


class _IsolatedBranchOperator(_IsolatedDecoratedOperator):
    """The operator behind ``@task.isolated_branch``: the function's return names the tasks to follow."""

    custom_operator_name = "@task.isolated_branch"
    function_operator = BRANCH_OPERATOR


class _IsolatedShortCircuitOperator(_IsolatedDecoratedOperator):
    """The operator behind ``@task.isolated_short_circuit``: a falsy return skips what is downstream."""

    custom_operator_name = "@task.isolated_short_circuit"
    function_operator = SHORT_CIRCUIT_OPERATOR
    function_operator_args = frozenset({"ignore_downstream_trigger_rules"})


def _holds_resolvable(value: Any) -> bool:
    """Whether ``value`` is, or holds, something resolved at run time (an XComArg)."""
    from airflow.sdk.definitions._internal.mixins import ResolveMixin

    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, ResolveMixin):
            return True
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return False


def _split(value: Any, path: list[Any], where: str, resolve: Callable[[Any], Any] | None, resolved: list[Any]) -> Any:
    """``value`` with every XComArg in it taken out to ``resolved`` (or left as a placeholder)."""
    from airflow.sdk.definitions._internal.mixins import ResolveMixin

    if isinstance(value, ResolveMixin):
        if resolve is not None:
            resolved.append({"path": path, "value": _state.to_plain(value, where, resolve)})
        return _PLACEHOLDER
    if not _holds_resolvable(value):
        return value if resolve is None else _state.to_plain(value, where)
    if isinstance(value, Mapping):
        return {key: _split(item, [*path, key], f"{where}[{key!r}]", resolve, resolved) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(item, [*path, i], f"{where}[{i}]", resolve, resolved) for i, item in enumerate(value)]
    return value if resolve is None else _state.to_plain(value, where, resolve)  # a set: refused, named


@attr.define(slots=False)
class _IsolatedTaskDecorator(_TaskDecorator):  # type: ignore[type-arg]
    """Airflow's TaskFlow decorator, plus the upstream tasks of ``.partial()`` arguments.

    PRIVATE: ``_TaskDecorator`` is what ``task_decorator_factory`` builds. A mapped task sets
    upstream tasks from its operator's template fields, and the arguments are not template
    fields here (they render in isolation), so ``partial(x=upstream())`` would otherwise
    not wait for ``upstream``.
    """

    def _expand(self, expand_input: Any, *, strict: bool) -> XComArg:
        output = super()._expand(expand_input, strict=strict)
        XComArg.apply_upstream_relationship(output.operator, self.kwargs.get("op_kwargs", {}))  # type: ignore[attr-defined]
        return output


def _decorator(
    operator_class: type[_IsolatedDecoratedOperator],
    name: str,
    python_callable: Callable[..., Any] | None,
    multiple_outputs: bool | None,
    kwargs: dict[str, Any],
) -> Any:
    def decorate(fn: Callable[..., Any]) -> Any:
        check_function(fn)
        capture(fn)  # read and checked now, once: the task seals this, not the file as it is later
        # What task_decorator_factory does, with the decorator class above.
        return _IsolatedTaskDecorator(
            function=fn,
            multiple_outputs=attr.NOTHING if multiple_outputs is None else multiple_outputs,  # type: ignore[arg-type]
            operator_class=operator_class,
            kwargs=kwargs,
            decorator_name=name,
        )

    if python_callable is not None:
        return decorate(python_callable)
    return decorate


def isolated_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Run the decorated function in the isolated ``environment`` (``@task.isolated(environment=...)``).

    Takes every :class:`~isolation.operators.isolated.IsolatedOperator` argument
    (``environment``, ``allowed_environments``, ``connections``, ``variables``,
    ``xcom_inputs``, ``backend``, ...) and every ``BaseOperator`` argument.
    ``multiple_outputs`` is inferred from a ``dict`` return annotation, as for ``@task``.
    Lambdas, closures, generators and ``async def`` are refused here, when decorated.
    """
    return _decorator(_IsolatedDecoratedOperator, "task.isolated", python_callable, multiple_outputs, kwargs)


def isolated_branch_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """``@task.branch`` in isolation (``@task.isolated_branch(environment=...)``).

    The function returns the task id (or ids, or None) to follow, as for ``@task.branch``;
    the decision is checked against the DAG on the host and applied there. Takes the
    arguments of :func:`isolated_task`.
    """
    return _decorator(_IsolatedBranchOperator, "task.isolated_branch", python_callable, multiple_outputs, kwargs)


def isolated_short_circuit_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """``@task.short_circuit`` in isolation (``@task.isolated_short_circuit(environment=...)``).

    A falsy return skips the downstream tasks (with ``ignore_downstream_trigger_rules``, as
    for ``@task.short_circuit``), checked against the DAG and applied on the host. Takes the
    arguments of :func:`isolated_task`.
    """
    return _decorator(
        _IsolatedShortCircuitOperator, "task.isolated_short_circuit", python_callable, multiple_outputs, kwargs
    )
