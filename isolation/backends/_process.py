"""Process-tree handling for the local backend: snapshot, signal, reap.

The runtime starts in a session of its own, so its process group holds it and
whatever it forks; operators that start a new session themselves (BashOperator does)
are found through a snapshot of the descendants taken *before* anything is killed,
while they can still be traced to the runtime.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with Airflow
    psutil = None


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (empty once it is gone)."""
    if psutil is None:  # pragma: no cover
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except (psutil.Error, OSError):
        return []


def signal_tree(leader: int, pids: Iterable[int], signum: int, *, include_leader: bool = True) -> None:
    """Send ``signum`` to the group led by ``leader`` (unless told not to) and to each of ``pids``.

    A sandbox's leader is bubblewrap: a SIGTERM would kill it, and with it (by
    ``--die-with-parent``) the runtime before it can stop its operator; so a polite
    signal goes to the processes inside only.
    """
    if include_leader:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signum)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def terminate(proc: subprocess.Popen[bytes], grace: float, *, sandboxed: bool = False) -> None:
    """End ``proc`` and everything it started: TERM, then KILL after ``grace`` seconds; reap it.

    Safe after ``proc`` has exited: its process group id cannot be reused while any
    member is alive, so signalling the group reaches only leftovers.
    """
    tree = descendants(proc.pid)
    if proc.poll() is None:
        signal_tree(proc.pid, tree, signal.SIGTERM, include_leader=not sandboxed)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    tree += [pid for pid in descendants(proc.pid) if pid not in tree]
    signal_tree(proc.pid, tree, signal.SIGKILL)
    proc.wait()
