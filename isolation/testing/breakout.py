"""Breakout probes: each tries one escape from an isolated task and says whether it failed.

Run them inside an environment, as the callable of an isolated ``PythonOperator``::

    from isolation.testing import breakout

    IsolatedOperator(
        task_id="breakout",
        operator="airflow.providers.standard.operators.python.PythonOperator",
        environment="team-a",
        python_callable=breakout.catalogue,
        op_kwargs={
            "host_files": ["/opt/airflow/airflow.cfg", "/opt/airflow/keyring/signer.json"],
            "database_url": "postgresql://db.internal:5432/airflow",
            "needles": ["db.internal"],
        },
    )

Every probe returns a JSON-serialisable dict::

    {"probe": "read_host_files", "blocked": True, "how": "ENOENT", "evidence": None, "targets": [...]}

- ``blocked`` is True when the attempt failed, False when it went through (``evidence``
  then says what it got, truncated; of a file only its size and SHA-256, never its
  content), None when the probe itself could not run (``error`` says why).
- ``how`` names the errno (``EPERM``, ``ENOENT``, ...) or the exception type that stopped
  the attempt, or what succeeded.
- A probe with several targets lists each under ``targets``; it is blocked only when every
  target is.
- A system call counts as blocked when it is refused (``EPERM``, ``EACCES``, ``ENOSYS``) or
  kills the caller with ``SIGSYS``; any other error means it reached the kernel and only
  its arguments stopped it.

Some effects only the host can judge: a file written to a path the host has too, a daemon
that may outlive the task, a connection a server may have seen. Those probes report what
went through inside (``blocked`` False) and the host checks what is left afterwards.

Every probe is harmless when it succeeds: files are read, never changed (a planted
``.pth`` holds a comment only); system calls get arguments the kernel rejects or that
change nothing; a process attached with ``ptrace`` is detached at once; files under
``/proc/sys`` are only opened for writing, never written. Probes that act on other
processes try the processes this task can see (outside a sandbox, that is the whole
machine: pass ``scan=False`` and the pids to try).

Standard library only and no Airflow, so every environment this project is installed in
can run them, under any Airflow version.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import platform
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

__all__ = [
    "MARKER_PREFIX",
    "catalogue",
    "connect_tcp",
    "connect_unix",
    "device_node",
    "emit_secret_forms",
    "foreign_abi",
    "foreign_fds",
    "leave_daemon",
    "leave_files_then_sleep",
    "open_database",
    "own_site_packages",
    "plant_pth",
    "proc_writes",
    "process_access",
    "read_environ",
    "read_files",
    "secret_forms",
    "syscalls",
    "write_files",
]

Result = dict[str, Any]

MARKER_PREFIX = "isolation-breakout-"
"""Every file a probe creates starts with this, so the host can look for them."""
EVIDENCE_LIMIT = 200
REFUSED = frozenset({"EPERM", "EACCES", "ENOSYS", "SIGSYS"})
_READ_LIMIT = 64 * 2**20
_SPECIAL_READ_LIMIT = 4096
_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
_HARMLESS = b"# left by isolation.testing.breakout: a comment, so it does nothing\n"

# System call numbers of the calls the probes make: (name, x86_64, aarch64).
_NUMBER_TABLE = (
    ("getpid", 39, 172),
    ("clone", 56, 220),
    ("ptrace", 101, 117),
    ("pivot_root", 155, 41),
    ("chroot", 161, 51),
    ("mount", 165, 40),
    ("umount2", 166, 39),
    ("init_module", 175, 105),
    ("add_key", 248, 217),
    ("request_key", 249, 218),
    ("keyctl", 250, 219),
    ("unshare", 272, 97),
    ("perf_event_open", 298, 241),
    ("name_to_handle_at", 303, 264),
    ("open_by_handle_at", 304, 265),
    ("setns", 308, 268),
    ("process_vm_readv", 310, 270),
    ("process_vm_writev", 311, 271),
    ("kcmp", 312, 272),
    ("bpf", 321, 280),
    ("userfaultfd", 323, 282),
    ("io_uring_setup", 425, 425),
    ("open_tree", 428, 428),
    ("fsopen", 430, 430),
    ("pidfd_open", 434, 434),
    ("clone3", 435, 435),
    ("pidfd_getfd", 438, 438),
)
_NUMBERS = {
    "x86_64": {name: number for name, number, _ in _NUMBER_TABLE},
    "aarch64": {name: number for name, _, number in _NUMBER_TABLE},
}
_PTRACE_ATTACH, _PTRACE_DETACH = 16, 17
_WALL = 0x40000000
_CLONE_NEWUSER = 0x10000000
_SIGCHLD = 17
_AT_FDCWD = -100
_O_CLOEXEC = 0o2000000
_X32_BIT = 0x40000000
# mov eax, 20 (getpid in the i386 table); int 0x80; ret
_INT80_GETPID = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"

# (label, system call, arguments): each harmless if it runs ("self" is this process).
_BATTERY: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    # PTRACE_TRACEME would leave this child stopped at its next signal: attach to no one instead.
    ("ptrace(PTRACE_ATTACH)", "ptrace", (_PTRACE_ATTACH, 0, 0, 0)),
    ("process_vm_readv", "process_vm_readv", ("self", 0, 0, 0, 0, 0)),
    ("process_vm_writev", "process_vm_writev", ("self", 0, 0, 0, 0, 0)),
    ("pidfd_getfd", "pidfd_getfd", (-1, 0, 0)),
    ("kcmp", "kcmp", ("self", "self", 0, 0, 0)),
    ("bpf", "bpf", (0, 0, 0)),
    ("userfaultfd", "userfaultfd", (_O_CLOEXEC,)),
    ("perf_event_open", "perf_event_open", (0, 0, -1, -1, 0)),
    ("keyctl(KEYCTL_GET_KEYRING_ID)", "keyctl", (0, -3, 0)),
    ("add_key", "add_key", (0, 0, 0, 0, 0)),
    ("request_key", "request_key", (0, 0, 0, 0)),
    ("io_uring_setup", "io_uring_setup", (1, 0)),
    ("clone3", "clone3", (0, 0)),
    ("setns", "setns", (-1, 0)),
    ("mount", "mount", (0, 0, 0, 0, 0)),
    ("umount2", "umount2", (0, 0)),
    ("fsopen", "fsopen", (0, 0)),
    ("open_tree", "open_tree", (_AT_FDCWD, 0, 0)),
    ("pivot_root", "pivot_root", (0, 0)),
    ("chroot", "chroot", (0,)),
    ("open_by_handle_at", "open_by_handle_at", (-1, 0, 0)),
    ("name_to_handle_at", "name_to_handle_at", (_AT_FDCWD, 0, 0, 0, 0)),
    ("init_module", "init_module", (0, 0, 0)),
    ("clone(CLONE_NEWUSER)", "clone", (_CLONE_NEWUSER | _SIGCHLD, 0, 0, 0, 0)),
    # Last: if it works, this process is in a new user namespace from here on.
    ("unshare(CLONE_NEWUSER)", "unshare", (_CLONE_NEWUSER,)),
)
_RETURNS_FD = frozenset(
    {"userfaultfd", "perf_event_open", "io_uring_setup", "fsopen", "open_tree", "open_by_handle_at"}
)


# --------------------------------------------------------------------------- helpers


def _how(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= EVIDENCE_LIMIT else text[:EVIDENCE_LIMIT] + "..."


def _result(probe: str, blocked: bool | None, how: str, evidence: Any = None, **extra: Any) -> Result:
    found: Result = {"probe": probe, "blocked": blocked, "how": how, "evidence": evidence}
    found.update(extra)
    return found


def _target(target: Any, blocked: bool | None, how: str, evidence: Any = None) -> Result:
    return {"target": target, "blocked": blocked, "how": how, "evidence": evidence}


def _combined(probe: str, targets: list[Result]) -> Result:
    if not targets:
        return _result(probe, None, "nothing to try", error="the probe was given no target")
    flags = [t["blocked"] for t in targets]
    blocked = False if False in flags else (True if all(f is True for f in flags) else None)
    hows = ",".join(sorted({str(t["how"]) for t in targets}))
    evidence = [t["evidence"] for t in targets if t["blocked"] is False] or None
    return _result(probe, blocked, hows, evidence, targets=targets)


def _guarded(probe: str, call: Any, *args: Any, **kwargs: Any) -> Result:
    """Run one probe; an unexpected error is reported (blocked None), never raised."""
    try:
        found: Result = call(*args, **kwargs)
    except Exception as exc:
        return _result(probe, None, "probe error", error=f"{type(exc).__name__}: {_short(str(exc))}")
    found["probe"] = probe
    return found


def _visible_pids() -> list[int]:
    return sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(512)
    except OSError:
        return None
    return _short(raw.replace(b"\0", b" ").decode("utf-8", "replace").strip())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _raw_syscall(number: int, *args: int) -> tuple[int, str]:
    """(return value, errno name or "") of one system call."""
    call = _libc().syscall
    call.restype = ctypes.c_long
    ctypes.set_errno(0)
    value = int(call(ctypes.c_long(number), *(ctypes.c_long(arg) for arg in args)))
    if value == -1:
        code = ctypes.get_errno()
        return -1, errno.errorcode.get(code, str(code))
    return value, ""


def _syscall(name: str, *args: int) -> tuple[int, str]:
    number = _NUMBERS.get(platform.machine(), {}).get(name)
    if number is None:
        return -1, f"no number for {name} on {platform.machine()}"
    return _raw_syscall(number, *args)


def _run_child(kind: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """This module's ``_child(kind)`` in a fresh interpreter: a crash or a new namespace stays there."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from isolation.testing import breakout; breakout._child(sys.argv[2])"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", code, package_parent, kind],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


# --------------------------------------------------------------------------- files and processes


def read_environ(needles: Sequence[str], pids: Sequence[int] | None = None) -> Result:
    """Read ``/proc/<ppid>/environ`` and every other readable ``/proc/<pid>/environ``.

    Blocked unless one of them holds one of ``needles`` (the host's secrets, its database
    URL, ...). The evidence names the pids and the needles' indexes, never a value.
    """
    wanted = [(index, needle.encode()) for index, needle in enumerate(needles) if needle]
    candidates = list(pids) if pids is not None else _visible_pids()
    ppid = os.getppid()
    if ppid > 0 and ppid not in candidates:
        candidates.insert(0, ppid)
    read: list[int] = []
    denied: dict[int, str] = {}
    matches: list[dict[str, Any]] = []
    for pid in candidates:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                data = handle.read()
        except OSError as exc:
            denied[pid] = _how(exc)
            continue
        read.append(pid)
        found = [index for index, needle in wanted if needle in data]
        if found:
            matches.append({"pid": pid, "needles": found, "cmdline": _cmdline(pid)})
    evidence = {
        "ppid": ppid,
        "ppid_environ": "read" if ppid in read else denied.get(ppid, "no parent"),
        "read": len(read),
        "denied": len(denied),
        "matches": matches,
    }
    if not wanted:
        return _result("read_environ", None, "no needles", evidence, error="give the strings to look for")
    if matches:
        return _result("read_environ", False, "needle found", evidence)
    return _result("read_environ", True, "no needle in any readable environ", evidence)


def _read_one(path: str) -> Result:
    try:
        if os.path.isdir(path):
            entries = sorted(os.listdir(path))
            return _target(path, False, "listed", _short(entries[:10]))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return _target(path, True, _how(exc))
    digest = hashlib.sha256()
    size = 0
    try:
        limit = _READ_LIMIT if stat.S_ISREG(os.fstat(fd).st_mode) else _SPECIAL_READ_LIMIT
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    except OSError as exc:
        if size == 0:
            return _target(path, True, f"opened, read: {_how(exc)}")
    finally:
        os.close(fd)
    return _target(path, False, "read", {"bytes": size, "sha256": digest.hexdigest()})


def read_files(paths: Iterable[str], probe: str = "read_files") -> Result:
    """Read each file (or list each directory) in ``paths``: the host's config, DB, keys."""
    return _combined(probe, [_read_one(path) for path in paths])


def _sqlite_path(url: str) -> str:
    rest = url.split(":", 1)[1]
    path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
    return path.split("?", 1)[0]


def _sqlite_query(path: str) -> Result:
    target = f"sqlite3 {path}"
    try:
        import sqlite3
    except ImportError:
        return _target(target, None, "this interpreter has no sqlite3 module")
    try:
        connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=2)
        try:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = None
            if "connection" in tables:
                rows = connection.execute("SELECT count(*) FROM connection").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return _target(target, True, f"{type(exc).__name__}: {_short(str(exc))}")
    return _target(target, False, "queried", {"tables": len(tables), "connection_rows": rows})


def _tcp(host: str, port: int, payload: bytes = b"", timeout: float = 3.0) -> Result:
    target = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if payload:
                sock.sendall(payload)
    except OSError as exc:
        return _target(target, True, _how(exc))
    return _target(target, False, "connected", target)


def open_database(url: str) -> Result:
    """Open the metadata database at ``url``: a SQLite file with ``open()`` and ``sqlite3``, else TCP."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        path = _sqlite_path(url)
        return _combined("open_database", [_read_one(path), _sqlite_query(path)])
    parts = urlsplit(url)
    port = parts.port or _DB_PORTS.get(scheme)
    if not parts.hostname or port is None:
        return _result("open_database", None, "no host and port in the URL", error="give a full database URL")
    return _combined("open_database", [_tcp(parts.hostname, port)])


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _readable_address(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/maps") as handle:
            for line in handle:
                span, perms = line.split()[:2]
                if perms.startswith("r"):
                    return int(span.split("-")[0], 16)
    except (OSError, ValueError):
        pass
    return 0x400000


def _vm_read(pid: int) -> str:
    buffer = ctypes.create_string_buffer(16)
    local = _IOVec(ctypes.cast(buffer, ctypes.c_void_p), 16)
    remote = _IOVec(_readable_address(pid), 16)
    value, how = _syscall("process_vm_readv", pid, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0)
    return f"read {value} bytes" if value > 0 else (how or "read 0 bytes")


def _fd_numbers(pid: int) -> list[int]:
    try:
        return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return list(range(32))


def _copy_fds(pid: int) -> tuple[str, str, list[str]]:
    """pidfd_open, then pidfd_getfd of each of its descriptors: (open how, getfd how, copied)."""
    pidfd, how = _syscall("pidfd_open", pid, 0)
    if pidfd < 0:
        return how, "not tried", []
    copied: list[str] = []
    last = "no descriptor"
    try:
        for number in _fd_numbers(pid):
            fd, last = _syscall("pidfd_getfd", pidfd, number, 0)
            if fd >= 0:
                try:
                    copied.append(f"{number}: {os.readlink(f'/proc/self/fd/{fd}')}")
                except OSError:
                    copied.append(f"{number}: ?")
                finally:
                    os.close(fd)
                if len(copied) >= 5:
                    break
    finally:
        os.close(pidfd)
    return "opened", ("copied" if copied else last), copied


def _attach(pid: int) -> str:
    value, how = _syscall("ptrace", _PTRACE_ATTACH, pid, 0, 0)
    if value != 0:
        return how
    with contextlib.suppress(OSError):
        os.waitpid(pid, _WALL)
    _syscall("ptrace", _PTRACE_DETACH, pid, 0, 0)
    return "attached"


def _attack_process(pid: int) -> Result:
    opened, getfd, copied = _copy_fds(pid)
    steps = {"pidfd_open": opened, "pidfd_getfd": getfd, "ptrace": _attach(pid), "process_vm_readv": _vm_read(pid)}
    got = bool(copied) or steps["ptrace"] == "attached" or steps["process_vm_readv"].startswith("read ")
    evidence = {"cmdline": _cmdline(pid), "copied": copied, **steps} if got else None
    return _target(pid, not got, ",".join(f"{k}={v}" for k, v in steps.items()), evidence)


def process_access(host_pids: Sequence[int] = (), *, scan: bool = True) -> Result:
    """Against each pid: copy its descriptors (``pidfd_open`` + ``pidfd_getfd``, e.g. the
    supervisor's socket), ``ptrace(PTRACE_ATTACH)`` and ``process_vm_readv``.

    ``host_pids`` (e.g. the host task's pid) first, then with ``scan`` every other process
    this one can see in ``/proc``.
    """
    pids = [int(pid) for pid in host_pids]
    if scan:
        own = os.getpid()
        pids += [pid for pid in _visible_pids() if pid != own and pid not in pids]
    found = _combined("process_access", [_attack_process(pid) for pid in pids])
    found["pids"] = pids
    return found


def foreign_fds() -> Result:
    """Open, through ``/proc/<pid>/fd``, what other visible processes hold that this one
    cannot reach by path (a host file held by a process inside the sandbox)."""
    own = os.getpid()
    targets: list[Result] = []
    for pid in _visible_pids():
        if pid == own:
            continue
        try:
            numbers = os.listdir(f"/proc/{pid}/fd")
        except OSError as exc:
            targets.append(_target(f"/proc/{pid}/fd", True, _how(exc)))
            continue
        for number in numbers:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{number}")
            except OSError:
                continue
            if not link.startswith("/") or link.startswith(("/dev/", "/memfd:")) or os.path.exists(link):
                continue  # a pipe, socket, device or a file this process can reach anyway
            try:
                fd = os.open(f"/proc/{pid}/fd/{number}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                targets.append(_target(f"/proc/{pid}/fd/{number}", True, _how(exc)))
                continue
            os.close(fd)
            targets.append(_target(f"/proc/{pid}/fd/{number}", False, "opened", _short(link)))
    if not targets:
        return _result("foreign_fds", True, "no visible process holds a file outside this view")
    return _combined("foreign_fds", targets)


def _create(directory: str, name: str, content: bytes) -> Result:
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        return _target(path, True, _how(exc))
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return _target(path, False, "written", path)


def write_files(directories: Iterable[str], tag: str = "probe", probe: str = "write_files") -> Result:
    """Create ``isolation-breakout-<tag>`` in each directory (never creating a directory).

    A file that was written stays, so the host can see whether it reached the host.
    """
    name = f"{MARKER_PREFIX}{tag}"
    return _combined(probe, [_create(directory, name, b"breakout probe\n") for directory in directories])


def own_site_packages() -> str:
    """This interpreter's site-packages (its virtualenv's, in an environment)."""
    return sysconfig.get_paths()["purelib"]


def plant_pth(directories: Iterable[str] | None = None, tag: str = "probe", probe: str = "plant_pth") -> Result:
    """Plant ``isolation-breakout-<tag>.pth`` in site-packages directories (default: this
    interpreter's own). A ``.pth`` there runs code in every later interpreter of that
    virtualenv; this one holds a comment only. A planted file stays, for the host to see."""
    targets = list(directories) if directories is not None else [own_site_packages()]
    name = f"{MARKER_PREFIX}{tag}.pth"
    return _combined(probe, [_create(directory, name, _HARMLESS) for directory in targets])


_DAEMON = (
    "import os, sys, time\n"
    "pid = os.fork()\n"
    "if pid:\n"
    "    print(pid, flush=True)\n"
    "    os._exit(0)\n"
    "os.setsid()\n"
    "null = os.open(os.devnull, os.O_RDWR)\n"
    "for fd in (0, 1, 2):\n"
    "    os.dup2(null, fd)\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def start_ticks(pid: int | str) -> int:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat``, field 22)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[19])


def leave_daemon(seconds: float = 3600) -> Result:
    """Leave a double-forked ``setsid`` daemon behind that sleeps for ``seconds``.

    Not blocked when it runs as the probe returns; the host checks that it is gone when the
    task is (``evidence["pidns"]`` is its PID namespace's inode: that namespace must be empty).
    """
    done = subprocess.run(
        [sys.executable, "-I", "-c", _DAEMON, str(seconds)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        timeout=30,
        check=False,
    )
    try:
        pid = int(done.stdout.split()[0])
    except (IndexError, ValueError):
        return _result("leave_daemon", True, f"no daemon (exit code {done.returncode})")
    alive = _alive(pid)
    try:
        daemon_ns: int | None = os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        daemon_ns = None
    evidence = {"pid": pid, "pidns": os.stat("/proc/self/ns/pid").st_ino, "daemon_pidns": daemon_ns}
    # The kernel reuses a freed namespace's inode number for the next one: the host tells
    # this namespace's processes from a later one's by their start time (clock ticks since
    # boot, the same inside and outside), none after the daemon's.
    with contextlib.suppress(OSError, IndexError, ValueError):
        evidence["daemon_started"] = start_ticks(pid)
    with contextlib.suppress(OSError):
        evidence["sid"] = os.getsid(pid)
    return _result("leave_daemon", not alive, "running" if alive else "gone", evidence)


def leave_files_then_sleep(seconds: float, directories: Sequence[str] = (), tag: str = "left-behind") -> None:
    """Write a credentials-like file to every writable place, start a daemon, then sleep.

    For a kill test: prints one line
    ``breakout: left <JSON list of paths> daemon=<JSON result> pid=<pid> pidns=<inode>``,
    then sleeps ``seconds``; the host kills the task and checks that nothing is left.
    """
    places = [tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd(), "/dev/shm", *directories]  # noqa: S108
    name = f"{MARKER_PREFIX}{tag}"
    written = [
        found["target"]
        for found in (_create(place, name, b"password=left-behind\n") for place in places)
        if found["blocked"] is False
    ]
    daemon = leave_daemon(seconds)
    pidns = os.stat("/proc/self/ns/pid").st_ino
    report = f"breakout: left {json.dumps(written)} daemon={json.dumps(daemon)} pid={os.getpid()} pidns={pidns}"
    print(report, flush=True)
    time.sleep(seconds)


def connect_tcp(host: str, port: int, tag: str = "probe", timeout: float = 3.0) -> Result:
    """Connect to ``host:port`` (e.g. a loopback server of the host) and send ``tag``."""
    found = _tcp(host, int(port), f"{tag}\n".encode(), timeout)
    return _result("connect_tcp", found["blocked"], found["how"], found["evidence"])


def connect_unix(address: str, tag: str = "probe", timeout: float = 3.0) -> Result:
    """Connect to a UNIX socket (``@name``: the abstract namespace, which follows the network
    namespace) and send ``tag``."""
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(target)
            sock.sendall(f"{tag}\n".encode())
    except OSError as exc:
        return _result("connect_unix", True, _how(exc))
    return _result("connect_unix", False, "connected", address)


def device_node(directory: str | None = None) -> Result:
    """Make a block device node for the disk under ``/usr`` and open it (raw disk access)."""
    place = directory or tempfile.gettempdir()
    path = os.path.join(place, f"{MARKER_PREFIX}disk-{os.getpid()}")
    try:
        os.mknod(path, stat.S_IFBLK | 0o600, os.stat("/usr").st_dev)
    except OSError as exc:
        return _result("device_node", True, f"mknod: {_how(exc)}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return _result("device_node", True, f"made, open: {_how(exc)}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(fd)
    return _result("device_node", False, "opened the disk", path)


# Each runs a program of the writer's choice as root, or stops or reconfigures the machine.
_DANGEROUS_SETTINGS = (
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/poweroff_cmd",
    "/proc/sys/kernel/hotplug",
    "/proc/sys/kernel/sysrq",
    "/proc/sysrq-trigger",
    "/proc/sys/kernel/panic",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/kernel/randomize_va_space",
    "/proc/sys/fs/suid_dumpable",
)


def proc_writes(include_net: bool = True, limit: int = 20000) -> Result:
    """Open every file under ``/proc/sys`` for writing (and ``/proc/sysrq-trigger``); write nothing.

    A writable ``kernel.core_pattern`` or ``kernel.modprobe`` runs a program of the
    attacker's choice as root on the host. ``/proc/sys/net`` belongs to the task's network
    namespace: with its own (``network = "none"``) pass ``include_net=False``.
    """
    writable: list[str] = []
    writable_net: list[str] = []
    checked = 0
    paths: list[str] = ["/proc/sysrq-trigger"]
    for directory, _, names in os.walk("/proc/sys"):
        paths += [os.path.join(directory, name) for name in names]
        if len(paths) > limit:
            break
    for path in paths[:limit]:
        checked += 1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            continue
        os.close(fd)
        (writable_net if path.startswith("/proc/sys/net/") else writable).append(path)
    evidence = {
        "checked": checked,
        "writable": len(writable),
        "writable_net": len(writable_net),
        "dangerous": [path for path in _DANGEROUS_SETTINGS if path in writable],
        "first": writable[:10],
        "first_net": writable_net[:5],
    }
    found = writable + (writable_net if include_net else [])
    if found:
        return _result("proc_writes", False, "opened for writing", evidence)
    return _result("proc_writes", True, "nothing opens for writing", evidence)


# --------------------------------------------------------------------------- system calls


def _battery() -> list[Result]:
    own = os.getpid()
    targets: list[Result] = []
    for label, name, raw in _BATTERY:
        args = [own if arg == "self" else int(arg) for arg in raw]
        value, how = _syscall(name, *args)
        if name == "clone" and value == 0:
            os._exit(0)  # the new process: leave at once
        if name == "clone" and value > 0:
            with contextlib.suppress(OSError):
                os.waitpid(value, _WALL)
        if name in _RETURNS_FD and value >= 0:
            with contextlib.suppress(OSError):
                os.close(value)
        outcome = how or f"returned {value}"
        refused = outcome in REFUSED
        targets.append(_target(label, refused, outcome, None if refused else outcome))
    return targets


def _int80_getpid() -> int:
    import mmap

    area = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    area.write(_INT80_GETPID)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    return int(ctypes.CFUNCTYPE(ctypes.c_int)(address)())


def _child(kind: str) -> None:
    """Entry point of :func:`_run_child`: prints one JSON document."""
    if kind == "battery":
        print(json.dumps(_battery()), flush=True)
    elif kind == "x32":
        value, how = _raw_syscall(_X32_BIT | _NUMBERS["x86_64"]["getpid"])
        print(json.dumps({"value": value, "how": how}), flush=True)
    elif kind == "int80":
        value = _int80_getpid()
        how = errno.errorcode.get(-value, str(value)) if value < 0 else ""
        print(json.dumps({"value": value, "how": how}), flush=True)


def syscalls() -> Result:
    """System calls no task needs and an escape would (tracing, namespaces, mounts, keyrings,
    eBPF, io_uring, kernel modules, file handles), each with harmless arguments, in a child."""
    done = _run_child("battery")
    if done.returncode < 0:
        return _result("syscalls", True, _signal_name(done.returncode), "the child was killed")
    try:
        targets = json.loads(done.stdout)
    except ValueError:
        return _result("syscalls", None, "no report", error=_short(done.stderr.decode("utf-8", "replace")))
    return _combined("syscalls", targets)


def foreign_abi() -> Result:
    """On x86_64: a system call through the x32 and the i386 (``int 0x80``) entry points,
    which a filter written for x86_64 alone would not see."""
    if platform.machine() != "x86_64":
        return _result("foreign_abi", True, f"not applicable on {platform.machine()}")
    targets: list[Result] = []
    for kind in ("x32", "int80"):
        done = _run_child(kind)
        if done.returncode < 0:
            targets.append(_target(kind, True, _signal_name(done.returncode)))
            continue
        try:
            report = json.loads(done.stdout)
        except ValueError:
            targets.append(_target(kind, None, f"no report (exit code {done.returncode})"))
            continue
        how = report["how"] or f"returned {report['value']}"
        targets.append(_target(kind, how in REFUSED, how, None if how in REFUSED else how))
    return _combined("foreign_abi", targets)


# --------------------------------------------------------------------------- secrets in logs


def secret_forms(secret: str) -> dict[str, str]:
    """The spellings of ``secret`` a program prints without thinking: repr, JSON, URL forms."""
    return {
        "plain": secret,
        "repr": repr(secret),
        "ascii": ascii(secret),
        "bytes_repr": repr(secret.encode()),
        "json": json.dumps(secret),
        "json_unicode": json.dumps(secret, ensure_ascii=False),
        "quote": quote(secret, safe=""),
        "quote_default": quote(secret),
        "quote_plus": quote_plus(secret),
    }


_ECHO_CHILD = "import sys; text = sys.stdin.read(); sys.stdout.write(text); sys.stderr.write(text)"


def emit_secret_forms(secret: str) -> None:
    """Print ``secret`` in every form of :func:`secret_forms` through every channel a task
    has: ``print``, ``os.write`` to fds 1 and 2, ``sys.__stderr__``, logging, a Python child
    and a shell child; then raise an exception whose message holds every form.

    The host checks that none of the forms reaches its log or the task's result.
    """
    forms = secret_forms(secret)
    text = "\n".join(f"form {name}: {value}" for name, value in forms.items()) + "\n"
    print(text, flush=True)
    os.write(1, text.encode())
    os.write(2, text.encode())
    if sys.__stderr__ is not None:
        sys.__stderr__.write(text)
        sys.__stderr__.flush()
    logging.getLogger(__name__).warning("forms:\n%s", text)
    subprocess.run([sys.executable, "-I", "-c", _ECHO_CHILD], input=text.encode(), check=False, timeout=60)
    shell = 'printf "%s\\n" "$1"; printf "%s\\n" "$1" >&2'
    subprocess.run(["/bin/sh", "-c", shell, "sh", text], check=False, timeout=60)
    raise RuntimeError("secret forms: " + " | ".join(forms.values()))


# --------------------------------------------------------------------------- all at once


def catalogue(
    *,
    needles: Sequence[str] = (),
    host_files: Sequence[str] = (),
    home_files: Sequence[str] = (),
    database_url: str | None = None,
    host_pids: Sequence[int] = (),
    other_site_packages: Sequence[str] = (),
    write_dirs: Sequence[str] = (),
    tcp: Sequence[Any] | None = None,
    unix: str | None = None,
    tag: str = "probe",
    include_net_sysctls: bool = True,
    daemon_seconds: float = 3600,
) -> list[Result]:
    """Every probe, with the host's paths, URL, pids and servers given; a list of results.

    The daemon comes last: it is still running when the task's result is written.
    """
    results = [
        _guarded("read_environ", read_environ, needles, [*host_pids, *_visible_pids()]),
        _guarded("read_host_files", read_files, host_files),
        _guarded("read_home_files", read_files, home_files),
        _guarded("read_kernel_files", read_files, ["/sys", "/proc/kcore", "/proc/kmsg", "/dev/mem", "/dev/kmsg"]),
    ]
    if database_url:
        results.append(_guarded("open_database", open_database, database_url))
    results += [
        _guarded("process_access", process_access, host_pids),
        _guarded("foreign_fds", foreign_fds),
        _guarded("plant_pth_own", plant_pth, None, tag),
        _guarded("plant_pth_other", plant_pth, other_site_packages, tag),
        _guarded("write_outside_tmp", write_files, write_dirs, tag),
    ]
    if tcp:
        results.append(_guarded("connect_tcp", connect_tcp, str(tcp[0]), int(tcp[1]), tag))
    if unix:
        results.append(_guarded("connect_unix", connect_unix, unix, tag))
    results += [
        _guarded("syscalls", syscalls),
        _guarded("foreign_abi", foreign_abi),
        _guarded("proc_writes", proc_writes, include_net_sysctls),
        _guarded("device_node", device_node),
        _guarded("leave_daemon", leave_daemon, daemon_seconds),
    ]
    return results
