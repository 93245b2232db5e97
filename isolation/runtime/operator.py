"""Import, build, render and execute the wrapped operator."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from isolation import _signature
from isolation.errors import DeferralNotSupported, IsolationError, OperatorLoadError, TaskTerminated
from isolation.runtime import compat, contract, decisions
from isolation.runtime.context import IsolatedDagRun, IsolatedTaskInstance, XComRecord, build_context
from isolation.runtime.dagshape import DagRebuild
from isolation.transport import CallableRef

if TYPE_CHECKING:
    from isolation.transport.payload import Payload

log = logging.getLogger("isolation.runtime")


def _resolve_callables(value: Any, where: str) -> Any:
    """Turn every CallableRef in the arguments into the function it names."""
    if isinstance(value, CallableRef):
        try:
            return value.resolve()
        except Exception as exc:
            raise OperatorLoadError(
                f"{where}: callable {value.path!r} cannot be imported in this environment "
                f"({type(exc).__name__}: {exc})",
                hint="install the module that defines it in the environment (environments/<name>/requirements.txt)",
            ) from None
    if isinstance(value, dict):
        return {k: _resolve_callables(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_callables(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_class(import_path: str) -> type:
    try:
        cls = compat.import_operator(import_path)
    except Exception as exc:
        raise OperatorLoadError(
            f"operator {import_path!r} cannot be imported in this environment ({type(exc).__name__}: {exc})",
            hint="check the import path, and that the environment's requirements.txt installs its provider",
        ) from None
    if not isinstance(cls, type) or not issubclass(cls, compat.BaseOperator):
        raise OperatorLoadError(
            f"{import_path!r} is not an Airflow operator class",
            hint="IsolatedOperator runs subclasses of BaseOperator",
        )
    return cls


def _rejected(cls: type, kwargs: dict[str, Any], exc: Exception) -> OperatorLoadError:
    """Why ``cls`` refused ``kwargs``: the unknown names and its signature here, when that is the reason."""
    hint = "fix the arguments given to IsolatedOperator for this operator and Airflow version"
    unknown = _signature.unknown_arguments(cls, kwargs, compat.BaseOperator)
    if not unknown:
        return OperatorLoadError(f"{cls.__name__} rejected its arguments ({type(exc).__name__}: {exc})", hint=hint)
    # Names only: Airflow's own message quotes the values, which may be secrets.
    plural = "s" if len(unknown) > 1 else ""
    return OperatorLoadError(
        f"{cls.__name__} rejected its arguments: unknown argument{plural} "
        f"{_signature.describe_unknown(unknown, cls, compat.BaseOperator)}; in this environment "
        f"(Airflow {compat.AIRFLOW_VERSION}, {cls.__module__}) it is {_signature.constructor_text(cls)}, "
        "plus the arguments of BaseOperator",
        hint=hint,
    )


class PreparedTask:
    """An operator built from the envelope, with its DAG, context and XCom record."""

    def __init__(self, payload: Payload) -> None:
        self.payload = payload
        self.record = XComRecord()
        self.decisions = decisions.DecisionRecord()
        ctx = payload.context
        spec = payload.operator
        cls = load_class(spec.import_path)
        kwargs = _resolve_callables(dict(spec.kwargs), "operator kwargs")
        # The identity comes from the signed header, never from free-form arguments.
        kwargs.pop("task_id", None)
        kwargs.pop("dag", None)
        if kwargs.get("mode") == "reschedule" and payload.options.reschedule_to_poke:
            kwargs["mode"] = "poke"
            log.info("sensor mode 'reschedule' converted to 'poke': there is no scheduler inside isolation")
        if kwargs.get("deferrable") is True:
            raise DeferralNotSupported(f"{spec.import_path} was given deferrable=True")
        rebuild = DagRebuild(payload)
        rebuild.check_operator(cls)
        self.dag = rebuild.dag
        try:
            built = cls(task_id=ctx.task_id, dag=self.dag, **rebuild.placement(), **kwargs)
        except IsolationError:
            raise
        except Exception as exc:
            raise _rejected(cls, kwargs, exc) from None
        rebuild.connect(built)
        decisions.install(self.decisions, structured=payload.dag is not None)
        # What Airflow's task runner does: a copy whose attribute writes during execute
        # (op_kwargs := the context) are not tracked as DAG dependencies.
        self.task = built.prepare_for_execution()
        if getattr(self.task, "mode", None) == "reschedule" and payload.options.reschedule_to_poke:
            self.task.mode = "poke"
            log.info("sensor mode 'reschedule' converted to 'poke': there is no scheduler inside isolation")
        if getattr(self.task, "start_from_trigger", False):
            raise DeferralNotSupported(f"{cls.__name__} starts from a trigger")
        contract.attach_queries(IsolatedTaskInstance, IsolatedDagRun)
        self.context = build_context(payload, self.task, self.dag, self.record)

    def render(self) -> None:
        if self.payload.options.render_templates:
            self.task.render_template_fields(self.context)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # What Airflow's task runner does on termination: let the operator stop its work
        # (BashOperator kills its child process group), then fail the task.
        try:
            log.error("received signal %d: stopping the operator", signum)
        except RuntimeError:  # the signal came mid-write to stderr ("reentrant call"): write it raw
            os.write(2, f"ERROR received signal {signum}: stopping the operator\n".encode())
        self.task.on_kill()
        raise TaskTerminated(f"the isolated task was terminated by signal {signum}")

    def execute(self) -> Any:
        """Run the operator; its return value and pushes land in ``self.record``."""
        task = self.task
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        with compat.current_context(self.context), contract.executing(task):
            try:
                task.pre_execute(context=self.context)
                result = task.execute(self.context, **compat.execute_kwargs(task))
                task.post_execute(context=self.context, result=result)
            except compat.TaskDeferred as exc:
                raise DeferralNotSupported(f"{type(task).__name__} raised TaskDeferred") from exc
            except compat.downstream_skipped_exceptions():
                # Airflow 3's SkipMixin ending execute: a success whose decision is recorded.
                self._keep_decisions_only()
                return None
        self._keep_decisions_only()
        if getattr(task, "do_xcom_push", True) and result is not None:
            self.record.return_value = result
            if getattr(task, "multiple_outputs", False) and isinstance(result, dict):
                for key, value in result.items():
                    self.record.push(str(key), value)
        elif not getattr(task, "do_xcom_push", True):
            self.record.return_value = None
        return result

    def _keep_decisions_only(self) -> None:
        # SkipMixin's own XCom is the host's to write, from the decision it applies.
        if self.decisions.decisions:
            self.record.pushed = [(k, v) for k, v in self.record.pushed if k != decisions.SKIPMIXIN_KEY]
