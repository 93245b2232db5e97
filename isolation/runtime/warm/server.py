"""``python -m isolation.runtime --serve``: the warm server of one local environment.

It runs inside the environment's sandbox, imports Airflow, the runtime and the
environment's common operator modules once, then waits on the listening socket the host
made and passed in (it never sees the socket's path). For each task it receives the
task's descriptors, forks, and reports the child's progress and exit status; it never
reads the envelope and holds no secret. It is single-threaded, so forking is safe.

It ends after its idle timeout with no task running, on a ``drain`` request once its
tasks are done (the host asks when the environment was rebuilt), or on SIGTERM.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from isolation.runtime.warm import child, protocol

CONFIG_VAR = "ISOLATION_WARM_CONFIG"
# Imported before any task: what every task of the runtime needs.
RUNTIME_MODULES = (
    "isolation.transport",
    "isolation.transport.payload",
    "isolation.runtime.hardening",
    "isolation.runtime.source",
    "isolation.runtime.result",
    "isolation.runtime.secrets",
    "isolation.runtime.logs",
    "isolation.runtime.compat",
    "isolation.runtime.operator",
    "isolation.runtime.context",
    "isolation.runtime.contract",
    "isolation.runtime.dagshape",
    "isolation.runtime.decisions",
    "isolation.runtime.taskflow",
    "isolation.runtime.lifeline",
    "isolation.runtime.identity",
    "isolation.runtime.__main__",  # as a module: the server itself runs as __main__
)
# The operators most tasks wrap, in each major's spelling; a missing one is skipped quietly.
COMMON_OPERATORS = (
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.bash",
    "airflow.operators.python",
    "airflow.operators.bash",
)
# What Airflow imports on first use, not at import: building a task's DAG (its timetable
# classes, asset definitions), connections, skips, templating. A child that imported them
# itself would pay ~100 ms per task. Absent ones (the other major) are skipped quietly.
LAZY_AIRFLOW_MODULES = (
    "airflow.sdk.definitions.connection",
    "airflow.sdk.definitions.timetables.interval",
    "airflow.sdk.definitions.timetables.trigger",
    "airflow.timetables.base",
    "airflow.timetables.interval",
    "airflow.timetables.trigger",
    "airflow.timetables.simple",
    "airflow.serialization.definitions.assets",
    "airflow.serialization.dag_dependency",
    "airflow.sdk.definitions.asset.metadata",
    "airflow.providers.standard.utils.skipmixin",
    "airflow.models.skipmixin",
    "airflow.models.connection",
    "croniter",
    "jinja2.ext",
)
_POLL = 1.0


def log(message: str) -> None:
    """One line to the server's log file; a full disk must not stop the server."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} isolation-warm[{os.getpid()}]: {message}\n")
        sys.stderr.flush()


@dataclass
class _Task:
    conn: socket.socket
    c1: int
    status_fd: int
    pid: int | None = None  # C2, pid 1 of the task's namespaces (as this server sees it)
    started: bool = False
    finished: bool = False
    buffer: bytes = b""


@dataclass
class Server:
    listener: socket.socket
    fingerprint: str
    idle_timeout: float
    task_defaults: dict[str, Any]
    seccomp: bytes
    started_at: float = field(default_factory=time.time)
    served: int = 0
    draining: bool = False
    tasks: dict[int, _Task] = field(default_factory=dict)  # by status fd
    by_conn: dict[int, _Task] = field(default_factory=dict)
    selector: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector)
    last_active: float = field(default_factory=time.monotonic)
    stop: bool = False

    # -- loop --------------------------------------------------------------------

    def serve(self) -> int:
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        log(f"ready: fingerprint {self.fingerprint}, idle timeout {self.idle_timeout:.0f}s")
        while not self.stop:
            for key, _ in self.selector.select(timeout=_POLL):
                kind, obj = key.data
                if kind == "accept":
                    self._accept()
                elif kind == "conn":
                    self._on_request(obj)
                elif kind == "status":
                    self._on_status(obj)
            self._reap()
            if not self.tasks and not self.by_conn:
                if self.draining:
                    log("drained: exiting")
                    break
                if time.monotonic() - self.last_active > self.idle_timeout:
                    log(f"idle for {self.idle_timeout:.0f}s: exiting")
                    break
        return 0

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            # The socket's directory is the host's and 0700; still, only our own uid is served.
            log(f"refused a connection from uid {uid}")
            conn.close()
            return
        self.last_active = time.monotonic()
        conn.setblocking(True)
        conn.settimeout(5.0)
        self.selector.register(conn, selectors.EVENT_READ, ("conn", conn))
        self.by_conn[conn.fileno()] = _Task(conn, 0, -1)
        self.by_conn[conn.fileno()].finished = True  # no task yet

    def _close_conn(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        self.by_conn.pop(conn.fileno(), None)
        conn.close()

    def _reply(self, conn: socket.socket, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            protocol.send(conn, message)

    def _on_request(self, conn: socket.socket) -> None:
        task = self.by_conn.get(conn.fileno())
        try:
            message, fds = protocol.receive(conn)
        except protocol.ProtocolError:
            # The host hung up: a task still running loses its host, and ends now.
            if task is not None and not task.finished:
                log(f"host of task {task.pid} went away: killing it")
                self._signal(task, signal.SIGKILL)
            self._close_conn(conn)
            return
        op = message["op"]
        if op == protocol.RUN and task is not None and task.finished and task.c1 == 0:
            self._run(conn, message, fds)
            return
        for fd in fds:
            os.close(fd)
        if op == protocol.SIGNAL and task is not None and not task.finished:
            signum = message.get("signal")
            if signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
                self._signal(task, signum)
        elif op == protocol.STATUS:
            self._reply(conn, self.status())
        elif op == protocol.DRAIN:
            self._drain()
            self._reply(conn, {"op": protocol.DRAIN, "running": len(self.tasks)})
        else:
            self._reply(conn, {"op": protocol.ERROR, "reason": f"unexpected request {op!r}"})

    def _drain(self) -> None:
        if not self.draining:
            log("draining: no new task; exiting once the running ones are done")
            self.draining = True
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.listener)
            self.listener.close()

    def status(self) -> dict[str, Any]:
        return {
            "op": protocol.STATUS,
            "pid": os.getpid(),
            "fingerprint": self.fingerprint,
            "uptime": round(time.time() - self.started_at, 1),
            "served": self.served,
            "running": len(self.tasks),
            "rss": _rss(),
            "draining": self.draining,
        }

    # -- one task ----------------------------------------------------------------

    def _run(self, conn: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        def refuse(reason: str) -> None:
            for fd in fds:
                os.close(fd)
            self._reply(conn, {"op": protocol.ERROR, "stage": "before-start", "reason": reason})

        if self.draining:
            return refuse("the server is draining")
        if message.get("fingerprint") != self.fingerprint:
            return refuse("the server was started for another build of the environment")
        environ = message.get("environ")
        cgroups = message.get("cgroups", 0)
        numbers = (message.get("lifeline_fd"), message.get("result_fd"))
        well_formed = all(isinstance(n, int) and 3 <= n < 256 for n in numbers) and numbers[0] != numbers[1]
        if not (isinstance(environ, dict) and isinstance(cgroups, int) and well_formed and len(fds) == 4 + cgroups):
            return refuse("a malformed run request")
        spec = child.TaskSpec(
            environ={str(k): str(v) for k, v in environ.items()},
            tmp_size=int(self.task_defaults["tmp"]),
            own_network=bool(self.task_defaults["own_network"]),
            host_proc=bool(self.task_defaults["host_proc"]),
            airflow_home=str(self.task_defaults["airflow_home"]),
            seccomp=self.seccomp,
            cgroup_fds=(),
        )
        status_read, status_write = os.pipe()
        try:
            c1 = os.fork()
        except OSError as exc:
            os.close(status_read)
            os.close(status_write)
            return refuse(f"fork failed: {exc.strerror}")
        if c1 == 0:  # pragma: no cover - runs in the child, reported through the pipe
            try:
                placed = list(
                    zip(fds[:4], (0, 1, int(message["lifeline_fd"]), int(message["result_fd"])), strict=False)
                )
                placed.append((fds[1], 2))
                kept = child.install_descriptors(placed, keep=(status_write, *fds[4:]))
                task_numbers = tuple(number for _, number in placed)
                spec = child.TaskSpec(**{**spec.__dict__, "cgroup_fds": kept[1:], "task_fds": task_numbers})
            except BaseException:
                os._exit(child.SETUP_FAILED)
            child.start(spec, kept[0])
        os.close(status_write)
        for fd in fds:
            os.close(fd)
        self.served += 1
        self.last_active = time.monotonic()
        task = _Task(conn, c1, status_read)
        self.tasks[status_read] = task
        self.by_conn[conn.fileno()] = task
        self.selector.register(status_read, selectors.EVENT_READ, ("status", task))

    def _on_status(self, task: _Task) -> None:
        try:
            chunk = os.read(task.status_fd, 4096)
        except OSError:
            chunk = b""
        if chunk:
            task.buffer += chunk
            while b"\n" in task.buffer:
                line, task.buffer = task.buffer.split(b"\n", 1)
                self._status_line(task, line.decode(errors="replace"))
            return
        # C1 has exited: its last line (the status) came before this end-of-file.
        self.selector.unregister(task.status_fd)
        os.close(task.status_fd)
        self.tasks.pop(task.status_fd, None)
        if not task.finished:
            task.finished = True
            stage = "after-start" if task.started else "before-start"
            self._reply(task.conn, {"op": protocol.ERROR, "stage": stage, "reason": "the task's process ended early"})
        self.last_active = time.monotonic()

    def _status_line(self, task: _Task, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "pid" and rest.isdigit():
            task.pid = int(rest)
        elif word == "ready":
            task.started = True
            self._reply(task.conn, {"op": protocol.STARTED, "pid": task.pid})
        elif word == "status" and rest.lstrip("-").isdigit():
            task.finished = True
            code = os.waitstatus_to_exitcode(int(rest))
            self._reply(task.conn, {"op": protocol.EXIT, "code": code})
        elif word == "setup":
            task.finished = True
            log(f"a task's sandbox could not be made: {rest}")
            self._reply(task.conn, {"op": protocol.ERROR, "stage": "before-start", "reason": rest})

    def _signal(self, task: _Task, signum: int) -> None:
        for pid in (task.pid, task.c1 if signum == signal.SIGKILL else None):
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


def _rss() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _preload(modules: list[str]) -> str:
    """Import what tasks need, after preparing the environment Airflow reads at import."""
    from isolation.runtime import sandbox

    sandbox.check_no_database_url()
    home = sandbox.prepare()
    quiet = {*COMMON_OPERATORS, *LAZY_AIRFLOW_MODULES}
    for name in (*RUNTIME_MODULES, *COMMON_OPERATORS, *LAZY_AIRFLOW_MODULES, *modules):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if name not in quiet:
                log(f"could not preload {name}: {exc}")
        except Exception as exc:
            log(f"could not preload {name}: {type(exc).__name__}: {exc}")
    _rehearse()
    # The imported objects never change again: keep the collector from touching (and so
    # un-sharing) their pages in every child.
    gc.collect()
    gc.freeze()
    return home


def _rehearse() -> None:
    """Do once what every task does first, so that what Airflow and OpenSSL set up on
    first use is shared by every child rather than paid by each: build a DAG, and seal
    and open an envelope between two keysets made here and dropped (they protect nothing)."""
    try:
        from isolation.runtime import compat
        from isolation.transport import Keyset
        from isolation.transport.payload import OperatorSpec, Payload, TaskContext
        from isolation.transport.sealed import open_envelope, seal_envelope

        compat.DAG(dag_id="isolation_warm_rehearsal", schedule=None)
        name = "warm-rehearsal"
        signer, recipient = Keyset.generate_signer(name), Keyset.generate_recipient(name)
        context = TaskContext(
            dag_id=name, task_id=name, run_id=name, map_index=-1, try_number=1, max_tries=0, run_type="manual"
        )
        payload = Payload(operator=OperatorSpec(import_path="builtins.object"), context=context)
        text = seal_envelope(payload, signer=signer, recipient=recipient)
        open_envelope(text, signers=signer.public(), recipient=recipient, audience=name)
    except Exception as exc:  # a task would meet the same error, and report it
        log(f"could not rehearse a task's first steps: {type(exc).__name__}: {exc}")


def main() -> int:
    """Entry point for ``--serve``; the configuration comes from the host in one variable."""
    try:
        config = json.loads(os.environ.pop(CONFIG_VAR))
        listener = socket.socket(fileno=int(config["listen_fd"]))
    except (KeyError, ValueError, OSError) as exc:
        log(f"cannot start: no usable ${CONFIG_VAR} ({type(exc).__name__})")
        return 2
    os.set_inheritable(listener.fileno(), False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A task's host watches its task; the server must not die of a pipe the host closed.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    begun = time.perf_counter()
    seccomp = base64.b64decode(config["seccomp"])
    home = _preload([str(m) for m in config.get("preload", [])])
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        log(f"cannot serve: preloading started threads ({names}); a fork would copy them half-done")
        return 3
    log(f"preloaded in {(time.perf_counter() - begun) * 1000:.0f} ms")
    defaults = {
        "tmp": int(config["tmp"]),
        "own_network": bool(config["own_network"]),
        "host_proc": bool(config["host_proc"]),
        "airflow_home": home,
    }
    server = Server(listener, str(config["fingerprint"]), float(config["idle_timeout"]), defaults, seccomp)
    try:
        return server.serve()
    finally:
        for task in list(server.tasks.values()):
            server._signal(task, signal.SIGKILL)
