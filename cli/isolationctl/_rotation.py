"""``keys rotate``: the staged rotation as one resumable sequence.

add → distribute → promote (the old primary becomes ``retiring``) → wait one overlap
window → revoke the old key → distribute. The state file
(``<keyring>/rotations/<keyset>.json``) records only which key is replaced by which;
the step is read from the keysets themselves every time, so a rotation resumes
correctly after Ctrl-C, a reboot or a step someone did by hand.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from isolation.transport.keyset import Keyset, KeyStatus
from isolationctl import _audit
from isolationctl._files import write_atomic
from isolationctl._keystore import KeysetRef, KeyStore
from isolationctl._ui import ExitCode, fail


class Step(str, enum.Enum):
    DISTRIBUTE = "distribute"  # the new key exists; not every copy has it yet
    PROMOTE = "promote"  # every copy has it; the host may start using it
    WAIT = "wait"  # promoted; the old key may still be in flight
    REVOKE = "revoke"  # the overlap window has passed
    DONE = "done"


@dataclass(frozen=True)
class Rotation:
    keyset: str
    old: str
    new: str
    started_at: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


@dataclass(frozen=True)
class Position:
    step: Step
    # Unix time when the next step becomes safe (WAIT only).
    ready_at: int = 0
    # Local environments that still lack the new signer key (DISTRIBUTE only).
    lacking: tuple[str, ...] = ()


def state_path(store: KeyStore, ref: KeysetRef) -> Path:
    name = "signer" if ref.environment is None else f"recipient-{ref.environment}"
    return store.keyring.path / "rotations" / f"{name}.json"


def load_state(store: KeyStore, ref: KeysetRef) -> Rotation | None:
    path = state_path(store, ref)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Rotation(str(data["keyset"]), str(data["old"]), str(data["new"]), int(data["started_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        fail(
            f"the rotation state {path} is damaged",
            hint=f"check `isolationctl keys list`, then delete {path} and run `isolationctl keys rotate` again",
            code=ExitCode.KEYS,
        )


def position(store: KeyStore, ref: KeysetRef, rotation: Rotation, keyset: Keyset) -> Position:
    """Where the rotation stands, read from the keysets, not from a recorded step."""
    old, new = keyset.find(rotation.old), keyset.find(rotation.new)
    if (old is not None and old.status is KeyStatus.REVOKED) or (old is None and new is not None):
        return Position(Step.DONE)
    if new is None or old is None or new.status in (KeyStatus.REVOKED,) or old.status is KeyStatus.PENDING:
        fail(
            f"the rotation of {ref} ({rotation.old[:8]} → {rotation.new[:8]}) no longer matches the keyset",
            hint=f"check `isolationctl keys list`, then delete {state_path(store, ref)} to start over",
            code=ExitCode.KEYS,
        )
    if new.status is KeyStatus.PRIMARY:
        ready_at = old.status_changed_at + keyset.overlap_seconds + 1
        return Position(Step.REVOKE if time.time() >= ready_at else Step.WAIT, ready_at=ready_at)
    if ref.environment is None:
        lacking = tuple(store.lacking_signer_key(rotation.new))
        return Position(Step.DISTRIBUTE, lacking=lacking) if lacking else Position(Step.PROMOTE)
    return Position(Step.PROMOTE if store.host_copy_current(ref.environment) else Step.DISTRIBUTE)


Say = Callable[[str], None]


def start(store: KeyStore, ref: KeysetRef, say: Say) -> Rotation:
    keyset = store.load(ref)
    old = keyset.primary()
    keyset, new = keyset.add()
    store.save(ref, keyset)
    rotation = Rotation(ref.label, old.kid, new.kid, int(time.time()))
    write_atomic(state_path(store, ref), rotation.to_json(), mode=0o600)
    _audit.record(store.keyring.path, "keys rotate: add", ref.label, [new.kid])
    say(f"added pending key {new.kid} to {ref}; it replaces {old.kid}")
    return rotation


def advance(store: KeyStore, ref: KeysetRef, rotation: Rotation, *, force: bool, say: Say) -> Position:
    """Take every step that is safe now; return where the rotation stopped."""
    while True:
        keyset = store.load(ref)
        where = position(store, ref, rotation, keyset)
        if where.step is Step.DISTRIBUTE:
            _distribute(store, ref, keyset, say)
            _audit.record(store.keyring.path, "keys rotate: distribute", ref.label, [rotation.new])
            after = position(store, ref, rotation, store.load(ref))
            if after.step is Step.DISTRIBUTE:
                if not force:
                    return after
                _promote(store, ref, rotation, store.load(ref), say)
            continue
        if where.step is Step.PROMOTE:
            _promote(store, ref, rotation, keyset, say)
            continue
        if where.step is Step.WAIT and not force:
            return where
        if where.step in (Step.WAIT, Step.REVOKE):
            keyset = keyset.revoke(rotation.old, force=force)
            store.save(ref, keyset)
            if ref.environment is None:
                store.distribute_signer(keyset)
            _audit.record(
                store.keyring.path,
                "keys rotate: revoke",
                ref.label,
                [rotation.old],
                "forced" if force and where.step is Step.WAIT else "",
            )
            say(f"revoked {rotation.old}: envelopes naming it are refused from now on")
            continue
        state_path(store, ref).unlink(missing_ok=True)
        return where


def _distribute(store: KeyStore, ref: KeysetRef, keyset: Keyset, say: Say) -> None:
    if ref.environment is None:
        names = store.distribute_signer(keyset)
        say(f"distributed the public signer keyset to {len(names)} local environment(s): {', '.join(names) or '-'}")
    else:
        store.save(ref, keyset)
        say(f"updated the host's copy of {ref}")


def _promote(store: KeyStore, ref: KeysetRef, rotation: Rotation, keyset: Keyset, say: Say) -> None:
    keyset = keyset.promote(rotation.new)
    store.save(ref, keyset)
    if ref.environment is None:
        store.distribute_signer(keyset)
    _audit.record(store.keyring.path, "keys rotate: promote", ref.label, [rotation.new, rotation.old])
    say(
        f"promoted {rotation.new}: it {'signs' if ref.environment is None else 'is sealed to'} from now on; "
        f"{rotation.old} is retiring (still accepted for {keyset.overlap_seconds} s)"
    )
