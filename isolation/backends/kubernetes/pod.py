"""What an isolated task's pod looks like, as KubernetesPodOperator arguments.

The backend owns the container's image, command, arguments and environment (the envelope
and the runtime's settings travel there); every other KubernetesPodOperator argument is the
user's. The defaults give the pod the least authority the runtime needs: no service-account
token, a non-root user, a read-only root filesystem, no privilege escalation, no
capabilities. A user's own ``security_context`` / ``container_security_context`` replaces
the default one whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from isolation.errors import ConfigurationError

RUNTIME_COMMAND = ("python", "-m", "isolation.runtime")
ENVELOPE_DIR = "/var/run/isolation/envelope"
KEYS_DIR = "/var/run/isolation/keys"
RESULT_PATH = "/airflow/xcom/return.json"
RUNTIME_USER = 50000  # the official Airflow images' user
# On every isolated pod: what the README's NetworkPolicy selects.
POD_LABELS = {"app.kubernetes.io/managed-by": "apache-airflow-providers-isolation"}
IDENTITY_LABELS = ("dag_id", "task_id", "run_id", "map_index", "try_number")

_ENVELOPE_VOLUME = "isolation-envelope"
_KEYS_VOLUME = "isolation-keys"
_TMP_VOLUME = "isolation-tmp"

# Arguments the backend sets itself, and what to use instead.
OWNED_ARGUMENTS: Mapping[str, str] = {
    "image": "the image comes from the environment: deploy it (isolationctl deploy -e NAME) or pass "
    "KubernetesBackend(images={'NAME': 'registry/image:tag'})",
    "cmds": "the container runs the isolation runtime; put the command in the wrapped operator "
    "(e.g. BashOperator's bash_command)",
    "arguments": "pass the wrapped operator's arguments to the IsolatedOperator itself",
    "env_vars": "connections and variables travel sealed: list them in connections= / variables=; plain "
    "non-secret settings of the wrapped operator go in its own arguments",
    "env_from": "connections and variables travel sealed: list them in connections= / variables=",
    "secrets": "Airflow connections and variables travel in the envelope; mount other Secrets with volumes=",
    "do_xcom_push": "the result always comes back through KubernetesPodOperator's XCom sidecar",
    "skip_on_exit_code": "the runtime's skip exit code is set by the backend; raise AirflowSkipException",
    "task_id": "the pod's task is the IsolatedOperator's own task",
}


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse the arguments the backend owns, naming what to use instead (at DAG parse)."""
    for name in sorted(options):
        if name in OWNED_ARGUMENTS:
            raise ConfigurationError(
                f"KubernetesBackend does not take {name}=: the backend sets it",
                hint=OWNED_ARGUMENTS[name],
            )


_SHARED: list[Any] = []


def _m(model: Any, **fields: Any) -> Any:
    """A client model sharing one validation configuration that deep copies as itself.

    Each model of the kubernetes client carries a Configuration, used only for client-side
    validation, and KubernetesPodOperator deep-copies the pod several times while building
    it: copying those Configurations (each copy resets its loggers' levels) is most of the
    cost of the backend's extra mounts and variables. Nothing changes a model's configuration.
    """
    if not _SHARED:
        from kubernetes.client import Configuration

        class _SharedConfiguration(Configuration):  # type: ignore[misc]
            def __deepcopy__(self, memo: dict[int, Any]) -> _SharedConfiguration:
                return self

        _SHARED.append(_SharedConfiguration())
    return model(local_vars_configuration=_SHARED[0], **fields)


def keys_secret_name(environment: str) -> str:
    """The long-lived Secret with an environment's keys (``isolationctl keys export --format k8s-secret``)."""
    return f"isolation-keys-{environment}"


def pod_arguments(
    *,
    image: str,
    envelope_secret: str | None,
    keys_secret: str,
    envelope_env: str | None,
    skip_exit_code: int,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """KubernetesPodOperator arguments for one isolated task: the user's, plus the backend's own."""
    from kubernetes.client import models as k8s

    volumes = [
        _m(
            k8s.V1Volume,
            name=_KEYS_VOLUME,
            # optional=False spelt out: podman's `kube play` needs it, and a missing keys
            # Secret must stop the pod rather than start it without keys.
            secret=_m(k8s.V1SecretVolumeSource, secret_name=keys_secret, optional=False, default_mode=0o440),
        ),
        _m(
            k8s.V1Volume,
            name=_TMP_VOLUME,
            empty_dir=_m(k8s.V1EmptyDirVolumeSource, medium="Memory", size_limit="256Mi"),
        ),
    ]
    mounts = [
        _m(k8s.V1VolumeMount, name=_KEYS_VOLUME, mount_path=KEYS_DIR, read_only=True),
        _m(k8s.V1VolumeMount, name=_TMP_VOLUME, mount_path="/tmp"),  # noqa: S108 - the pod's own tmpfs
    ]
    env = [
        _m(k8s.V1EnvVar, name="HOME", value="/tmp"),  # noqa: S108
        _m(k8s.V1EnvVar, name="PYTHONDONTWRITEBYTECODE", value="1"),
        _m(k8s.V1EnvVar, name="ISOLATION_KEYS_DIR", value=KEYS_DIR),
        _m(k8s.V1EnvVar, name="ISOLATION_KEYS_SECRET_VOLUME", value="1"),
        # Identity binding (isolation.runtime.identity): the pod's own labels, from the API server.
        _m(k8s.V1EnvVar, name="ISOLATION_POD_IDENTITY", value="labels"),
        *(
            _m(
                k8s.V1EnvVar,
                name=f"ISOLATION_POD_{label.upper()}",
                value_from=_m(
                    k8s.V1EnvVarSource,
                    field_ref=_m(k8s.V1ObjectFieldSelector, field_path=f"metadata.labels['{label}']"),
                ),
            )
            for label in IDENTITY_LABELS
        ),
    ]
    if envelope_secret is not None:
        volumes.append(
            _m(
                k8s.V1Volume,
                name=_ENVELOPE_VOLUME,
                secret=_m(k8s.V1SecretVolumeSource, secret_name=envelope_secret, optional=False, default_mode=0o440),
            )
        )
        mounts.append(_m(k8s.V1VolumeMount, name=_ENVELOPE_VOLUME, mount_path=ENVELOPE_DIR, read_only=True))
        env.append(_m(k8s.V1EnvVar, name="ISOLATION_ENVELOPE_FILE", value=f"{ENVELOPE_DIR}/envelope"))
    if envelope_env is not None:
        # Opt-in for small envelopes: ciphertext in the pod spec, readable by whoever reads pods.
        env.append(_m(k8s.V1EnvVar, name="ISOLATION_ENVELOPE", value=envelope_env))

    user = dict(options)
    args: dict[str, Any] = {
        "image": image,
        "cmds": list(RUNTIME_COMMAND),
        "arguments": [],
        "env_vars": env,
        "do_xcom_push": True,
        "skip_on_exit_code": skip_exit_code,
        "automount_service_account_token": False,
        "security_context": _m(
            k8s.V1PodSecurityContext,
            run_as_non_root=True,
            run_as_user=RUNTIME_USER,
            run_as_group=0,
            # Volumes (the XCom emptyDir, the keys Secret's files) belong to the runtime's group.
            fs_group=0,
            seccomp_profile=_m(k8s.V1SeccompProfile, type="RuntimeDefault"),
        ),
        "container_security_context": _m(
            k8s.V1SecurityContext,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            privileged=False,
            capabilities=_m(k8s.V1Capabilities, drop=["ALL"]),
        ),
        # KPO prints the whole remote pod on failure when asked: never with an envelope in it.
        "log_pod_spec_on_failure": False,
    }
    for name in ("automount_service_account_token", "security_context", "container_security_context"):
        if name in user:
            args[name] = user.pop(name)
    args["labels"] = {**user.pop("labels", {}), **POD_LABELS}
    args["volumes"] = [*user.pop("volumes", []), *volumes]
    args["volume_mounts"] = [*user.pop("volume_mounts", []), *mounts]
    args.update(user)
    return args
