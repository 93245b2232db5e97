"""One task on the warm path: a fork of the warm server that becomes a sandbox of its own.

The server forks ``C1`` per task. ``C1`` joins the task's cgroup (root workers), leaves
the server's namespaces for new user, mount, PID, IPC, UTS (and, without
``network = "host"``, network) namespaces, maps its own uid, and forks ``C2``: pid 1 of
the new PID namespace, which runs the task. ``C1`` stays outside as the reaper: it
reports ``C2``'s pid and, at the end, its wait status to the server. When ``C2`` ends,
the kernel kills every process left in its PID namespace.

Before a byte of the envelope is read, ``C2``:

- mounts its own ``/proc`` (only its own processes), a fresh size-limited ``/tmp`` and
  ``/dev/shm`` (HOME, TMPDIR, cwd), ``/proc/sys`` read-only, and for a root worker
  hides the root-only ``/proc`` files and the host ``/proc`` the server needed to allow it;
- drops every capability (bounding, ambient, effective, permitted, inheritable) and
  stacks the cold task's seccomp filter on the server's, so it can make no further
  namespace or mount;
- reseeds its random generators (a fork copies the parent's state);
- takes the allow-listed environment the host sent, and nothing of the server's.

Then it is the ordinary runtime (``isolation.runtime.__main__.run``): the child, never
the server, opens the envelope.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

from isolation._procfs import ROOT_ONLY_PROC_FILES
from isolation.runtime.warm import _linux

HOST_PROC = "/run/isolation/host-proc"
TMP = "/tmp"  # noqa: S108 - the child's own tmpfs
SHM = "/dev/shm"  # noqa: S108
HOME = "/tmp/home"  # noqa: S108 - the child's own tmpfs
WORKDIR = "/tmp/work"  # noqa: S108
# C1's exit code when it could not make the sandbox: the server reports it as a failure
# before the task started, so the host falls back to a cold start.
SETUP_FAILED = 70
_OUT_OF_THE_WAY = 1000
_MAX_FD = 1 << 20


@dataclass(frozen=True)
class TaskSpec:
    """What the server knows of one task: nothing secret."""

    environ: dict[str, str]
    tmp_size: int
    own_network: bool
    host_proc: bool
    airflow_home: str
    seccomp: bytes
    cgroup_fds: tuple[int, ...]
    task_fds: tuple[int, ...] = ()  # the task's own descriptors, which C1 lets go of


def start(spec: TaskSpec, status_fd: int) -> NoReturn:
    """Runs in C1, right after the server's fork. Never returns."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        for fd in spec.cgroup_fds:
            # The host (root) opened each cgroup.procs; "0" moves this process.
            os.write(fd, b"0")
            os.close(fd)
        uid, gid = os.getuid(), os.getgid()
        flags = _linux.CLONE_NEWUSER | _linux.CLONE_NEWNS | _linux.CLONE_NEWPID | _linux.CLONE_NEWIPC
        flags |= _linux.CLONE_NEWUTS
        if spec.own_network:
            flags |= _linux.CLONE_NEWNET
        _linux.unshare(flags)
        _linux.write_id_maps(uid, gid)
        _linux.die_with_parent()
        read_go, write_go = os.pipe()
        pid = os.fork()
    except BaseException as exc:
        _report(status_fd, f"setup {type(exc).__name__}: {exc}")
        os._exit(SETUP_FAILED)
    if pid == 0:
        os.close(write_go)
        _task(spec, status_fd, read_go)
    os.close(read_go)
    # Only C2 holds the task's output now: the host sees its end of file when C2 ends,
    # not after C1 has been scheduled to reap it and exit too.
    for fd in spec.task_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _report(status_fd, f"pid {pid}")
    os.close(write_go)
    try:
        _, status = os.waitpid(pid, 0)
    except OSError:
        status = 0xFF00
    _report(status_fd, f"status {status}")
    os._exit(0)


def _report(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode())


def _task(spec: TaskSpec, status_fd: int, go_fd: int) -> NoReturn:
    """C2: pid 1 of its own namespaces. Never returns."""
    try:
        # Wait until C1 has told the server our pid: a signal for this task must find it.
        os.read(go_fd, 1)
        os.close(go_fd)
        _linux.die_with_parent()
        os.setsid()
        _mounts(spec)
        socket.sethostname("isolated")
        if spec.own_network:
            _linux.loopback_up()
        _linux.drop_capabilities()
        _linux.install_seccomp(spec.seccomp)
        _reseed()
        os.environ.clear()
        os.environ.update(spec.environ)
        _report(status_fd, "ready")
        os.close(status_fd)
    except BaseException as exc:
        _report(status_fd, f"setup {type(exc).__name__}: {exc}")
        os._exit(SETUP_FAILED)
    from isolation.runtime.__main__ import _exit_now, run

    code = 70
    try:
        code = run(["--stdin"])
    finally:
        _exit_now(code)
    os._exit(code)  # pragma: no cover - _exit_now does not return


def _mounts(spec: TaskSpec) -> None:
    m = _linux
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    proc_flags = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC
    if spec.host_proc:
        # The host /proc the server holds is read-only; the kernel wants the same of this one.
        proc_flags |= m.MS_RDONLY
    m.mount("proc", "/proc", "proc", proc_flags)
    for path in ("/proc/sys", "/proc/sysrq-trigger"):
        if os.path.exists(path):
            m.mount(path, path, None, m.MS_BIND | m.MS_REC)
            m.mount(None, path, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | proc_flags)
    if os.getuid() == 0:
        for name in ROOT_ONLY_PROC_FILES:
            if os.path.exists(f"/proc/{name}"):
                m.mount("/dev/null", f"/proc/{name}", None, m.MS_BIND)
    if spec.host_proc:
        m.mount("tmpfs", HOST_PROC, "tmpfs", m.MS_RDONLY | proc_flags, "size=4k,mode=0")
    # The environment's own binds may live below /tmp (a venv in a temporary cache):
    # hold each by a descriptor, cover /tmp with this task's own tmpfs, and bind them back.
    below = _mounts_below((TMP + "/", SHM + "/"))
    held = [(point, os.open(point, os.O_PATH | os.O_DIRECTORY)) for point in below]
    size = f"size={spec.tmp_size},mode=1777"
    m.mount("tmpfs", TMP, "tmpfs", m.MS_NOSUID | m.MS_NODEV, size)
    m.mount("tmpfs", SHM, "tmpfs", m.MS_NOSUID | m.MS_NODEV, size)
    for point, fd in held:
        os.makedirs(point, exist_ok=True)
        # A bind keeps the read-only flag of what it binds.
        m.mount(f"/proc/self/fd/{fd}", point, None, m.MS_BIND | m.MS_REC)
        os.close(fd)
    for directory in (HOME, WORKDIR, spec.airflow_home):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    # Airflow read its configuration in the server; the file it found must still exist.
    with open(os.path.join(spec.airflow_home, "airflow.cfg"), "w", encoding="utf-8"):
        pass
    os.chdir(WORKDIR)


def _mounts_below(prefixes: tuple[str, ...]) -> list[str]:
    """Mount points under ``prefixes``, outermost only (their submounts come along)."""
    points: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefixes):
                points.append(point)
    points.sort()
    outer: list[str] = []
    for point in points:
        if not any(point.startswith(parent + "/") or point == parent for parent in outer):
            outer.append(point)
    return outer


def _reseed() -> None:
    # A fork copies the parent's generator states; Python's random reseeds itself at fork
    # (os.register_at_fork), OpenSSL notices the new pid; reseed both anyway, from the kernel.
    import random

    random.seed()
    ssl = sys.modules.get("ssl")
    if ssl is not None:
        ssl.RAND_add(os.urandom(64), 64.0)


def install_descriptors(placed: list[tuple[int, int]], keep: tuple[int, ...]) -> tuple[int, ...]:
    """Put each ``(fd, number)`` of ``placed`` at its number and close every other descriptor.

    Runs in C1 before anything else: of the server's descriptors (its listening socket,
    its log, other tasks' connections) none survives. ``keep`` (not inherited by the
    task's own children) go just above the placed ones; their new numbers are returned.
    """
    # Out of the way of every target first, then into place.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _OUT_OF_THE_WAY) for fd, _ in placed]
    kept_high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _OUT_OF_THE_WAY) for fd in keep]
    os.closerange(0, _OUT_OF_THE_WAY)
    for fd, (_, number) in zip(high, placed, strict=False):
        os.dup2(fd, number, inheritable=True)
    first = max(number for _, number in placed) + 1
    kept = tuple(range(first, first + len(keep)))
    for fd, number in zip(kept_high, kept, strict=False):
        os.dup2(fd, number, inheritable=False)
    os.closerange(_OUT_OF_THE_WAY, _MAX_FD)
    return kept
