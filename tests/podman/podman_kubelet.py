"""A kubelet made of podman: the API stand-in's pods run as real containers (``podman kube play``).

The pod manifest is the one KubernetesPodOperator sent to the API, with three changes only,
forced by having no registry and by podman's quirks: the XCom sidecar's image (``alpine``)
becomes the pod's own image, the XCom emptyDir becomes a named volume (see below), and
each Secret is stored in podman's secret store with its ``data`` decoded, because podman
4.3 writes a Secret's ``data`` values into the files as given (Kubernetes decodes them).
The envelope is base64url text, so its file is the same on both.
Runs with ``--network=none``. Everything a run creates (pod, Secrets, the named volumes
podman makes of Secret volumes) is removed when the pod is deleted.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import yaml

SIDECAR = "airflow-xcom-sidecar"


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


class PodmanPod:
    """One pod in podman, with the interface the API stand-in expects of a running container."""

    def __init__(self, pod: dict[str, Any], secrets: dict[str, dict[str, Any]], workdir: Path):
        self.name = pod["metadata"]["name"]
        self.output: list[str] = []
        self.sidecar_running = True
        self._code: int | None = None
        self._finished: str | None = None
        self.secret_names = sorted(secrets)
        manifest = json.loads(json.dumps(pod))
        manifest.pop("status", None)
        # Kubernetes makes an emptyDir mode 0777; podman 4.3 makes it root's 0755, so the
        # non-root runtime could not write return.json. A named volume (a claim, to podman)
        # starts as a copy of the image's /airflow/xcom, which the image gives the runtime user.
        self.volumes = []
        for volume in manifest["spec"].get("volumes") or []:
            if "emptyDir" in volume and volume["name"] == "xcom":
                claim = f"{self.name}-xcom"
                del volume["emptyDir"]
                volume["persistentVolumeClaim"] = {"claimName": claim}
                self.volumes.append(claim)
        base_image = next(c["image"] for c in manifest["spec"]["containers"] if c["name"] == "base")
        for container in manifest["spec"]["containers"]:
            if container["name"] == SIDECAR:
                container["image"] = base_image  # it has the sh and sleep the sidecar runs
        self.manifest = workdir / f"{self.name}.yaml"
        self.manifest.write_text(yaml.safe_dump(manifest))
        for name, secret in secrets.items():
            podman("secret", "rm", name, check=False)
            decoded = {**secret, "data": {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}}
            source = workdir / f"{name}.json"
            source.write_text(json.dumps(decoded))
            podman("secret", "create", name, str(source))
            source.unlink()
        played = podman("kube", "play", "--network=none", str(self.manifest), check=False)
        if played.returncode != 0:
            raise RuntimeError(f"podman kube play failed: {played.stderr.strip()}")
        self.environ: bytes | None = None
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    @property
    def base(self) -> str:
        return f"{self.name}-base"

    def _read_environ(self) -> None:
        """The base container's /proc/1/environ, read from the host while it runs."""
        pid = podman("inspect", "-f", "{{.State.Pid}}", self.base, check=False).stdout.strip()
        if pid.isdigit() and int(pid) > 0:
            try:
                self.environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                self.environ = None

    def _wait(self) -> None:
        self._read_environ()
        done = podman("wait", self.base, check=False, timeout=600)
        code = int(done.stdout.strip() or "1") if done.returncode == 0 else 137
        logs = podman("logs", self.base, check=False)
        self.output = (logs.stdout + logs.stderr).splitlines()
        self._finished = podman("inspect", "-f", "{{.State.FinishedAt}}", self.base, check=False).stdout.strip()
        self._code = code

    # -- what the stand-in asks ------------------------------------------------------------

    def poll(self) -> int | None:
        return self._code

    def finished_at(self) -> str:
        import datetime as dt

        return dt.datetime.now(dt.timezone.utc).isoformat()

    def wait(self, timeout: float = 600) -> int:
        self._waiter.join(timeout)
        assert self._code is not None, f"pod {self.name} did not finish"
        return self._code

    def read_result(self) -> str:
        # What KubernetesPodOperator's sidecar exec runs, in the real sidecar container.
        read = podman("exec", f"{self.name}-{SIDECAR}", "cat", "/airflow/xcom/return.json", check=False)
        return read.stdout if read.returncode == 0 and read.stdout.strip() else "__airflow_xcom_result_empty__"

    def stop_sidecar(self) -> None:
        self.sidecar_running = False

    def kill(self) -> None:
        podman("pod", "rm", "-f", "-t", "0", self.name, check=False)
        self._waiter.join(60)
        volumes = podman("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split()
        for name in self.secret_names:
            podman("secret", "rm", name, check=False)
            if name in volumes:
                podman("volume", "rm", "-f", name, check=False)
        for claim in self.volumes:
            podman("volume", "rm", "-f", claim, check=False)
