"""End the isolated task when the host that started it is gone.

A host that is SIGKILLed cannot run ``on_kill``. The local backend therefore passes
the read end of a pipe (``ISOLATION_LIFELINE_FD``) whose write end only the host
holds; the kernel closes it when the host dies, however it dies, and this watcher
then kills the runtime and everything it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import MutableMapping

ENV_VAR = "ISOLATION_LIFELINE_FD"


def watch(environ: MutableMapping[str, str] | None = None) -> bool:
    """Start watching the lifeline named in the environment; return whether there is one."""
    env = os.environ if environ is None else environ
    raw = env.pop(ENV_VAR, None)
    if raw is None or not raw.isdigit():
        return False
    fd = int(raw)
    try:
        # The operator's own children must not hold the host's lifeline open.
        os.set_inheritable(fd, False)
    except OSError:
        return False
    threading.Thread(target=_wait_for_host, args=(fd,), name="isolation-lifeline", daemon=True).start()
    return True


def _wait_for_host(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass  # The host never writes; only end-of-file matters.
    except OSError:
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write("isolation-runtime: the host process is gone; ending the isolated task\n")
        sys.stderr.flush()
    _kill_everything()


def _kill_everything() -> None:
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
    except Exception:  # psutil comes with Airflow; without it the group kill below still runs
        children = []
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(137)
