"""``IsolatedOperator``: run any Airflow operator in an isolated environment.

Where things happen (see docs/howto-local.md for the DAG author's view):

- **DAG parse (host):** ``__init__`` only stores arguments and checks the wrapped
  operator's argument names against the host's copy of the operator, when the host can
  import it (:mod:`isolation.operators._arguments`; ``check_arguments=False`` turns that
  off). Nothing else of the wrapped operator is imported or looked up.
- **Execute (host):** ``environment`` (the one templated field of this operator) is
  rendered and checked against ``allowed_environments``; ``XComArg`` values in the
  wrapped arguments (``upstream.output``) are resolved to their values; connections,
  variables and XCom inputs (allow-lists plus what :mod:`isolation.operators.discovery`
  finds) are resolved through Airflow's own lookups, so every secrets backend works;
  everything is sealed for the environment and handed to the backend. The isolated
  task's log lines stream into this task's log through the host's masker; its result
  becomes XComs and the task's outcome.
- **Isolation:** the runtime renders the wrapped operator's own ``template_fields`` with a
  context rebuilt from the envelope (``ds``, ``params``, ``var``, ``conn``, ``ti.xcom_pull``
  served from the XCom inputs), then executes it.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from isolation.backends import Backend, RunOutcome, get_backend
from isolation.environments.spec import check_name
from isolation.errors import (
    ConfigurationError,
    EnvelopeRejected,
    IsolatedTaskFailed,
    IsolatedTaskFailedNoRetry,
    IsolatedTaskRejected,
    IsolatedTaskViolation,
    IsolationError,
    RejectReason,
)
from isolation.masking import SecretMasker, secret_strings
from isolation.operators import _arguments, _downstream, _state, _xcoms, discovery
from isolation.operators._logs import IsolatedLog
from isolation.operators.keyring_hook import DEFAULT_CONN_ID, HostKeys, load_host_keys
from isolation.operators.result import (
    EXIT_CANNOT_START,
    EXIT_FAILED,
    EXIT_REJECTED,
    EXIT_SKIPPED,
    EXIT_SUCCESS,
    EXIT_VIOLATION,
    OUTCOME_OF_EXIT,
    IsolationResult,
    parse_result,
)

__all__ = ["ENVIRONMENT_XCOM", "IsolatedAirflowFail", "IsolatedAirflowViolation", "IsolatedOperator", "operator_path"]

_OPERATOR_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*")
# Arguments of BaseOperator belong to the IsolatedOperator (pool, retries, callbacks, ...).
_BASE_ARGS = frozenset(inspect.signature(BaseOperator.__init__).parameters) - {"self", "kwargs"}
ENVIRONMENT_XCOM = "isolation_environment"
"""XCom key the host pushes after a successful run: where the task ran.

Its value::

    {"name": "legacy", "backend": "local", "python": "3.12.1", "airflow": "2.11.2",
     "reported": {"python": "3.12.1", "airflow": "2.11.2"}}

``python`` and ``airflow`` are the versions the backend built the environment with
(:meth:`~isolation.backends.Backend.built_versions`; ``None`` when the backend does not
know them, and ``airflow`` is ``None`` for an environment built without Airflow).
``reported`` is what the environment's runtime said about itself in its result: untrusted,
for diagnosis only; a difference from the build is logged as a warning. Results may not push
this key nor any other key starting with ``isolation_`` (see
:func:`isolation.operators.result.reserved_xcom_key`).
"""
_MISSING = "\x00isolation: missing\x00"
_MAX_MESSAGE = 2000


def operator_path(operator: str | type) -> str:
    """``"package.module.ClassName"`` for a path or a class (the class is not inspected further)."""
    if isinstance(operator, type):
        path = f"{operator.__module__}.{operator.__qualname__}"
    elif isinstance(operator, str):
        path = operator
    else:
        raise TypeError(f"operator must be an import path string or a class, not {type(operator).__name__}")
    if not _OPERATOR_PATH.fullmatch(path) or "<" in path:
        raise ValueError(f"operator {path!r} is not an import path like 'package.module.ClassName'")
    return path


class IsolatedOperator(BaseOperator):
    """Run the operator ``operator`` with ``**kwargs`` in the isolated ``environment``.

    :param operator: the wrapped operator, as an import path (``"airflow.operators.bash.BashOperator"``;
        never imported on the host) or a class.
    :param environment: the environment's name (``environments/<name>/``). Templated: a
        value with a template (``"{{ params.env }}"``), or one that ``expand()`` maps,
        is chosen when the task runs, by whoever triggers the DAG, so it needs
        ``allowed_environments``.
    :param allowed_environments: the literal environment names this task may run in,
        fixed in the DAG file (never templated nor mapped). Required when ``environment``
        is chosen at run time: without it anyone who can trigger the DAG could send its
        connections and variables to another environment. A rendered name outside it is
        refused before any connection or variable is resolved. With a literal
        ``environment`` it is optional and must contain it.
    :param connections: connection ids the task may use, besides those discovered in
        ``*_conn_id`` arguments and ``conn`` template references.
    :param variables: variable keys the task may read, besides those discovered in ``var``
        template references.
    :param xcom_inputs: XComs the task may pull: ``"task_id"`` (its return value),
        ``"task_id:key"`` or ``("task_id", "key")``, besides literal ``xcom_pull(...)``
        calls discovered in templates and in the source of the wrapped operator's callables.
    :param lenient_xcom_pull: ``True`` makes an ``xcom_pull`` of an XCom the host did not send
        return its default (``None``), as Airflow does for a missing XCom. By default it
        fails the task, naming the XCom and how to declare it: in isolation a missing XCom
        cannot be told from one that was not declared.
    :param operator_kwargs: arguments for the wrapped operator whose names clash with
        ``BaseOperator`` arguments (those otherwise configure this operator).
    :param backend: ``"local"``, ``"kubernetes"`` (a pod through KubernetesPodOperator;
        ``KubernetesBackend(namespace=..., ...)`` passes its arguments) or a
        :class:`~isolation.backends.Backend`; by default the ``[isolation] backend`` setting
        (``AIRFLOW__ISOLATION__BACKEND``), else ``"local"``.
    :param keyring_conn_id: the Airflow connection holding the host's keys; when the
        default ``isolation_default`` does not exist, the configured keyring path is used.
    :param check_arguments: check the wrapped operator's argument names when the DAG is
        parsed, against the host's copy of the operator when the host can import it (an
        unknown name fails the DAG file with Airflow's ``TypeError``). Pass False for an
        argument that only the environment's version of the operator takes.
    :param kwargs: ``BaseOperator`` arguments configure this task (pool, retries,
        ``execution_timeout``, callbacks, ...); every other argument goes to the wrapped
        operator.
    """

    template_fields: Sequence[str] = ("environment",)
    ui_color = "#e8f0fe"
    shallow_copy_attrs: Sequence[str] = ("backend",)

    def __init__(
        self,
        *,
        operator: str | type,
        environment: str,
        allowed_environments: Iterable[str] | None = None,
        connections: Iterable[str] = (),
        variables: Iterable[str] = (),
        xcom_inputs: Iterable[str | tuple[str, str]] = (),
        lenient_xcom_pull: bool = False,
        operator_kwargs: Mapping[str, Any] | None = None,
        backend: str | Backend | None = None,
        keyring_conn_id: str | None = DEFAULT_CONN_ID,
        check_arguments: bool = True,
        **kwargs: Any,
    ) -> None:
        base_kwargs = {k: v for k, v in kwargs.items() if k in _BASE_ARGS}
        wrapped = {k: v for k, v in kwargs.items() if k not in _BASE_ARGS}
        super().__init__(**base_kwargs)
        self.operator_path = operator_path(operator)
        self.operator_kwargs: dict[str, Any] = {**wrapped, **dict(operator_kwargs or {})}
        if check_arguments:
            _arguments.check_wrapped_arguments(
                operator, self.operator_kwargs, task_id=self.task_id, environment=environment
            )
        if _downstream.may_skip(self.operator_path):
            # Airflow's scheduler reads SkipMixin's XCom only of tasks it knows may skip
            # (how the downstream tasks of a mapped task instance get skipped).
            self._can_skip_downstream = True
        if not isinstance(environment, str):
            raise TypeError("environment must be the name of an environment")
        self.allowed_environments = _allowed_environments(allowed_environments)
        self._check_environment_choice(environment, base_kwargs.get("default_args"))
        self.environment = environment
        self.connections = _names(connections, "connections")
        self.variables = _names(variables, "variables")
        self.xcom_inputs = discovery.normalise_xcom_inputs(xcom_inputs)
        self.lenient_xcom_pull = bool(lenient_xcom_pull)
        self.backend = backend
        self.keyring_conn_id = keyring_conn_id
        self._running: Backend | None = None
        # upstream.output in the wrapped arguments makes upstream a dependency, as in Airflow.
        from airflow.sdk.definitions.xcom_arg import XComArg

        XComArg.apply_upstream_relationship(self, self.operator_kwargs)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``partial()`` taking the wrapped operator's own argument names, as ``__init__`` does.

        Airflow checks ``partial()``/``expand()`` arguments against the class's signature,
        which cannot list the wrapped operator's (it is never imported here). The wrapped
        ones travel in ``operator_kwargs``; ``expand()`` maps over them by name, so each
        mapped task instance is built, sealed and run with its own values and map index.
        """
        from airflow.sdk.bases.operator import partial as airflow_partial

        own, wrapped = _split_wrapped(kwargs)
        _check_mapped_arguments(own, [*wrapped, *(own.get("operator_kwargs") or {})])
        if wrapped:
            fixed = dict(own.get("operator_kwargs") or {})
            own["operator_kwargs"] = {**wrapped, **fixed}
        made = airflow_partial(cls, **own)
        made._expand_called = True  # replaced by the partial below, which is the one expanded
        return _partial_class()(operator_class=cls, kwargs=made.kwargs, params=made.params)

    def _check_environment_choice(self, environment: str, default_args: Mapping[str, Any] | None) -> None:
        """Refuse an environment chosen at run time unless the DAG file fixed the choices."""
        allowed = self.allowed_environments
        templated = _is_template(environment)
        if not templated:
            check_name(environment)
        # partial().expand() builds this object when the task runs, from values that may
        # come from upstream XComs: only what partial() and default_args say is the DAG file's.
        fixed = self._mapped_in_dag_file(default_args)
        expanded = False
        if fixed is not None:
            fixed_args, literal_choices = fixed
            if allowed is not None and _allowed_environments(fixed_args.get("allowed_environments")) != allowed:
                raise ConfigurationError(
                    "allowed_environments of a mapped IsolatedOperator comes from expand()",
                    hint="pass allowed_environments to partial(): the allowed names must be fixed in the DAG file",
                )
            expanded = fixed_args.get("environment") != environment and environment not in literal_choices
        if (templated or expanded) and allowed is None:
            chosen = f"environment {environment!r} is a template" if templated else "environment comes from expand()"
            raise ConfigurationError(
                f"{chosen}, so it is chosen when the task runs: anyone who can trigger this DAG "
                "could send the task's connections and variables to another environment",
                hint="list the environments it may run in: allowed_environments=['env-a', 'env-b'] "
                "(literal names, fixed in the DAG file); a rendered name outside it is refused",
            )
        if not (templated or expanded) and allowed is not None and environment not in allowed:
            raise ConfigurationError(
                f"environment {environment!r} is not one of allowed_environments ({', '.join(allowed)})",
                hint="add it to allowed_environments, or use one of those",
            )

    def _mapped_in_dag_file(
        self, default_args: Mapping[str, Any] | None
    ) -> tuple[Mapping[str, Any], Sequence[Any]] | None:
        """For a task unmapped at run time: the arguments its DAG file fixed, and a literal
        list that ``expand(environment=[...])`` maps over; None for an unmapped task."""
        from airflow.sdk.definitions.mappedoperator import MappedOperator

        dag = self.get_dag()
        defined = dag.task_dict.get(self.task_id) if dag is not None else None
        if not isinstance(defined, MappedOperator):
            return None
        mapped_over = getattr(defined.expand_input, "value", None)
        choices = mapped_over.get("environment") if isinstance(mapped_over, Mapping) else None
        literal = choices if isinstance(choices, (list, tuple)) else ()
        return {**(default_args or {}), **defined.partial_kwargs}, literal

    # -- execution -----------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        backend = get_backend(self.backend).bind(context, self.task_id)
        self._running = backend
        try:
            return self._execute(context, backend)
        except IsolationError as exc:
            # One readable message with what to do, before Airflow's traceback.
            self.log.error("%s", exc.diagnostics())
            raise
        finally:
            self._running = None
            backend.release()

    def on_kill(self) -> None:
        running = self._running
        if running is not None:
            running.cancel()

    def _execute(self, context: Any, backend: Backend) -> Any:
        # Before anything is resolved: the rendered name, then whether it exists.
        environment = self._rendered_environment()
        backend.check(environment)
        # A warm child forks while the host resolves the task's state below.
        backend.prepare(environment)
        built = backend.built_versions(environment)
        keys = load_host_keys(environment, self.keyring_conn_id)
        found = self._discover()
        kwargs = self._wrapped_kwargs(context)
        connections = self._resolve_connections(found)
        variables = self._resolve_variables(found)
        xcom_inputs = self._resolve_xcoms(context, found)
        task_context = _state.task_context(context, self.owner)
        secrets = _secret_values(connections, variables)
        self._log_masker = _mask(secrets)
        self._log_forward = IsolatedLog(self.log, self._log_masker.mask)

        shape = _downstream.dag_shape(self) if _downstream.may_decide_downstream(self.operator_path, self) else None

        def seal(result_path: str | None) -> str:
            return _seal(
                keys,
                environment=environment,
                operator={"import_path": self.operator_path, "kwargs": {"task_id": self.task_id, **kwargs}},
                context=task_context,
                connections=connections,
                variables=variables,
                xcom_inputs=xcom_inputs,
                result_path=result_path,
                lifetime=backend.envelope_lifetime,
                dag=shape,
                strict_xcom_pull=not self.lenient_xcom_pull,
            )

        self.log.info(
            "Running %s in isolated environment %r (backend %s; %d connection(s), %d variable(s), %d XCom input(s))",
            self.operator_path,
            environment,
            backend.name,
            len(connections),
            len(variables),
            len(xcom_inputs),
        )
        outcome = backend.run(environment, seal, self._log_line)
        return self._conclude(context, backend, environment, built, outcome)

    def resume_isolated(self, context: Any, event: Any = None, **deferred: Any) -> Any:
        """Where Airflow resumes this task after its backend deferred (``KubernetesBackend(deferrable=True)``).

        ``deferred`` holds the names the backend deferred with (no secret: Airflow stores them);
        the host's masker is rebuilt from the connections and variables the task refers to,
        so the log lines fetched now are masked as in :meth:`execute`.
        """
        backend = get_backend(self.backend).bind(context, self.task_id)
        self._running = backend
        try:
            environment = self._rendered_environment()
            found = self._discover()
            try:
                secrets = _secret_values(self._resolve_connections(found), self._resolve_variables(found))
            except IsolationError:
                # The pod still runs and owns its Secret: end both, without the log no masker covers.
                with contextlib.suppress(Exception):
                    backend.resume(environment, deferred, event, lambda line: None)
                raise
            self._log_masker = _mask(secrets)
            self._log_forward = IsolatedLog(self.log, self._log_masker.mask)
            self.log.info(
                "Resuming %s in isolated environment %r (backend %s)", self.operator_path, environment, backend.name
            )
            outcome = backend.resume(environment, deferred, event, self._log_line)
            return self._conclude(context, backend, environment, backend.built_versions(environment), outcome)
        except IsolationError as exc:
            self.log.error("%s", exc.diagnostics())
            raise
        finally:
            self._running = None

    def _conclude(
        self,
        context: Any,
        backend: Backend,
        environment: str,
        built: tuple[str | None, str | None] | None,
        outcome: RunOutcome,
    ) -> Any:
        """How a run ends, deferred or not: its outcome, the wrapped operator's XComs, downstream."""
        result = _interpret(outcome, environment, self._log_masker, backend=backend.name)
        ti = context["ti"]
        for xcom in result.xcoms:
            ti.xcom_push(key=xcom.key, value=xcom.value)
        # Where the task really ran, for the UI and for host tasks that care: the build's
        # versions, the environment's own claim only labelled as such.
        where = _where_it_ran(environment, backend.name, built, result)
        ti.xcom_push(key=ENVIRONMENT_XCOM, value=where)
        for warning in _version_warnings(where, built):
            self.log.warning("%s", warning)
        self.log.info("Isolated task finished in environment %r (%s)", environment, _versions_text(where, built))
        if result.downstream:
            _downstream.apply(self, context, result.downstream, result.return_value)
        return result.return_value

    def _discover(self) -> discovery.Discovered:
        """What the wrapped operator refers to (``@task.isolated`` adds its function's source)."""
        return discovery.discover(self.operator_kwargs)

    def _wrapped_kwargs(self, context: Any) -> dict[str, Any]:
        """The wrapped operator's arguments as the envelope carries them, XComArgs resolved."""
        plain: dict[str, Any] = _state.to_plain(self.operator_kwargs, "operator argument", _resolver(context))
        return plain

    def _rendered_environment(self) -> str:
        environment = check_name(self.environment)
        allowed = self.allowed_environments
        if allowed is not None and environment not in allowed:
            raise ConfigurationError(
                f"environment {environment!r} is not one of this task's allowed_environments ({', '.join(allowed)})",
                hint="trigger the DAG with one of those, or add it to allowed_environments in the DAG file",
            )
        return environment

    def _log_line(self, line: str) -> None:
        # Masked here whether or not Airflow masks this log (dag.test() does not).
        forward = getattr(self, "_log_forward", None)
        if forward is None:
            masker = getattr(self, "_log_masker", None)
            forward = self._log_forward = IsolatedLog(self.log, masker.mask if masker is not None else str)
        forward(line)

    # -- resolution (execute time only) ----------------------------------------------

    def _resolve_connections(self, found: discovery.Discovered) -> dict[str, Any]:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        wanted = {name: discovery.Reference(name, "connections=") for name in self.connections}
        for name, ref in found.connections.items():
            wanted.setdefault(name, ref)
        resolved: dict[str, Any] = {}
        for name, ref in wanted.items():
            try:
                conn = BaseHook.get_connection(name)
            except AirflowNotFoundException:
                if ref.optional:
                    continue
                raise ConfigurationError(
                    f"connection {name!r} (referenced by {ref.where}) does not exist",
                    hint=f"create it (airflow connections add {name} ...) in a secrets backend the "
                    "workers can read, or remove the reference",
                ) from None
            resolved[name] = _state.connection_spec(conn)
        return resolved

    def _resolve_variables(self, found: discovery.Discovered) -> dict[str, str]:
        from airflow.sdk import Variable

        wanted = {name: discovery.Reference(name, "variables=") for name in self.variables}
        for name, ref in found.variables.items():
            wanted.setdefault(name, ref)
        resolved: dict[str, str] = {}
        for name, ref in wanted.items():
            value = Variable.get(name, default=_MISSING)
            if value == _MISSING:
                if ref.optional:
                    continue
                raise ConfigurationError(
                    f"variable {name!r} (referenced by {ref.where}) does not exist",
                    hint=f"create it (airflow variables set {name} ...) or remove the reference",
                )
            resolved[name] = value if isinstance(value, str) else str(value)
        return resolved

    def _resolve_xcoms(self, context: Any, found: discovery.Discovered) -> list[dict[str, Any]]:
        wanted = list(self.xcom_inputs)
        wanted += [pair for pair in found.xcoms if pair not in wanted]
        return _xcoms.resolve(context["ti"], wanted)


def _own_args() -> frozenset[str]:
    """Arguments that configure the IsolatedOperator itself, not the wrapped operator."""
    own = set(inspect.signature(IsolatedOperator.__init__).parameters) - {"self", "kwargs"}
    return frozenset(own | _BASE_ARGS | {"task_group", "default_args"})


def _split_wrapped(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    own_names = _own_args()
    own = {k: v for k, v in kwargs.items() if k in own_names}
    wrapped = {k: v for k, v in kwargs.items() if k not in own_names}
    return own, wrapped


def _check_mapped_arguments(partial_kwargs: Mapping[str, Any], names: Iterable[str]) -> None:
    """The parse-time check of the wrapped names given to ``partial()`` or ``expand()``."""
    if partial_kwargs.get("check_arguments", True) and "operator" in partial_kwargs:
        _arguments.check_wrapped_arguments(
            partial_kwargs["operator"],
            names,
            task_id=partial_kwargs.get("task_id"),
            environment=partial_kwargs.get("environment"),
        )


def _partial_class() -> type:
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput, is_mappable
    from airflow.sdk.definitions.mappedoperator import OperatorPartial, validate_mapping_kwargs

    class IsolatedPartial(OperatorPartial):
        """``IsolatedOperator.partial(...)``: ``expand()`` maps the wrapped operator's arguments too."""

        def expand(self, **mapped_kwargs: Any) -> Any:
            if not mapped_kwargs:
                raise TypeError("no arguments to expand against")
            own, wrapped = _split_wrapped(mapped_kwargs)
            if own:
                validate_mapping_kwargs(self.operator_class, "expand", own)
            _check_mapped_arguments(self.kwargs, wrapped)
            for name, value in wrapped.items():
                if not is_mappable(value):
                    raise ValueError(
                        f"IsolatedOperator.expand() got an unexpected type {type(value).__name__!r} "
                        f"for keyword argument {name} (expand() takes lists, dicts or upstream outputs)"
                    )
            given = set(self.kwargs) | set(self.kwargs.get("operator_kwargs") or {})
            duplicates = sorted(given & set(mapped_kwargs))
            if duplicates:
                raise TypeError(f"unmappable or already specified argument(s): {', '.join(duplicates)}")
            return self._expand(DictOfListsExpandInput(mapped_kwargs), strict=False)

    return IsolatedPartial


def _is_template(value: str) -> bool:
    return any(mark in value for mark in ("{{", "{%", "{#"))


def _allowed_environments(items: Iterable[str] | None) -> tuple[str, ...] | None:
    if items is None:
        return None
    names = _names(items, "allowed_environments")
    if not names:
        raise ConfigurationError(
            "allowed_environments is empty, so no environment could run this task",
            hint="list the environments it may run in, or leave allowed_environments out for a literal environment",
        )
    for name in names:
        if _is_template(name):
            raise ConfigurationError(
                f"allowed_environments holds the template {name!r}",
                hint="allowed_environments is fixed in the DAG file: list literal environment names",
            )
        check_name(name)
    return tuple(names)


def _names(items: Iterable[str], what: str) -> list[str]:
    if isinstance(items, str):
        items = [items]
    names = list(dict.fromkeys(items))
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{what} must be a list of names, not {name!r}")
    return names


def _resolver(context: Any) -> Any:
    from airflow.sdk.definitions._internal.mixins import ResolveMixin

    def resolve(value: Any) -> Any:
        return value.resolve(context) if isinstance(value, ResolveMixin) else value

    return resolve


def _secret_values(connections: Mapping[str, Any], variables: Mapping[str, str]) -> list[str]:
    """What the runtime hides too: passwords, logins, extras, variables, their JSON leaves and lines."""
    values: list[str] = []
    for conn in connections.values():
        values += [v for v in (conn.password, conn.extra, conn.login) if v]
    values += [v for v in variables.values() if v]
    return secret_strings(values)


def _mask(values: Iterable[str]) -> SecretMasker:
    """Register ``values`` with Airflow's masker; return this task's own masker of them.

    Whatever the isolated task echoes reaches this log. Airflow masks it only where its
    supervisor installed the masker (not under ``dag.test()``), and only the spellings it
    knows, so the host's lines also pass a masker of every variant.
    """
    from airflow.sdk.log import mask_secret

    values = list(values)
    for value in values:
        mask_secret(value)
    return SecretMasker(values, adapter=_airflow_mask_adapter())


def _airflow_mask_adapter() -> Any:
    """Airflow's ``[logging] secret_mask_adapter`` (more spellings per secret), if configured."""
    try:
        from airflow.configuration import conf

        return conf.getimport("logging", "secret_mask_adapter", fallback=None)
    except Exception:  # a broken setting: Airflow reports it; the built-in variants still apply
        return None


def _seal(
    keys: HostKeys,
    *,
    environment: str,
    operator: dict[str, Any],
    context: Any,
    connections: dict[str, Any],
    variables: dict[str, str],
    xcom_inputs: list[dict[str, Any]],
    result_path: str | None,
    lifetime: int,
    dag: dict[str, Any] | None = None,
    strict_xcom_pull: bool = True,
) -> str:
    from isolation.transport import OperatorSpec, Payload, RuntimeOptions, XComInput, seal_envelope
    from isolation.transport.payload import DagShape

    payload = Payload(
        operator=OperatorSpec(**operator),
        context=context,
        connections=connections,
        variables=variables,
        xcom_inputs=[XComInput(**item) for item in xcom_inputs],
        options=RuntimeOptions(result_path=result_path, strict_xcom_pull=strict_xcom_pull),
        dag=DagShape.model_validate(dag) if dag is not None else None,
    )
    if keys.recipient.name != environment:
        raise ConfigurationError(f"the keys found for environment {environment!r} belong to {keys.recipient.name!r}")
    return seal_envelope(payload, signer=keys.signer, recipient=keys.recipient, lifetime=lifetime)


def _tail(outcome: RunOutcome, mask: Callable[[str], str] = str) -> str:
    lines = [mask(line) for line in outcome.log_tail if line.strip()][-5:]
    return ("; last log lines:\n" + "\n".join(lines)) if lines else ""


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " [...]"


def _interpret(
    outcome: RunOutcome, environment: str, mask: Callable[[str], str] = str, *, backend: str = "local"
) -> IsolationResult:
    """The result of a successful run; every other ending becomes its Airflow outcome.

    ``mask`` is the host's masker: the isolated side's words (its error, its last log
    lines) go into exceptions that Airflow prints wherever it prints tracebacks.
    """
    rebuild = _rebuild_hint(environment, backend)
    where = f"environment {environment!r}"
    if outcome.killed_by is not None:
        raise IsolatedTaskFailed(f"the isolated task in {where} was killed by signal {outcome.killed_by}")
    code = outcome.exit_code
    if code not in OUTCOME_OF_EXIT and code != EXIT_CANNOT_START:
        raise IsolatedTaskFailed(
            f"the interpreter of {where} exited with code {code} before the isolation runtime ran"
            + _tail(outcome, mask),
            hint="is apache-airflow-providers-isolation installed in it? " + rebuild,
        )
    result = parse_result(outcome.result, environment=environment) if outcome.result is not None else None
    # Exit 2 reports "failed": the runtime could not start, or could not build the operator.
    expected = "failed" if code == EXIT_CANNOT_START else OUTCOME_OF_EXIT[code]
    if result is not None and result.outcome != expected:
        raise IsolatedTaskFailed(
            f"the isolated task in {where} exited with code {code} but reported {result.outcome!r}",
            hint="the environment's isolation runtime does not follow the contract; " + rebuild,
        )
    error = result.error if result is not None else None
    message = _clip(mask(f"{error.type}: {error.message}")) if error is not None else None
    if code == EXIT_CANNOT_START:
        if error is not None and _is_operator_config(error.types):
            # Import path, callable or arguments: the same on every try, so never retried.
            raise _failure(
                IsolatedTaskFailedNoRetry,
                error,
                mask,
                where=f"the isolated task in {where} could not build its operator (exit code 2; not retried)",
                hint=f"check the operator path/arguments given to the IsolatedOperator: they must import and be "
                f"accepted by the operator in environment {environment!r} (its Airflow version and packages, "
                f"environments/{environment}/requirements.txt)",
            )
        keys = error is None or "isolation.errors.KeysetError" in error.types
        raise IsolatedTaskFailed(
            f"the isolation runtime in {where} could not start (exit code 2)"
            + (f": {message}" if message else _tail(outcome, mask)),
            hint=("check the environment's keys directory and that it was built by this version; " + rebuild)
            if keys
            else "the message says what the runtime could not use; " + rebuild,
        )
    if code == EXIT_SUCCESS:
        if result is None:
            raise IsolatedTaskFailed(f"the isolated task in {where} succeeded but wrote no result", hint=rebuild)
        return result
    if code == EXIT_SKIPPED:
        from airflow.sdk.exceptions import AirflowSkipException

        reason = mask(error.message) if error is not None else "skipped"
        raise AirflowSkipException(_clip(f"skipped in isolated {where}: {reason}"))
    if code == EXIT_REJECTED:
        raise IsolatedTaskRejected(
            f"{where} rejected the envelope: {message or 'no detail'}{'' if message else _tail(outcome, mask)}",
            hint=_reject_hint(message or "".join(outcome.log_tail), rebuild),
        )
    if code == EXIT_VIOLATION:
        # The same code meets the same refusal on every try: never retried.
        raise IsolatedAirflowViolation(
            f"the isolated task in {where} broke the no-callback contract (not retried): {message or 'no detail'}",
            hint="isolated tasks cannot call back into Airflow; do that part in a task on the host (the message "
            "says where), and pass data between them as XCom",
        )
    assert code == EXIT_FAILED
    if error is None:
        raise IsolatedTaskFailed(f"the isolated task in {where} failed before writing a result{_tail(outcome, mask)}")
    if _NOT_PROVIDED in error.types:
        # What a try is sent is fixed by the DAG: every retry would be refused the same way.
        raise _failure(
            IsolatedTaskFailedNoRetry,
            error,
            mask,
            where=f"the isolated task in {where} asked for something it was not sent (not retried: every try is "
            "sent the same)",
            hint="the message names what to declare on the IsolatedOperator",
        )
    if _never_retried(error.types):
        raise _failure(
            IsolatedTaskFailedNoRetry,
            error,
            mask,
            where=f"the isolated task in {where} failed (not retried, as Airflow does for {error.type})",
            hint="",
        )
    raise _failure(
        IsolatedTaskFailed,
        error,
        mask,
        where=f"the isolated task in {where} failed",
        hint=_failure_hint(error.type, environment),
    )


# Exceptions Airflow's task runner fails without retry, by class name, in any module of
# Airflow (airflow.exceptions on Airflow 2 and 3.0, airflow.sdk.exceptions from 3.1).
_NOT_RETRIED = frozenset({"AirflowFailException", "AirflowSensorTimeout"})
_OPERATOR_CONFIG = "isolation.errors.OperatorLoadError"
_NOT_PROVIDED = "isolation.errors.NotProvided"


def _never_retried(types: Sequence[str]) -> bool:
    for name in types:
        module, _, qualname = name.rpartition(".")
        if qualname in _NOT_RETRIED and (module == "airflow" or module.startswith("airflow.")):
            return True
    return False


def _is_operator_config(types: Sequence[str]) -> bool:
    return _OPERATOR_CONFIG in types


class IsolatedAirflowFail(IsolatedTaskFailedNoRetry, AirflowFailException):
    """What the host raises for :class:`IsolatedTaskFailedNoRetry`: Airflow fails it without retry."""


class IsolatedAirflowViolation(IsolatedTaskViolation, AirflowFailException):
    """What the host raises for :class:`IsolatedTaskViolation`: Airflow fails it without retry."""


def _failure(
    kind: type[IsolatedTaskFailed], error: Any, mask: Callable[[str], str], *, where: str, hint: str
) -> IsolatedTaskFailed:
    """The host's exception for the isolated ``error``: ``"Type: message"``, the type names kept."""
    isolated_type = mask(error.type)
    isolated_message = mask(error.message)
    cls = IsolatedAirflowFail if kind is IsolatedTaskFailedNoRetry else kind
    return cls(
        _clip(f"{isolated_type}: {isolated_message}"),
        hint=hint,
        where=where,
        isolated_type=isolated_type,
        isolated_types=tuple(mask(name) for name in error.types),
        isolated_message=_clip(isolated_message),
    )


def _where_it_ran(
    environment: str, backend: str, built: tuple[str | None, str | None] | None, result: IsolationResult
) -> dict[str, Any]:
    python, airflow = built if built is not None else (None, None)
    reported = result.environment
    return {
        "name": environment,
        "backend": backend,
        "python": python,
        "airflow": airflow,
        "reported": {"python": reported.python, "airflow": reported.airflow},
    }


def _versions_text(where: Mapping[str, Any], built: tuple[str | None, str | None] | None) -> str:
    reported = where["reported"]
    if built is None:
        return (
            f"versions unknown to backend {where['backend']}; the environment reports "
            f"Python {reported['python'] or '?'}, Airflow {reported['airflow'] or 'none'}"
        )
    return f"built with Python {where['python'] or '?'}, Airflow {where['airflow'] or 'none'}"


def _version_warnings(where: Mapping[str, Any], built: tuple[str | None, str | None] | None) -> list[str]:
    if built is None:
        return []
    warnings = []
    for label, key in (("Python", "python"), ("Airflow", "airflow")):
        claimed = where["reported"][key]
        if claimed is not None and claimed != where[key]:
            warnings.append(
                f"environment {where['name']!r} reports {label} {claimed} but was built with {label} "
                f"{where[key] or 'none'}; this task reports the build's versions. Was the environment changed "
                f"after it was built? Rebuild it: isolationctl deploy --local -e {where['name']} --force"
            )
    return warnings


def _rebuild_hint(environment: str, backend: str) -> str:
    if backend == "kubernetes":
        # The image holds the runtime: a new host version needs a new image.
        return (
            f"rebuild and push the environment's image: isolationctl deploy --kubernetes -e {environment} "
            "--registry REGISTRY"
        )
    return f"rebuild the environment: isolationctl deploy --local -e {environment}"


def _reject_hint(text: str, rebuild: str = "") -> str:
    for reason in RejectReason:
        if f"({reason.value})" in text:
            if reason is RejectReason.UNSUPPORTED_VERSION and rebuild:
                return f"the environment's isolation runtime is older than this host's; {rebuild}"
            return EnvelopeRejected(reason).hint
    return "check that the environment's keys match the host's keyring"


def _failure_hint(error_type: str, environment: str) -> str:
    if error_type in ("ImportError", "ModuleNotFoundError", "AttributeError"):
        return (
            f"check the operator's import path and that environment {environment!r} has its package "
            f"(add it to environments/{environment}/requirements.txt and rebuild)"
        )
    return ""
