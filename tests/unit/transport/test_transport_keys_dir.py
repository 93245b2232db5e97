"""The environment's keys directory is read strictly: every unsafe layout is refused.

Real files on disk, no mocks. A refusal is a ``KeysetError`` whose message names the
file and what is wrong with it, whose hint says the fix, and which carries no key
material.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from transport_support import keys

from isolation.errors import KeysetError
from isolation.keyring import EnvironmentKeys, write_keys_file
from isolation.transport import _b64
from isolation.transport.keyset import MAX_KEYSET_BYTES

ROOT = os.geteuid() == 0
OTHER_UID = 65534  # nobody


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A keys directory exactly as the host provisions it."""
    k = keys()
    return EnvironmentKeys.provision(tmp_path / "keys", k.recipient, k.signer)


@pytest.fixture(autouse=True)
def _no_descriptor_left_open() -> Iterator[None]:
    # Every refusal happens with the directory and a file open: both must be closed.
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) <= before


def refused(directory: Path, *fragments: str) -> KeysetError:
    """Load ``directory``, expect a refusal whose diagnostics contain ``fragments``."""
    with pytest.raises(KeysetError) as info:
        EnvironmentKeys.load(directory)
    text = info.value.diagnostics()
    for fragment in fragments:
        assert fragment in text, text
    assert "hint:" in text
    for key in (*keys().recipient, *keys().signer):
        assert key.private is not None
        assert _b64.encode(key.private) not in text
    return info.value


# --------------------------------------------------------------------------- what passes


def test_a_provisioned_directory_loads_and_has_the_modes_the_checks_accept(keys_dir: Path) -> None:
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys_dir / "recipient.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys_dir / "signers.json").stat().st_mode) == 0o644
    loaded = EnvironmentKeys.load(keys_dir)
    assert loaded.recipient == keys().recipient
    assert loaded.signers == (keys().trusted,)


def test_provisioning_again_over_an_existing_directory_still_loads(keys_dir: Path) -> None:
    k = keys()
    EnvironmentKeys.provision(keys_dir, k.recipient, k.signer)
    assert EnvironmentKeys.load(keys_dir).recipient == k.recipient


def test_a_runtime_reading_while_the_keys_are_rewritten_never_sees_a_temporary_file(keys_dir: Path) -> None:
    # Rotation rewrites signers.json and recipient.json while tasks start: every read in
    # between must load (the old or the new file), never meet the writer's temporary name.
    import threading

    k = keys()
    stop = threading.Event()
    errors: list[KeysetError] = []

    def rewrite() -> None:
        while not stop.is_set():
            write_keys_file(keys_dir, "signers.json", k.signer.public())
            write_keys_file(keys_dir, "recipient.json", k.recipient)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            try:
                EnvironmentKeys.load(keys_dir)
            except KeysetError as exc:
                errors.append(exc)
    finally:
        stop.set()
        writer.join()
    assert errors == []
    assert sorted(os.listdir(keys_dir)) == ["recipient.json", "signers.json"]


@pytest.mark.parametrize(("directory", "recipient", "signers"), [(0o755, 0o400, 0o444), (0o500, 0o600, 0o600)])
def test_modes_without_group_or_other_access_to_what_matters_load(
    keys_dir: Path, directory: int, recipient: int, signers: int
) -> None:
    os.chmod(keys_dir / "recipient.json", recipient)
    os.chmod(keys_dir / "signers.json", signers)
    os.chmod(keys_dir, directory)
    try:
        assert EnvironmentKeys.load(keys_dir).recipient == keys().recipient
    finally:
        os.chmod(keys_dir, 0o700)


@pytest.mark.parametrize("name", ["signers-other-host.json", "signers.2025_01.json", "signersX.json"])
def test_every_name_of_the_signers_pattern_is_a_signer_file(keys_dir: Path, name: str) -> None:
    keys().untrusted.public().save(keys_dir / name)
    assert len(EnvironmentKeys.load(keys_dir).signers) == 2


def test_a_parent_directory_may_be_a_symlink(tmp_path: Path, keys_dir: Path) -> None:
    # Only the keys directory itself must be real: /var/run is a symlink to /run on Debian.
    (tmp_path / "run").symlink_to(tmp_path)
    assert EnvironmentKeys.load(tmp_path / "run" / "keys").recipient == keys().recipient


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o610, 0o601])
def test_a_private_keyset_accessible_to_group_or_others_is_refused(keys_dir: Path, mode: int) -> None:
    os.chmod(keys_dir / "recipient.json", mode)
    error = refused(keys_dir, str(keys_dir / "recipient.json"), f"mode {mode:04o}", "private keys")
    assert f"chmod 0600 {keys_dir / 'recipient.json'}" in error.hint


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777, 0o720, 0o702])
def test_a_keys_directory_writable_by_group_or_others_is_refused(keys_dir: Path, mode: int) -> None:
    os.chmod(keys_dir, mode)
    error = refused(keys_dir, f"keys directory {keys_dir} is writable by group or others", f"mode {mode:04o}")
    assert error.hint == f"chmod go-w {keys_dir}"


@pytest.mark.parametrize("name", ["signers.json", "signers-other.json"])
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o622])
def test_a_signer_file_writable_by_group_or_others_is_refused(keys_dir: Path, name: str, mode: int) -> None:
    if name != "signers.json":
        keys().untrusted.public().save(keys_dir / name)
    os.chmod(keys_dir / name, mode)
    error = refused(keys_dir, f"signer keyset {keys_dir / name} is writable by group or others", f"mode {mode:04o}")
    assert error.hint == f"chmod go-w {keys_dir / name}"


# --------------------------------------------------------------------------- symlinks


def test_a_symlinked_recipient_keyset_is_refused(tmp_path: Path, keys_dir: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (keys_dir / "recipient.json").rename(elsewhere / "recipient.json")
    (keys_dir / "recipient.json").symlink_to(elsewhere / "recipient.json")
    refused(keys_dir, f"{keys_dir / 'recipient.json'} is a symbolic link")


def test_a_symlinked_signer_file_is_refused(tmp_path: Path, keys_dir: Path) -> None:
    keys().untrusted.public().save(tmp_path / "planted.json")
    (keys_dir / "signers-planted.json").symlink_to(tmp_path / "planted.json")
    refused(keys_dir, f"{keys_dir / 'signers-planted.json'} is a symbolic link")


def test_a_dangling_symlink_is_refused_as_a_symlink(keys_dir: Path) -> None:
    (keys_dir / "signers-gone.json").symlink_to(keys_dir / "nowhere")
    refused(keys_dir, "signers-gone.json is a symbolic link")


def test_a_symlinked_keys_directory_is_refused(tmp_path: Path, keys_dir: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(keys_dir, target_is_directory=True)
    refused(link, f"keys directory {link} is a symbolic link")


def test_a_kubernetes_secret_volume_layout_is_refused(keys_dir: Path) -> None:
    # A Secret volume's files are symlinks into a hidden ..data directory: not readable
    # safely, so refused; a Kubernetes backend must mount plain files (items, subPath).
    data = keys_dir / "..2025_01_01_00_00_00.1"
    data.mkdir()
    for name in ("recipient.json", "signers.json"):
        (keys_dir / name).rename(data / name)
    (keys_dir / "..data").symlink_to(data.name)
    for name in ("recipient.json", "signers.json"):
        (keys_dir / name).symlink_to(Path("..data") / name)
    refused(keys_dir, "holds files the runtime does not expect", "'..data'", "'..2025_01_01_00_00_00.1'")


# --------------------------------------------------------------------------- not regular files


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", ["recipient.json", "signers.json"])
def test_a_fifo_in_place_of_a_keyset_is_refused_at_once(keys_dir: Path, name: str) -> None:
    (keys_dir / name).unlink()
    os.mkfifo(keys_dir / name, 0o600)
    refused(keys_dir, f"{keys_dir / name} is not a regular file (it is a FIFO)")


@pytest.mark.parametrize("name", ["recipient.json", "signers.json", "signers-more.json"])
def test_a_directory_in_place_of_a_keyset_is_refused(keys_dir: Path, name: str) -> None:
    (keys_dir / name).unlink(missing_ok=True)
    (keys_dir / name).mkdir(mode=0o700)
    refused(keys_dir, f"{keys_dir / name} is not a regular file (it is a directory)")


@pytest.mark.timeout(10)
def test_a_socket_in_place_of_the_recipient_keyset_is_refused(keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (keys_dir / "recipient.json").unlink()
    monkeypatch.chdir(keys_dir)  # a relative name keeps below the length limit of socket paths
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("recipient.json")
        os.chmod("recipient.json", 0o600)
        refused(keys_dir, "recipient.json is not a regular file (it is a socket)")


def test_a_device_in_place_of_the_recipient_keyset_is_refused(keys_dir: Path) -> None:
    if not ROOT:
        pytest.skip("creating a device node needs root (CI runs as root)")
    (keys_dir / "recipient.json").unlink()
    os.mknod(keys_dir / "recipient.json", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    refused(keys_dir, "recipient.json is not a regular file (it is a character device)")


def test_a_regular_file_in_place_of_the_keys_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("not a directory")
    refused(tmp_path / "keys", f"keys directory {tmp_path / 'keys'} is not a directory (it is a regular file)")


def test_a_missing_keys_directory_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "absent", f"keys directory {tmp_path / 'absent'} does not exist", "ISOLATION_KEYS_DIR")


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "evil.json",
        ".hidden",
        ".signers.json",
        ".recipient.json.1234.tmp",  # what an interrupted Keyset.save leaves behind
        "signers.json.bak",
        "Signers.json",
        "recipient.json~",
        "signers other.json",
        "signers\u00e9.json",
        "signer.json",  # the host's private signer keyset never belongs in an environment
    ],
)
def test_a_file_the_runtime_does_not_expect_is_refused_by_name(keys_dir: Path, name: str) -> None:
    (keys_dir / name).write_text("{}")
    error = refused(keys_dir, "holds files the runtime does not expect", repr(name))
    assert "only recipient.json and signers*.json" in error.hint


def test_an_unexpected_directory_is_refused_by_name(keys_dir: Path) -> None:
    (keys_dir / "subdir").mkdir()
    refused(keys_dir, "'subdir'")


def test_many_unexpected_names_are_summarised(keys_dir: Path) -> None:
    for index in range(8):
        (keys_dir / f"extra-{index}").write_text("")
    error = refused(keys_dir, "'extra-0'", "'extra-4'", "and 3 more")
    assert "extra-5" not in error.message


def test_a_directory_without_a_recipient_keyset_is_refused(keys_dir: Path) -> None:
    (keys_dir / "recipient.json").unlink()
    refused(keys_dir, f"no recipient.json in the keys directory {keys_dir}")


def test_a_directory_without_a_signer_keyset_is_refused(keys_dir: Path) -> None:
    (keys_dir / "signers.json").unlink()
    refused(keys_dir, f"no signers.json in {keys_dir}")


# --------------------------------------------------------------------------- owners


def _chown_or_skip(path: Path) -> None:
    if not ROOT:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    os.chown(path, OTHER_UID, -1, follow_symlinks=False)


@pytest.mark.parametrize("name", ["recipient.json", "signers.json"])
def test_a_keyset_owned_by_another_user_is_refused(keys_dir: Path, name: str) -> None:
    _chown_or_skip(keys_dir / name)
    error = refused(keys_dir, f"{keys_dir / name} is owned by uid {OTHER_UID}", f"(uid {os.geteuid()})")
    assert error.hint.startswith(f"chown {os.geteuid()} {keys_dir / name}")


def test_a_keys_directory_owned_by_another_user_is_refused(keys_dir: Path) -> None:
    _chown_or_skip(keys_dir)
    refused(keys_dir, f"keys directory {keys_dir} is owned by uid {OTHER_UID}")


# --------------------------------------------------------------------------- sizes and contents


@pytest.mark.parametrize("name", ["recipient.json", "signers.json"])
def test_an_oversized_keyset_is_refused_before_it_is_parsed(keys_dir: Path, name: str) -> None:
    mode = stat.S_IMODE((keys_dir / name).stat().st_mode)
    with open(keys_dir / name, "ab") as handle:
        handle.write(b" " * (MAX_KEYSET_BYTES + 1))
    os.chmod(keys_dir / name, mode)
    refused(keys_dir, f"{keys_dir / name} is larger than {MAX_KEYSET_BYTES} bytes")


def test_a_sparse_oversized_keyset_is_refused_without_reading_it(keys_dir: Path) -> None:
    with open(keys_dir / "signers.json", "r+b") as handle:
        handle.truncate(64 * MAX_KEYSET_BYTES)
    refused(keys_dir, "signers.json is larger than")


def test_a_keyset_of_the_wrong_purpose_is_refused(keys_dir: Path) -> None:
    keys().signer.save(keys_dir / "recipient.json")
    refused(keys_dir, f"{keys_dir / 'recipient.json'} is not a private recipient keyset")


def test_a_broken_keyset_is_refused_with_its_path_and_no_content(keys_dir: Path) -> None:
    private = _b64.encode(keys().recipient.primary().private or b"")
    (keys_dir / "recipient.json").write_text('{"private": "' + private + '", ')
    os.chmod(keys_dir / "recipient.json", 0o600)
    error = refused(keys_dir, f"{keys_dir / 'recipient.json'}: keyset is not valid JSON")
    assert private not in error.diagnostics()
