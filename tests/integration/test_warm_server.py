"""Warm environments against the real ``modern`` environment, real bubblewrap, real forks.

Each test gets its own environments home holding a copy of ``modern``'s marker (its
virtualenv and keys are the cached ones), so it gets a warm server of its own and can
rebuild, break or kill it without touching any other test. Tasks are sealed and run
through ``LocalBackend`` in this process, as the Airflow task process would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from isolation.backends import LocalBackend, _warm
from isolation.backends.base import RunOutcome
from isolation.environments import LocalEnvironment
from isolation.errors import IsolatedTaskFailed
from tests._envs import MODERN, get_env
from tests.integration._runtime import BASH_V3, make_payload, seal

pytestmark = [pytest.mark.envs, pytest.mark.slow]

SECRET_A = "warm-secret-of-task-a-5d1c9e"
_PIDNS = re.compile(r"pidns=pid:\[(\d+)\]")


@pytest.fixture(scope="module")
def modern() -> LocalEnvironment:
    return get_env(MODERN)


@pytest.fixture
def backend(modern: LocalEnvironment, tmp_path: Path):
    """A LocalBackend over an environments home of this test's own, with a warm ``modern``."""
    root = tmp_path / "envs" / MODERN
    root.mkdir(parents=True)
    (root / "environment.json").write_bytes((modern.root / "environment.json").read_bytes())
    (root / "keys").symlink_to(modern.keys_dir)
    made = LocalBackend(tmp_path / "envs", warm=True, kill_grace=2.0)
    yield made
    _warm.stop(made.locate(MODERN))


def _run(backend: LocalBackend, command: str, **payload: Any) -> tuple[RunOutcome, list[str]]:
    env = backend.locate(MODERN)
    base = make_payload(BASH_V3, {"bash_command": command}, **payload)
    logs: list[str] = []

    def sealer(result_path: str) -> str:
        options = base.options.model_copy(update={"result_path": result_path})
        return seal(env, base.model_copy(update={"options": options}))

    return backend.run(MODERN, sealer, logs.append), logs


def _output(logs: list[str]) -> str:
    return "\n".join(logs)


def _server_pid(backend: LocalBackend) -> int:
    state = _warm.read_state(backend.locate(MODERN).root / _warm.DIRECTORY)
    assert state is not None
    return int(state["server_pid"])


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable region of ``pid``'s memory contains ``needle`` (this test runs as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def _namespace_pids(pidns: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == pidns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_tasks_fork_from_one_server_and_leave_it_running(backend: LocalBackend) -> None:
    first, logs = _run(backend, "echo one")
    assert first.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    server = _server_pid(backend)
    second, logs = _run(backend, "echo two")
    assert second.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    assert _server_pid(backend) == server
    status = _warm.status(backend.locate(MODERN))
    assert status is not None and status["served"] == 2 and status["running"] == 0
    assert status["current"] is True and status["rss"] > 0


def _running(backend: LocalBackend) -> int:
    status = _warm.status(backend.locate(MODERN))
    assert status is not None
    return int(status["running"])


def test_a_child_asked_for_before_the_host_resolves_the_task_runs_it(backend: LocalBackend) -> None:
    # What IsolatedOperator does: prepare() right after check(), run() once the state is sealed.
    bound = backend.bind(None, "early")
    _run(bound, "true")  # the server is up
    bound.prepare(MODERN)
    outcome, logs = _run(bound, "echo early")
    assert outcome.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    assert outcome.result is not None and b"early" in outcome.result
    # One child per task: run() took the one prepare() asked for, it asked for no other.
    status = _warm.status(bound.locate(MODERN))
    assert status is not None and status["served"] == 2 and status["running"] == 0


def test_a_child_no_run_takes_is_given_up_and_the_server_serves_on(backend: LocalBackend) -> None:
    # The host fails between prepare() and run() (a missing connection, say).
    bound = backend.bind(None, "given-up")
    _run(bound, "true")
    server = _server_pid(bound)
    bound.prepare(MODERN)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(bound) == 0:
        time.sleep(0.02)
    assert _running(bound) == 1
    bound.release()
    # release() returns once the server has said the child ended: nothing to wait for.
    assert _running(bound) == 0, "the child asked for early was left running"
    import psutil

    assert psutil.Process(server).children(recursive=True) == []
    outcome, logs = _run(bound, "echo next")
    assert outcome.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    assert _server_pid(bound) == server


def test_a_task_that_fails_before_it_runs_starts_no_server(backend: LocalBackend) -> None:
    # prepare() uses a server already running; only run() starts one.
    bound = backend.bind(None, "failed-early")
    bound.prepare(MODERN)
    bound.release()
    assert _warm.read_state(bound.locate(MODERN).root / _warm.DIRECTORY) is None
    assert _warm.status(bound.locate(MODERN)) is None


def test_an_early_request_that_fails_runs_the_task_cold_with_one_line(backend: LocalBackend, tmp_path: Path) -> None:
    _plant(backend, "other-uid", tmp_path)
    bound = backend.bind(None, "refused-early")
    bound.prepare(MODERN)
    outcome, logs = _run(bound, "echo cold")
    text = _output(logs)
    assert outcome.exit_code == 0, text
    assert [line for line in logs if "warm server not used" in line] == [
        "isolation: warm server not used: "
        f"{backend.locate(MODERN).root / _warm.DIRECTORY / _warm.SOCKET} belongs to uid 65534, not this user: "
        "refused; starting the task cold"
    ]
    assert "; warm start" not in text


def test_two_concurrent_tasks_cannot_see_each_other(backend: LocalBackend) -> None:
    _run(backend, "true")  # the server is up before the two race
    results: dict[str, tuple[RunOutcome, list[str]]] = {}
    a_command = (
        'echo "{{ var.value.secret }}" > /tmp/a-file; echo "{{ var.value.secret }}" > /dev/shm/a-shm; '
        'echo "pidns=$(readlink /proc/self/ns/pid) pid=$$"; sleep 6'
    )

    def task_a() -> None:
        results["a"] = _run(backend, a_command, variables={"secret": SECRET_A})

    thread = threading.Thread(target=task_a)
    thread.start()
    time.sleep(2.5)  # A is sleeping with its secret rendered into its command and files
    b_command = (
        "echo pidns=$(readlink /proc/self/ns/pid); echo pids: $(ls /proc | grep -E '^[0-9]+$'); "
        "cat /tmp/a-file /dev/shm/a-shm 2>&1; env; "
        'for p in /proc/[0-9]*; do cat $p/cmdline $p/environ 2>/dev/null | tr "\\0" " "; echo; done'
    )
    results["b"] = _run(backend, b_command)
    thread.join(60)
    a_out, a_logs = results["a"]
    b_out, b_logs = results["b"]
    assert a_out.exit_code == 0 and b_out.exit_code == 0, (_output(a_logs)[-2000:], _output(b_logs)[-2000:])
    a_ns, b_ns = (int(_PIDNS.search(_output(logs)).group(1)) for logs in (a_logs, b_logs))  # type: ignore[union-attr]
    assert a_ns != b_ns
    b_text = _output(b_logs)
    assert SECRET_A not in b_text
    assert "No such file or directory" in b_text  # A's files are not in B's /tmp or /dev/shm
    # B sees the processes of its own namespace only: its runtime and its bash tree.
    listed = (
        next(line for line in b_logs if "pids: " in line and "Running command" not in line).split("pids: ")[1].split()
    )
    assert listed and "1" in listed and all(int(pid) < 20 for pid in listed), listed


def test_a_secret_of_one_task_is_in_no_other_child_nor_in_the_server(backend: LocalBackend) -> None:
    _run(backend, "true")
    server = _server_pid(backend)
    outcome, logs = _run(backend, 'echo "{{ var.value.secret }}" | wc -c', variables={"secret": SECRET_A})
    assert outcome.exit_code == 0, _output(logs)
    # Control: the secret is findable in a task that holds it, while it runs.
    found: dict[str, bool] = {}

    def holder() -> None:
        _run(backend, 'echo "pidns=$(readlink /proc/self/ns/pid)"; sleep 5', variables={"secret": SECRET_A})

    def other() -> None:
        _run(backend, 'echo "pidns=$(readlink /proc/self/ns/pid)"; sleep 5')

    holder_logs: list[str] = []
    other_logs: list[str] = []
    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    original = backend.run

    def recording(environment, seal_, on_log):  # type: ignore[no-untyped-def]
        sink = holder_logs if threading.current_thread() is threads[0] else other_logs

        def both(line: str) -> None:
            sink.append(line)
            on_log(line)

        return original(environment, seal_, both)

    backend.run = recording  # type: ignore[method-assign]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (_pidns(holder_logs) and _pidns(other_logs)):
        time.sleep(0.1)
    holder_pids, other_pids = _namespace_pids(_pidns(holder_logs)), _namespace_pids(_pidns(other_logs))
    found["holder"] = any(_memory_holds(pid, SECRET_A.encode()) for pid in holder_pids)
    found["other"] = any(_memory_holds(pid, SECRET_A.encode()) for pid in other_pids)
    for thread in threads:
        thread.join(60)
    found["server"] = _memory_holds(server, SECRET_A.encode())
    assert found == {"holder": True, "other": False, "server": False}, found


def _pidns(logs: list[str]) -> int:
    match = _PIDNS.search("\n".join(logs))
    return int(match.group(1)) if match else 0


def test_killing_the_host_side_kills_the_child_not_the_server(backend: LocalBackend) -> None:
    _run(backend, "true")
    server = _server_pid(backend)
    errors: list[BaseException] = []
    started = time.monotonic()

    def long() -> None:
        try:
            _run(backend, "sleep 120")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=long)
    thread.start()
    while backend._warm_task is None and time.monotonic() - started < 30:
        time.sleep(0.05)
    time.sleep(1.0)
    backend.cancel()  # what on_kill does
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 30
    status = _warm.status(backend.locate(MODERN))
    assert status is not None and status["pid"] and status["running"] == 0
    os.kill(server, 0)  # still alive


def test_killing_the_server_mid_task_fails_the_task_and_the_next_one_runs(backend: LocalBackend) -> None:
    _run(backend, "true")
    server = _server_pid(backend)
    errors: list[BaseException] = []

    def long() -> None:
        try:
            _run(backend, "sleep 120")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=long)
    thread.start()
    deadline = time.monotonic() + 30
    while backend._warm_task is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(server, signal.SIGKILL)
    thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], IsolatedTaskFailed), errors
    assert "warm server of environment 'modern' ended while the task ran" in errors[0].message
    # Never run twice: the task was not started again cold.
    after, logs = _run(backend, "echo after")
    assert after.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    assert _server_pid(backend) != server


def test_a_rebuilt_environment_never_uses_the_old_server(backend: LocalBackend) -> None:
    _run(backend, "true")
    old = _server_pid(backend)
    marker = backend.locate(MODERN).root / "environment.json"
    data = json.loads(marker.read_text())
    data["rebuilt_for_test"] = True
    marker.write_text(json.dumps(data))
    outcome, logs = _run(backend, "echo rebuilt")
    assert outcome.exit_code == 0 and "; warm start" in _output(logs), _output(logs)
    new = _server_pid(backend)
    assert new != old
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{old}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{old}").exists(), "the stale server did not drain and exit"


def _plant(backend: LocalBackend, how: str, tmp_path: Path) -> None:
    where = backend.locate(MODERN).root / _warm.DIRECTORY
    where.mkdir(mode=0o700, exist_ok=True)
    sock = where / _warm.SOCKET
    if how == "symlink":
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(str(tmp_path / "elsewhere.sock"))
        sock.symlink_to(tmp_path / "elsewhere.sock")
    elif how == "other-uid":
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(str(sock))
        os.chown(sock, 65534, 65534)
    elif how == "open-directory":
        where.chmod(0o755)
    state = {"pid": os.getpid(), "server_pid": os.getpid(), "fingerprint": _warm.fingerprint(backend.locate(MODERN))}
    (where / _warm.STATE).write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("symlink", "is a symbolic link: refused"),
        ("other-uid", "belongs to uid 65534, not this user: refused"),
        ("open-directory", "with mode 755: refused"),
    ],
)
def test_a_socket_that_is_not_ours_is_refused_and_the_task_runs_cold(
    backend: LocalBackend, tmp_path: Path, how: str, said: str
) -> None:
    _plant(backend, how, tmp_path)
    outcome, logs = _run(backend, "echo cold")
    text = _output(logs)
    assert outcome.exit_code == 0, text
    assert said in text and "starting the task cold" in text, text
    assert "; warm start" not in text


def test_a_hung_server_times_out_the_task_runs_cold_and_the_server_is_ended(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "server" that accepts and never answers, recorded as this environment's server.
    where = backend.locate(MODERN).root / _warm.DIRECTORY
    where.mkdir(mode=0o700)
    path = where / _warm.SOCKET
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4); print('up', flush=True)\n"
        "conns = []\n"
        "while True: conns.append(s.accept())\n"
    )
    hung = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert hung.stdout is not None and hung.stdout.readline().strip() == "up"
        state = {"pid": hung.pid, "server_pid": hung.pid, "fingerprint": _warm.fingerprint(backend.locate(MODERN))}
        (where / _warm.STATE).write_text(json.dumps(state))
        monkeypatch.setattr(_warm, "REQUEST_TIMEOUT", 1.0)
        outcome, logs = _run(backend, "echo cold")
        text = _output(logs)
        assert outcome.exit_code == 0, text
        assert "did not start the task within 1 s" in text and "starting the task cold" in text, text
        assert hung.wait(timeout=10) == -signal.SIGKILL
        assert not path.exists() and not (where / _warm.STATE).exists()
    finally:
        if hung.poll() is None:
            hung.kill()
            hung.wait()


def test_a_warm_child_has_no_capability_the_full_filter_and_namespaces_of_its_own(backend: LocalBackend) -> None:
    _run(backend, "true")
    server = _server_pid(backend)
    kinds = ("user", "mnt", "pid", "ipc", "uts", "net")
    command = (
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; "
        + "; ".join(f"echo ns-{kind}=$(readlink /proc/self/ns/{kind})" for kind in kinds)
        + "; unshare -U true 2>/dev/null && echo unshare-worked || echo unshare-refused; "
        "mount -t tmpfs none /tmp/work 2>/dev/null && echo mount-worked || echo mount-refused"
    )
    outcome, logs = _run(backend, command)
    text = _output(logs)
    assert outcome.exit_code == 0, text
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert re.search(rf"{cap}:\s+0000000000000000", text), (cap, text)
    assert re.search(r"NoNewPrivs:\s+1", text) and re.search(r"Seccomp:\s+2", text), text
    assert "unshare-refused" in text and "mount-refused" in text, text
    for kind in kinds:
        mine = re.search(rf"ns-{kind}=(\S+)", text)
        assert mine is not None, text
        assert mine.group(1) != os.readlink(f"/proc/{server}/ns/{kind}"), kind
