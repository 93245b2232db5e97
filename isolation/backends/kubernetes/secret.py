"""The per-task Secret: the envelope text, nothing else, under a name that says nothing.

The Secret's ``data`` holds the envelope's canonical base64url text (base64-encoded once
more, as the Kubernetes API wants), so the mounted file is the text the runtime reads from
any transport. Its metadata carries only the environment name and a random handle; the
task's identity is in the pod's labels, which KubernetesPodOperator sets anyway.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

ENVELOPE_KEY = "envelope"
MANAGED_BY = {"app.kubernetes.io/managed-by": "apache-airflow-providers-isolation"}


def new_name() -> str:
    """A fresh Secret name: random, so nothing about the task can be read from it."""
    return f"isolation-envelope-{secrets.token_hex(8)}"


def manifest(name: str, namespace: str, environment: str, envelope_text: str) -> dict[str, Any]:
    """The Secret as the Kubernetes API takes it (``immutable``: nobody can swap its content)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, "isolation/environment": environment, "isolation/role": "envelope"},
        },
        "data": {ENVELOPE_KEY: base64.b64encode(envelope_text.encode("ascii")).decode("ascii")},
    }


def owner_reference(pod: Any) -> dict[str, Any]:
    """An owner reference to ``pod``: Kubernetes' garbage collector deletes the Secret with it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod.metadata.name,
        "uid": pod.metadata.uid,
        "blockOwnerDeletion": False,
        "controller": False,
    }
