"""An image whose runtime is older than the host: one clear failure, with the fix, and no Secret left.

The Kubernetes API server is stood in for by ``FakeKubernetesApi`` (tests/unit/host/kubernetes_api.py);
its "kubelet" runs the real runtime of this checkout. To make that runtime the older one, the
host here writes the prefix of a newer envelope version than the runtime reads.
"""

from __future__ import annotations

import pytest
from kubernetes_support import bash_task, stand_in

from isolation.errors import IsolatedTaskRejected
from isolation.transport import envelope


@pytest.fixture
def kube(tmp_path, monkeypatch):
    yield from stand_in(tmp_path, monkeypatch)


def test_a_runtime_older_than_the_hosts_envelope_says_to_rebuild_the_image(kube, monkeypatch):
    newer = envelope.VERSION + 1
    monkeypatch.setattr(envelope, "PREFIX", envelope.MAGIC + bytes([newer]))
    task, context = bash_task("echo never")
    with pytest.raises(IsolatedTaskRejected, match=f"envelope version {newer} is not supported") as info:
        task.execute(context)
    assert "older than this host's" in info.value.hint
    assert "isolationctl deploy --kubernetes -e legacy --registry" in info.value.hint
    # The pod ran (its runtime refused the envelope) and nothing of the task is left.
    assert len(kube.created_pods) == 1
    assert kube.secrets_left() == ["isolation-keys-legacy"]
