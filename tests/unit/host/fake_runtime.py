"""A stand-in for ``python -m isolation.runtime`` that the local backend tests drive.

Its "envelope" is a JSON script of what to do: print lines, report its own process
state, sleep, fork stragglers, write a result, exit with a code. The wrapper that the
fake environment's ``bin/python`` points at runs this file with the backend's arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    text = sys.stdin.read()
    script = json.loads(text)
    report = {
        "argv": sys.argv[1:],
        "envelope_length": len(text),
        "env": dict(os.environ),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "session_leader": os.getsid(0) == os.getpid(),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
    }
    for line in script.get("lines", []):
        print(line, file=sys.stderr if script.get("stderr") else sys.stdout, flush=True)
    if script.get("raw"):
        sys.stdout.write(script["raw"])
        sys.stdout.flush()
    wait_for = script.get("wait_for")
    if wait_for:
        deadline = time.monotonic() + 10
        while not os.path.exists(wait_for) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("saw " + ("go" if os.path.exists(wait_for) else "nothing"), flush=True)
    children = []
    for kind in script.get("spawn", []):
        # "group": stays in our process group; "session": escapes into a session of its own.
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(120)"],
                start_new_session=kind == "session",
            ).pid
        )
    if script.get("ignore_term"):
        import signal

        # Before announcing: the test cancels as soon as it reads the pids line.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if children or script.get("announce"):
        print("pids " + json.dumps({"runtime": os.getpid(), "children": children}), flush=True)
    time.sleep(script.get("sleep", 0))
    result = script.get("result")
    path = os.environ.get("ISOLATION_RESULT_PATH")
    if result is not None and path:
        if result == "report":
            result = {"format": "isolation-result/v1", "outcome": "success", "return_value": report}
        with open(path, "w") as handle:
            handle.write(result if isinstance(result, str) else json.dumps(result))
    return int(script.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
