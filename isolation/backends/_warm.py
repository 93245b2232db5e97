"""The host side of warm environments: find, verify or start an environment's warm server.

Per environment, ``<root>/warm/`` (mode 0700, ours) holds:

==============  ================================================================
``server.sock``  the listening socket (0600); the host binds it and hands the bound
                 descriptor to the server, which never sees the path
``server.json``  who serves: the sandbox's pid, the build fingerprint, start time
``server.log``   the server's own log (no task output, nothing secret)
``lock``         taken while a server is started, so two tasks start one server
==============  ================================================================

Before a socket is used: the directory must be ours, 0700 and not a symbolic link;
the socket must be a socket, ours and not a link; the process that answers must be ours
(``SO_PEERCRED``) and run inside the recorded sandbox; the recorded fingerprint must be
the environment's current build. Anything else is a :class:`WarmServerUnavailable`,
and the task starts cold.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isolation._atomic import write_atomic
from isolation.backends import _seccomp, sandbox
from isolation.environments.local import MARKER, LocalEnvironment
from isolation.errors import WarmServerUnavailable
from isolation.runtime.warm import protocol

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with Airflow
    psutil = None

DIRECTORY = "warm"
SOCKET = "server.sock"
STATE = "server.json"
LOG = "server.log"
LOCK = "lock"
CONFIG_VAR = "ISOLATION_WARM_CONFIG"
# Importing Airflow in a fresh interpreter on a busy machine can take several seconds.
START_TIMEOUT = 60.0
# From the request to the child's "ready": a fork and a few system calls. Past this the
# server is taken to hang, and the task starts cold (the envelope was not sent yet).
REQUEST_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 2.0
# How long a host that gives up a child it asked for waits to hear that the child ended.
ABANDON_TIMEOUT = 5.0
# Only processes kept here: a detached server must not be reaped by anyone else.
_SERVERS: list[subprocess.Popen[bytes]] = []


class _Refused(WarmServerUnavailable):
    """A socket or peer that is not ours: never replaced by a server of ours in its place."""


def fingerprint(env: LocalEnvironment) -> str:
    """The build a server serves: any rebuild rewrites the environment's marker.

    The keys directory's identity is part of it: the server's sandbox binds the directory
    it saw at start, so one provisioned anew (a new directory) needs a new server.
    """
    try:
        data = (env.root / MARKER).read_bytes()
        keys = os.stat(env.keys_dir)
    except OSError as exc:
        raise WarmServerUnavailable(f"cannot read {exc.filename} ({exc.strerror})") from None
    return hashlib.sha256(data + f"\0{keys.st_dev}:{keys.st_ino}".encode()).hexdigest()[:16]


def directory(env: LocalEnvironment, *, create: bool = True) -> Path:
    """``<root>/warm``, checked: a directory of ours, 0700, not a symbolic link."""
    path = env.root / DIRECTORY
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise WarmServerUnavailable(f"no warm server directory {path}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise _Refused(f"{path} is not a directory (a symbolic link or a file): refused")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise _Refused(
            f"{path} belongs to uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}: refused "
            f"(it must be this user's, mode 700)"
        )
    return path


def _check_socket(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise WarmServerUnavailable("no warm server is running") from None
    if stat.S_ISLNK(info.st_mode):
        raise _Refused(f"{path} is a symbolic link: refused")
    if not stat.S_ISSOCK(info.st_mode):
        raise _Refused(f"{path} is not a socket: refused")
    if info.st_uid != os.getuid():
        raise _Refused(f"{path} belongs to uid {info.st_uid}, not this user: refused")


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def _peer(sock: socket.socket) -> tuple[int, int]:
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def _inside(pid: int, sandbox_pid: int) -> bool:
    """Whether ``pid`` runs inside the sandbox just started as ``sandbox_pid``."""
    if psutil is None:  # pragma: no cover
        return False
    try:
        return any(parent.pid == sandbox_pid for parent in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def _verify(sock: socket.socket, state: dict[str, Any], path: Path) -> None:
    """The process that answers must be ours and the one recorded when the server started."""
    pid, uid = _peer(sock)
    if uid != os.getuid() or pid != state.get("server_pid"):
        raise _Refused(f"the process behind {path} (pid {pid}, uid {uid}) is not the warm server: refused")


def connect(env: LocalEnvironment) -> socket.socket:
    """A connection to this build's warm server, verified; raises WarmServerUnavailable."""
    where = directory(env, create=False)
    state = read_state(where)
    if state is None:
        raise WarmServerUnavailable("no warm server is running")
    if state.get("fingerprint") != fingerprint(env):
        raise WarmServerUnavailable("the warm server runs an older build of the environment")
    path = where / SOCKET
    _check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise WarmServerUnavailable(f"the warm server does not answer ({exc.strerror or exc})") from None
    try:
        _verify(sock, state, path)
    except WarmServerUnavailable:
        sock.close()
        raise
    return sock


def ensure(env: LocalEnvironment, base_env: Mapping[str, str]) -> socket.socket:
    """Connect to the warm server, starting one (or replacing a stale one) if needed."""
    try:
        return connect(env)
    except _Refused:
        raise
    except WarmServerUnavailable:
        pass
    try:
        where = directory(env)
        with open(where / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return connect(env)  # another task started it while we waited
            except _Refused:
                raise
            except WarmServerUnavailable:
                pass
            stop(env)
            start(env, base_env)
    except OSError as exc:
        # A full disk, a read-only environments home: the task still runs, cold.
        raise WarmServerUnavailable(f"cannot start a warm server in {env.root / DIRECTORY} ({exc})") from None
    return connect(env)


def stop(env: LocalEnvironment) -> dict[str, Any] | None:
    """Ask the running server (if any) to drain and exit; remove its socket and state."""
    where = env.root / DIRECTORY
    state = read_state(where) if where.is_dir() else None
    if state is None:
        return None
    reply = None
    with contextlib.suppress(WarmServerUnavailable, protocol.ProtocolError, OSError):
        sock = _connect_any(where, state)
        with sock:
            protocol.send(sock, {"op": protocol.DRAIN})
            reply, _ = protocol.receive(sock)
    for name in (SOCKET, STATE):
        with contextlib.suppress(FileNotFoundError):
            (where / name).unlink()
    return reply


def _connect_any(where: Path, state: dict[str, Any]) -> socket.socket:
    """A verified connection to whatever server the state names, whatever its build."""
    _check_socket(where / SOCKET)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_CONNECT_TIMEOUT)
    try:
        sock.connect(str(where / SOCKET))
        _verify(sock, state, where / SOCKET)
    except BaseException:
        sock.close()
        raise
    return sock


def status(env: LocalEnvironment) -> dict[str, Any] | None:
    """The running server's own report (pid, fingerprint, uptime, tasks served, RSS), or None."""
    where = env.root / DIRECTORY
    state = read_state(where) if where.is_dir() else None
    if state is None:
        return None
    try:
        with _connect_any(where, state) as sock:
            protocol.send(sock, {"op": protocol.STATUS})
            reply, _ = protocol.receive(sock)
    except (WarmServerUnavailable, protocol.ProtocolError, OSError):
        return None
    reply["pid"] = state.get("server_pid")  # as this host sees it (the server says 2, its sandbox's)
    reply["sandbox_pid"] = state["pid"]
    reply["current"] = reply.get("fingerprint") == state.get("fingerprint") == _quiet_fingerprint(env)
    return reply


def _quiet_fingerprint(env: LocalEnvironment) -> str | None:
    try:
        return fingerprint(env)
    except WarmServerUnavailable:
        return None


def start(env: LocalEnvironment, base_env: Mapping[str, str]) -> dict[str, Any]:
    """Start a warm server for ``env`` (detached, its own session); wait until it answers."""
    where = directory(env)
    path = where / SOCKET
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    settings = env.settings
    launch = sandbox.command(
        settings,
        venv=env.venv,
        keys_dir=env.keys_dir,
        program=[str(env.python), "-I", "-u", "-m", "isolation.runtime", "--serve"],
        env_name=env.name,
        warm_server=True,
    )
    config = {
        "listen_fd": listener.fileno(),
        "fingerprint": fingerprint(env),
        "idle_timeout": settings.warm.idle_timeout,
        "preload": list(settings.warm.preload),
        "tmp": settings.limits.tmp,
        "own_network": settings.network != "host",
        "host_proc": os.getuid() == 0,
        "seccomp": base64.b64encode(_seccomp.filter_program()).decode(),
    }
    server_env = sandbox.environment(base_env, env.venv, settings)
    for name in ("ISOLATION_LIMIT_MEMORY", "ISOLATION_LIMIT_PROCESSES"):
        server_env.pop(name)  # the server is not a task; each child sets the task's limits
    server_env[CONFIG_VAR] = json.dumps(config)
    try:
        log = os.open(where / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        listener.close()
        launch.finished()
        raise WarmServerUnavailable(f"cannot open the warm server's log ({exc.strerror})") from None
    try:
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            pass_fds=(listener.fileno(), *launch.pass_fds),
            start_new_session=True,
            env=server_env,
        )
    except OSError as exc:
        raise WarmServerUnavailable(f"cannot start the warm server ({exc.strerror})") from None
    finally:
        os.close(log)
        listener.close()
        launch.finished()
    _SERVERS.append(proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WarmServerUnavailable(f"the warm server exited at start (code {proc.returncode}); see {where / LOG}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            time.sleep(0.02)
            continue
        finally:
            pid, uid = _peer(probe) if probe.fileno() >= 0 else (0, -1)
            probe.close()
        # Whoever listens must be the interpreter inside the sandbox just started: its
        # pid is recorded, and every later connection must reach that very process.
        if uid != os.getuid() or not _inside(pid, proc.pid):
            _kill(proc)
            raise _Refused(f"the process behind {path} (pid {pid}) is not the warm server: refused")
        state = {"pid": proc.pid, "server_pid": pid, "fingerprint": config["fingerprint"], "started": time.time()}
        try:
            write_atomic(where / STATE, json.dumps(state) + "\n", mode=0o600)
        except OSError as exc:
            _kill(proc)
            raise WarmServerUnavailable(f"cannot record the warm server ({exc.strerror})") from None
        return state
    _kill(proc)
    raise WarmServerUnavailable(f"the warm server did not answer within {START_TIMEOUT:.0f} s; see {where / LOG}")


def _retire(env: LocalEnvironment, conn: socket.socket) -> None:
    """A server that hangs serves no further task: end it (the verified peer) and forget it."""
    pid, _ = _peer(conn)
    if pid > 0 and pid != os.getpid():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    where = env.root / DIRECTORY
    for name in (SOCKET, STATE):
        with contextlib.suppress(FileNotFoundError):
            (where / name).unlink()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class WarmTask:
    """A task running in a warm child, shaped like the ``Popen`` the cold path pumps."""

    conn: socket.socket
    stdin: Any
    stdout: Any
    pid: int | None
    returncode: int | None = None
    server_lost: bool = False

    def poll(self) -> int | None:
        if self.returncode is None:
            readable, _, _ = select.select([self.conn], [], [], 0)
            if readable:
                self._answer()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            readable, _, _ = select.select([self.conn], [], [], left)
            if readable:
                self._answer()
        return self.returncode

    def _answer(self) -> None:
        try:
            self.conn.settimeout(_CONNECT_TIMEOUT)
            message, fds = protocol.receive(self.conn)
        except protocol.ProtocolError:
            message, fds = {"op": protocol.ERROR, "stage": "after-start"}, []
        for fd in fds:
            os.close(fd)
        if message["op"] == protocol.EXIT and isinstance(message.get("code"), int):
            self.returncode = message["code"]
        elif message["op"] == protocol.ERROR:
            self.server_lost = True
            self.returncode = -signal.SIGKILL

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(OSError, protocol.ProtocolError):
            protocol.send(self.conn, {"op": protocol.SIGNAL, "signal": int(signum)})

    def terminate_tree(self, grace: float) -> None:
        """TERM, then KILL after ``grace`` s: the task is pid 1 of its namespace, so a KILL ends all of it."""
        if self.poll() is None:
            self.send_signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self.send_signal(signal.SIGKILL)
                if self.wait(grace) is None:
                    self.server_lost = True
                    self.returncode = -signal.SIGKILL
        with contextlib.suppress(OSError):
            self.conn.close()


@dataclass
class PendingTask:
    """A child asked for and not yet confirmed: the request is on its way to the server."""

    conn: socket.socket
    env: LocalEnvironment
    stdin: Any
    stdout: Any

    def close(self) -> None:
        """Give the child up: the server kills a task whose host hangs up."""
        for item in (self.stdin, self.stdout, self.conn):
            with contextlib.suppress(OSError):
                item.close()

    def abandon(self, timeout: float = ABANDON_TIMEOUT) -> None:
        """Give the child up and wait (up to ``timeout``) until the server says it has ended.

        The host returns from a failed task with nothing of the task left running.
        """
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError, protocol.ProtocolError):
            protocol.send(self.conn, {"op": protocol.SIGNAL, "signal": int(signal.SIGKILL)})
            while (left := deadline - time.monotonic()) > 0:
                self.conn.settimeout(left)
                message, fds = protocol.receive(self.conn)
                for fd in fds:
                    os.close(fd)
                if message.get("op") in (protocol.EXIT, protocol.ERROR):
                    break
        self.close()


def request(
    conn: socket.socket,
    env: LocalEnvironment,
    environ: Mapping[str, str],
    *,
    lifeline_fd: int,
    lifeline_number: int,
    result_fd: int,
    cgroup_fds: tuple[int, ...],
) -> PendingTask:
    """Send the server a request for a child, without waiting for it.

    The server forks while the caller goes on; :func:`started` collects the answer.
    Raises WarmServerUnavailable (``conn`` closed) when the request cannot be sent.
    """
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        message = {
            "op": protocol.RUN,
            "fingerprint": fingerprint(env),
            "environ": dict(environ),
            # The child's numbers: the result's is the one the envelope names.
            "lifeline_fd": lifeline_number,
            "result_fd": result_fd,
            "cgroups": len(cgroup_fds),
        }
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            protocol.send(conn, message, (in_read, out_write, lifeline_fd, result_fd, *cgroup_fds))
        except (OSError, protocol.ProtocolError) as exc:
            raise WarmServerUnavailable(f"the warm server failed the request ({exc})") from None
    except BaseException:
        for fd in (in_write, out_read):
            os.close(fd)
        conn.close()
        raise
    finally:
        os.close(in_read)
        os.close(out_write)
    return PendingTask(conn, env, os.fdopen(in_write, "wb", buffering=0), os.fdopen(out_read, "rb", buffering=0))


def started(pending: PendingTask) -> WarmTask:
    """Wait for the server's answer: the child is ready for its envelope.

    Raises WarmServerUnavailable when no child started (the envelope was not sent: the
    caller may start the task cold); the pending task is closed then.
    """
    conn = pending.conn
    try:
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            reply, fds = protocol.receive(conn)
        except TimeoutError:
            _retire(pending.env, conn)
            raise WarmServerUnavailable(
                f"the warm server did not start the task within {REQUEST_TIMEOUT:.0f} s"
            ) from None
        except (OSError, protocol.ProtocolError) as exc:
            raise WarmServerUnavailable(f"the warm server failed the request ({exc})") from None
        for fd in fds:
            os.close(fd)
        if reply.get("op") != protocol.STARTED:
            raise WarmServerUnavailable(f"the warm server could not start the task: {reply.get('reason', reply)}")
    except BaseException:
        pending.close()
        raise
    return WarmTask(conn, pending.stdin, pending.stdout, reply.get("pid"))
