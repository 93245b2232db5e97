"""The ``kubernetes`` backend: each isolated task is one pod, run by KubernetesPodOperator.

- :mod:`.pod` — what the pod looks like: the environment's image, the runtime as its
  command, the envelope and keys Secrets mounted read-only, least-authority defaults.
- :mod:`.secret` — the per-task Secret that carries the envelope (ciphertext only).
- :mod:`.backend` — :class:`KubernetesBackend`: seal, create the Secret, run the pod through
  the provider's own ``KubernetesPodOperator``, delete the Secret on every exit path.

Importing this package does not import the cncf-kubernetes provider; running a task does.
"""

from __future__ import annotations

from isolation.backends.kubernetes.backend import KubernetesBackend
from isolation.backends.kubernetes.pod import (
    ENVELOPE_DIR,
    KEYS_DIR,
    OWNED_ARGUMENTS,
    POD_LABELS,
    RUNTIME_COMMAND,
    keys_secret_name,
)

__all__ = [
    "ENVELOPE_DIR",
    "KEYS_DIR",
    "OWNED_ARGUMENTS",
    "POD_LABELS",
    "RUNTIME_COMMAND",
    "KubernetesBackend",
    "keys_secret_name",
]
