"""Keyrings on disk: the host's keyring and an environment's keys directory.

The refusals of an unsafe keys directory are in ``test_transport_keys_dir.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transport_support import NOW, keys, rejected

from isolation.errors import ConfigurationError, KeysetError, RejectReason
from isolation.keyring import EnvironmentKeys, HostKeyring, check_environment_name
from isolation.transport import Keyset, Subject, envelope
from isolation.transport import keyset as keyset_module

SUBJECT = Subject("dag", "task", "run")


def _keys_dir(tmp_path: Path) -> Path:
    k = keys()
    return EnvironmentKeys.provision(tmp_path / "keys", k.recipient, k.signer)


def _seal() -> bytes:
    k = keys()
    return envelope.seal_bytes(b"x", signer=k.signer, recipient=k.recipient.public(), subject=SUBJECT, now=NOW)


def _revoked(signer: Keyset) -> Keyset:
    rotated, new = signer.add(now=NOW)
    return rotated.promote(new.kid, now=NOW).revoke(signer.primary().kid, now=NOW, force=True).public()


# --------------------------------------------------------------------------- several signer files


def test_a_revocation_in_any_signers_file_wins(tmp_path: Path) -> None:
    # Regression: "signers-old.json" sorts before "signers.json"; its stale copy listing
    # the key as primary used to decide, and the revocation was ignored.
    directory = _keys_dir(tmp_path)
    k = keys()
    k.trusted.save(directory / "signers-old.json")
    _revoked(k.signer).save(directory / "signers.json")
    loaded = EnvironmentKeys.load(directory)
    assert loaded.signers[0].primary().kid == k.signer.primary().kid
    error = rejected(
        lambda: envelope.open_bytes(_seal(), signers=loaded.signers, recipient=loaded.recipient, now=NOW),
        RejectReason.REVOKED_KEY,
    )
    assert error.key_id == k.signer.primary().kid


def test_several_hosts_each_in_their_own_file(tmp_path: Path) -> None:
    directory = _keys_dir(tmp_path)
    keys().untrusted.public().save(directory / "signers-other-host.json")
    loaded = EnvironmentKeys.load(directory)
    assert len(loaded.signers) == 2
    opened = envelope.open_bytes(_seal(), signers=loaded.signers, recipient=loaded.recipient, now=NOW)
    assert opened.plaintext == b"x"


def test_one_key_id_with_two_public_keys_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _keys_dir(tmp_path)
    kid = keys().signer.primary().kid
    # A key id collision (or a tampered file) is the only way to get there: fake one.
    real = keyset_module.key_id
    monkeypatch.setattr(
        keyset_module,
        "key_id",
        lambda algorithm, public: kid if algorithm.value == "ed25519" else real(algorithm, public),
    )
    Keyset.generate_signer(now=NOW).public().save(directory / "signers-z.json")
    with pytest.raises(KeysetError, match=f"signer key {kid} has different public keys") as info:
        EnvironmentKeys.load(directory)
    assert "signers.json" in str(info.value)
    assert "signers-z.json" in str(info.value)
    assert "hint:" in info.value.diagnostics()


def test_the_same_key_in_two_files_is_fine(tmp_path: Path) -> None:
    directory = _keys_dir(tmp_path)
    keys().trusted.save(directory / "signers-copy.json")
    assert len(EnvironmentKeys.load(directory).signers) == 2


# --------------------------------------------------------------------------- host keyring


@pytest.mark.parametrize("name", ["../signer", "..", "a/b", "/etc/passwd", "Env", "env\n", "", "é", "a" * 64, "-a"])
def test_recipient_refuses_names_that_are_not_environment_names(tmp_path: Path, name: str) -> None:
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    # A file the traversal would reach, had the name been used to build a path.
    keys().recipient.public().save(tmp_path / "keyring" / "environments" / "..json")
    with pytest.raises(ConfigurationError, match="invalid environment name") as info:
        ring.recipient(name)
    assert "lowercase" in info.value.diagnostics()


def test_recipient_still_finds_valid_names(tmp_path: Path) -> None:
    ring = HostKeyring.open(tmp_path / "keyring")
    ring.init()
    ring.save_recipient(keys().recipient)
    assert ring.recipient("env-a") == keys().recipient.public()
    with pytest.raises(KeysetError, match="no public keys for environment 'env-b'"):
        ring.recipient("env-b")


def test_environment_name_rule_is_the_one_of_environments_and_keysets() -> None:
    from isolation.environments.spec import NAME

    assert check_environment_name("legacy-2.py_3") == "legacy-2.py_3"
    assert keyset_module._NAME.pattern == NAME.pattern
    for name in ("a", "a" * 63, "a.b_c-d", "0"):
        assert check_environment_name(name) == name
        assert NAME.fullmatch(name)
