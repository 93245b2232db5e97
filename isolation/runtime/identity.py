"""Identity binding in a pod: the envelope must be meant for the task this pod runs.

KubernetesPodOperator labels every pod with its task instance (``dag_id``, ``task_id``,
``run_id``, ``map_index``, ``try_number``); the Kubernetes backend hands those labels to
the container read-only through the downward API, one file per label, in the directory
``$ISOLATION_POD_IDENTITY_DIR``. A pod that was given another task's envelope (a Secret
mounted into the wrong pod, a replayed one) refuses it with ``wrong-subject`` before the
operator is built. Outside a pod the variable is unset and nothing is checked here.

Labels are limited to 63 characters of ``[A-Za-z0-9_.-]``; the provider makes any other
value label-safe (``make_safe_label_value``), and this module compares against the same
transformation, re-implemented because the environment's image need not have the provider.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from isolation.errors import ConfigurationError, EnvelopeRejected, RejectReason
from isolation.transport import Subject

IDENTITY_DIR_VAR = "ISOLATION_POD_IDENTITY_DIR"
MAX_LABEL_LEN = 63
_UNSAFE = re.compile(r"^[^a-z0-9A-Z]*|[^a-zA-Z0-9_\-\.]|[^a-z0-9A-Z]*$")
_MAX_LABEL_FILE = 1024


def safe_label_value(value: str) -> str:
    """The label KubernetesPodOperator makes of ``value`` (its ``make_safe_label_value``)."""
    safe = _UNSAFE.sub("", value)
    if len(safe) > MAX_LABEL_LEN or value != safe:
        digest = hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()[:9]
        safe = safe[: MAX_LABEL_LEN - len(digest) - 1] + "-" + digest
    return safe


def expected_labels(subject: Subject) -> dict[str, str]:
    """The pod labels of the task instance ``subject`` (``map_index`` is unset when not mapped)."""
    dag_id, task_id, run_id, map_index, try_number = subject.as_list()
    return {
        "dag_id": safe_label_value(str(dag_id)),
        "task_id": safe_label_value(str(task_id)),
        "run_id": safe_label_value(str(run_id)),
        "map_index": safe_label_value(str(map_index)) if int(map_index) >= 0 else "",
        "try_number": safe_label_value(str(try_number)),
    }


def check_pod_identity(subject: Subject, environ: Mapping[str, str] | None = None) -> None:
    """Refuse the envelope unless its subject is this pod's task instance (no-op outside a pod)."""
    env = os.environ if environ is None else environ
    directory = env.get(IDENTITY_DIR_VAR)
    if not directory:
        return
    for label, want in expected_labels(subject).items():
        have = _read_label(Path(directory), label)
        if have != want:
            raise EnvelopeRejected(
                RejectReason.WRONG_SUBJECT, f"the envelope is not for this pod's task (its {label} label differs)"
            )


def _read_label(directory: Path, label: str) -> str:
    path = directory / label
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_LABEL_FILE)
    except FileNotFoundError:
        if label == "map_index":  # a downward API runtime may write no file for an absent label
            return ""
        raise ConfigurationError(
            f"the pod's identity has no {label} label ({path} does not exist)",
            hint="run the pod through the isolation Kubernetes backend, which mounts the pod's labels there",
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the pod's {label} label at {path}: {exc.strerror}") from None
    return data.decode("utf-8", "replace").strip()
