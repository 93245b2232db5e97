"""The local backend: another interpreter (a virtualenv) on this machine.

Per task: a private temporary directory (the child's ``HOME``, ``TMPDIR``, working
directory and the result file's home, always removed), then
``<env python> -I -u -m isolation.runtime --stdin`` in a session of its own, with

- the envelope written to its standard input through a pipe, then closed;
- a scrubbed environment built from an allow-list (no Airflow settings, no
  ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``, no database URL, no supervisor sockets);
- no inherited file descriptors (``close_fds``), standard output and error merged into
  one pipe that is read line by line and forwarded live.

One thread does it all with a selector, so a task timeout (``SIGALRM`` in the Airflow
task process) interrupts it, and ``finally`` ends the process tree.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from isolation.backends import _process
from isolation.backends.base import MAX_RESULT_BYTES, Backend, LogSink, RunOutcome, Sealer
from isolation.environments.local import LocalEnvironment, find_local
from isolation.errors import ConfigurationError

RESULT_FILE = "result.json"
# The runtime side: isolation.runtime.lifeline (the same name, read once and removed).
LIFELINE_ENV = "ISOLATION_LIFELINE_FD"
MAX_LINE = 64 * 1024
LOG_TAIL = 20
# Host variables the runtime may see; everything else stays behind.
ALLOWED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
_RESERVED_PREFIXES = ("AIRFLOW", "ISOLATION_", "PYTHON", "_AIRFLOW")
_READ_CHUNK = 65536
# After the runtime exits, how long a straggler that still holds the pipe may keep it.
_DRAIN_AFTER_EXIT = 1.0


class LocalBackend(Backend):
    """Run isolated tasks in local environments built by ``isolation.environments``.

    :param envs_home: where local environments live (default: ``ISOLATION_ENVS_HOME``,
        else ``~/.local/share/isolation/envs``).
    :param kill_grace: seconds between SIGTERM and SIGKILL when a task is stopped.
    :param extra_env: plain, non-secret variables for the isolated process (names may
        not start with ``AIRFLOW``, ``ISOLATION_`` or ``PYTHON``).
    """

    name = "local"
    # The runtime starts within seconds of sealing on the same machine.
    envelope_lifetime = 300

    def __init__(
        self,
        envs_home: str | os.PathLike[str] | None = None,
        *,
        kill_grace: float = 5.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.envs_home = Path(envs_home) if envs_home is not None else None
        self.kill_grace = kill_grace
        self.extra_env = dict(extra_env or {})
        for key in self.extra_env:
            if key.upper().startswith(_RESERVED_PREFIXES):
                raise ValueError(f"extra_env may not set {key!r}: that name is reserved for Airflow and isolation")
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend(envs_home={str(self.envs_home) if self.envs_home else None!r})"

    # -- Backend -----------------------------------------------------------------

    def locate(self, environment: str) -> LocalEnvironment:
        return find_local(environment, home=self.envs_home)

    def check(self, environment: str) -> None:
        self.locate(environment)

    def built_versions(self, environment: str) -> tuple[str | None, str | None] | None:
        env = self.locate(environment)
        return (env.python_version or None, env.airflow_version)

    def run(self, environment: str, seal: Sealer, on_log: LogSink) -> RunOutcome:
        env = self.locate(environment)
        workdir = Path(tempfile.mkdtemp(prefix=f"isolation-{environment}-"))
        try:
            result_path = workdir / RESULT_FILE
            envelope = seal(str(result_path)).encode("ascii")
            # The child watches the read end; only this process holds the write end, so
            # the child learns of our death even from SIGKILL (see isolation.runtime.lifeline).
            lifeline_read, lifeline_write = os.pipe()
            try:
                proc = self._start(env, workdir, result_path, lifeline_read)
            except BaseException:
                os.close(lifeline_write)
                raise
            finally:
                os.close(lifeline_read)
            try:
                tail = _pump(proc, envelope, on_log)
                code = proc.wait()
            finally:
                with self._lock:
                    self._proc = None
                _process.terminate(proc, self.kill_grace)
                os.close(lifeline_write)
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
            return RunOutcome(code, _read_result(result_path), tuple(tail))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def cancel(self) -> None:
        # Runs inside a signal handler (on_kill): signal now, escalate later, never block.
        with self._lock:
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        tree = _process.descendants(proc.pid)
        _process.signal_tree(proc.pid, tree, signal.SIGTERM)

        def escalate() -> None:
            if proc.poll() is None or _process.descendants(proc.pid):
                _process.signal_tree(proc.pid, tree + _process.descendants(proc.pid), signal.SIGKILL)

        timer = threading.Timer(self.kill_grace, escalate)
        timer.daemon = True
        timer.start()

    # -- helpers -----------------------------------------------------------------

    def child_environment(self, env: LocalEnvironment, workdir: Path, result_path: Path) -> dict[str, str]:
        """The whole environment of the isolated process: an allow-list, never a deny-list."""
        child = {key: os.environ[key] for key in ALLOWED_ENV if key in os.environ}
        child.setdefault("LANG", "C.UTF-8")
        child["PATH"] = os.pathsep.join([str(env.python.parent), child.get("PATH") or os.defpath])
        child.update(self.extra_env)
        child.update(
            {
                "HOME": str(workdir),
                "TMPDIR": str(workdir),
                "ISOLATION_KEYS_DIR": str(env.keys_dir),
                # Also where a runtime that cannot open the envelope reports why.
                "ISOLATION_RESULT_PATH": str(result_path),
            }
        )
        return child

    def _start(self, env: LocalEnvironment, workdir: Path, result_path: Path, lifeline: int) -> subprocess.Popen[bytes]:
        command = [str(env.python), "-I", "-u", "-m", "isolation.runtime", "--stdin"]
        child_env = self.child_environment(env, workdir, result_path)
        child_env[LIFELINE_ENV] = str(lifeline)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                close_fds=True,
                pass_fds=(lifeline,),
                start_new_session=True,
                cwd=workdir,
                env=child_env,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot start the interpreter of local environment {env.name!r} at {env.python} "
                f"({exc.strerror or type(exc).__name__})",
                hint=f"rebuild it: python -m isolation.environments build {env.name}",
            ) from None
        with self._lock:
            self._proc = proc
        return proc


def _pump(proc: subprocess.Popen[bytes], envelope: bytes, on_log: LogSink) -> collections.deque[str]:
    """Write the envelope, forward output lines as they come, until the runtime is done."""
    assert proc.stdin is not None and proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)

    def emit(raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(line)
        on_log(line)

    stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(stdin_fd, False)
    pending = memoryview(envelope)
    buffer = bytearray()
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout_fd, selectors.EVENT_READ)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
        while True:
            for key, _ in selector.select(timeout=0.25):
                if key.fd == stdin_fd:
                    try:
                        pending = pending[os.write(stdin_fd, pending[:_READ_CHUNK]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    except BlockingIOError:
                        continue
                    if not pending:
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(stdout_fd, _READ_CHUNK)
                if not chunk:
                    if buffer:
                        emit(bytes(buffer))
                    return tail
                buffer += chunk
                while (newline := buffer.find(b"\n")) != -1:
                    emit(bytes(buffer[: newline + 1]))
                    del buffer[: newline + 1]
                if len(buffer) > MAX_LINE:
                    emit(bytes(buffer))
                    buffer.clear()
            if proc.poll() is not None:
                # A process the runtime left behind may hold the pipe open; do not wait on it.
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > _DRAIN_AFTER_EXIT:
                    if buffer:
                        emit(bytes(buffer))
                    return tail


def _read_result(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_RESULT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the isolated task's result file ({exc.strerror})") from None
