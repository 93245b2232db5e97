"""The runtime makes itself a poor target before it holds any secret in memory.

Once the envelope is open, this process holds decrypted connections and variables and
the environment's private recipient key. Each measure here closes one way to take them:

- **Not dumpable** (Linux, ``prctl(PR_SET_DUMPABLE, 0)``): another process of the same
  Unix user can otherwise ``ptrace`` the runtime, read ``/proc/<pid>/mem`` and
  ``/proc/<pid>/environ``, or copy its file descriptors with ``pidfd_getfd``. A
  non-dumpable process's ``/proc`` entries belong to root and the kernel refuses those
  accesses to anyone without ``CAP_SYS_PTRACE``. Programs the operator ``exec``\\ s
  become dumpable again (the kernel resets the flag on ``execve``): they never hold
  the runtime's memory, only what they are given.
- **No core files** (``RLIMIT_CORE`` soft and hard 0): a crash must not write the
  process's memory, secrets included, to a file that outlives the task. The hard limit
  is lowered too, so neither the operator nor its children can raise it again.
- **Resource limits** (``apply_limits``): ``RLIMIT_AS`` bounds the address space and
  ``RLIMIT_NPROC`` the number of processes of this user, so a task cannot take the
  machine's memory or fork without end. Soft equals hard: the task cannot lift them.
  ``RLIMIT_NPROC`` counts the processes of the real user in its user namespace: in the
  local sandbox (a user namespace of its own) that is this task's processes alone. The
  kernel does not apply it to root; the local backend gives a root worker's tasks a
  cgroup instead (isolation.backends._cgroup).

The limits come from the host in ``ISOLATION_LIMIT_MEMORY`` and
``ISOLATION_LIMIT_PROCESSES`` (decimal integers); ``limits_from_environ`` removes both
from the environment it reads, so the operator's children never see them.

Elsewhere than Linux there is no ``prctl``; only the resource limits apply.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import MutableMapping

from isolation.errors import ConfigurationError

try:
    import resource
except ImportError:  # not a POSIX system: there are no resource limits to set
    resource = None  # type: ignore[assignment]

__all__ = [
    "LIMIT_MEMORY_VAR",
    "LIMIT_PROCESSES_VAR",
    "apply_limits",
    "harden_process",
    "limits_from_environ",
]

LIMIT_MEMORY_VAR = "ISOLATION_LIMIT_MEMORY"
LIMIT_PROCESSES_VAR = "ISOLATION_LIMIT_PROCESSES"

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4
# setrlimit takes a signed 64-bit value; anything larger is "no limit" in practice.
_LARGEST_LIMIT = 2**63 - 1
# ASCII digits only: int() would also take "+5", " 5", "1_000" and other scripts' digits.
_DECIMAL = re.compile(r"[0-9]{1,20}", re.ASCII)


def harden_process() -> None:
    """Make this process not dumpable (Linux) and forbid core files; idempotent.

    Raises :class:`ConfigurationError` if ``prctl`` exists but refuses, or if the core
    size limit cannot be lowered.
    """
    if sys.platform.startswith("linux"):
        _not_dumpable()
    if resource is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot set the core file size limit of the runtime to 0: {exc}",
                hint="check that no security module forbids setrlimit to the isolated task",
            ) from None


def _not_dumpable() -> None:
    # Imported here: ctypes costs milliseconds of start-up, and only this step needs it.
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return  # an interpreter without a C library to call: nothing more is possible
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise ConfigurationError(
            f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)} (errno {errno})",
            hint="the runtime refuses to hold secrets while other processes could read its memory; "
            "check the seccomp filter or security module of the isolated environment allows prctl",
        )
    if prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise ConfigurationError(
            "prctl(PR_SET_DUMPABLE, 0) returned success but the runtime is not confirmed as not dumpable",
            hint="check the seccomp filter of the isolated environment: it must not fake prctl",
        )


def apply_limits(memory_bytes: int | None, max_processes: int | None) -> None:
    """Set ``RLIMIT_AS`` to ``memory_bytes`` and ``RLIMIT_NPROC`` to ``max_processes``.

    ``None`` leaves a limit as it is. Soft and hard become the same value, clamped to the
    current hard limit: a limit is only ever lowered. Raises :class:`ConfigurationError`
    for a value that is not a positive integer, or if the system refuses the limit.
    """
    if resource is None:
        return
    for name, value, which in (
        ("memory", memory_bytes, getattr(resource, "RLIMIT_AS", None)),
        ("process", max_processes, getattr(resource, "RLIMIT_NPROC", None)),
    ):
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise ConfigurationError(f"the {name} limit must be a positive integer, not {value!r}")
        if which is None:
            continue  # this platform has no such limit
        _lower(name, which, value)


def _lower(name: str, which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    value = min(value, _LARGEST_LIMIT)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot set the {name} limit of the runtime to {value}: {exc}",
            hint=f"check ${LIMIT_MEMORY_VAR} and ${LIMIT_PROCESSES_VAR} given to the isolated task",
        ) from None


def limits_from_environ(environ: MutableMapping[str, str]) -> tuple[int | None, int | None]:
    """Read and remove ``ISOLATION_LIMIT_MEMORY`` (bytes) and ``ISOLATION_LIMIT_PROCESSES``.

    Both variables are removed before either is checked, so neither reaches a child
    process even when one is invalid. An absent variable gives ``None``; anything but a
    positive decimal integer raises :class:`ConfigurationError` naming the variable.
    """
    raw = {name: environ.pop(name, None) for name in (LIMIT_MEMORY_VAR, LIMIT_PROCESSES_VAR)}
    memory, processes = (_positive(name, value) for name, value in raw.items())
    return memory, processes


def _positive(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value) or int(value) < 1:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ConfigurationError(
            f"${name} must be a positive decimal integer, not {shown!r}",
            hint=f"set ${name} to a number of {'bytes' if name == LIMIT_MEMORY_VAR else 'processes'}, "
            "or leave it unset for no limit",
        )
    return int(value)
