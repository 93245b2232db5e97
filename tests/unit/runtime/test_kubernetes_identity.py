"""The runtime's side of the Kubernetes backend: identity binding and the keys Secret volume."""

from __future__ import annotations

import pytest
from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

from isolation.errors import ConfigurationError, EnvelopeRejected, KeysetError
from isolation.keyring import EnvironmentKeys
from isolation.runtime import identity
from isolation.transport import Keyset, Subject

SUBJECT = Subject("etl.daily", "load-rows", "scheduled__2026-01-01T00:00:00+00:00", -1, 2)


def pod_env(subject: Subject, **override: str) -> dict[str, str]:
    labels = identity.expected_labels(subject)
    env = {identity.LABEL_VARS[k]: v for k, v in labels.items()}
    env[identity.IDENTITY_VAR] = "labels"
    env.update(override)
    return env


@pytest.mark.parametrize(
    "value",
    ["kube", "scheduled__2026-01-01T00:00:00+00:00", "-leading", "a" * 80, "ünïcode", "ok.name_1", "3"],
)
def test_label_values_are_the_providers(value):
    assert identity.safe_label_value(value) == make_safe_label_value(value)


def test_the_pods_own_task_is_accepted_and_unmapped_tasks_have_no_map_index():
    env = pod_env(SUBJECT)
    assert env["ISOLATION_POD_MAP_INDEX"] == ""
    identity.check_pod_identity(SUBJECT, env)
    mapped = Subject("d", "t", "r", 4, 1)
    identity.check_pod_identity(mapped, pod_env(mapped))


@pytest.mark.parametrize("field", ["ISOLATION_POD_TASK_ID", "ISOLATION_POD_MAP_INDEX", "ISOLATION_POD_TRY_NUMBER"])
def test_another_tasks_envelope_is_refused(field):
    with pytest.raises(EnvelopeRejected) as info:
        identity.check_pod_identity(SUBJECT, pod_env(SUBJECT, **{field: "7"}))
    assert info.value.reason.value == "wrong-subject"


def test_outside_a_pod_nothing_is_checked_and_a_missing_label_is_a_setup_error():
    identity.check_pod_identity(SUBJECT, {})
    env = pod_env(SUBJECT)
    del env["ISOLATION_POD_RUN_ID"]
    with pytest.raises(ConfigurationError, match="no run_id label"):
        identity.check_pod_identity(SUBJECT, env)


def test_a_keys_secret_volume_that_is_not_read_only_is_refused(tmp_path):
    signer, recipient = Keyset.generate_signer(), Keyset.generate_recipient("legacy")
    keys = EnvironmentKeys.provision(tmp_path / "keys", recipient, signer)
    assert EnvironmentKeys.load(keys).recipient.name == "legacy"
    with pytest.raises(KeysetError, match="not mounted read-only"):
        EnvironmentKeys.load(keys, secret_volume=True)


def test_a_secret_volume_data_link_leading_outside_is_refused(tmp_path):
    volume = tmp_path / "keys"
    volume.mkdir(mode=0o755)
    (volume / "..data").symlink_to("/etc")
    with pytest.raises(KeysetError, match="links outside the Secret volume"):
        EnvironmentKeys.load(volume, secret_volume=True)
