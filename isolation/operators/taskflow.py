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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

import attr
from airflow.sdk.bases.decorator import DecoratedOperator, _TaskDecorator
from airflow.sdk.definitions.xcom_arg import XComArg

from isolation.operators import _state, discovery
from isolation.operators._function import FUNCTION_OPERATOR, check_function, discover_in_source, sealed_function
from isolation.operators.isolated import IsolatedOperator, _resolver

__all__ = ["isolated_task"]


class _IsolatedDecoratedOperator(DecoratedOperator, IsolatedOperator):
    """The operator behind ``@task.isolated`` (built by Airflow's TaskFlow machinery)."""

    custom_operator_name = "@task.isolated"
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
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            operator=FUNCTION_OPERATOR,
            **kwargs,
        )
        if self.operator_kwargs:
            names = ", ".join(sorted(self.operator_kwargs))
            raise TypeError(f"@task.isolated got unexpected argument(s): {names}")
        # Not template fields (they render in isolation), so upstream tasks are set here.
        XComArg.apply_upstream_relationship(self, (self.op_args, self.op_kwargs))

    def _named_arguments(self) -> dict[str, Any]:
        """Positional arguments under their parameter names, then the keyword arguments."""
        names = [
            p.name
            for p in inspect.signature(self.python_callable).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        named = {(names[i] if i < len(names) else f"*args[{i}]"): value for i, value in enumerate(self.op_args)}
        return {**named, **self.op_kwargs}

    def _discover(self) -> discovery.Discovered:
        found = discovery.discover(self._named_arguments())
        discover_in_source(sealed_function(self.python_callable), found)
        return found

    def _wrapped_kwargs(self, context: Any) -> dict[str, Any]:
        function = sealed_function(self.python_callable)
        resolve = _resolver(context)
        where = f"of {function.name}()"
        names = list(self._named_arguments())
        op_args = [
            _state.to_plain(value, f"argument {names[i]!r} {where}", resolve) for i, value in enumerate(self.op_args)
        ]
        op_kwargs = {
            key: _state.to_plain(value, f"argument {key!r} {where}", resolve) for key, value in self.op_kwargs.items()
        }
        return {**function.as_kwargs(), "op_args": op_args, "op_kwargs": op_kwargs}


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

    def decorate(fn: Callable[..., Any]) -> Any:
        check_function(fn)
        sealed_function(fn)  # the source must be readable now, not first when the task runs
        # What task_decorator_factory does, with the decorator class above.
        return _IsolatedTaskDecorator(
            function=fn,
            multiple_outputs=attr.NOTHING if multiple_outputs is None else multiple_outputs,  # type: ignore[arg-type]
            operator_class=_IsolatedDecoratedOperator,
            kwargs=kwargs,
            decorator_name="task.isolated",
        )

    if python_callable is not None:
        return decorate(python_callable)
    return decorate
