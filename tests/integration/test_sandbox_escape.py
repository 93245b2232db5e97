"""Escapes found by reviewing the sandbox as an attacker, each kept as a regression test.

Each runs a program in the ``modern`` environment's sandbox exactly as the backend builds
it (``tests/integration/_runtime.py::sandboxed``), and asserts the escape fails.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import pytest

from isolation.backends import sandbox
from isolation.environments import LocalEnvironment
from tests._envs import MODERN, get_env
from tests.integration._runtime import sandboxed

pytestmark = [pytest.mark.envs, pytest.mark.slow]

# Writes code over bubblewrap's pid 1 through /proc/1/mem (no ptrace needed): the code
# clears pid 1's parent-death signal (prctl(PR_SET_PDEATHSIG, 0)), tells the outer
# bubblewrap through its eventfd that the task ended, and then reaps children forever, so
# the sandbox (with a daemon) would outlive the task and its host. x86_64 machine code.
PID1_TAKEOVER = r"""
import os, time
SC = ("b89d000000bf0100000031f60f05b801000000bf77770000488d3533000000ba080000000f05b83d000000"
      "48c7c7ffffffff31f631d24531d20f054885c079e6b823000000488d3d0e00000031f60f05ebd401000000"
      "0000000001000000000000000000000000000000")
print("pidns", os.stat("/proc/self/ns/pid").st_ino, flush=True)
efd = [n for n in os.listdir("/proc/1/fd") if os.readlink(f"/proc/1/fd/{n}") == "anon_inode:[eventfd]"][0]
code = bytes.fromhex(SC.replace("77770000", int(efd).to_bytes(4, "little").hex()))
pc = int(open("/proc/1/syscall").read().split()[-1], 16)
fd = os.open("/proc/1/mem", os.O_RDWR); os.pwrite(fd, code, pc); os.close(fd)
print("patched", flush=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "600"])
    os._exit(0)
os.wait()
if os.fork() == 0:
    if os.fork() == 0:
        time.sleep(0.3); os._exit(0)
    os._exit(0)
os.wait()
time.sleep(300)
"""


@pytest.fixture(scope="module")
def modern() -> LocalEnvironment:
    return get_env(MODERN)


def _in_namespace(pidns: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == pidns:
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state not in ("Z", "X"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _run(env: LocalEnvironment, workdir: Path, code: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    launch = sandboxed(env, workdir, [str(env.python), "-I", "-c", code])
    try:
        return subprocess.run(
            launch.argv,
            pass_fds=launch.pass_fds,
            env=sandbox.environment({"LANG": "C.UTF-8"}, env.venv, env.settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        launch.finished()


def test_a_task_that_takes_over_pid_1_cannot_outlive_its_sandbox(modern: LocalEnvironment, tmp_path: Path) -> None:
    assert platform.machine() == "x86_64", "this regression test carries x86_64 machine code"
    launch = sandboxed(modern, tmp_path, [str(modern.python), "-I", "-c", PID1_TAKEOVER])
    proc = subprocess.Popen(
        launch.argv,
        pass_fds=launch.pass_fds,
        env=sandbox.environment({"LANG": "C.UTF-8"}, modern.venv, modern.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    pidns = None
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("pidns "):
                pidns = int(line.split()[1])
            if line.startswith("patched") or len(lines) > 50:
                break
        assert pidns is not None and lines[-1].startswith("patched"), "".join(lines)
        proc.wait(timeout=60)
        # bubblewrap has ended: its pid 1 must die with it (the parent-death signal the
        # filter keeps it from clearing), before any cleanup of the host's runs.
        deadline = time.monotonic() + 10
        while _in_namespace(pidns) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _in_namespace(pidns)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        launch.finished()  # a root worker's cgroup kills whatever is left, as a second line
    for pid in _in_namespace(pidns) if pidns else []:  # never leave the proof running
        os.kill(pid, 9)
    assert left == [], "the sandbox outlived its bubblewrap"


PROBES = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
out["pdeathsig_term"] = libc.prctl(1, 15, 0, 0, 0) == -1 and ctypes.get_errno() == errno.EPERM
out["pdeathsig_kill"] = libc.prctl(1, 9, 0, 0, 0) == 0
out["inotify"] = libc.inotify_init1(0) == -1 and ctypes.get_errno() == errno.ENOSYS
hidden = {}
for name in ("keys", "kpagecount", "slabinfo", "timer_list", "kallsyms"):
    try:
        with open(f"/proc/{name}", "rb") as handle:
            hidden[name] = len(handle.read(4096)) == 0
    except OSError:
        hidden[name] = True
out["root_only_proc_hidden"] = hidden
print(json.dumps(out))
"""


def test_pdeathsig_inotify_and_root_only_proc_files(modern: LocalEnvironment, tmp_path: Path) -> None:
    import json

    done = _run(modern, tmp_path, PROBES)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pdeathsig_term"] and report["pdeathsig_kill"] and report["inotify"], report
    assert all(report["root_only_proc_hidden"].values()), report


MEMFD_FLOOD = r"""
import os
fd = os.memfd_create("flood")
chunk = b"x" * 2**20
for _ in range(1536):
    os.write(fd, chunk)
print("wrote 1.5 GiB")
"""


def test_memory_files_count_against_the_memory_limit_of_a_root_worker(modern: LocalEnvironment, tmp_path: Path) -> None:
    import dataclasses

    from isolation.environments.settings import Limits, SandboxSettings

    assert os.getuid() == 0, "this test is about a root worker's cgroup (CI runs as root)"
    small = SandboxSettings("bubblewrap", "none", dataclasses.replace(Limits(), memory=1024 * 2**20))
    workdir = tmp_path / "flood"
    workdir.mkdir()
    launch = sandboxed(modern, workdir, [str(modern.python), "-I", "-c", MEMFD_FLOOD], small)
    try:
        done = subprocess.run(
            launch.argv,
            pass_fds=launch.pass_fds,
            env=sandbox.environment({"LANG": "C.UTF-8"}, modern.venv, small),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        assert launch.cgroup is not None and "memory" in launch.cgroup.enforces
        launch.finished()
    assert "wrote 1.5 GiB" not in done.stdout
    assert done.returncode != 0


CONFINEMENT = r"""
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
names = ("ipc", "uts", "pid", "mnt", "net", "user", "cgroup")
print(json.dumps({
    "cap_eff": status["CapEff"].strip(),
    "cap_prm": status["CapPrm"].strip(),
    "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "seccomp": status["Seccomp"].strip(),
    "namespaces": {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in names},
    "hostname": os.uname().nodename,
    "sid": os.getsid(0),
    "pid": os.getpid(),
    "tty": os.path.exists("/dev/tty") and os.isatty(0),
}))
"""


def test_no_capabilities_no_new_privileges_and_namespaces_of_its_own(modern: LocalEnvironment, tmp_path: Path) -> None:
    import json

    done = _run(modern, tmp_path, CONFINEMENT)
    assert done.returncode == 0, done.stderr
    inside = json.loads(done.stdout.strip().splitlines()[-1])
    assert inside["cap_eff"] == inside["cap_prm"] == inside["cap_bnd"] == "0000000000000000", inside
    assert inside["no_new_privs"] == "1" and inside["seccomp"] == "2", inside
    for name, inode in inside["namespaces"].items():
        assert inode != os.stat(f"/proc/self/ns/{name}").st_ino, f"the sandbox shares the host's {name} namespace"
    assert inside["hostname"] == sandbox.HOSTNAME
    # --new-session: the session was made inside the sandbox (a host session would show as
    # 0, its leader being outside the PID namespace), with no terminal to inject into.
    assert inside["sid"] in (1, inside["pid"]) and not inside["tty"]
