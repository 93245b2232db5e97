"""The local backend: another interpreter (a virtualenv) on this machine, sandboxed.

Per task: ``<env python> -I -u -m isolation.runtime --stdin`` in the sandbox of
:mod:`isolation.backends.sandbox` (bubblewrap; unless the environment declares
``sandbox = "none"``), in a session of its own, with

- the envelope written to its standard input through a pipe, then closed;
- a scrubbed environment built from an allow-list (no Airflow settings, no
  ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*``, no database URL, no supervisor sockets);
- no inherited file descriptors but three: the lifeline pipe (the task ends when this
  process dies), the result (an anonymous memory file, ``/proc/self/fd/N`` to the runtime,
  so no result and no secret is ever on disk, whatever happens to this process) and, for
  bubblewrap alone, the pipes of its seccomp filter and ``/etc/passwd``;
- standard output and error merged into one pipe that is read, masked, cut into lines and
  forwarded live, up to the environment's log limit;
- the environment's wall-clock limit, enforced here whatever the host task's timeout.

One thread does it all with a selector, so a task timeout (``SIGALRM`` in the Airflow
task process) interrupts it, and ``finally`` ends the process tree.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from isolation.backends import _cgroup, _process, _warm, sandbox
from isolation.backends.base import MAX_RESULT_BYTES, Backend, LogSink, RunOutcome, Sealer
from isolation.environments.local import LocalEnvironment, find_local
from isolation.environments.settings import describe
from isolation.errors import ConfigurationError, IsolatedTaskFailed, WarmServerUnavailable

# The runtime side: isolation.runtime.lifeline (the same name, read once and removed).
LIFELINE_ENV = "ISOLATION_LIFELINE_FD"
MAX_LINE = 64 * 1024
LOG_TAIL = 20
# Set to 0/false/off on a worker to start every task cold, whatever its environment says.
WARM_ENV = "ISOLATION_WARM"
# Host variables the runtime may see; everything else stays behind.
ALLOWED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
_RESERVED_PREFIXES = ("AIRFLOW", "ISOLATION_", "PYTHON", "_AIRFLOW")
_READ_CHUNK = 65536
# After the runtime exits, how long a straggler that still holds the pipe may keep it.
_DRAIN_AFTER_EXIT = 1.0
NO_SANDBOX_WARNING = (
    'isolation: WARNING: environment {name!r} sets sandbox = "none": this task runs with the '
    "worker's authority and can read everything the worker can (no boundary)"
)


class LocalBackend(Backend):
    """Run isolated tasks in local environments built by ``isolation.environments``.

    :param envs_home: where local environments live (default: ``ISOLATION_ENVS_HOME``,
        else ``~/.local/share/isolation/envs``).
    :param kill_grace: seconds between SIGTERM and SIGKILL when a task is stopped.
    :param extra_env: plain, non-secret variables for the isolated process (names may
        not start with ``AIRFLOW``, ``ISOLATION_`` or ``PYTHON``).
    :param warm: fork tasks from the environment's warm server (``True``), start a new
        interpreter per task (``False``), or follow the environment's ``[warm]`` setting
        (``None``, the default; warm unless the environment says ``warm = false`` or the
        worker sets ``ISOLATION_WARM=0``).
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
        warm: bool | None = None,
    ) -> None:
        self.envs_home = Path(envs_home) if envs_home is not None else None
        self.kill_grace = kill_grace
        self.extra_env = dict(extra_env or {})
        for key in self.extra_env:
            if key.upper().startswith(_RESERVED_PREFIXES):
                raise ValueError(f"extra_env may not set {key!r}: that name is reserved for Airflow and isolation")
        self.warm = warm
        self._proc: subprocess.Popen[bytes] | None = None
        self._warm_task: _warm.WarmTask | None = None
        self._early: _EarlyChild | None = None
        self._in_sandbox = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBackend(envs_home={str(self.envs_home) if self.envs_home else None!r}, warm={self.warm!r})"

    # -- Backend -----------------------------------------------------------------

    def locate(self, environment: str) -> LocalEnvironment:
        return find_local(environment, home=self.envs_home)

    def check(self, environment: str) -> None:
        env = self.locate(environment)
        from isolation import __version__

        if env.runtime_version is not None and env.runtime_version != __version__:
            # A runtime of another version may not follow this host's contract or checks.
            raise ConfigurationError(
                f"local environment {environment!r} holds isolation runtime {env.runtime_version}, "
                f"this host runs {__version__}",
                hint=f"rebuild it: isolationctl deploy --local -e {environment}",
            )
        if env.settings.sandboxed:
            # Before any secret is resolved: a machine without a working sandbox fails here.
            sandbox.require()

    def built_versions(self, environment: str) -> tuple[str | None, str | None] | None:
        env = self.locate(environment)
        return (env.python_version or None, env.airflow_version)

    def bind(self, context: object, task_id: str) -> LocalBackend:
        # One instance in a DAG file serves many tasks: each run gets its own state.
        bound = copy.copy(self)
        bound._proc = None
        bound._warm_task = None
        bound._early = None
        bound._in_sandbox = False
        bound._lock = threading.Lock()
        return bound

    def prepare(self, environment: str) -> None:
        """Ask the warm server for this task's child now, before the host resolves its state.

        The server forks and the child makes its namespaces (tens of milliseconds) while
        the host reads keys, connections, variables and the context: on two cores the
        two overlap. The child holds nothing until :meth:`run` sends the envelope.
        """
        self.release()
        env = self.locate(environment)
        if not self._warm_enabled(env):
            return
        try:
            # Only a server already running: a task that fails before run() starts none.
            conn = _warm.connect(env)
        except WarmServerUnavailable:
            return  # run() starts one, or says why not and starts the task cold
        result_fd = os.memfd_create(f"isolation-result-{environment}", os.MFD_CLOEXEC)
        try:
            self._early = _EarlyChild(environment, result_fd, self._request_warm(env, result_fd, conn))
        except WarmServerUnavailable as exc:
            self._early = _EarlyChild(environment, result_fd, None, exc)
        except BaseException:
            os.close(result_fd)
            raise

    def release(self) -> None:
        """Give up a child that :meth:`prepare` asked for and no run took (the task failed first)."""
        early, self._early = self._early, None
        if early is not None:
            early.close()

    def run(self, environment: str, seal: Sealer, on_log: LogSink) -> RunOutcome:
        env = self.locate(environment)
        if env.settings.sandboxed:
            sandbox.require()  # before anything is sealed
        early, self._early = self._early, None
        if early is not None and early.environment != environment:
            early.close()
            early = None
        on_log(f"isolation: environment {environment!r}: {describe(env.settings)}")
        if not env.settings.sandboxed:
            on_log(NO_SANDBOX_WARNING.format(name=environment))
        # The result comes back in memory: nothing to clean up, nothing left on disk if we die.
        if early is not None:
            result_fd, early.result_fd = early.result_fd, -1
        else:
            result_fd = os.memfd_create(f"isolation-result-{environment}", os.MFD_CLOEXEC)
        try:
            envelope = seal(f"/proc/self/fd/{result_fd}").encode("ascii")
            if self._warm_enabled(env):
                try:
                    if early is not None and early.error is not None:
                        raise early.error
                    request = early.request if early is not None else None
                    if early is not None:
                        early.request = None
                    request = request or self._request_warm(env, result_fd)
                    return self._run_warm(env, envelope, result_fd, request, on_log)
                except WarmServerUnavailable as exc:
                    on_log(f"isolation: warm server not used: {exc.message}; starting the task cold")
                    # A child that never got the envelope may still hold the old memory file.
                    fresh = os.memfd_create(f"isolation-result-{environment}", os.MFD_CLOEXEC)
                    os.dup2(fresh, result_fd, inheritable=False)
                    os.close(fresh)
            return self._run_cold(env, envelope, result_fd, on_log)
        finally:
            os.close(result_fd)
            if early is not None:
                early.close()

    def _warm_enabled(self, env: LocalEnvironment) -> bool:
        if not env.settings.sandboxed:
            return False  # a warm child makes its namespaces like a sandbox; none without one
        if self.warm is not None:
            return self.warm
        forced = os.environ.get(WARM_ENV, "").strip().lower()
        if forced in ("0", "false", "off", "no"):
            return False
        return env.settings.warm.enabled

    def _request_warm(self, env: LocalEnvironment, result_fd: int, conn: socket.socket | None = None) -> _WarmRequest:
        """Ask the environment's warm server (over ``conn``, else one started if need be) for a child.

        Raises WarmServerUnavailable.
        """
        conn = conn or _warm.ensure(env, self._base_environment())
        lifeline_read, lifeline_write = os.pipe()
        cgroup = sandbox.task_cgroup(env.settings)
        cgroup_fds: list[int] = []
        try:
            if cgroup is not None:
                cgroup_fds = [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in cgroup.directories]
            child_env = self.sandbox_environment(env, result_fd)
            lifeline_number = 3 if result_fd != 3 else 4
            child_env[LIFELINE_ENV] = str(lifeline_number)
            pending = _warm.request(
                conn,
                env,
                child_env,
                lifeline_fd=lifeline_read,
                lifeline_number=lifeline_number,
                result_fd=result_fd,
                cgroup_fds=tuple(cgroup_fds),
            )
        except BaseException:
            os.close(lifeline_write)
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            os.close(lifeline_read)
            for fd in cgroup_fds:
                os.close(fd)
        return _WarmRequest(pending, lifeline_write, cgroup)

    def _run_warm(
        self, env: LocalEnvironment, envelope: bytes, result_fd: int, request: _WarmRequest, on_log: LogSink
    ) -> RunOutcome:
        """The task in a fork of the environment's warm server (isolation.runtime.warm).

        Raises WarmServerUnavailable while nothing of the task ran; once the child is
        ready, a failure of the server fails the task (it is never run twice).
        """
        try:
            task = _warm.started(request.pending)
        except BaseException:
            request.close()
            raise
        on_log(f"isolation: {sandbox.enforcement(sandbox.Launch([], (), [], request.cgroup))}; warm start")
        with self._lock:
            self._warm_task = task
        limits = env.settings.limits
        try:
            deadline = time.monotonic() + limits.wall_clock
            pumped = _pump(task, envelope, on_log, log_limit=limits.log, deadline=deadline)  # type: ignore[arg-type]
            code = -signal.SIGKILL if pumped.timed_out else task.wait()
        finally:
            with self._lock:
                self._warm_task = None
            task.terminate_tree(self.kill_grace)
            request.close()
            for stream in (task.stdin, task.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        if pumped.timed_out:
            raise self._wall_clock_error(env)
        if task.server_lost:
            raise IsolatedTaskFailed(
                f"the warm server of environment {env.name!r} ended while the task ran; the task was stopped",
                hint=f"see {_warm.directory(env, create=False) / _warm.LOG}; the next task starts a new server "
                "(or cold: set warm = false in the environment's isolation.toml)",
            )
        assert code is not None
        return RunOutcome(code, _read_result(result_fd), tuple(pumped.tail))

    def _wall_clock_error(self, env: LocalEnvironment) -> IsolatedTaskFailed:
        limits = env.settings.limits
        return IsolatedTaskFailed(
            f"the isolated task in environment {env.name!r} ran longer than its wall-clock limit "
            f"of {limits.wall_clock} s and was stopped",
            hint=f"raise [limits] wall_clock in environments/{env.name}/isolation.toml and rebuild, "
            "or make the task faster",
        )

    def _run_cold(self, env: LocalEnvironment, envelope: bytes, result_fd: int, on_log: LogSink) -> RunOutcome:
        """The task in a new interpreter (in a new sandbox, unless the environment has none)."""
        environment = env.name
        workdir: Path | None = None
        try:
            # The child watches the read end; only this process holds the write end, so
            # the child learns of our death even from SIGKILL (see isolation.runtime.lifeline).
            lifeline_read, lifeline_write = os.pipe()
            launch: sandbox.Launch | None = None
            try:
                if env.settings.sandboxed:
                    launch = self._sandboxed(env)
                    on_log(f"isolation: {sandbox.enforcement(launch)}")
                    command, child_env, cwd = launch.argv, self.sandbox_environment(env, result_fd), None
                else:
                    workdir = Path(tempfile.mkdtemp(prefix=f"isolation-{environment}-"))
                    command = self.runtime_command(env)
                    child_env, cwd = self.child_environment(env, workdir, result_fd), workdir
                child_env[LIFELINE_ENV] = str(lifeline_read)
                fds = (lifeline_read, result_fd, *(launch.pass_fds if launch else ()))
                self._in_sandbox = launch is not None
                proc = self._start(env, command, child_env, cwd, fds)
            except BaseException:
                os.close(lifeline_write)
                if launch is not None:
                    launch.finished()
                raise
            finally:
                os.close(lifeline_read)
                if launch is not None:
                    launch.started()
            limits = env.settings.limits
            try:
                deadline = time.monotonic() + limits.wall_clock
                pumped = _pump(proc, envelope, on_log, log_limit=limits.log, deadline=deadline)
                # Past its wall clock the task is stopped below, not waited for.
                code = -signal.SIGKILL if pumped.timed_out else proc.wait()
            finally:
                with self._lock:
                    self._proc = None
                _process.terminate(proc, self.kill_grace, sandboxed=launch is not None)
                os.close(lifeline_write)
                if launch is not None:
                    launch.finished()
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        with contextlib.suppress(OSError):
                            stream.close()
            if pumped.timed_out:
                raise self._wall_clock_error(env)
            result = _read_result(result_fd)
            failure = sandbox.startup_failure(code, pumped.tail) if launch is not None and result is None else None
            if failure is not None:
                raise failure
            return RunOutcome(code, result, tuple(pumped.tail))
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def cancel(self) -> None:
        # Runs inside a signal handler (on_kill): signal now, escalate later, never block.
        with self._lock:
            proc, warm_task = self._proc, self._warm_task
        if warm_task is not None:
            # The task is pid 1 of its own namespaces: a KILL after the grace ends all of it.
            warm_task.send_signal(signal.SIGTERM)
            timer = threading.Timer(self.kill_grace, warm_task.send_signal, args=(signal.SIGKILL,))
            timer.daemon = True
            timer.start()
            return
        if proc is None or proc.poll() is not None:
            return
        tree = _process.descendants(proc.pid)
        _process.signal_tree(proc.pid, tree, signal.SIGTERM, include_leader=not self._in_sandbox)

        def escalate() -> None:
            if proc.poll() is None or _process.descendants(proc.pid):
                _process.signal_tree(proc.pid, tree + _process.descendants(proc.pid), signal.SIGKILL)

        timer = threading.Timer(self.kill_grace, escalate)
        timer.daemon = True
        timer.start()

    # -- helpers -----------------------------------------------------------------

    def runtime_command(self, env: LocalEnvironment) -> list[str]:
        return [str(env.python), "-I", "-u", "-m", "isolation.runtime", "--stdin"]

    def _base_environment(self) -> dict[str, str]:
        child = {key: os.environ[key] for key in ALLOWED_ENV if key in os.environ}
        child.setdefault("LANG", "C.UTF-8")
        child.update(self.extra_env)
        return child

    def child_environment(self, env: LocalEnvironment, workdir: Path, result_fd: int) -> dict[str, str]:
        """The whole environment of an unsandboxed runtime: an allow-list, never a deny-list."""
        child = self._base_environment()
        child["PATH"] = os.pathsep.join([str(env.python.parent), child.get("PATH") or os.defpath])
        child.update(
            {
                "HOME": str(workdir),
                "TMPDIR": str(workdir),
                "ISOLATION_KEYS_DIR": str(env.keys_dir),
                # Also where a runtime that cannot open the envelope reports why.
                "ISOLATION_RESULT_PATH": f"/proc/self/fd/{result_fd}",
            }
        )
        return child

    def sandbox_environment(self, env: LocalEnvironment, result_fd: int) -> dict[str, str]:
        """The whole environment of a sandboxed runtime (paths as the sandbox sees them)."""
        child = sandbox.environment(self._base_environment(), env.venv, env.settings)
        child["ISOLATION_RESULT_PATH"] = f"/proc/self/fd/{result_fd}"
        return child

    def _sandboxed(self, env: LocalEnvironment) -> sandbox.Launch:
        return sandbox.command(
            env.settings,
            venv=env.venv,
            keys_dir=env.keys_dir,
            program=self.runtime_command(env),
            env_name=env.name,
        )

    def _start(
        self,
        env: LocalEnvironment,
        command: list[str],
        child_env: dict[str, str],
        cwd: Path | None,
        fds: tuple[int, ...],
    ) -> subprocess.Popen[bytes]:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                close_fds=True,
                pass_fds=fds,
                start_new_session=True,
                cwd=cwd,
                env=child_env,
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot start the interpreter of local environment {env.name!r} at {env.python} "
                f"({exc.strerror or type(exc).__name__})",
                hint=f"rebuild it: isolationctl deploy --local -e {env.name}",
            ) from None
        with self._lock:
            self._proc = proc
        return proc


@dataclass
class _WarmRequest:
    """What the host holds for a warm child it asked for: its connection, lifeline, cgroup."""

    pending: _warm.PendingTask
    lifeline_write: int
    cgroup: _cgroup.TaskCgroup | None

    def close(self) -> None:
        self.pending.close()
        if self.lifeline_write >= 0:
            os.close(self.lifeline_write)
            self.lifeline_write = -1
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None


@dataclass
class _EarlyChild:
    """A warm child asked for by ``prepare``, or why none could be."""

    environment: str
    result_fd: int
    request: _WarmRequest | None
    error: WarmServerUnavailable | None = None

    def close(self) -> None:
        if self.request is not None:
            self.request.pending.abandon()
            self.request.close()
            self.request = None
        if self.result_fd >= 0:
            os.close(self.result_fd)
            self.result_fd = -1


@dataclass
class _Pumped:
    tail: collections.deque[str]
    timed_out: bool = False


class _LogForwarder:
    """Cuts output into lines and forwards them, up to ``limit`` bytes, then one notice."""

    def __init__(self, on_log: LogSink, limit: int) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._on_log = on_log
        self._left = limit
        self._limit = limit
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while (newline := self._buffer.find(b"\n")) != -1:
            self._emit(bytes(self._buffer[: newline + 1]))
            del self._buffer[: newline + 1]
        if len(self._buffer) > MAX_LINE:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def flush(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def _emit(self, raw: bytes) -> None:
        if self._left < 0:
            return
        self._left -= len(raw)
        if self._left < 0:
            line = f"isolation: the task's log reached its limit of {self._limit} bytes; the rest is dropped"
        else:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        self.tail.append(line)
        self._on_log(line)


def _pump(
    proc: subprocess.Popen[bytes], envelope: bytes, on_log: LogSink, *, log_limit: int, deadline: float
) -> _Pumped:
    """Write the envelope, forward output lines as they come, until the runtime is done."""
    assert proc.stdin is not None and proc.stdout is not None
    forwarder = _LogForwarder(on_log, log_limit)
    pumped = _Pumped(forwarder.tail)
    stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(stdin_fd, False)
    pending = memoryview(envelope)
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
                    forwarder.flush()
                    return pumped
                forwarder.feed(chunk)
            if time.monotonic() > deadline and proc.poll() is None:
                pumped.timed_out = True
                forwarder.flush()
                return pumped
            if proc.poll() is not None:
                # A process the runtime left behind may hold the pipe open; do not wait on it.
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > _DRAIN_AFTER_EXIT:
                    forwarder.flush()
                    return pumped


def _read_result(fd: int) -> bytes | None:
    """The result document the runtime wrote into the memory file (None: it wrote none)."""
    try:
        data = os.pread(fd, MAX_RESULT_BYTES + 1, 0)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the isolated task's result ({exc.strerror})") from None
    return data or None
