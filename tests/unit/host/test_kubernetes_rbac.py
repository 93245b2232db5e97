"""The Role in docs/howto-kubernetes.md grants every Kubernetes API call a task makes.

The Kubernetes API server is stood in for by ``FakeKubernetesApi`` (tests/unit/host/kubernetes_api.py);
KubernetesPodOperator, its PodManager and the runtime are the real ones. Each API method the
provider and the backend call on the stand-in is recorded and mapped to the resource and verb
a real API server would authorise; the documented Role must allow each of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes_api import FakeStream
from kubernetes_support import bash_task, stand_in

HOWTO = Path(__file__).resolve().parents[2].parent / "docs" / "howto-kubernetes.md"
# CoreV1Api method -> (resource, verb), as the API server authorises it.
AUTHORISED_AS = {
    "create_namespaced_pod": ("pods", "create"),
    "read_namespaced_pod": ("pods", "get"),
    "list_namespaced_pod": ("pods", "list"),
    "patch_namespaced_pod": ("pods", "patch"),
    "delete_namespaced_pod": ("pods", "delete"),
    "read_namespaced_pod_log": ("pods/log", "get"),
    "create_namespaced_secret": ("secrets", "create"),
    "read_namespaced_secret": ("secrets", "get"),
    "patch_namespaced_secret": ("secrets", "patch"),
    "delete_namespaced_secret": ("secrets", "delete"),
    "list_namespaced_event": ("events", "list"),
}


@pytest.fixture
def kube(tmp_path, monkeypatch):
    yield from stand_in(tmp_path, monkeypatch)


def _documented_role() -> dict[str, set[str]]:
    text = HOWTO.read_text()
    for block in text.split("```yaml")[1:]:
        documents = [d for d in yaml.safe_load_all(block.split("```", 1)[0]) if d]
        for document in documents:
            if document.get("kind") == "Role":
                allowed: dict[str, set[str]] = {}
                for rule in document["rules"]:
                    assert rule["apiGroups"] == [""]
                    for resource in rule["resources"]:
                        allowed.setdefault(resource, set()).update(rule["verbs"])
                return allowed
    raise AssertionError(f"no Role in {HOWTO}")


def test_the_documented_role_allows_every_call_a_task_makes(kube, monkeypatch):
    used: set[tuple[str, str]] = set()
    for method, permission in AUTHORISED_AS.items():
        original = getattr(kube, method)

        def recorded(*args, _original=original, _permission=permission, **kwargs):
            used.add(_permission)
            return _original(*args, **kwargs)

        monkeypatch.setattr(kube, method, recorded)
    exec_original = FakeStream.__call__

    def exec_recorded(self, *args, **kwargs):
        # The XCom sidecar is read through an exec: a websocket upgrade, authorised as create/get.
        used.add(("pods/exec", "create"))
        return exec_original(self, *args, **kwargs)

    monkeypatch.setattr(FakeStream, "__call__", exec_recorded)
    task, context = bash_task("echo rbac")
    task.execute(context)
    assert {("pods", "create"), ("secrets", "create"), ("pods/exec", "create")} <= used
    allowed = _documented_role()
    missing = sorted(f"{verb} {resource}" for resource, verb in used if verb not in allowed.get(resource, set()))
    assert missing == [], f"the Role in {HOWTO.name} does not allow: {missing}"
