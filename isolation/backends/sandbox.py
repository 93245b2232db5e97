"""The local sandbox: every local task runs under bubblewrap (``bwrap``).

The in-process guards of the runtime are the *contract* (clear errors for honest code);
this is the *boundary* (for code that wants out). Each task gets new user, PID, mount,
IPC, UTS and cgroup namespaces (and a network namespace of its own unless its
environment says ``network = "host"``), no capabilities, no new privileges, no further
user namespaces, the seccomp filter of :mod:`isolation.backends._seccomp`, a new session
(no terminal to inject into), and death with its parent.

Its filesystem holds only:

=============================  ==========================================================
``/usr`` (and ``/bin``, ...)   the system, read-only (``/lib`` & co. as on the host)
a few ``/etc`` files           TLS roots, name resolution, time zone (no ``passwd``:
                               one line for the task's own uid is generated)
the base interpreter           read-only, at its own path
the environment's virtualenv   read-only, at its own path
``/run/isolation/keys``        this environment's keys directory, read-only
``/tmp``                       a fresh, size-limited tmpfs: ``HOME``, ``TMPDIR``, cwd
``/proc``, ``/dev``            the sandbox's own
=============================  ==========================================================

Nothing else of the host: no ``AIRFLOW_HOME``, no metadata database, no keyring, no
other environment, no home directory, no host process. The result leaves through an
inherited memory file (see :mod:`isolation.backends.local`), never a path on disk.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from isolation._procfs import ROOT_ONLY_PROC_FILES
from isolation.backends import _cgroup, _seccomp
from isolation.environments.settings import SandboxSettings
from isolation.errors import ConfigurationError

KEYS_DIR = "/run/isolation/keys"
# Where a root worker's warm server holds the host /proc (isolation.runtime.warm.child hides it).
WARM_HOST_PROC = "/run/isolation/host-proc"
# Paths inside the sandbox's own fresh tmpfs, not the host's /tmp.
TMP = "/tmp"  # noqa: S108
HOME = "/tmp/home"  # noqa: S108
WORKDIR = "/tmp/work"  # noqa: S108
SHM = "/dev/shm"  # noqa: S108
PATH = "/usr/local/bin:/usr/bin:/bin"
HOSTNAME = "isolated"
# /etc files an interpreter and ordinary network clients read; nothing that names users,
# holds credentials or configures the host's services.
ETC_FILES = (
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/pki",
    "/etc/crypto-policies",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/os-release",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
)
NETWORK_ETC_FILES = ("/etc/resolv.conf",)
# Top-level directories that are symlinks into /usr on merged-/usr systems.
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap) "
    "and make sure unprivileged user namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1 "
    "where it exists, user.max_user_namespaces > 0); or, to run an environment without a boundary, "
    'set sandbox = "none" in environments/<name>/isolation.toml and rebuild it'
)


@dataclass(frozen=True)
class Bind:
    """A host path visible in the sandbox (read-only unless ``writable``)."""

    source: Path
    target: str
    writable: bool = False


@dataclass
class Launch:
    """A sandboxed command, ready for ``subprocess.Popen``."""

    argv: list[str]
    pass_fds: tuple[int, ...]
    # Read ends of the data pipes bubblewrap reads at start; the parent closes them after Popen.
    parent_closes: list[int] = field(default_factory=list)
    cgroup: _cgroup.TaskCgroup | None = None

    def started(self) -> None:
        """Call right after ``Popen``: the child has its copies now."""
        for fd in self.parent_closes:
            os.close(fd)
        self.parent_closes.clear()

    def finished(self) -> None:
        """Call once the sandbox has ended."""
        self.started()
        if self.cgroup is not None:
            self.cgroup.remove()


@dataclass(frozen=True)
class Status:
    """Whether the sandbox works on this machine, and why not."""

    available: bool
    bwrap: str | None
    version: str | None
    detail: str


def bwrap_path() -> str | None:
    configured = os.environ.get("ISOLATION_BWRAP")
    return configured if configured else shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def probe() -> Status:
    """Start an empty sandbox once (cached for the process): does bubblewrap work here?"""
    bwrap = bwrap_path()
    if bwrap is None:
        return Status(False, None, None, "bubblewrap (bwrap) is not installed")
    try:
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Status(False, bwrap, None, f"{bwrap} does not run ({exc})")
    try:
        launch = _bwrap_argv(bwrap, SandboxSettings(), binds=(), env_name="probe", passwd=_passwd_line())
    except ConfigurationError as exc:
        return Status(False, bwrap, version, exc.message)
    try:
        done = subprocess.run(
            [*launch.argv, "/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            pass_fds=launch.pass_fds,
            env={"PATH": PATH},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Status(False, bwrap, version, f"bubblewrap did not start ({exc})")
    finally:
        launch.finished()
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
        return Status(False, bwrap, version, f"bubblewrap cannot create the sandbox here: {reason}")
    return Status(True, bwrap, version, f"{version} works: namespaces, seccomp filter, no capabilities")


def require() -> str:
    """The bwrap path, or a ConfigurationError saying how to get a working sandbox.

    Cheap on purpose (it runs for every task, in a fresh task process): bubblewrap is
    there and the filter builds. Whether namespaces can be made here shows when the task's
    own sandbox starts (:func:`startup_failure`); :func:`probe` tries an empty one.
    """
    bwrap = bwrap_path()
    if bwrap is None or not os.access(bwrap, os.X_OK):
        detail = "bubblewrap (bwrap) is not installed" if bwrap is None else f"{bwrap} is not an executable"
        raise ConfigurationError(f"the local sandbox is not available: {detail}", hint=INSTALL_HINT)
    _seccomp.filter_program()
    return bwrap


def startup_failure(exit_code: int, log_tail: Sequence[str]) -> ConfigurationError | None:
    """The error to raise when bubblewrap itself could not create the sandbox, else None.

    bubblewrap reports its own failures as one ``bwrap: ...`` line and exit code 1, before
    anything of the task ran.
    """
    if exit_code != 1:
        return None
    said = [line for line in log_tail if line.startswith("bwrap: ")]
    if not said:
        return None
    return ConfigurationError(f"the local sandbox could not start: {said[-1]}", hint=INSTALL_HINT)


def base_prefixes(venv: Path) -> list[Path]:
    """Where the virtualenv's base interpreter lives (its ``pyvenv.cfg`` ``home``, resolved)."""
    found: list[Path] = []
    try:
        lines = (venv / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        raise ConfigurationError(
            f"{venv} has no pyvenv.cfg: it is not a virtualenv",
            hint="rebuild the environment: isolationctl deploy --local -e NAME --force",
        ) from None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            found.append(Path(os.path.realpath(value.strip())).parent)
    interpreter = Path(os.path.realpath(venv / "bin" / "python"))
    found.append(interpreter.parent.parent)
    unique: list[Path] = []
    for path in found:
        if not _under(path, [Path("/usr"), *unique]):
            unique.append(path)
    return unique


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _passwd_line() -> tuple[str, str]:
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = "isolated"
    return (f"{user}:x:{uid}:{gid}:isolated task:{HOME}:/bin/sh\n", f"{user}:x:{gid}:\n")


def _data_fd(data: bytes) -> int:
    """A pipe holding ``data`` then end-of-file, for ``--ro-bind-data`` / ``--seccomp``."""
    reader, writer = os.pipe()
    try:
        os.write(writer, data)  # small (< 4 KiB): fits in the pipe buffer at once
    finally:
        os.close(writer)
    return reader


def _bwrap_argv(
    bwrap: str,
    settings: SandboxSettings,
    *,
    binds: Sequence[Bind],
    env_name: str,
    passwd: tuple[str, str],
    warm_server: bool = False,
) -> Launch:
    fds: list[int] = []
    try:
        seccomp_fd = _data_fd(_seccomp.filter_program(allow_namespaces=warm_server))
        fds.append(seccomp_fd)
        passwd_fd = _data_fd(passwd[0].encode())
        fds.append(passwd_fd)
        group_fd = _data_fd(passwd[1].encode())
        fds.append(group_fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    argv = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup"]
    if settings.network != "host":
        argv.append("--unshare-net")
    if warm_server:
        # A warm server outlives the task that started it, and its forks make namespaces
        # of their own (isolation.runtime.warm.child), each then as confined as a cold task.
        argv += ["--new-session", "--cap-drop", "ALL"]
        if os.getuid() == 0:
            # A root worker's fork may map uid 0 into its own user namespace only with this.
            argv += ["--cap-add", "CAP_SETFCAP"]
    else:
        argv += ["--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--hostname", HOSTNAME, "--ro-bind", "/usr", "/usr"]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    etc = ETC_FILES + (NETWORK_ETC_FILES if settings.network == "host" else ())
    for path in etc:
        argv += ["--ro-bind-try", path, path]
    argv += ["--ro-bind-data", str(passwd_fd), "/etc/passwd", "--ro-bind-data", str(group_fd), "/etc/group"]
    # A root worker's sandbox is uid 0 on the host: without this it could write the
    # kernel's global settings (kernel.core_pattern, ...), which bubblewrap leaves writable.
    argv += ["--proc", "/proc"]
    if warm_server:
        # Each fork mounts a /proc of its own and covers these itself. The kernel lets it
        # only while some /proc in view is not covered: for a root worker (whose sandbox's
        # /proc bubblewrap covers), the host's, read-only and hidden from each task.
        if os.getuid() == 0:
            argv += ["--ro-bind", "/proc", WARM_HOST_PROC]
    else:
        argv += ["--ro-bind", "/proc/sys", "/proc/sys"]
        argv += ["--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
    if os.getuid() == 0 and not warm_server:
        # Mode 0400 files of root's: a root worker's sandbox owns them. Nothing a task needs.
        for name in ROOT_ONLY_PROC_FILES:
            if os.path.exists(f"/proc/{name}"):  # the sandbox's /proc has the same files
                argv += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    argv += ["--dev", "/dev"]
    size = str(settings.limits.tmp)
    argv += ["--size", size, "--tmpfs", TMP, "--size", size, "--tmpfs", SHM]
    argv += ["--dir", HOME, "--dir", WORKDIR]
    for bind in binds:
        argv += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
    # Everything but the size-limited tmpfs mounts is read-only: the sandbox's own root and
    # /dev are in-memory file systems no limit would otherwise bound.
    argv += ["--remount-ro", "/", "--remount-ro", "/dev"]
    argv += ["--chdir", WORKDIR, "--seccomp", str(seccomp_fd), "--"]
    return Launch(argv, tuple(fds), list(fds))


def command(
    settings: SandboxSettings,
    *,
    venv: Path,
    keys_dir: Path,
    program: Sequence[str],
    env_name: str,
    extra_binds: Sequence[Bind] = (),
    warm_server: bool = False,
) -> Launch:
    """The full sandboxed command line for ``program`` in the environment at ``venv``.

    Joins a per-task cgroup first where this worker can make one (see
    :mod:`isolation.backends._cgroup`).
    """
    bwrap = require()
    binds = [Bind(prefix, str(prefix)) for prefix in base_prefixes(venv)]
    real_venv = Path(os.path.realpath(venv))
    binds.append(Bind(real_venv, str(venv)))
    binds.append(Bind(Path(os.path.realpath(keys_dir)), KEYS_DIR))
    binds += extra_binds
    launch = _bwrap_argv(
        bwrap, settings, binds=binds, env_name=env_name, passwd=_passwd_line(), warm_server=warm_server
    )
    launch.argv += list(program)
    if warm_server:
        return launch  # each task joins a cgroup of its own (isolation.backends._warm)
    launch.cgroup = task_cgroup(settings)
    if launch.cgroup is not None:
        launch.argv = launch.cgroup.launcher() + launch.argv
    return launch


def task_cgroup(settings: SandboxSettings) -> _cgroup.TaskCgroup | None:
    """The per-task cgroup a task joins, if any (the caller removes it when the task ends).

    An ordinary user's ``RLIMIT_NPROC`` (set by the runtime) already bounds the sandbox;
    only root, whom the kernel exempts from it, pays for a cgroup, which then also caps
    the memory ``RLIMIT_AS`` does not count (memory files, tmpfs, pipes).
    """
    if os.getuid() != 0:
        return None
    return _cgroup.create(settings.limits.memory, settings.limits.processes)


def environment(base: Mapping[str, str], venv: Path, settings: SandboxSettings) -> dict[str, str]:
    """The sandboxed process's variables: ``base`` with the sandbox's own paths and limits."""
    env = dict(base)
    env.update(
        {
            "PATH": f"{venv / 'bin'}:{PATH}",
            "HOME": HOME,
            "TMPDIR": TMP,
            "ISOLATION_KEYS_DIR": KEYS_DIR,
            "ISOLATION_LIMIT_MEMORY": str(settings.limits.memory),
            "ISOLATION_LIMIT_PROCESSES": str(settings.limits.processes),
        }
    )
    return env


def enforcement(launch: Launch) -> str:
    """Which mechanism enforces the process and memory limits, for the task log."""
    by_cgroup = set(launch.cgroup.enforces) if launch.cgroup is not None else set()
    processes = "cgroup" if "processes" in by_cgroup else ("RLIMIT_NPROC" if os.getuid() != 0 else None)
    memory = "cgroup and RLIMIT_AS" if "memory" in by_cgroup else "RLIMIT_AS"
    process_text = (
        f"processes by {processes}"
        if processes
        else "processes NOT limited (the worker runs as root and cannot create a cgroup)"
    )
    return f"memory by {memory}; {process_text}"
