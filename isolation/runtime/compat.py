"""Every difference between the supported Airflow versions (2.9-2.11, 3.0-3.3), in one place.

The rest of the runtime has one code path per concept and asks this module for the
version-specific piece. Private Airflow names used here are marked ``PRIVATE`` with
the reason; each is exercised by the integration tests on Airflow 2.9, 2.10, 2.11, 3.0, 3.1
and 3.3.
Import this module only after the sandbox is prepared: it imports Airflow.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, NoReturn

import airflow

from isolation.errors import IsolationViolation, NotProvided
from isolation.runtime import secrets

AIRFLOW_VERSION: str = airflow.__version__
AIRFLOW_V3: bool = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3


def _load(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def _first(*candidates: tuple[str, str]) -> Any:
    """The first of (module, name) that imports: where a name moved between minor versions."""
    for module, name in candidates:
        try:
            return _load(module, name)
        except (ImportError, AttributeError):
            continue
    return None


# The Task SDK is Airflow 3's authoring API; Airflow 2 has the same names in core.
DAG: Any = _load("airflow.sdk" if AIRFLOW_V3 else "airflow.models.dag", "DAG")
BaseOperator: Any = _load("airflow.sdk" if AIRFLOW_V3 else "airflow.models.baseoperator", "BaseOperator")
# The Task SDK exports BaseHook from Airflow 3.1; 3.0 still has it only in core.
BaseHook: Any = _first(("airflow.sdk", "BaseHook"), ("airflow.hooks.base", "BaseHook"))
Variable: Any = _load("airflow.sdk" if AIRFLOW_V3 else "airflow.models.variable", "Variable")
# Airflow 3 ships PythonOperator in the standard provider only; Airflow 2 has it in core.
PYTHON_OPERATOR = (
    "airflow.providers.standard.operators.python.PythonOperator"
    if AIRFLOW_V3
    else "airflow.operators.python.PythonOperator"
)


def _exception(name: str) -> Any:
    # The task exceptions moved into the Task SDK in Airflow 3.1 (airflow.exceptions
    # re-exports them there); Airflow 2 and 3.0 define them in airflow.exceptions only.
    return _first(("airflow.sdk.exceptions", name), ("airflow.exceptions", name))


AirflowException: Any = _exception("AirflowException")
AirflowNotFoundException: Any = _exception("AirflowNotFoundException")
AirflowSkipException: Any = _exception("AirflowSkipException")
TaskDeferred: Any = _exception("TaskDeferred")

__all__ = [
    "AIRFLOW_V3",
    "AIRFLOW_VERSION",
    "DAG",
    "PYTHON_OPERATOR",
    "BaseHook",
    "BaseOperator",
    "ConnectionNotProvided",
    "TaskDeferred",
    "Variable",
    "VariableNotProvided",
    "current_context",
    "execute_kwargs",
    "import_operator",
    "install_guards",
    "macros",
    "mask_secret",
    "outlet_events",
    "real_run_classes",
    "route_structlog",
    "runner_signals",
    "skip_exceptions",
]


class ConnectionNotProvided(NotProvided, AirflowNotFoundException):  # type: ignore[misc]
    """Raised where Airflow raises AirflowNotFoundException, so operators that handle it still do."""

    def __init__(self, conn_id: str) -> None:
        NotProvided.__init__(self, "connection", conn_id)


class VariableNotProvided(NotProvided, KeyError):
    """Raised where Airflow 2 raises KeyError for a missing variable."""

    def __init__(self, key: str) -> None:
        NotProvided.__init__(self, "variable", key)


def skip_exceptions() -> tuple[type[BaseException], ...]:
    # Airflow 3 re-exports the SDK's class from airflow.exceptions; catch both spellings.
    return tuple({AirflowSkipException, _load("airflow.exceptions", "AirflowSkipException")})


# -- the DAG's structure (isolation.runtime.dagshape) --------------------------------


def task_group_class() -> Any:
    return _first(("airflow.sdk", "TaskGroup"), ("airflow.utils.task_group", "TaskGroup"))


def empty_operator_class() -> Any:
    return _first(
        ("airflow.providers.standard.operators.empty", "EmptyOperator"), ("airflow.operators.empty", "EmptyOperator")
    )


def timetable_class() -> Any:
    # Both majors accept a core timetable as a DAG's schedule.
    return _load("airflow.timetables.base", "Timetable")


def skipmixin_classes() -> list[type]:
    """Every SkipMixin an operator of this Airflow may inherit from (each defines its own
    ``skip``/``skip_all_except``): core's on Airflow 2, the Task SDK's and the standard
    provider's on Airflow 3 (the standard provider installs on Airflow 2 too)."""
    found = []
    # airflow.models.skipmixin only re-exports another one on Airflow 3 (with a warning).
    core = () if AIRFLOW_V3 else ("airflow.models.skipmixin",)
    modules = (*core, "airflow.sdk.bases.skipmixin", "airflow.providers.standard.utils.skipmixin")
    for module in modules:
        cls = _first((module, "SkipMixin"))
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return found


def downstream_skipped_exceptions() -> tuple[type[BaseException], ...]:
    """Airflow 3's signal from SkipMixin to the task runner: skip these tasks."""
    # airflow.exceptions re-exports the SDK's class (with a warning) from Airflow 3.1.
    found = _exception("DownstreamTasksSkipped") if AIRFLOW_V3 else None
    return (found,) if isinstance(found, type) else ()


def runner_signals() -> dict[str, type[BaseException]]:
    """Exceptions Airflow's task runner acts on after ``execute``, by name.

    Besides skip and deferral (handled on their own): Airflow 3 triggers a DAG run on
    ``DagRunTriggerException`` (TriggerDagRunOperator) and parks a human-in-the-loop task
    on ``TaskAwaitingInput`` (3.3); both versions reschedule on ``AirflowRescheduleException``.
    A name this Airflow does not have is left out.
    """
    found: dict[str, type[BaseException]] = {}
    for name in ("DagRunTriggerException", "TaskAwaitingInput", "AirflowRescheduleException"):
        # One class per name: where both modules have it, airflow.exceptions re-exports the
        # SDK's (and warns when asked), so the first that imports is the one raised.
        cls = _exception(name)
        if cls is not None:
            found[name] = cls
    return found


def real_run_classes() -> tuple[type, type | None]:
    """Airflow's own task instance and dag run types as a task sees them (None: no such type).

    Airflow 3 hands tasks the Task SDK's RuntimeTaskInstance and a plain DagRun model
    without queries; Airflow 2 the ORM classes, whose queries reach the database.
    """
    if AIRFLOW_V3:
        return _load("airflow.sdk.execution_time.task_runner", "RuntimeTaskInstance"), None
    return _load("airflow.models.taskinstance", "TaskInstance"), _load("airflow.models.dagrun", "DagRun")


@functools.cache
def dag_run_fields() -> frozenset[str]:
    """What a task can read of its dag run in this Airflow: the fields of the type it is handed."""
    if AIRFLOW_V3:
        model = _load("airflow.sdk.api.datamodels._generated", "DagRun")
        return frozenset(model.model_fields)
    return frozenset(name for name in dir(_load("airflow.models.dagrun", "DagRun")) if not name.startswith("_"))


# -- operators -----------------------------------------------------------------------

# Airflow 3 moved the core operators to the standard provider; the standard provider
# also installs on Airflow 2.9+. A DAG author may use either spelling on either version.
_ALIASES = (
    ("airflow.operators.", "airflow.providers.standard.operators."),
    ("airflow.sensors.", "airflow.providers.standard.sensors."),
    ("airflow.hooks.", "airflow.providers.standard.hooks."),
)


def _candidates(import_path: str) -> list[str]:
    paths = [import_path]
    for old, new in _ALIASES:
        if import_path.startswith(old):
            paths.append(new + import_path[len(old) :])
        elif import_path.startswith(new):
            paths.append(old + import_path[len(new) :])
    return paths


def import_operator(import_path: str) -> Any:
    """Import ``pkg.module.Class`` (or ``pkg.module:Class``), trying the other version's spelling."""
    first_error: Exception | None = None
    for candidate in _candidates(import_path):
        module_name, sep, name = candidate.replace(":", ".").rpartition(".")
        if not sep:
            continue
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def execute_kwargs(operator: Any) -> dict[str, Any]:
    """The marker Airflow's task runner passes to ``execute`` so it does not warn about a direct call.

    PRIVATE: Airflow 2 compares with ``airflow.models.base._sentinel``, Airflow 3 with
    ``ExecutorSafeguard.sentinel_value``; there is no public way to say "called by the task
    runner", and without it every task logs "cannot be called outside TaskInstance". Where
    neither exists, only that warning comes back.
    """
    if AIRFLOW_V3:
        safeguard = _first(("airflow.sdk.bases.operator", "ExecutorSafeguard"))
        sentinel = getattr(safeguard, "sentinel_value", None)
    else:
        sentinel = _first(("airflow.models.base", "_sentinel"))
    return {} if sentinel is None else {f"{type(operator).__name__}__sentinel": sentinel}


@contextlib.contextmanager
def current_context(context: Any) -> Iterator[None]:
    """Make ``get_current_context()`` return ``context`` while the operator runs.

    PRIVATE: the task runners' own ``set_current_context`` (execution-time modules, not
    the authoring API); ``get_current_context()`` reads the stack it pushes onto.
    """
    setter = _first(
        ("airflow.sdk.execution_time.context", "set_current_context"),
        ("airflow.sdk.definitions._internal.contextmanager", "set_current_context"),
        ("airflow.models.taskinstance", "set_current_context"),
    )
    with setter(context) if setter is not None else contextlib.nullcontext():
        yield


# -- context pieces --------------------------------------------------------------------


class _LazyModule:
    """``{{ macros.x }}``: imported on first use, as Airflow 3's MacrosAccessor does."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<macros {self._name}>"


def macros() -> Any:
    return _LazyModule("airflow.sdk.execution_time.macros" if AIRFLOW_V3 else "airflow.macros")


def outlet_events() -> Any:
    """``context["outlet_events"]``, which PythonOperator reads (Airflow 2.9+ / 3)."""
    accessors = _first(
        ("airflow.sdk.execution_time.context", "OutletEventAccessors"),
        ("airflow.utils.context", "OutletEventAccessors"),
    )
    return None if accessors is None else accessors()


def mask_secret(value: str) -> None:
    """Register a value with Airflow's own log masker (``airflow.sdk.log`` / ``airflow.utils.log``)."""
    masker = _first(
        ("airflow.sdk.log", "mask_secret"),
        ("airflow.sdk.execution_time.secrets_masker", "mask_secret"),
        ("airflow.utils.log.secrets_masker", "mask_secret"),
    )
    if masker is not None:
        masker(value)


def route_structlog() -> None:
    """Airflow 3 logs through structlog: send it into the stdlib handler the runtime owns."""
    if not AIRFLOW_V3:
        return
    import structlog

    def render(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        exception = event.pop("exception", None)
        message = str(event.pop("event", ""))
        extra = " ".join(f"{k}={v!r}" for k, v in event.items() if k not in ("logger", "level", "timestamp"))
        text = f"{message} {extra}" if extra else message
        return f"{text}\n{exception}" if exception else text

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info,
            render,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# -- guards ----------------------------------------------------------------------------


def _refuse(action: str) -> NoReturn:
    # Logged as well as raised: Airflow code that catches every exception would hide it.
    logging.getLogger("isolation.runtime").warning("refused: %s (no-callback contract)", action)
    raise IsolationViolation(action)


def _violation(action: str, *, keyed: bool = True) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        key = kwargs.get("key", next((a for a in args if isinstance(a, str)), None))
        _refuse(f"{action}({key!r})" if keyed and key is not None else action)

    return refuse


class _Refuse:
    """Stands in for an Airflow object that would reach the database or the supervisor.

    ``action`` names it; ``{}`` in it is replaced by the attribute used.
    """

    def __init__(self, action: str, harmless: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "_action", action)
        object.__setattr__(self, "_harmless", harmless)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _refuse(self._action.replace("{}", "__call__"))

    def __getattr__(self, name: str) -> Any:
        if name in self._harmless:
            return lambda *args, **kwargs: None
        if name.startswith("__"):
            raise AttributeError(name)
        _refuse(self._action.replace("{}", name))

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<refused by isolation: {self._action}>"


class _Supervisor(_Refuse):
    """The Airflow 3 supervisor channel: every request is refused, a secret-mask notice is dropped."""

    def send(self, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if type(msg).__name__ == "MaskSecret":
            return None
        # The request's type says what was asked for (GetTICount, TriggerDagRun, ...).
        _refuse(self._action.replace("{}", f"send({type(msg).__name__})"))


def _wrap_classmethod(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = inspect.getattr_static(cls, name, None)
    if original is None:
        return
    func = original.__func__ if isinstance(original, (classmethod, staticmethod)) else original
    wrapped = functools.wraps(func)(make(func))
    setattr(cls, name, classmethod(wrapped) if isinstance(original, classmethod) else staticmethod(wrapped))


def _guard_connection_get(cls: type, name: str) -> None:
    def make(func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):

            async def aget(klass: Any, conn_id: str, *args: Any, **kwargs: Any) -> Any:
                if not secrets.has_connection(conn_id):
                    raise ConnectionNotProvided(conn_id)
                return await func(klass, conn_id, *args, **kwargs)

            return aget

        def get(klass: Any, conn_id: str, *args: Any, **kwargs: Any) -> Any:
            if not secrets.has_connection(conn_id):
                raise ConnectionNotProvided(conn_id)
            return func(klass, conn_id, *args, **kwargs)

        return get

    _wrap_classmethod(cls, name, make)


def _guard_variable_get(cls: type) -> None:
    def make(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)
        # Airflow 2 and core models call it default_var, the Task SDK calls it default.
        default_name = next((n for n in ("default", "default_var") if n in signature.parameters), None)

        def get(klass: Any, key: str, *args: Any, **kwargs: Any) -> Any:
            if not secrets.has_variable(key):
                bound = signature.bind(klass, key, *args, **kwargs)
                if default_name is not None and default_name in bound.arguments:
                    return bound.arguments[default_name]
                raise VariableNotProvided(key)
            return func(klass, key, *args, **kwargs)

        return get

    _wrap_classmethod(cls, "get", make)


def _guard_variable_writes(cls: type) -> None:
    for name in ("set", "delete", "update"):
        if inspect.getattr_static(cls, name, None) is not None:
            setattr(cls, name, staticmethod(_violation(f"Variable.{name}")))


def _guard_orm() -> None:
    # settings.Session / engine are the module globals create_session and provide_session
    # read at call time (on every version), so replacing them covers both.
    from airflow import settings
    from sqlalchemy import event

    session = _Refuse(
        "an Airflow metadata database session (settings.Session, create_session, provide_session)",
        harmless=("remove", "close_all"),
    )
    for name in ("Session", "NonScopedSession", "AsyncSession"):
        if hasattr(settings, name):
            setattr(settings, name, session)

    def refuse_connect(*args: Any, **kwargs: Any) -> None:
        _refuse("connecting to Airflow's metadata database (settings.engine)")

    # The engines stay (Airflow reads engine.url in places) but can never connect.
    for name in ("engine", "async_engine"):
        engine = getattr(settings, name, None)
        if engine is not None:
            event.listen(getattr(engine, "sync_engine", engine), "do_connect", refuse_connect)


def _guard_supervisor() -> None:
    # PRIVATE: the Task SDK talks to its supervisor through this module global; there is
    # no public way to refuse it. Setting it also makes the SDK's own code take its
    # "inside a task" paths, which then reach the refusal instead of a missing name.
    # PRIVATE as well: Airflow's own mask_secret also sends the supervisor a MaskSecret
    # message for each value (the supervisor writes the task log). That is a notice, not a
    # callback, so _Supervisor drops it: the local masker is fed either way (before the
    # notice on 3.1+, after it on 3.0, where refusing it would stop every masked lookup).
    from airflow.sdk.execution_time import task_runner

    task_runner.SUPERVISOR_COMMS = _Supervisor("a call to the Airflow 3 supervisor (SUPERVISOR_COMMS.{})")  # type: ignore[assignment]


def _guard_internal_api() -> None:
    # PRIVATE: Airflow 2's internal API (AIP-44) has no public switch; InternalApiConfig is
    # what its decorator consults. Refusing the switch keeps every decorated call local,
    # where the ORM guard refuses it.
    try:
        from airflow.api_internal.internal_api_call import InternalApiConfig
    except ImportError:  # 2.9 and 2.10 have it; older or stripped builds may not
        return
    InternalApiConfig.set_use_internal_api = staticmethod(
        _violation("switching to Airflow 2's internal API (AIP-44)", keyed=False)
    )
    InternalApiConfig.get_internal_api_endpoint = staticmethod(
        _violation("a call to Airflow 2's internal API (AIP-44)")
    )


def install_guards() -> None:
    """Install the no-callback contract: every way back into Airflow raises IsolationViolation."""
    import atexit

    from airflow import settings
    from airflow.models.connection import Connection as CoreConnection
    from airflow.models.variable import Variable as CoreVariable

    atexit.unregister(settings.dispose_orm)
    _guard_orm()
    _guard_connection_get(CoreConnection, "get_connection_from_secrets")
    _guard_variable_get(CoreVariable)
    _guard_variable_writes(CoreVariable)
    if AIRFLOW_V3:
        from airflow.sdk import Connection

        _guard_connection_get(Connection, "get")
        _guard_connection_get(Connection, "async_get")
        _guard_variable_get(Variable)
        _guard_variable_writes(Variable)
        _guard_supervisor()
    else:
        _guard_internal_api()
