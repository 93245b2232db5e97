"""A stand-in for the Kubernetes API server: there is none on these machines.

Only the API server is replaced. KubernetesPodOperator, its PodManager and hook, the
kubernetes client's models and serialisation, and the isolation runtime are the real ones.
The stand-in answers the CoreV1Api calls the provider makes and, like a kubelet, *runs* each
pod's base container for real: the container's command (``python -m isolation.runtime``)
runs in this test environment's interpreter as a subprocess, with the pod's Secret volumes
written out as files and its environment resolved as the kubelet does (downward-API labels
included). The XCom sidecar's ``cat /airflow/xcom/return.json`` is answered with the file
the runtime wrote. Deleting a pod deletes the Secrets it owns, as Kubernetes' garbage
collector does.

Two differences from a kubelet, both covered by the podman tests (tests/podman): the keys
are written to a private directory rather than a read-only Secret mount (so
``ISOLATION_KEYS_SECRET_VOLUME`` is turned off here), and container paths are mapped to
temporary files through the runtime's own variables.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from isolation.keyring import EnvironmentKeys
from isolation.transport import Keyset

SIDECAR = "airflow-xcom-sidecar"
_HERE = Path(__file__).resolve().parent
_counter = itertools.count(1)


def _model(data: Any, kind: str) -> Any:
    return ApiClient()._ApiClient__deserialize(data, kind)  # the client's own deserialiser


def _not_found(what: str) -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps({"message": f"{what} not found"})
    return exc


class _Container:
    """One pod's base container: a real process."""

    def __init__(self, argv: list[str], env: dict[str, str], root: Path, result: Path) -> None:
        self.root = root
        self.result = result
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.sidecar_running = True
        self._finished: str | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def read_result(self) -> str:
        if self.result.exists() and self.result.stat().st_size:
            return self.result.read_text()
        return "__airflow_xcom_result_empty__"

    def stop_sidecar(self) -> None:
        self.sidecar_running = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def finished_at(self) -> str:
        if self._finished is None:
            self._finished = dt.datetime.now(dt.timezone.utc).isoformat()
        return self._finished

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


class FakeKubernetesApi:
    """The CoreV1Api surface KubernetesPodOperator uses, backed by memory and real processes.

    ``start``: ``"run"`` (default) runs the container; ``"image-pull-error"`` and
    ``"unschedulable"`` leave the pod pending with that reason.
    """

    def __init__(self, workdir: Path, *, start: str = "run", kubelet: Any = None) -> None:
        self.workdir = workdir
        self.start = start
        # kubelet(pod, secrets) -> a running pod; default: the base container as a local process.
        self.kubelet = kubelet
        self.api_client = ApiClient()
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.containers: dict[tuple[str, str], _Container] = {}
        self.created_secrets: list[dict[str, Any]] = []
        self.created_pods: list[dict[str, Any]] = []
        self.deleted_secrets: list[str] = []
        self.calls: list[str] = []
        self.owner_of: dict[str, str] = {}
        self.relabel: dict[str, str] = {}  # applied to each created pod: a pod of another task

    # -- Secrets -----------------------------------------------------------------------

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append("create_secret")
        body = json.loads(json.dumps(body))
        body["metadata"]["namespace"] = namespace
        body["metadata"].setdefault("uid", str(uuid.uuid4()))
        self.secrets[(namespace, body["metadata"]["name"])] = body
        self.created_secrets.append(json.loads(json.dumps(body)))
        return _model(body, "V1Secret")

    def read_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append("read_secret")
        if (namespace, name) not in self.secrets:
            raise _not_found(f'secrets "{name}"')
        return _Response(b"{}")

    def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append("patch_secret")
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise _not_found(f'secrets "{name}"')
        secret["metadata"].update(body.get("metadata", {}))
        for ref in secret["metadata"].get("ownerReferences") or []:
            self.owner_of[name] = ref["uid"]
        return _model(secret, "V1Secret")

    def delete_namespaced_secret(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append("delete_secret")
        if self.secrets.pop((namespace, name), None) is None:
            raise _not_found(f'secrets "{name}"')
        self.deleted_secrets.append(name)
        return None

    # -- Pods --------------------------------------------------------------------------

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        self.calls.append("create_pod")
        pod = json.loads(json.dumps(body))
        pod["metadata"]["namespace"] = namespace
        pod["metadata"]["uid"] = str(uuid.uuid4())
        pod["metadata"].setdefault("labels", {}).update(self.relabel)
        pod["metadata"]["creationTimestamp"] = dt.datetime.now(dt.timezone.utc).isoformat()
        key = (namespace, pod["metadata"]["name"])
        self.pods[key] = pod
        self.created_pods.append(json.loads(json.dumps(pod)))
        if self.start == "run" and self.kubelet is not None:
            mounted = {
                v["secret"]["secretName"]: self.secrets[(namespace, v["secret"]["secretName"])]
                for v in pod["spec"].get("volumes") or []
                if "secret" in v
            }
            self.containers[key] = self.kubelet(pod, mounted)
        elif self.start == "run":
            self.containers[key] = self._run(pod)
        return _model(pod, "V1Pod")

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise _not_found(f'pods "{name}"')
        return _model({**pod, "status": self._status(namespace, name)}, "V1Pod")

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kwargs: Any) -> Any:
        items = [
            {**pod, "status": self._status(ns, name)}
            for (ns, name), pod in self.pods.items()
            if ns == namespace and _matches(pod["metadata"].get("labels") or {}, label_selector)
        ]
        return _model({"items": items}, "V1PodList")

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise _not_found(f'pods "{name}"')
        labels = (body.get("metadata") or {}).get("labels") or {}
        pod["metadata"].setdefault("labels", {}).update(labels)
        return self.read_namespaced_pod(name, namespace)

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append("delete_pod")
        pod = self.pods.pop((namespace, name), None)
        if pod is None:
            raise _not_found(f'pods "{name}"')
        container = self.containers.get((namespace, name))
        if container is not None:
            container.kill()
        # Kubernetes' garbage collector: what the pod owns goes with it.
        uid = pod["metadata"]["uid"]
        for key, secret in list(self.secrets.items()):
            if any(ref.get("uid") == uid for ref in secret["metadata"].get("ownerReferences") or []):
                del self.secrets[key]
                self.deleted_secrets.append(key[1])
        return None

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str = "base", **kwargs: Any) -> Any:
        running = self.containers.get((namespace, name))
        if running is None:
            raise _not_found(f'pods "{name}"')
        running.wait()
        stamp = "2026-01-01T00:00:00.000000000Z"
        lines = running.output if kwargs.get("timestamps") is False else [f"{stamp} {x}" for x in running.output]
        return _Response("".join(line + "\n" for line in lines).encode())

    def list_namespaced_event(self, namespace: str, **kwargs: Any) -> Any:
        return _model({"items": [], "metadata": {"resourceVersion": "1"}}, "CoreV1EventList")

    def secrets_left(self) -> list[str]:
        return sorted(name for _, name in self.secrets)

    # -- the XCom sidecar's exec ---------------------------------------------------------

    def connect_get_namespaced_pod_exec(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("exec goes through kubernetes.stream (FakeStream)")

    def exec_in_sidecar(self, name: str, namespace: str, command: list[str]) -> str:
        running = self.containers[(namespace, name)]
        if "return.json" in command[-1]:
            return str(running.read_result())
        running.stop_sidecar()  # the kill command
        return ""

    # -- a kubelet ------------------------------------------------------------------------

    def _status(self, namespace: str, name: str) -> dict[str, Any]:
        if self.start != "run":
            reason = "ErrImagePull" if self.start == "image-pull-error" else None
            status: dict[str, Any] = {"phase": "Pending"}
            if reason:
                status["containerStatuses"] = [
                    {
                        "name": "base",
                        "ready": False,
                        "restartCount": 0,
                        "image": "x",
                        "imageID": "",
                        "state": {"waiting": {"reason": reason, "message": "pull access denied"}},
                    }
                ]
            else:
                status["conditions"] = [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available",
                    }
                ]
            return status
        running = self.containers[(namespace, name)]
        code = running.poll()
        base: dict[str, Any] = {"name": "base", "ready": code is None, "restartCount": 0, "image": "x", "imageID": ""}
        finished = running.finished_at()
        base["state"] = (
            {"running": {}}
            if code is None
            else {"terminated": {"exitCode": code, "reason": "Completed", "finishedAt": finished}}
        )
        sidecar_state = {"running": {}} if running.sidecar_running else {"terminated": {"exitCode": 0}}
        sidecar = {
            "name": SIDECAR,
            "ready": True,
            "restartCount": 0,
            "image": "x",
            "imageID": "",
            "state": sidecar_state,
        }
        phase = "Running" if code is None or running.sidecar_running else ("Succeeded" if code == 0 else "Failed")
        return {"phase": phase, "containerStatuses": [base, sidecar]}

    def _run(self, pod: dict[str, Any]) -> _Container:
        root = self.workdir / f"pod-{next(_counter)}"
        root.mkdir(parents=True)
        spec = pod["spec"]
        base = next(c for c in spec["containers"] if c["name"] == "base")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        paths: dict[str, str] = {}
        for mount in base.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            local = root / mount["name"]
            if "secret" in volume:
                secret = self.secrets.get((pod["metadata"]["namespace"], volume["secret"]["secretName"]))
                assert secret is not None, f"the pod mounts Secret {volume['secret']['secretName']} that is missing"
                files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
                if "recipient.json" in files:
                    EnvironmentKeys.provision(
                        local, Keyset.from_json(files["recipient.json"]), Keyset.from_json(files["signers.json"])
                    )
                else:
                    local.mkdir()
                    for file, data in files.items():
                        (local / file).write_bytes(data)
            else:
                local.mkdir()
            paths[mount["mountPath"]] = str(local)
        labels = pod["metadata"].get("labels") or {}
        # The image of this stand-in: this interpreter, with the tests' callables importable.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONPATH": str(_HERE)}
        for var in base.get("env") or []:
            if "value" in var:
                value = var["value"]
            else:
                field = var["valueFrom"]["fieldRef"]["fieldPath"]
                value = labels.get(field[len("metadata.labels['") : -2], "")
            for container_path, local_path in paths.items():
                if value == container_path or value.startswith(container_path + "/"):
                    value = local_path + value[len(container_path) :]
                    break
            env[var["name"]] = value
        env["ISOLATION_KEYS_SECRET_VOLUME"] = "0"  # a private directory here, not a read-only mount
        xcom = Path(paths["/airflow/xcom"])  # KubernetesPodOperator's XCom volume
        env["ISOLATION_RESULT_PATH"] = str(xcom / "return.json")
        env["HOME"] = env["TMPDIR"] = str(root / "isolation-tmp")
        command = [*base.get("command", []), *base.get("args", [])]
        assert command[0] == "python", command
        return _Container([sys.executable, *command[1:]], env, root, xcom / "return.json")


class _Response:
    """The urllib3 response shape the client returns with ``_preload_content=False``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, amt: Any = None, decode_content: bool = True) -> Any:
        yield self.data

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self) -> Any:
        yield from self.data.splitlines(keepends=True)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


class FakeStream:
    """``kubernetes.stream.stream`` for the sidecar's exec, answered by the stand-in."""

    def __init__(self, api: FakeKubernetesApi) -> None:
        self.api = api

    def __call__(self, _func: Any, name: str, namespace: str, *, command: list[str], **kwargs: Any) -> Any:
        return _ExecResult(self.api.exec_in_sidecar(name, namespace, command))


class _ExecResult:
    def __init__(self, out: str) -> None:
        self.out = out

    def run_forever(self, timeout: Any = None) -> None:
        pass

    def peek_stderr(self) -> bool:
        return False

    def read_all(self) -> str:
        return self.out

    def is_open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def __enter__(self) -> _ExecResult:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class AsyncCoreV1Api:
    """``kubernetes_asyncio``'s CoreV1Api for KubernetesPodTrigger, answered from a stand-in's state.

    The trigger's hook (``AsyncKubernetesHook``) opens a real ``kubernetes_asyncio`` ApiClient;
    only the calls that would reach an API server are answered here, with the asyncio
    client's own models, from the same pods and containers the synchronous stand-in runs.
    """

    def __init__(self, api: FakeKubernetesApi, connection: Any) -> None:
        self.api = api
        self.connection = connection  # the real ApiClient: its deserialiser makes the models

    def _model(self, data: Any, kind: str) -> Any:
        return self.connection._ApiClient__deserialize(data, kind)

    async def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.api.calls.append("async_read_pod")
        try:
            pod = self.api.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            raise _async_error(exc) from None
        return self._model(self.api.api_client.sanitize_for_serialization(pod), "V1Pod")

    async def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.api.calls.append("async_delete_pod")
        try:
            return self.api.delete_namespaced_pod(name, namespace)
        except ApiException as exc:
            raise _async_error(exc) from None

    async def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> Any:
        import asyncio

        try:
            response = await asyncio.to_thread(self.api.read_namespaced_pod_log, name, namespace, **kwargs)
        except ApiException as exc:
            raise _async_error(exc) from None
        return _AsyncBody(response.data)

    async def list_namespaced_event(self, namespace: str, **kwargs: Any) -> Any:
        """:rtype: CoreV1EventList"""  # the watch reads its item type from here
        if kwargs.get("watch"):
            return _QuietWatch(float(kwargs.get("timeout_seconds") or 1))
        return self._model({"items": [], "metadata": {"resourceVersion": "1"}}, "CoreV1EventList")


def _async_error(exc: ApiException) -> Exception:
    from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException

    error = AsyncApiException(status=exc.status, reason=exc.reason)
    error.body = exc.body
    return error


class _AsyncBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


class _QuietWatch:
    """An event watch on which nothing happens: it ends after a short wait, as a watch times out."""

    def __init__(self, timeout: float) -> None:
        self.content = self
        self.timeout = min(timeout, 0.5)

    async def readline(self) -> bytes:
        import asyncio

        await asyncio.sleep(self.timeout)
        return b""

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


def stand_in_async(api: FakeKubernetesApi, monkeypatch: Any) -> None:
    """Point KubernetesPodTrigger's asyncio hook at ``api``: only the API server is replaced."""
    import kubernetes_asyncio.client as async_client
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

    async def load_config(self: Any) -> None:  # where the API server is: here, the stand-in
        if self.client_configuration is None:
            self.client_configuration = async_client.Configuration()

    monkeypatch.setattr(AsyncKubernetesHook, "_load_config", load_config)
    monkeypatch.setattr(async_client, "CoreV1Api", lambda connection=None: AsyncCoreV1Api(api, connection))
