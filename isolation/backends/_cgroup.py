"""Per-task cgroups for the process limit of a worker that runs as root.

``RLIMIT_NPROC`` binds an ordinary user (counted per user namespace, so per sandbox) but
not root: the kernel exempts uid 0. So a root worker that can create a cgroup below its
own (a cgroup v1 controller writable by it, or a cgroup v2 subtree delegated to it with
the controller enabled), each task gets one with ``pids.max`` (and, when asked, a memory
cap), and the sandbox is started inside it through ``/bin/sh`` writing its own pid
into ``cgroup.procs`` before it ``exec``s bubblewrap: nothing of the task ever runs
outside. Where no cgroup can be made, the runtime's rlimits are what remains, and the
task log says so.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class TaskCgroup:
    """The cgroup directories one task joins, and what each enforces."""

    directories: tuple[Path, ...]
    enforces: tuple[str, ...]

    def launcher(self) -> list[str]:
        """A command prefix that joins every directory, then runs the rest of the command."""
        joins = " && ".join(f'echo $$ > "${i + 1}/cgroup.procs"' for i in range(len(self.directories)))
        count = len(self.directories)
        return ["/bin/sh", "-c", f'{joins} && shift {count} && exec "$@"', "isolation-cgroup"] + [
            str(d) for d in self.directories
        ]

    def remove(self, timeout: float = 5.0) -> bool:
        """Kill whatever is still in the cgroup, then remove it; whether it is gone.

        The cgroup holds every process of the task, even one that escaped the process
        tree the backend knows (re-parented, or bubblewrap gone first): kill them all.
        """
        deadline = time.monotonic() + timeout
        left = list(self.directories)
        while left:
            for directory in list(left):
                for pid in _members(directory):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    left.remove(directory)
                except OSError:
                    continue
                else:
                    left.remove(directory)
            if left:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        return True


def _members(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


# A cgroup older than this with no process in it was left by a worker that died.
_STALE_SECONDS = 3600


def _sweep(parent: Path) -> None:
    """Remove empty per-task cgroups that dead workers left behind (rmdir of a busy one fails)."""
    try:
        entries = list(parent.glob("isolation-*"))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > _STALE_SECONDS and not _members(entry):
                os.rmdir(entry)


def _own_paths() -> dict[str, str]:
    """Controller (or "" for cgroup v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return paths
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _make(parent: Path, settings: dict[str, str]) -> Path | None:
    _sweep(parent)
    child = parent / f"isolation-{secrets.token_hex(6)}"
    try:
        child.mkdir()
    except OSError:
        return None
    if all(_write(child / name, value) for name, value in settings.items()):
        return child
    with contextlib.suppress(OSError):
        child.rmdir()
    return None


def create(memory: int, processes: int, *, with_memory: bool = True) -> TaskCgroup | None:
    """A fresh cgroup (or one per v1 controller) with the limits; None when none can be made.

    ``with_memory=False`` limits processes only. Joining a cgroup costs a task a cgroup
    migration (milliseconds on kernels without ``favordynmods``; mostly for the first).
    """
    own = _own_paths()
    unified = _ROOT / "cgroup.controllers"
    if unified.exists() and "" in own:
        parent = _ROOT / own[""].lstrip("/")
        try:
            enabled = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            return None
        wanted = {"pids.max": str(processes)} if "pids" in enabled else {}
        if with_memory and "memory" in enabled:
            wanted.update({"memory.max": str(memory), "memory.swap.max": "0"})
        made = _make(parent, wanted) if wanted else None
        if made is None:
            return None
        named = (("processes", "pids.max"), ("memory", "memory.max"))
        return TaskCgroup((made,), tuple(name for name, key in named if key in wanted))
    made_dirs: list[Path] = []
    enforced: list[str] = []
    controllers = [("pids", "processes", {"pids.max": str(processes)})]
    if with_memory:
        controllers.append(("memory", "memory", {"memory.limit_in_bytes": str(memory)}))
    for controller, limit_name, settings in controllers:
        if controller not in own or not (_ROOT / controller).is_dir():
            continue
        made = _make(_ROOT / controller / own[controller].lstrip("/"), settings)
        if made is not None:
            made_dirs.append(made)
            enforced.append(limit_name)
    return TaskCgroup(tuple(made_dirs), tuple(enforced)) if made_dirs else None
