"""``KubernetesBackend``: one isolated task, one pod, run by KubernetesPodOperator itself.

The provider's operator does everything it already does well (building the pod from its
arguments, creating it, waiting for it, streaming its logs, reading ``return.json`` through
its XCom sidecar, deleting the pod, ``skip_on_exit_code``). This module adds what
isolation needs around it:

1. before any pod: the environment's image, a known ``kubernetes_conn_id``, and an
   envelope that fits the chosen transport;
2. the envelope in a fresh per-task Secret (ciphertext only), owner-referenced to the pod
   once the pod exists, so Kubernetes' garbage collector removes it with the pod even if
   this process dies; and deleted by this process on every exit path too;
3. the pod's log lines go to the host's masker, not to the provider's logger; the result
   document and the container's exit code go back to ``IsolatedOperator``, which pushes
   the wrapped operator's own XComs;
4. with ``deferrable=True``, the provider's deferral becomes the ``IsolatedOperator``'s
   (names only are stored; the Secret stays with the pod) and :meth:`KubernetesBackend.resume`
   re-enters the provider's ``trigger_reentry`` when the trigger fires.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from isolation.backends.base import RESUME_METHOD, Backend, LogSink, RunOutcome, Sealer
from isolation.backends.kubernetes import pod as pods
from isolation.backends.kubernetes import secret as secrets
from isolation.errors import ConfigurationError, IsolatedTaskFailed
from isolation.transport import ENV_VAR_LIMIT, FILE_LIMIT

log = logging.getLogger(__name__)

Transport = Literal["secret", "env"]
EXIT_SKIPPED = 99  # the runtime's skip code (isolation.runtime.exitcodes.ExitCode.SKIPPED)
_CONFIG_SECTION = "isolation"
_CONFIG_IMAGES = "kubernetes_images"


class KubernetesBackend(Backend):
    """Run isolated tasks as pods through ``KubernetesPodOperator``.

    :param images: environment name -> image reference; otherwise the ``[isolation]
        kubernetes_images`` setting (JSON of the same map) that ``isolationctl deploy`` prints;
        otherwise what ``isolationctl deploy --kubernetes`` recorded on this machine
        (``<environments home>/kubernetes-images.json``, see :mod:`isolation.environments.image`).
    :param transport: ``"secret"`` (default: a per-task Secret mounted read-only, up to
        1 MiB of envelope) or ``"env"`` (an environment variable, up to 96 KiB; the
        ciphertext is then in the pod spec).
    :param keys_secret: the Secret with the environment's keys; default
        ``isolation-keys-<environment>`` (``isolationctl keys export --format k8s-secret``).
    :param pod_options: any other KubernetesPodOperator argument (``namespace``,
        ``container_resources``, ``node_selector``, ``affinity``, ``tolerations``,
        ``service_account_name``, ``image_pull_secrets``, ``kubernetes_conn_id``,
        ``in_cluster``, ``config_file``, ``startup_timeout_seconds``, ``on_finish_action``,
        ``labels``, ``annotations``, ...). The arguments the backend owns are refused
        with what to use instead (:data:`~isolation.backends.kubernetes.OWNED_ARGUMENTS`).
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        images: Mapping[str, str] | None = None,
        transport: Transport = "secret",
        keys_secret: str | None = None,
        **pod_options: Any,
    ) -> None:
        pods.check_options(pod_options)
        if transport not in ("secret", "env"):
            raise ConfigurationError(
                f"unknown Kubernetes envelope transport {transport!r}", hint="use 'secret' (default) or 'env'"
            )
        if pod_options.get("deferrable") and pod_options.get("logging_interval") is not None:
            # The trigger would print the pod's lines in the triggerer, past the host's masker.
            raise ConfigurationError(
                "KubernetesBackend(deferrable=True) does not take logging_interval=",
                hint="leave logging_interval out: the pod's log is fetched through the task's masker "
                "when the task resumes",
            )
        self.images = dict(images or {})
        self.transport: Transport = transport
        self.keys_secret = keys_secret
        self.pod_options = dict(pod_options)
        self._context: Any = None
        self._task_id = "isolated"
        self._operator: Any = None
        self._secret: tuple[str, str] | None = None  # (name, namespace) of this task's envelope Secret

    # -- Backend interface ---------------------------------------------------------------

    def bind(self, context: Any, task_id: str) -> KubernetesBackend:
        bound = copy.copy(self)
        bound._context = context
        bound._task_id = task_id
        bound._operator = None
        bound._secret = None
        return bound

    def check(self, environment: str) -> None:
        self.image_of(environment)

    def image_of(self, environment: str) -> str:
        """The environment's image reference; a clear error with the fix when none is deployed."""
        image = self.images.get(environment) or _configured_images().get(environment) or _recorded_image(environment)
        if not image:
            raise ConfigurationError(
                f"environment {environment!r} has no deployed Kubernetes image",
                hint=f"build and push it (isolationctl deploy -e {environment} --registry REGISTRY) "
                f"on this machine, or set [isolation] {_CONFIG_IMAGES} as it prints, or pass "
                f"KubernetesBackend(images={{{environment!r}: 'registry/image:tag'}})",
            )
        return image

    def run(self, environment: str, seal: Sealer, on_log: LogSink) -> RunOutcome:
        self._need_context("run")
        image = self.image_of(environment)
        # No result path in the envelope: the runtime's default is KubernetesPodOperator's
        # /airflow/xcom/return.json, and the pod spec can say otherwise.
        text = seal(None)
        self._check_size(len(text))
        keys_secret = self.keys_secret or pods.keys_secret_name(environment)
        envelope_secret = secrets.new_name() if self.transport == "secret" else None
        operator = build_operator(
            task_id=self._task_id,
            image=image,
            envelope_secret=envelope_secret,
            keys_secret=keys_secret,
            envelope_env=text if self.transport == "env" else None,
            options=self._options(environment, envelope_secret),
            on_log=on_log,
        )
        self._operator = operator
        context = _PodContext.wrap(self._context)
        client, namespace = _prepare(operator, context, self.pod_options.get("kubernetes_conn_id"))
        _check_keys_secret(client, keys_secret, namespace, environment)
        if envelope_secret is not None:
            client.create_namespaced_secret(namespace, secrets.manifest(envelope_secret, namespace, environment, text))
            self._secret = (envelope_secret, namespace)
            operator.envelope_secret = envelope_secret
        return self._finish(environment, operator, lambda: operator.execute(context))

    def resume(self, environment: str, state: Mapping[str, Any], event: Any, on_log: LogSink) -> RunOutcome:
        """Re-enter KubernetesPodOperator where its trigger left it; delete the Secret after."""
        self._need_context("resume")
        resumed = ResumeState.of(state, event, environment)
        operator = build_operator(
            task_id=self._task_id,
            image=self.image_of(environment),
            envelope_secret=resumed.secret,
            keys_secret=self.keys_secret or pods.keys_secret_name(environment),
            envelope_env=None,  # the pod exists: its spec is not built again
            options=self._options(environment, resumed.secret),
            on_log=on_log,
        )
        operator.envelope_secret = resumed.secret
        self._operator = operator
        if resumed.secret is not None:
            self._secret = (resumed.secret, resumed.namespace)
        context = _PodContext.wrap(self._context)
        reenter = getattr(operator, resumed.method)
        return self._finish(
            environment, operator, lambda: reenter(context, event=event, **resumed.method_kwargs), event=event
        )

    def cancel(self) -> None:
        operator = self._operator
        if operator is not None:
            operator.on_kill()
            if self._secret is not None:
                _delete_secret(operator, *self._secret)

    def _need_context(self, what: str) -> None:
        if self._context is None:
            raise ConfigurationError(
                f"KubernetesBackend.{what} needs the task's Airflow context", hint="call bind(context, task_id) first"
            )

    def _options(self, environment: str, envelope_secret: str | None) -> dict[str, Any]:
        """The pod options; when deferrable, the trigger also echoes the names resume needs
        and watches the task's ``execution_timeout``.

        ``dag.test()`` resumes a task with the trigger's event alone (it drops the deferral's
        kwargs), and KubernetesPodTrigger puts its ``trigger_kwargs`` into every event.
        """
        options = dict(self.pod_options)
        if options.get("deferrable"):
            echoed = {RESUME_KEY: {"environment": environment, "secret": envelope_secret}}
            options["trigger_kwargs"] = {**(options.get("trigger_kwargs") or {}), **echoed}
            # The task's execution_timeout bounds the trigger too, as it does for KPO itself
            # (Airflow does not count the time a task spends deferred).
            task = self._context.get("task") if isinstance(self._context, Mapping) else None
            if "execution_timeout" not in options and getattr(task, "execution_timeout", None) is not None:
                options["execution_timeout"] = task.execution_timeout  # type: ignore[union-attr]
        return options

    def _finish(self, environment: str, operator: Any, call: Callable[[], Any], *, event: Any = None) -> RunOutcome:
        """Run ``call``; a deferral keeps the Secret for the pod, every other ending deletes it."""
        from airflow.providers.common.compat.sdk import TaskDeferred

        deferred = False
        try:
            return _outcome(operator, call, event)
        except TaskDeferred as defer:
            deferred = True
            raise _deferral(defer, environment, operator) from None
        finally:
            if self._secret is not None and not deferred:
                _delete_secret(operator, *self._secret)
                self._secret = None

    def _check_size(self, size: int) -> None:
        limit = ENV_VAR_LIMIT if self.transport == "env" else FILE_LIMIT
        if size <= limit:
            return
        if self.transport == "env" and size <= FILE_LIMIT:
            hint = "use the Secret transport (the default; up to 1 MiB): KubernetesBackend(transport='secret')"
        else:
            hint = "no transport carries it: pass fewer or smaller connections, variables, arguments or XCom inputs"
        raise ConfigurationError(
            f"the envelope is {size} characters, more than the {self.transport} transport's limit of {limit}",
            hint=hint,
        )


def _configured_images() -> dict[str, str]:
    try:
        from airflow.configuration import conf

        raw = conf.get(_CONFIG_SECTION, _CONFIG_IMAGES, fallback=None)
    except Exception:  # no Airflow configuration here: nothing configured
        return {}
    if not raw:
        return {}
    try:
        images = json.loads(raw)
    except ValueError:
        raise ConfigurationError(
            f"[{_CONFIG_SECTION}] {_CONFIG_IMAGES} is not JSON",
            hint='set it to a JSON object: {"environment": "registry/image:tag"}',
        ) from None
    if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
        raise ConfigurationError(f"[{_CONFIG_SECTION}] {_CONFIG_IMAGES} must map environment names to images")
    return images


def _recorded_image(environment: str) -> str | None:
    from isolation.environments.image import recorded_images

    return recorded_images().get(environment)


def _prepare(operator: Any, context: Any, conn_id: str | None) -> tuple[Any, str]:
    """The operator's own client and pod request; a missing connection is a clear error."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    try:
        client = operator.client
        operator.pod_request_obj = operator.build_pod_request_obj(context)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"the Kubernetes connection {conn_id!r} does not exist",
            hint=f"create it (airflow connections add {conn_id} --conn-type kubernetes ...) or pass "
            "in_cluster=True / config_file=... to KubernetesBackend",
        ) from None
    return client, operator.pod_request_obj.metadata.namespace


def _check_keys_secret(client: Any, name: str, namespace: str, environment: str) -> None:
    """Fail before any pod when the keys Secret is missing (a pod would wait on its mount)."""
    from kubernetes.client.exceptions import ApiException

    try:
        # The body is never read: the host has no use for the environment's private keys.
        response = client.read_namespaced_secret(name, namespace, _preload_content=False)
        with contextlib.suppress(Exception):
            response.release_conn()
    except ApiException as exc:
        if exc.status == 404:
            raise ConfigurationError(
                f"the keys Secret {name!r} of environment {environment!r} does not exist in namespace {namespace!r}",
                hint=f"isolationctl keys export --format k8s-secret -e {environment} --namespace {namespace} "
                "| kubectl apply -f -",
            ) from None
        if exc.status != 403:  # 403: the host may not read it; the pod's mount still checks
            raise


def _delete_secret(operator: Any, name: str, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        operator.client.delete_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            # The owner reference still removes it with the pod; say so rather than fail the task.
            log.warning("could not delete the envelope Secret %s/%s (HTTP %s)", namespace, name, exc.status)


def _outcome(operator: Any, call: Callable[[], Any], event: Any = None) -> RunOutcome:
    """Run the operator (``call``); turn what it did into the runtime's exit code and result document.

    ``event`` is the trigger's, when the operator re-enters after a deferral.
    """
    # The provider's own compatibility layer: the exception classes it raises on Airflow 2 and 3.
    from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    try:
        call()
    except AirflowSkipException:
        pass
    except AirflowException as exc:
        # The provider's cleanup raises "returned a failure" over the launch failure itself.
        launch = _cause(exc, (PodLaunchFailedException, PodLaunchTimeoutException))
        if launch is not None:
            raise IsolatedTaskFailed(
                f"the pod of the isolated task never started: {_first_line(launch)}",
                hint="check the image reference and its pull secret (image_pull_secrets=), the node selector, "
                "tolerations and resources; kubectl describe pod shows the scheduler's events",
            ) from None
        if operator.exit_code is None:
            if isinstance(event, Mapping) and event.get("status") in ("timeout", "error", "failed"):
                raise _trigger_failure(event) from None
            raise
    code = operator.exit_code
    if code is None:
        raise IsolatedTaskFailed("the pod of the isolated task ended without an exit code of its container")
    result = operator.result
    return RunOutcome(
        exit_code=code,
        result=json.dumps(result).encode() if result is not None else None,
        log_tail=tuple(operator.log_tail),
    )


def _cause(exc: BaseException | None, kind: tuple[type[BaseException], ...]) -> BaseException | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kind):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _trigger_failure(event: Mapping[str, Any]) -> IsolatedTaskFailed:
    """The trigger's timeout or error, when the pod never ran the runtime to its end."""
    message = str(event.get("message") or "no detail").strip().splitlines()
    return IsolatedTaskFailed(
        f"the pod of the isolated task did not finish: KubernetesPodTrigger reported "
        f"{event.get('status')}: {message[0][:300] if message else 'no detail'}",
        hint="check the image reference and its pull secret (image_pull_secrets=), the node selector, "
        "tolerations and resources, and startup_timeout_seconds / schedule_timeout_seconds; "
        "kubectl describe pod shows the scheduler's events",
    )


RESUME_KEY = "isolation_resume"
"""The key of the deferral's kwargs (and of the trigger's event) holding :class:`ResumeState`."""


@dataclass(frozen=True)
class ResumeState:
    """What a deferred task needs to resume: names only, never a secret (stored in Airflow's database)."""

    environment: str
    secret: str | None
    namespace: str
    pod: str
    method: str = "trigger_reentry"
    method_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, deferred: Mapping[str, Any], event: Any, environment: str) -> ResumeState:
        """The state stored with the deferral; else what the trigger echoed (``dag.test()`` keeps only the event)."""
        event = event if isinstance(event, Mapping) else {}
        echoed = event.get(RESUME_KEY) if isinstance(event.get(RESUME_KEY), Mapping) else {}
        stored = deferred.get(RESUME_KEY) or {"namespace": event.get("namespace"), "pod": event.get("name"), **echoed}
        try:
            made = cls(**stored)
        except TypeError:
            made = None
        if made is None or not made.namespace or not made.pod:
            raise IsolatedTaskFailed(
                "the deferred isolated task cannot resume: the state it deferred with is not the Kubernetes backend's",
                hint="clear the task to run it again",
            )
        if made.environment != environment:
            raise IsolatedTaskFailed(
                f"the deferred isolated task ran in environment {made.environment!r}, not {environment!r}",
                hint="clear the task to run it again",
            )
        if made.method != "trigger_reentry":
            # Only the provider's own re-entry point: a stored name must not pick any method.
            raise IsolatedTaskFailed(f"the deferred isolated task names an unknown re-entry method {made.method!r}")
        return made

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "secret": self.secret,
            "namespace": self.namespace,
            "pod": self.pod,
            "method": self.method,
            "method_kwargs": dict(self.method_kwargs),
        }


def _deferral(defer: Any, environment: str, operator: Any) -> BaseException:
    """KubernetesPodOperator's deferral, as the IsolatedOperator's: same trigger, same timeout."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    pod = operator.pod
    state = ResumeState(
        environment=environment,
        secret=operator.envelope_secret,
        namespace=pod.metadata.namespace,
        pod=pod.metadata.name,
        method=defer.method_name,
        method_kwargs=dict(defer.kwargs or {}),
    )
    return TaskDeferred(
        trigger=defer.trigger,
        method_name=RESUME_METHOD,
        kwargs={RESUME_KEY: state.as_kwargs()},
        timeout=defer.timeout,
    )


class _PodContext(dict):  # type: ignore[type-arg]
    """The task's context for the inner operator: its own XCom pushes are kept, not pushed.

    KubernetesPodOperator pushes ``pod_name`` and ``pod_namespace``; the host task's XComs
    must be exactly what the wrapped operator pushed, so those are logged instead.
    """

    @classmethod
    def wrap(cls, context: Any) -> _PodContext:
        wrapped = cls(context)
        wrapped["ti"] = _QuietTaskInstance(context["ti"])
        return wrapped


class _QuietTaskInstance:
    def __init__(self, ti: Any) -> None:
        self._ti = ti

    def xcom_push(self, key: str, value: Any, *args: Any, **kwargs: Any) -> None:
        log.info("isolated pod: %s=%s", key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)


def build_operator(
    *,
    task_id: str,
    image: str,
    envelope_secret: str | None,
    keys_secret: str,
    envelope_env: str | None,
    options: Mapping[str, Any],
    on_log: LogSink,
) -> Any:
    """The KubernetesPodOperator of one isolated task (not part of any DAG)."""
    arguments = pods.pod_arguments(
        image=image,
        envelope_secret=envelope_secret,
        keys_secret=keys_secret,
        envelope_env=envelope_env,
        skip_exit_code=EXIT_SKIPPED,
        options=options,
    )
    return _operator_class()(task_id=task_id, on_log=on_log, **arguments)


_CLASS: type | None = None


def _operator_class() -> type:
    """``IsolatedPodOperator``, made on first use so that DAG parsing never imports the provider."""
    global _CLASS  # noqa: PLW0603 - one class per process
    if _CLASS is not None:
        return _CLASS
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

    class _LineManager(PodManager):
        """The provider's PodManager; the base container's lines go to the host's masker."""

        sink: Callable[[str], None] = staticmethod(lambda line: None)

        def _log_message(self, message: str, container_name: str, *args: Any, **kwargs: Any) -> None:
            for line in message.splitlines() or [""]:
                self.sink(line)

    class IsolatedPodOperator(KubernetesPodOperator):
        """KubernetesPodOperator that reports the exit code and result instead of acting on them."""

        def __init__(self, *, on_log: LogSink, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.on_log = on_log
            self.exit_code: int | None = None
            self.result: Any = None
            self.log_tail: list[str] = []
            self.envelope_secret: str | None = None

        @property
        def pod_manager(self) -> PodManager:
            manager = self.__dict__.get("_isolation_pod_manager")
            if manager is None:
                manager = _LineManager(kube_client=self.client, callbacks=self.callbacks)
                manager.sink = self._line
                self.__dict__["_isolation_pod_manager"] = manager
            return manager

        @pod_manager.deleter
        def pod_manager(self) -> None:
            self.__dict__.pop("_isolation_pod_manager", None)

        def _line(self, line: str) -> None:
            self.log_tail = [*self.log_tail[-19:], line]
            self.on_log(line)

        def get_or_create_pod(self, pod_request_obj: Any, context: Any) -> Any:
            pod = super().get_or_create_pod(pod_request_obj, context)
            if self.envelope_secret is not None:
                # From now on the Secret lives no longer than the pod, whatever happens here.
                remote = self.client.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
                self.client.patch_namespaced_secret(
                    self.envelope_secret,
                    pod.metadata.namespace,
                    {"metadata": {"ownerReferences": [secrets.owner_reference(remote)]}},
                )
            return pod

        def _write_logs(self, pod: Any, follow: bool = False, since_time: Any = None) -> None:  # type: ignore[override]
            """After a deferral the provider reads the log here: its lines go to the host's masker too."""
            since_seconds = None
            if since_time is not None:
                since_seconds = max(1, math.ceil((_now() - _as_datetime(since_time)).total_seconds()))
            logs = self.client.read_namespaced_pod_log(
                name=pod.metadata.name,
                namespace=pod.metadata.namespace,
                container=self.base_container_name,
                follow=follow,
                timestamps=False,
                since_seconds=since_seconds,
                _preload_content=False,
            )
            for raw in logs:
                self._line(raw.decode("utf-8", errors="backslashreplace").rstrip("\n"))

        def extract_xcom(self, pod: Any, **kwargs: Any) -> Any:
            self.result = super().extract_xcom(pod, **kwargs)
            return self.result

        def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
            self.exit_code = _exit_code(remote_pod, self.base_container_name)
            super().cleanup(pod, remote_pod, *args, **kwargs)

        def _push_xcom_with_fan_out(self, ti: Any, value: Any) -> None:
            """The host pushes the wrapped operator's XComs; the raw result document is not one."""

    _CLASS = IsolatedPodOperator
    return _CLASS


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _as_datetime(value: Any) -> dt.datetime:
    """The trigger's ``last_log_time``: a datetime, or its ISO text once it went through the database."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _exit_code(remote_pod: Any, container: str) -> int | None:
    status = getattr(remote_pod, "status", None)
    for item in (status.container_statuses if status is not None else None) or []:
        if item.name == container and item.state is not None and item.state.terminated is not None:
            return int(item.state.terminated.exit_code)
    return None
