"""The rotation drill: rotate both keysets while envelopes are opened continuously.

``isolationctl keys rotate --wait`` walks the host signer keyset and an environment's
recipient keyset through add, distribute, promote, one overlap window and revoke, both at
once. Meanwhile every envelope is sealed with the keys the host keyring holds at that
instant, exactly as the operator seals, and opened two ways:

- by the real runtime in the real local environment (Airflow 2.11, Python 3.12, in the
  sandbox), running a whole task: three loops. A task costs about 2.3 s of wall time on a
  2-core machine, so these reach about 0.8 tasks per second there, not one;
- by the runtime's own opening code (``EnvironmentKeys.load`` of the environment's keys
  directory, strict, then ``open_envelope``) in this process: more than one per second,
  reading the files the rotation rewrites while it rewrites them.

No open of either kind may fail; afterwards an envelope sealed with either revoked key is
refused by the real runtime with ``revoked-key``.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cli import SCRIPT, Sandbox
from _envs import ROOT

from isolation.backends.local import LocalBackend
from isolation.environments import build_local
from isolation.environments.spec import EnvironmentSpec
from isolation.errors import IsolationError
from isolation.keyring import EnvironmentKeys, HostKeyring
from isolation.transport import open_envelope, seal_envelope
from isolation.transport.keyset import Keyset
from isolation.transport.payload import OperatorSpec, Payload, RuntimeOptions, TaskContext

pytestmark = [pytest.mark.envs, pytest.mark.slow]

ENVIRONMENT = "drill"
# The shortest window sealing allows for LIFETIME: lifetime + 60 s of clock skew must fit.
LIFETIME = 3
OVERLAP = 66
OPENERS = 3


@dataclass(frozen=True)
class Opened:
    at: float
    seconds: float
    signer_kid: str
    recipient_kid: str
    exit_code: int
    tail: tuple[str, ...]


def _payload(result_path: str, n: int) -> Payload:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    context = TaskContext(
        dag_id="rotation_drill",
        task_id="open",
        run_id=f"drill__{n}",
        logical_date=now,
        data_interval_start=now,
        data_interval_end=now,
        start_date=now,
        run_type="manual",
    )
    return Payload(
        operator=OperatorSpec(import_path="airflow.operators.empty.EmptyOperator"),
        context=context,
        options=RuntimeOptions(result_path=result_path),
    )


def _open_once(backend: LocalBackend, keyring: Path, n: int, keys: tuple[Keyset, Keyset] | None = None) -> Opened:
    ring = HostKeyring.open(keyring)
    # What the operator does for every task: read the keyring as it is now.
    signer, recipient = keys or (ring.signer(), ring.recipient(ENVIRONMENT))
    lines: list[str] = []
    started = time.monotonic()

    def seal(result_path: str) -> str:
        return seal_envelope(_payload(result_path, n), signer=signer, recipient=recipient, lifetime=LIFETIME)

    outcome = backend.run(ENVIRONMENT, seal, lines.append)
    return Opened(
        time.time(),
        time.monotonic() - started,
        signer.primary().kid,
        recipient.primary().kid,
        outcome.exit_code,
        tuple(lines[-5:]),
    )


@pytest.fixture(scope="module")
def drill(tmp_path_factory) -> tuple[Sandbox, LocalBackend]:
    # Console scripts only: the rotations and the opens run side by side, in processes of their own.
    cli = Sandbox(tmp_path_factory.mktemp("drill"), real=True)
    folder = cli.project / "environments" / ENVIRONMENT
    folder.mkdir(parents=True)
    spec = EnvironmentSpec(ENVIRONMENT, folder, "3.12", ("apache-airflow==2.11.2",))
    build_local(spec, keyring=HostKeyring.open(cli.keyring), home=cli.envs, project_source=ROOT)
    return cli, LocalBackend(cli.envs)


def test_rotating_both_keysets_never_fails_an_open_and_revoked_keys_are_refused(drill):
    cli, backend = drill
    cli.ok("keys", "overlap", str(OVERLAP), "--signer")
    cli.ok("keys", "overlap", str(OVERLAP), "-e", ENVIRONMENT)
    ring = HostKeyring.open(cli.keyring)
    # The keys as they are before the rotation: sealing with them afterwards must be refused.
    old_keys = (ring.signer(), ring.recipient(ENVIRONMENT))
    warm = _open_once(backend, cli.keyring, 0)
    assert warm.exit_code == 0, warm

    opened: list[Opened] = []
    read: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def opener(first: int) -> None:
        n = first
        while not stop.is_set():
            opened.append(_open_once(backend, cli.keyring, n))
            n += OPENERS

    def reader() -> None:
        keys_dir = cli.envs / ENVIRONMENT / "keys"
        n = 100_000
        while not stop.is_set():
            n += 1
            try:
                ring = HostKeyring.open(cli.keyring)
                text = seal_envelope(
                    _payload("/dev/null", n),
                    signer=ring.signer(),
                    recipient=ring.recipient(ENVIRONMENT),
                    lifetime=LIFETIME,
                )
                keys = EnvironmentKeys.load(keys_dir)
                open_envelope(text, signers=keys.signers, recipient=keys.recipient)
                read.append((time.time(), None))
            except IsolationError as exc:
                read.append((time.time(), exc.diagnostics()))
            time.sleep(0.1)

    threads = [threading.Thread(target=opener, args=(i + 1,), daemon=True) for i in range(OPENERS)]
    threads.append(threading.Thread(target=reader, daemon=True))
    started = time.time()
    for thread in threads:
        thread.start()
    rotations = [
        subprocess.Popen(
            [str(SCRIPT), "keys", "rotate", *selector, "--wait"],
            cwd=cli.project,
            env=cli.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for selector in (["--signer"], ["-e", ENVIRONMENT])
    ]
    try:
        outputs = [rotation.communicate(timeout=OVERLAP * 4)[0] for rotation in rotations]
    finally:
        time.sleep(2)  # a few opens with the rotated keys only
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    elapsed = time.time() - started
    for rotation, output in zip(rotations, outputs, strict=True):
        assert rotation.returncode == 0, output
        assert "finished" in output, output

    failed = [o for o in opened if o.exit_code != 0]
    assert failed == [], failed
    assert [error for _, error in read if error] == []
    assert len(read) >= elapsed, f"{len(read)} opens in {elapsed:.0f} s: fewer than one per second"
    # Whole tasks in the real runtime ran all along: never more than 15 s without one.
    finished = sorted([started, *(o.at for o in opened), time.time()])
    assert max(b - a for a, b in itertools.pairwise(finished)) < 15, finished
    print(f"drill: {len(opened)} isolated tasks and {len(read)} opens in {elapsed:.0f} s")
    # Both keysets really rotated while the loops ran: envelopes went out under both key pairs.
    assert {o.signer_kid for o in opened} == {old_keys[0].primary().kid, ring.signer().primary().kid}
    assert {o.recipient_kid for o in opened} == {
        old_keys[1].primary().kid,
        ring.recipient(ENVIRONMENT).primary().kid,
    }

    # After the drill: the revoked signer key and the revoked recipient key are refused.
    new_signer, new_recipient = ring.signer(), ring.recipient(ENVIRONMENT)
    for keys in ((old_keys[0], new_recipient), (new_signer, old_keys[1])):
        refused = _open_once(backend, cli.keyring, 10_000, keys)
        assert refused.exit_code == 3, refused
        assert any("revoked-key" in line for line in refused.tail), refused

    audit = cli.ok("keys", "audit", "--json").json()
    steps = [entry["command"] for entry in audit]
    for step in ("keys rotate: add", "keys rotate: distribute", "keys rotate: promote", "keys rotate: revoke"):
        assert step in steps, steps
