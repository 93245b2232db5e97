"""The sandbox's seccomp filter, compiled by libseccomp (never hand-written BPF).

Default allow, with a deny list of system calls an Airflow task never needs and an
escape would: they fail with ``EPERM`` (``ENOSYS`` where a caller is expected to fall
back to an older call). Any other architecture's system calls (i386 or x32 entry points
on x86_64) kill the process, libseccomp's default for a foreign architecture.

Why each group is refused:

- reading or steering other processes: ``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_getfd`` (copying another process's descriptors, e.g. a supervisor socket),
  ``kcmp``;
- the kernel's attack surface that tasks do not use: ``bpf``, ``userfaultfd``,
  ``perf_event_open``, ``io_uring_*`` (its operations bypass this filter), ``keyctl``,
  ``add_key``, ``request_key``;
- changing the sandbox: new namespaces (``unshare``, ``setns``, ``clone`` with a
  ``CLONE_NEW*`` flag; ``clone3`` answers ``ENOSYS`` so libc falls back to ``clone``),
  mounts (``mount``, ``umount2``, the new mount API, ``pivot_root``, ``chroot``),
  ``open_by_handle_at``/``name_to_handle_at`` (reach files outside the mount namespace);
- the sandbox's end: ``prctl(PR_SET_PDEATHSIG)`` with any signal but SIGKILL, so that
  code which takes over bubblewrap's pid 1 (through ``/proc/1/mem``) cannot keep the
  sandbox alive after its host; ``inotify_init*`` (ENOSYS): its instances count against
  the host user's quota, shared with the host;
- the machine itself: ``kexec_*``, module loading, ``reboot``, ``swapon``/``swapoff``,
  clocks (``settimeofday``, ``clock_settime``, ``adjtimex``, ``clock_adjtime``),
  ``acct``, ``quotactl``, ``syslog``, ``iopl``/``ioperm``, ``vhangup``, ``uselib``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import signal

from isolation.errors import ConfigurationError

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "open_by_handle_at",
    "name_to_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "iopl",
    "ioperm",
    "vhangup",
    "uselib",
    "lookup_dcookie",
    "nfsservctl",
)
"""Refused with EPERM."""
NOT_IMPLEMENTED = (
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "inotify_init",
    "inotify_init1",
)
"""Refused with ENOSYS, so callers fall back (glibc uses clone when clone3 is missing;
file watchers poll without inotify, whose instances count against the host user's quota)."""

# Flags of clone(2) that create namespaces.
_CLONE_NEW = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}
_ACT_ALLOW = 0x7FFF0000
_CMP_NE = 1
_CMP_EQ = 4
_CMP_MASKED_EQ = 7
_PR_SET_PDEATHSIG = 1


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise ConfigurationError(
            "libseccomp is not installed; the sandbox needs it to build its system call filter",
            hint="install it: apt-get install libseccomp2 (Debian/Ubuntu) or dnf install libseccomp (Fedora)",
        ) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _add(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: _ArgCmp) -> bool:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return False  # not a system call of this architecture
    array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
    rc = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    if rc < 0:
        raise ConfigurationError(f"libseccomp refused the rule for {name} ({os.strerror(-rc)})")
    return True


@functools.lru_cache(maxsize=2)
def filter_program(*, allow_namespaces: bool = False) -> bytes:
    """The compiled BPF program for bubblewrap's ``--seccomp`` (built once per process).

    ``allow_namespaces`` is the warm server's: it lets ``unshare`` and ``mount`` through,
    so that each fork can make its own namespaces; every fork then stacks the full
    filter before any task code runs (isolation.runtime.warm.child).
    """
    lib = _library()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise ConfigurationError("libseccomp could not create a filter")
    try:
        for name in DENIED:
            if allow_namespaces and name in ("unshare", "mount"):
                continue
            _add(lib, ctx, _act_errno(errno.EPERM), name)
        for name in NOT_IMPLEMENTED:
            _add(lib, ctx, _act_errno(errno.ENOSYS), name)
        # Only SIGKILL as a parent-death signal: bubblewrap's pid 1 holds SIGKILL, set before
        # this filter; code that took it over (writing /proc/1/mem needs no ptrace) must not
        # clear it, or the sandbox would outlive its host.
        _add(
            lib,
            ctx,
            _act_errno(errno.EPERM),
            "prctl",
            _ArgCmp(0, _CMP_EQ, _PR_SET_PDEATHSIG, 0),
            _ArgCmp(1, _CMP_NE, signal.SIGKILL, 0),
        )
        for flag in _CLONE_NEW.values():
            # clone(flags, ...): argument 0 on every architecture we run on.
            _add(lib, ctx, _act_errno(errno.EPERM), "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
        # A memory file, not a pipe: the export must never block on a full buffer.
        fd = os.memfd_create("isolation-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise ConfigurationError(f"libseccomp could not export the filter ({os.strerror(-rc)})")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
