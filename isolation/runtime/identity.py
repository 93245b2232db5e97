"""Identity binding in a pod: the envelope must be meant for the task this pod runs.

KubernetesPodOperator labels every pod with its task instance (``dag_id``, ``task_id``,
``run_id``, ``map_index``, ``try_number``); the Kubernetes backend hands those labels to
the container through the downward API as environment variables (``ISOLATION_POD_DAG_ID``
...; a label that is not set reads as empty), and ``ISOLATION_POD_IDENTITY=labels`` says
they are there. (Environment variables, not a downward API volume: podman's ``kube play``
supports only the former, and the test harness runs the same manifest.) A pod that was
given another task's envelope (a Secret mounted into the wrong pod, a replayed one) refuses
it with ``wrong-subject`` before the operator is built. Outside a pod nothing is checked
here.

Labels are limited to 63 characters of ``[A-Za-z0-9_.-]``; the provider makes any other
value label-safe (``make_safe_label_value``), and this module compares against the same
transformation, re-implemented because the environment's image need not have the provider.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping

from isolation.errors import ConfigurationError, EnvelopeRejected, RejectReason
from isolation.transport import Subject

IDENTITY_VAR = "ISOLATION_POD_IDENTITY"
LABEL_VARS = {
    "dag_id": "ISOLATION_POD_DAG_ID",
    "task_id": "ISOLATION_POD_TASK_ID",
    "run_id": "ISOLATION_POD_RUN_ID",
    "map_index": "ISOLATION_POD_MAP_INDEX",
    "try_number": "ISOLATION_POD_TRY_NUMBER",
}
MAX_LABEL_LEN = 63
_UNSAFE = re.compile(r"^[^a-z0-9A-Z]*|[^a-zA-Z0-9_\-\.]|[^a-z0-9A-Z]*$")


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
    if env.get(IDENTITY_VAR) != "labels":
        return
    for label, want in expected_labels(subject).items():
        have = env.get(LABEL_VARS[label])
        if have is None:
            raise ConfigurationError(
                f"the pod's identity has no {label} label (${LABEL_VARS[label]} is not set)",
                hint="run the pod through the isolation Kubernetes backend, which passes the pod's labels",
            )
        if have != want:
            raise EnvelopeRejected(
                RejectReason.WRONG_SUBJECT, f"the envelope is not for this pod's task (its {label} label differs)"
            )
