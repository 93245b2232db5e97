"""The runtime hardens itself: not dumpable, no core files, memory and process limits.

Every measure changes the process it runs in, so each test runs it in a fresh
interpreter (``sys.executable -c``) and asserts from there what the kernel reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from isolation.errors import ConfigurationError
from isolation.runtime import hardening
from isolation.runtime.hardening import LIMIT_MEMORY_VAR, LIMIT_PROCESSES_VAR, limits_from_environ

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux")

GIB = 1 << 30

_PRELUDE = """
import ctypes, json, os, resource, sys
from isolation.runtime import hardening
libc = ctypes.CDLL(None, use_errno=True)
def dumpable():
    return libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
"""


def run_python(code: str, *, env: dict[str, str] | None = None) -> object:
    """Run ``code`` after the prelude in a fresh interpreter; return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# --------------------------------------------------------------------------- harden_process


@pytest.mark.timeout(60)
def test_harden_process_makes_the_runtime_not_dumpable_and_forbids_core_files() -> None:
    report = run_python(
        """
        before = dumpable(), resource.getrlimit(resource.RLIMIT_CORE)
        hardening.harden_process()
        after = dumpable(), resource.getrlimit(resource.RLIMIT_CORE)
        hardening.harden_process()  # idempotent
        print(json.dumps([before[0], after, dumpable()]))
        """
    )
    # A fresh interpreter is dumpable; hardened, it is not, and its core limit is 0 for good.
    assert report == [1, [0, [0, 0]], 0]


@pytest.mark.timeout(60)
def test_the_core_limit_cannot_be_raised_again_after_hardening() -> None:
    report = run_python(
        """
        if os.geteuid() == 0:
            # Root may raise a hard limit again (CAP_SYS_RESOURCE), as the sandbox's
            # user may not: try it as a user without that capability.
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
        hardening.harden_process()
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))
            outcome = "raised"
        except (ValueError, OSError):
            outcome = "refused"
        print(json.dumps(outcome))
        """
    )
    assert report == "refused"


# A target process waits, dumpable or hardened; a reader of the same user then tries
# /proc/<target>/environ. As root both first become "nobody", so neither holds the
# capability (CAP_SYS_PTRACE) that would let root read any process anyway.
_SAME_USER_READER = """
harden = sys.argv[1] == "harden"
drop = os.geteuid() == 0
def become_nobody():
    if drop:
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
ready_r, ready_w = os.pipe()
target = os.fork()
if target == 0:
    become_nobody()
    libc.prctl(4, 1, 0, 0, 0)  # changing uid cleared the flag: start from an ordinary process
    if harden:
        hardening.harden_process()
    os.write(ready_w, b"x")
    import time; time.sleep(60)
    os._exit(0)
os.read(ready_r, 1)
reader = os.fork()
if reader == 0:
    become_nobody()
    try:
        with open(f"/proc/{target}/environ", "rb") as handle:
            handle.read()
        os._exit(0)
    except PermissionError:
        os._exit(13)
_, status = os.waitpid(reader, 0)
os.kill(target, 9)
os.waitpid(target, 0)
print(json.dumps(os.waitstatus_to_exitcode(status)))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "expected"), [("plain", 0), ("harden", 13)])
def test_a_process_of_the_same_user_cannot_read_the_hardened_runtimes_environ(mode: str, expected: int) -> None:
    # "plain" is the control: without hardening the same reader succeeds, so the
    # refusal is the hardening's doing and not the test's setup.
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + _SAME_USER_READER, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


# --------------------------------------------------------------------------- apply_limits


@pytest.mark.timeout(60)
def test_apply_limits_sets_address_space_and_process_limits() -> None:
    report = run_python(
        """
        hardening.apply_limits(4 * (1 << 30), 500)
        print(json.dumps([resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC)]))
        """
    )
    assert report == [[4 * GIB, 4 * GIB], [500, 500]]


@pytest.mark.timeout(60)
def test_apply_limits_never_raises_a_limit_above_its_hard_limit() -> None:
    report = run_python(
        """
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 3 << 30))
        resource.setrlimit(resource.RLIMIT_NPROC, (100, 200))
        hardening.apply_limits(8 << 30, 10_000)
        print(json.dumps([resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC)]))
        """
    )
    assert report == [[3 * GIB, 3 * GIB], [200, 200]]


@pytest.mark.timeout(60)
def test_apply_limits_with_none_changes_nothing_and_huge_values_mean_no_limit() -> None:
    report = run_python(
        """
        before = [resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC)]
        hardening.apply_limits(None, None)
        same = [resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC)]
        hardening.apply_limits(10**19, None)
        print(json.dumps([before == same, resource.getrlimit(resource.RLIMIT_AS)[1] >= 2**62]))
        """
    )
    assert report == [True, True]


@pytest.mark.timeout(60)
def test_the_memory_limit_is_enforced() -> None:
    report = run_python(
        """
        hardening.apply_limits(1 << 30, None)
        try:
            bytearray(2 << 30)
            outcome = "allocated"
        except MemoryError:
            outcome = "refused"
        print(json.dumps(outcome))
        """
    )
    assert report == "refused"


@pytest.mark.parametrize(("memory", "processes"), [(0, None), (-1, None), (None, 0), (True, None), (None, 1.5)])
def test_apply_limits_refuses_values_that_are_not_positive_integers(memory: object, processes: object) -> None:
    # Refused before any limit is touched, so running it in this process changes nothing.
    with pytest.raises(ConfigurationError, match="must be a positive integer"):
        hardening.apply_limits(memory, processes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- limits_from_environ


def test_limits_are_read_from_the_environment_and_removed_from_it() -> None:
    env = {LIMIT_MEMORY_VAR: "1073741824", LIMIT_PROCESSES_VAR: "64", "OTHER": "1"}
    assert limits_from_environ(env) == (1 << 30, 64)
    assert env == {"OTHER": "1"}
    assert limits_from_environ(env) == (None, None)
    env = {LIMIT_PROCESSES_VAR: "007"}
    assert limits_from_environ(env) == (None, 7)
    assert env == {}


def test_the_variable_names_are_the_documented_ones() -> None:
    assert (LIMIT_MEMORY_VAR, LIMIT_PROCESSES_VAR) == ("ISOLATION_LIMIT_MEMORY", "ISOLATION_LIMIT_PROCESSES")


@pytest.mark.parametrize("name", [LIMIT_MEMORY_VAR, LIMIT_PROCESSES_VAR])
@pytest.mark.parametrize(
    "value", ["", "abc", "-1", "0", "000", "1.5", "1e9", " 12", "12\n", "+5", "1_000", "0x10", "\u0661\u0662", "9" * 21]
)
def test_a_limit_that_is_not_a_positive_decimal_integer_is_refused_by_name(name: str, value: str) -> None:
    other = LIMIT_PROCESSES_VAR if name == LIMIT_MEMORY_VAR else LIMIT_MEMORY_VAR
    env = {name: value, other: "100"}
    with pytest.raises(ConfigurationError, match=f"\\${name} must be a positive decimal integer") as info:
        limits_from_environ(env)
    assert "hint:" in info.value.diagnostics()
    # Removed even when refused: no child ever sees either variable.
    assert env == {}


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(ConfigurationError) as info:
        limits_from_environ({LIMIT_MEMORY_VAR: "x" * 1000})
    assert len(info.value.message) < 200


@pytest.mark.timeout(60)
def test_children_of_the_runtime_never_see_the_limit_variables() -> None:
    env = {**os.environ, LIMIT_MEMORY_VAR: str(4 << 30), LIMIT_PROCESSES_VAR: "500"}
    report = run_python(
        """
        import subprocess
        memory, processes = hardening.limits_from_environ(os.environ)
        seen = "import os, json; print(json.dumps([k for k in os.environ if k.startswith('ISOLATION_LIMIT')]))"
        child = subprocess.run([sys.executable, "-c", seen], capture_output=True, text=True, check=True)
        print(json.dumps([memory, processes, json.loads(child.stdout)]))
        """,
        env=env,
    )
    assert report == [4 << 30, 500, []]


@pytest.mark.timeout(60)
def test_a_bad_limit_in_the_environment_is_a_configuration_error_in_a_real_process() -> None:
    env = {**os.environ, LIMIT_MEMORY_VAR: "lots"}
    report = run_python(
        """
        from isolation.errors import ConfigurationError
        try:
            hardening.limits_from_environ(os.environ)
            outcome = "accepted"
        except ConfigurationError as error:
            outcome = error.message
        print(json.dumps([outcome, "ISOLATION_LIMIT_MEMORY" in os.environ]))
        """,
        env=env,
    )
    assert report == ["$ISOLATION_LIMIT_MEMORY must be a positive decimal integer, not 'lots'", False]
