"""``isolationctl keys``: every command, and its refusals (in this process, see ``_cli``; a
listing, an error and Ctrl-C through the console script).

The keys directories here are provisioned exactly as a build provisions them
(``provision_keys``), without a virtualenv: key commands never need one.
"""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from _cli import Sandbox

from isolation.environments.local import provision_keys
from isolation.keyring import EnvironmentKeys, HostKeyring
from isolation.transport import _b64
from isolation.transport.keyset import Keyset, KeyStatus

ENVS = ("alpha", "beta")


@pytest.fixture
def keyed(cli: Sandbox) -> Sandbox:
    """Two provisioned environments and the host signer keyset."""
    for name in ENVS:
        provision_keys(name, cli.envs / name / "keys", HostKeyring.open(cli.keyring))
    return cli


def signer(cli: Sandbox) -> Keyset:
    return HostKeyring.open(cli.keyring).signer()


def recipient(cli: Sandbox, name: str) -> Keyset:
    return Keyset.load(cli.envs / name / "keys" / "recipient.json")


def private_strings(cli: Sandbox) -> list[str]:
    keysets = [signer(cli), *(recipient(cli, name) for name in ENVS)]
    return [_b64.encode(key.private) for keyset in keysets for key in keyset if key.private]


def statuses(keyset: Keyset) -> dict[str, str]:
    return {key.kid: key.status.value for key in keyset}


# --------------------------------------------------------------------------- list


def test_list_shows_every_key_and_no_private_material(keyed):
    listed = keyed.ok("keys", "list", "--json", real=True).json()
    kids = {row["kid"] for row in listed["keys"]}
    assert kids == {k.kid for k in signer(keyed)} | {k.kid for name in ENVS for k in recipient(keyed, name)}
    assert {row["keyset"] for row in listed["keys"]} == {"signer", "recipient:alpha", "recipient:beta"}
    assert all(row["status"] == "primary" for row in listed["keys"])
    table = keyed.ok("keys", "list", real=True)
    for output in (json.dumps(listed), table.output):
        for secret in private_strings(keyed):
            assert secret not in output


def test_list_says_where_a_signer_key_is_not_distributed_yet(keyed):
    keyed.ok("keys", "add", "--signer")
    rows = keyed.ok("keys", "list", "--signer", "--json").json()["keys"]
    pending = next(row for row in rows if row["status"] == "pending")
    assert pending["distributed"] == "0/2 envs"


# --------------------------------------------------------------------------- staged steps


def test_signer_rotation_by_hand_add_distribute_promote_revoke(keyed):
    old = signer(keyed).primary().kid
    added = keyed.ok("keys", "add", "--signer")
    new = next(k.kid for k in signer(keyed) if k.status is KeyStatus.PENDING)
    assert new in added.output
    refused = keyed.run("keys", "promote", new)
    assert refused.code == 4, refused
    assert "alpha, beta" in refused.stderr and "keys distribute --signer" in refused.stderr
    keyed.ok("keys", "distribute", "--signer")
    for name in ENVS:
        trusted = EnvironmentKeys.load(keyed.envs / name / "keys").signers[0]
        assert trusted.find(new) is not None
    keyed.ok("keys", "promote", new[:10])
    assert statuses(signer(keyed)) == {old: "retiring", new: "primary"}
    in_window = keyed.run("keys", "revoke", old)
    assert in_window.code == 4 and "overlap window" in in_window.stderr, in_window
    keyed.ok("keys", "overlap", "61", "--signer", "--force")
    # The window counts from the demotion: with a 61 s window it still holds.
    assert keyed.run("keys", "revoke", old).code == 4
    keyed.ok("keys", "revoke", old, "--force")
    assert statuses(signer(keyed))[old] == "revoked"
    # Revocations reach the local environments at once.
    for name in ENVS:
        trusted = Keyset.load(keyed.envs / name / "keys" / "signers.json")
        assert trusted.get(old).status is KeyStatus.REVOKED


def test_recipient_rotation_updates_the_environment_before_the_host(keyed):
    old = recipient(keyed, "alpha").primary().kid
    keyed.ok("keys", "add", "-e", "alpha", "--suite", "2")
    new = next(k.kid for k in recipient(keyed, "alpha") if k.status is KeyStatus.PENDING)
    host = HostKeyring.open(keyed.keyring).recipient("alpha")
    assert host.find(new) is not None and host.primary().kid == old
    keyed.ok("keys", "promote", new)
    assert recipient(keyed, "alpha").primary().kid == new
    assert HostKeyring.open(keyed.keyring).recipient("alpha").primary().kid == new
    assert recipient(keyed, "alpha").get(new).algorithm.suite == 2
    assert recipient(keyed, "beta").primary().kid != new


def test_rotate_stops_at_the_overlap_window_says_when_and_resumes(keyed):
    first = keyed.ok("keys", "rotate", "-e", "beta")
    assert "safe from" in first.stderr and "run this command again" in first.stderr
    state = keyed.ok("keys", "rotate", "-e", "beta", "--status")
    assert "next step: wait" in state.stderr
    again = keyed.ok("keys", "rotate", "-e", "beta")
    # Resuming adds no second key.
    assert len(recipient(keyed, "beta").keys) == 2
    assert "safe from" in again.stderr
    forced = keyed.ok("keys", "rotate", "-e", "beta", "--force")
    assert "finished" in forced.stderr
    assert sorted(statuses(recipient(keyed, "beta")).values()) == ["primary", "revoked"]
    assert not (keyed.keyring / "rotations" / "recipient-beta.json").exists()


def test_revoking_a_compromised_primary_with_force_replaces_it_first(keyed):
    old = recipient(keyed, "alpha").primary().kid
    refused = keyed.run("keys", "revoke", old)
    assert refused.code == 4 and "is the primary" in refused.stderr
    keyed.ok("keys", "revoke", old, "--force")
    keys = recipient(keyed, "alpha")
    assert keys.get(old).status is KeyStatus.REVOKED
    assert keys.primary().kid != old
    assert HostKeyring.open(keyed.keyring).recipient("alpha").primary().kid == keys.primary().kid


def test_remove_deletes_only_a_revoked_key(keyed):
    keyed.ok("keys", "add", "--signer")
    pending = next(k.kid for k in signer(keyed) if k.status is KeyStatus.PENDING)
    assert keyed.run("keys", "remove", pending).code == 4
    keyed.ok("keys", "revoke", pending)
    keyed.ok("keys", "remove", pending)
    assert signer(keyed).find(pending) is None


# --------------------------------------------------------------------------- export / import


def test_export_public_is_public(keyed):
    text = keyed.ok("keys", "export-public", "--signer").stdout
    exported = Keyset.from_json(text)
    assert not any(key.private for key in exported)
    assert [k.kid for k in exported] == [k.kid for k in signer(keyed)]


def test_private_exports_need_a_file_or_reveal(keyed):
    refused = keyed.run("keys", "export", "--format", "k8s-secret", "-e", "alpha")
    assert refused.code == 2 and "--output" in refused.stderr
    for secret in private_strings(keyed):
        assert secret not in refused.output


def test_k8s_secret_manifest_carries_exactly_the_environments_keys(keyed):
    target = keyed.root / "alpha-secret.json"
    keyed.ok("keys", "export", "--format", "k8s-secret", "-e", "alpha", "-o", str(target), "--namespace", "data")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    manifest = json.loads(target.read_text())
    assert manifest["kind"] == "Secret" and manifest["metadata"]["namespace"] == "data"
    files = {name: base64.b64decode(value) for name, value in manifest["data"].items()}
    assert Keyset.from_json(files["recipient.json"]) == recipient(keyed, "alpha")
    assert Keyset.from_json(files["signers.json"]) == signer(keyed).public()


def test_airflow_connection_export_is_what_the_operator_reads(keyed):
    from airflow.models.connection import Connection

    from isolation.operators.keyring_hook import _keys_from_connection

    target = keyed.root / "connection.txt"
    keyed.ok("keys", "export", "--format", "airflow-connection", "-o", str(target))
    lines = [line for line in target.read_text().splitlines() if not line.startswith("#")]
    from_uri = Connection(conn_id="isolation_default", uri=lines[0])
    document = json.loads(lines[1])
    from_json = Connection(conn_id="isolation_default", **document)
    for connection in (from_uri, from_json):
        keys_signer, keys_recipient = _keys_from_connection(connection, "isolation_default", "beta")
        assert keys_signer == signer(keyed)
        assert keys_recipient == recipient(keyed, "beta").public()


def test_import_of_a_public_recipient_keyset_updates_the_host_copy(keyed):
    outside = Keyset.generate_recipient("gamma")
    source = keyed.root / "gamma.json"
    outside.public().save(source)
    keyed.ok("keys", "import", str(source))
    assert HostKeyring.open(keyed.keyring).recipient("gamma") == outside.public()


def test_import_refuses_to_drop_existing_keys_without_force(keyed):
    other = Keyset.generate_signer()
    source = keyed.root / "other-signer.json"
    other.save(source)
    before = (keyed.keyring / "signer.json").read_bytes()
    refused = keyed.run("keys", "import", str(source))
    assert refused.code == 4 and "--force" in refused.stderr
    assert (keyed.keyring / "signer.json").read_bytes() == before
    keyed.ok("keys", "import", str(source), "--force")
    assert signer(keyed) == other


# --------------------------------------------------------------------------- audit


def test_every_key_command_is_audited_without_key_material(keyed):
    keyed.ok("keys", "add", "--signer")
    pending = next(k.kid for k in signer(keyed) if k.status is KeyStatus.PENDING)
    keyed.ok("keys", "distribute")
    keyed.ok("keys", "promote", pending)
    keyed.ok("keys", "export", "--format", "k8s-secret", "-e", "beta", "-o", str(keyed.root / "s.json"))
    entries = keyed.ok("keys", "audit", "--json").json()
    commands = [entry["command"] for entry in entries]
    assert commands[0] == "keys add" and "keys promote" in commands
    assert "keys export --format k8s-secret" in commands
    promote = next(entry for entry in entries if entry["command"] == "keys promote")
    assert pending in promote["key_ids"] and promote["user"]
    log = (keyed.keyring / "audit.log").read_text()
    assert stat.S_IMODE(os.stat(keyed.keyring / "audit.log").st_mode) == 0o600
    for secret in private_strings(keyed):
        assert secret not in log


# --------------------------------------------------------------------------- bad input


def corrupt_signer(cli: Sandbox) -> None:
    (cli.keyring / "signer.json").write_text('{"format": "isolation-keyset/v1", "keys": [')


BAD_INPUT = {
    "unknown environment": (lambda c: None, ["keys", "add", "-e", "nope"], 4, "has no keys"),
    "invalid environment name": (lambda c: None, ["keys", "add", "-e", "Bad Name"], 3, "invalid environment name"),
    "both selectors": (lambda c: None, ["keys", "list", "--signer", "-e", "alpha"], 2, "say which keyset"),
    "no selector": (lambda c: None, ["keys", "add"], 2, "say which keyset"),
    "unknown key id": (lambda c: None, ["keys", "promote", "0123456789abcdef"], 4, "no key 0123456789abcdef"),
    "not a key id": (lambda c: None, ["keys", "revoke", "xyz"], 3, "is not a key id"),
    "corrupted keyset": (corrupt_signer, ["keys", "list"], 4, "not valid JSON"),
    "retiring the only primary": (
        lambda c: None,
        ["keys", "retire", "PRIMARY"],
        4,
        "would leave nothing to sign with",
    ),
    "revoking the primary": (lambda c: None, ["keys", "revoke", "PRIMARY"], 4, "is the primary"),
    "unknown export format": (lambda c: None, ["keys", "export", "--format", "pem", "--reveal"], 2, "unknown format"),
    "import of a missing file": (lambda c: None, ["keys", "import", "missing.json"], 3, "does not exist"),
    "bad suite": (lambda c: None, ["keys", "add", "-e", "alpha", "--suite", "3"], 2, "unknown suite"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_one_clear_line_and_changes_nothing(keyed, case):
    prepare, args, code, fragment = BAD_INPUT[case]
    prepare(keyed)
    args = [signer(keyed).primary().kid if arg == "PRIMARY" else arg for arg in args]
    files = {path: path.read_bytes() for path in keyed.root.rglob("*.json") if path.is_file()}
    result = keyed.run(*args)
    assert result.code == code, result
    assert fragment in result.stderr, result
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result
    assert {path: path.read_bytes() for path in keyed.root.rglob("*.json") if path.is_file()} == files


def test_no_keys_at_all_says_how_to_create_them(cli_real):
    result = cli_real.run("keys", "list")
    assert result.code == 4 and "isolationctl init" in result.stderr, result


def test_ctrl_c_during_a_rotation_says_so_and_the_rotation_resumes(keyed):
    import signal
    import subprocess
    import time

    from _cli import SCRIPT

    keyed.ok("keys", "overlap", "61", "--signer", real=True)
    rotation = subprocess.Popen(
        [str(SCRIPT), "keys", "rotate", "--signer", "--wait"],
        cwd=keyed.project,
        env=keyed.environ(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert rotation.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = rotation.stderr.readline()
        seen.append(line)
        if "waiting" in line:
            break
    rotation.send_signal(signal.SIGINT)
    rest = rotation.stderr.read()
    assert rotation.wait(timeout=30) == 130, seen
    assert "interrupted" in rest and "Traceback" not in rest, rest
    # Nothing half-written: every keyset still loads, and the rotation picks up where it was.
    assert signer(keyed).primary().kid in {k.kid for k in signer(keyed)}
    for name in ENVS:
        EnvironmentKeys.load(keyed.envs / name / "keys")
    status = keyed.ok("keys", "rotate", "--signer", "--status", real=True)
    assert "next step: wait" in status.stderr
    assert len(signer(keyed).keys) == 2


# --------------------------------------------------------------------------- trust and its limits


def test_trusting_another_hosts_signer_needs_trust_is_listed_and_can_be_undone(keyed):
    other = Keyset.generate_signer("other-host")
    source = keyed.root / "other.json"
    other.public().save(source)
    refused = keyed.run("keys", "import", str(source))
    assert refused.code == 2 and "--trust" in refused.stderr and "any operator" in refused.stderr
    assert not list(keyed.envs.glob("*/keys/signers-other-host.json"))
    keyed.ok("keys", "import", str(source), "--trust")
    for name in ENVS:
        assert other.public() in EnvironmentKeys.load(keyed.envs / name / "keys").signers
    rows = keyed.ok("keys", "list", "--json").json()["keys"]
    trusted = [row for row in rows if row["keyset"] == "trusted:other-host"]
    assert [row["kid"] for row in trusted] == [other.primary().kid]
    assert trusted[0]["distributed"] == "trusted by 2 envs"
    keyed.ok("keys", "untrust", "other-host")
    assert not list(keyed.envs.glob("*/keys/signers-other-host.json"))
    assert keyed.run("keys", "untrust", "other-host").code == 4


def test_an_old_copy_of_the_hosts_own_signer_keyset_is_never_trusted_separately(keyed):
    # Trusted separately, it would keep a key trusted after its revocation and removal.
    source = keyed.root / "old-signers.json"
    signer(keyed).public().save(source)
    refused = keyed.run("keys", "import", str(source), "--trust")
    assert refused.code == 4 and "own signer keyset" in refused.stderr, refused
    assert not list(keyed.envs.glob("*/keys/signers-*.json"))


def test_removing_a_revoked_key_another_signers_file_still_trusts_is_refused(keyed):
    old = signer(keyed).primary().kid
    stale = signer(keyed).public()
    keyed.ok("keys", "revoke", old, "--force")
    # A stale copy dropped in by hand, under another name.
    stale.save(keyed.envs / "alpha" / "keys" / "signers-stale.json")
    refused = keyed.run("keys", "remove", old)
    assert refused.code == 4 and "alpha" in refused.stderr, refused
    assert signer(keyed).get(old).status is KeyStatus.REVOKED
    (keyed.envs / "alpha" / "keys" / "signers-stale.json").unlink()
    keyed.ok("keys", "remove", old)


def test_a_host_copy_that_differs_from_a_local_environments_own_keyset_is_refused(keyed):
    # Else the host would seal to a key the environment does not hold (or someone else does).
    foreign = Keyset.generate_recipient("alpha")
    source = keyed.root / "alpha.json"
    foreign.public().save(source)
    before = (keyed.keyring / "environments" / "alpha.json").read_bytes()
    refused = keyed.run("keys", "import", str(source), "--force")
    assert refused.code == 4 and "local here" in refused.stderr, refused
    assert (keyed.keyring / "environments" / "alpha.json").read_bytes() == before


def test_the_overlap_window_cannot_be_shrunk_to_revoke_early(keyed):
    first = keyed.ok("keys", "rotate", "--signer")
    assert "safe from" in first.stderr
    shrink = keyed.run("keys", "overlap", "61", "--signer")
    assert shrink.code == 4 and "retiring" in shrink.stderr, shrink
    assert signer(keyed).overlap_seconds == 7200
    too_short = keyed.run("keys", "overlap", "30", "-e", "alpha")
    assert too_short.code == 2 and "at least 61" in too_short.stderr
    short = keyed.ok("keys", "overlap", "120", "-e", "alpha")
    assert "fail to seal" in short.stderr  # a window the backends' lifetimes do not fit


def test_a_revoked_key_is_neither_promoted_nor_revoked_twice(keyed):
    keyed.ok("keys", "add", "--signer")
    pending = next(k.kid for k in signer(keyed) if k.status is KeyStatus.PENDING)
    keyed.ok("keys", "revoke", pending)
    promote = keyed.run("keys", "promote", pending)
    assert promote.code == 4 and "is revoked" in promote.stderr, promote
    entries = len(keyed.ok("keys", "audit", "--json").json())
    again = keyed.ok("keys", "revoke", pending)
    assert "already revoked" in again.stderr
    assert len(keyed.ok("keys", "audit", "--json").json()) == entries


def test_private_exports_are_refused_inside_a_git_work_tree_unless_ignored(keyed):
    import subprocess

    repo = keyed.root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    target = repo / "alpha-secret.json"
    refused = keyed.run("keys", "export", "--format", "k8s-secret", "-e", "alpha", "-o", str(target))
    assert refused.code == 4 and "git work tree" in refused.stderr, refused
    assert not target.exists()
    (repo / ".gitignore").write_text("*-secret.json\n")
    keyed.ok("keys", "export", "--format", "k8s-secret", "-e", "alpha", "-o", str(target))
    assert target.exists()
    # Public keys may go anywhere: they are meant to be committed.
    keyed.ok("keys", "export-public", "--signer", "-o", str(repo / "signers.json"))


def test_key_creation_by_init_and_sealing_by_hand_are_audited(cli):
    cli.ok("init", "--example", "--yes", input="")
    created = cli.ok("keys", "audit", "--json").json()
    assert {(e["command"], e["keyset"]) for e in created} == {
        ("provision: create keys", "signer"),
        ("provision: create keys", "recipient:example"),
    }
    assert all(len(e["key_ids"]) == 1 for e in created)
    cli.ok("init", "--example", "--yes", input="")  # nothing new: nothing audited
    assert len(cli.ok("keys", "audit", "--json").json()) == 2
