"""The breakout catalogue, end to end: real Airflow 3.3 host, tasks in the sandbox of both Airflow majors.

``e2e_breakout`` runs once for the module: one task per environment tries every probe of
:mod:`isolation.testing.breakout` (``legacy``: Airflow 2.11, ``modern``: Airflow 3.3, and
``e2e-hostnet``: modern's virtualenv with ``network = "host"``), and two tasks print an
escaped password through every channel. Each test then asserts one attack: it failed
inside, and the host shows no effect. Where it is cheap, the same probe run here, on the
host, succeeds: the attack is real and the probe can tell.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ENVS_HOME, HOME, HOST_ONLY_SECRET, KEYRING, SESSION, TMP
from harness import DAGS, leftover_temp, namespace_processes, run_dag, start_dag, wait_namespace_empty
from secrets_data import ESCAPED_PASSWORD

from isolation.keyring import EnvironmentKeys, HostKeyring
from isolation.testing import breakout
from isolation.transport import Keyset

pytestmark = [pytest.mark.envs, pytest.mark.slow]

HOSTNET = "e2e-hostnet"  # the name dags/e2e_breakout.py looks for
SANDBOXED = ("legacy", "modern", "hostnet")
ENVIRONMENT = {"legacy": "legacy", "modern": "modern", "hostnet": HOSTNET}
NO_NETWORK = ("legacy", "modern")
DB_URL = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


# --------------------------------------------------------------------------- fixtures


class _Listener:
    """A server on the host that records the first line of every connection it accepts."""

    def __init__(self, family: int, address: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\n" not in data and len(data) < 200:
                        chunk = conn.recv(200)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
            self.seen.append(data.decode("utf-8", "replace").strip())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def servers():
    """A loopback TCP server and an abstract UNIX socket server, named to the DAG by environment variables."""
    tcp = _Listener(socket.AF_INET, ("127.0.0.1", 0))
    name = f"isolation-breakout-{os.getpid()}-{secrets.token_hex(4)}"
    unix = _Listener(socket.AF_UNIX, "\0" + name)
    os.environ["E2E_BREAKOUT_PORT"] = str(tcp.address[1])
    os.environ["E2E_BREAKOUT_UNIX"] = "@" + name
    try:
        yield {"tcp": tcp, "unix": unix}
    finally:
        os.environ.pop("E2E_BREAKOUT_PORT", None)
        os.environ.pop("E2E_BREAKOUT_UNIX", None)
        tcp.close()
        unix.close()


@pytest.fixture(scope="module")
def hostnet(airflow_env):
    """Modern's virtualenv as an environment of its own with ``network = "host"`` and its own keys."""
    root = ENVS_HOME / HOSTNET
    if not (root / "environment.json").exists():
        modern = json.loads((ENVS_HOME / "modern" / "environment.json").read_text())
        settings = {**modern["sandbox"], "sandbox": "bubblewrap", "network": "host"}
        keyring = HostKeyring.open(KEYRING)
        recipient = Keyset.generate_recipient(HOSTNET)
        EnvironmentKeys.provision(root / "keys", recipient, keyring.signer())
        keyring.save_recipient(recipient)
        marker = {**modern, "name": HOSTNET, "sandbox": settings}
        (root / "environment.json").write_text(json.dumps(marker, indent=2) + "\n")
    yield HOSTNET
    from isolation.backends import LocalBackend, _warm

    _warm.stop(LocalBackend(ENVS_HOME).locate(HOSTNET))


def _dag_module() -> Any:
    """The DAG file as a module (its inputs as this process's environment gives them)."""
    spec = importlib.util.spec_from_file_location("e2e_breakout_inputs", DAGS / "e2e_breakout.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _planted() -> list[Path]:
    """Every file a probe may have left in a place the host has: venvs, keys, homes, /, /etc."""
    module = _dag_module()
    places: set[Path] = set()
    for name in ("legacy", "modern", HOSTNET):
        places |= {Path(p) for p in module.site_packages(name)}
        places |= {Path(p) for p in module.probe_inputs(name)["write_dirs"]}
        venv = module.venv_of(name)
        if venv is not None:
            places.add(Path(os.path.realpath(venv)))
        places |= {ENVS_HOME / name / "keys", Path(os.path.realpath(ENVS_HOME / name)) / "keys"}
    found = []
    for place in places:
        try:
            found += [place / entry for entry in os.listdir(place) if entry.startswith(breakout.MARKER_PREFIX)]
        except OSError:
            continue
    return sorted(found)


@pytest.fixture(scope="module", params=["cold", "warm"])
def run(request, airflow_env, hostnet, servers):
    """The catalogue's DAG run, once on each start path: a new interpreter per task, and a warm fork."""
    before = _planted()
    os.environ["ISOLATION_WARM"] = "1" if request.param == "warm" else "0"
    for server in servers.values():
        server.seen.clear()  # what this run's tasks reached, not the other path's
    try:
        result = run_dag("e2e_breakout", timeout=600)
        result.planted_before = before  # type: ignore[attr-defined]
        result.start_path = request.param  # type: ignore[attr-defined]
        yield result
    finally:
        os.environ.pop("ISOLATION_WARM", None)
        # A planted .pth would stay in the cached environments: the test that found it failed; remove it.
        for path in set(_planted()) - set(before):
            path.unlink(missing_ok=True)


def _results(run, label: str) -> dict[str, dict[str, Any]]:
    task = f"probes_{label}"
    assert run.states.get(task) == "success", run.logs.get(task, run.output[-4000:])[-4000:]
    return {item["probe"]: item for item in run.xcoms[task]["return_value"]}


def _probe(run, label: str, name: str) -> dict[str, Any]:
    found = _results(run, label)
    assert name in found, sorted(found)
    return found[name]


def _blocked(result: dict[str, Any]) -> None:
    """The attack failed; on failure, show exactly what got through."""
    leaks = [t for t in result.get("targets", []) if t["blocked"] is not True]
    assert result["blocked"] is True, json.dumps({**result, "targets": leaks or result.get("targets")}, indent=1)


# --------------------------------------------------------------------------- the catalogue ran


def test_the_catalogue_ran_in_every_sandbox(run):
    expected = {
        "read_environ",
        "read_host_files",
        "read_home_files",
        "read_kernel_files",
        "open_database",
        "process_access",
        "foreign_fds",
        "plant_pth_own",
        "plant_pth_other",
        "write_outside_tmp",
        "connect_tcp",
        "connect_unix",
        "syscalls",
        "foreign_abi",
        "proc_writes",
        "device_node",
        "leave_daemon",
    }
    for label in SANDBOXED:
        assert set(_results(run, label)) == expected, label
        log = run.logs[f"probes_{label}"]
        network = "host" if label == "hostnet" else "none"
        assert f"sandbox: bubblewrap; network: {network}" in log, log[-3000:]


# --------------------------------------------------------------------------- reading the host


@pytest.mark.parametrize("label", SANDBOXED)
def test_host_process_environ_is_out_of_reach(run, label):
    result = _probe(run, label, "read_environ")
    _blocked(result)
    # Cold: it did read its own parent's environ (bubblewrap's): nothing of the host was in
    # it. Warm: the runtime is pid 1 of its own namespaces and has no parent it can see.
    # Either way the host task's own pid is not there to read.
    if run.start_path == "cold":
        assert result["evidence"]["ppid_environ"] == "read"
    else:
        assert result["evidence"]["ppid"] == 0 and result["evidence"]["ppid_environ"] == "no parent"
    assert result["evidence"]["matches"] == []
    assert result["evidence"]["denied"] >= 1


def test_control_the_environ_probe_finds_the_host_secret_outside_the_sandbox(airflow_env):
    needles = _dag_module().probe_inputs("modern")["needles"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # inherits the host's variables
    try:
        time.sleep(0.2)
        result = breakout.read_environ(needles, pids=[child.pid])
    finally:
        child.kill()
        child.wait()
    assert result["blocked"] is False, result
    assert set(result["evidence"]["matches"][0]["needles"]) == set(range(len(needles)))


@pytest.mark.parametrize("label", SANDBOXED)
def test_host_config_database_and_keys_are_out_of_reach(run, label):
    result = _probe(run, label, "read_host_files")
    _blocked(result)
    targets = {t["target"] for t in result["targets"]}
    wanted = {str(HOME / "airflow.cfg"), str(HOME / "airflow.db"), str(KEYRING / "signer.json"), str(KEYRING)}
    assert wanted <= targets
    for other in set(ENVIRONMENT.values()) - {ENVIRONMENT[label]}:
        assert str(ENVS_HOME / other / "keys" / "recipient.json") in targets, other


def test_control_the_host_reads_the_files_the_sandbox_cannot(run):
    paths = [t["target"] for t in _probe(run, "modern", "read_host_files")["targets"]]
    paths = [p for p in paths if p != "/etc/shadow" or os.access(p, os.R_OK)]
    result = breakout.read_files(paths)
    assert [t for t in result["targets"] if t["blocked"] is not False] == []


@pytest.mark.parametrize("label", SANDBOXED)
def test_the_workers_home_is_out_of_reach(run, label):
    result = _probe(run, label, "read_home_files")
    _blocked(result)
    assert breakout.read_files(t["target"] for t in result["targets"])["blocked"] is False


@pytest.mark.parametrize("label", SANDBOXED)
def test_kernel_interfaces_are_out_of_reach(run, label):
    _blocked(_probe(run, label, "read_kernel_files"))


@pytest.mark.parametrize("label", SANDBOXED)
def test_the_metadata_database_is_out_of_reach(run, label):
    result = _probe(run, label, "open_database")
    _blocked(result)
    assert len(result["targets"]) == 2  # open() and sqlite3


def test_control_the_host_opens_the_database_the_sandbox_cannot(airflow_env):
    result = breakout.open_database(DB_URL)
    assert result["blocked"] is False, result
    assert result["targets"][1]["evidence"]["connection_rows"] >= 3


@pytest.mark.parametrize("label", SANDBOXED)
def test_no_process_outside_the_sandbox_is_reachable(run, label):
    result = _probe(run, label, "process_access")
    _blocked(result)
    host_pid, *inside = result["pids"]
    # Cold: bubblewrap is in the sandbox to try. Warm: the runtime is pid 1, alone with its
    # own children (the system calls are refused all the same: test_dangerous_system_calls...).
    assert inside or run.start_path == "warm", "the probe saw no other process of its sandbox to try"
    host = result["targets"][0]
    assert host["target"] == host_pid and "pidfd_open=ESRCH" in host["how"], host
    # Inside the sandbox, the system calls themselves are refused.
    for target in result["targets"][1:]:
        assert "pidfd_getfd=EPERM" in target["how"] and "ptrace=EPERM" in target["how"], target


def test_control_the_process_probe_succeeds_outside_the_sandbox():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        result = breakout.process_access([child.pid], scan=False)
    finally:
        child.kill()
        child.wait()
    assert result["blocked"] is False, result
    how = result["targets"][0]["how"]
    assert "pidfd_getfd=copied" in how and "ptrace=attached" in how and "process_vm_readv=read" in how, how


@pytest.mark.parametrize("label", SANDBOXED)
def test_no_host_file_through_another_process_descriptors(run, label):
    _blocked(_probe(run, label, "foreign_fds"))


# --------------------------------------------------------------------------- writing


def test_no_probe_left_a_file_on_the_host(run):
    assert _planted() == run.planted_before == [], "a probe wrote into a path of the host"


@pytest.mark.parametrize("label", SANDBOXED)
def test_own_virtualenv_is_read_only(run, label):
    result = _probe(run, label, "plant_pth_own")
    _blocked(result)
    assert result["how"] == "EROFS", result


@pytest.mark.parametrize("label", SANDBOXED)
def test_other_virtualenvs_are_out_of_reach(run, label):
    result = _probe(run, label, "plant_pth_other")
    _blocked(result)
    assert result["targets"], "no other environment's site-packages was tried"


@pytest.mark.parametrize("label", SANDBOXED)
def test_nothing_outside_tmp_is_writable(run, label):
    _blocked(_probe(run, label, "write_outside_tmp"))


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("label", NO_NETWORK)
def test_loopback_tcp_server_is_unreachable_without_network(run, servers, label):
    result = _probe(run, label, "connect_tcp")
    _blocked(result)
    assert label not in servers["tcp"].seen


@pytest.mark.parametrize("label", NO_NETWORK)
def test_abstract_unix_socket_is_unreachable_without_network(run, servers, label):
    result = _probe(run, label, "connect_unix")
    _blocked(result)
    assert label not in servers["unix"].seen


def test_control_loopback_tcp_server_is_reachable_with_host_network(run, servers):
    result = _probe(run, "hostnet", "connect_tcp")
    assert result["blocked"] is False, result
    # Only the environment with the host's network got through.
    assert servers["tcp"].seen == ["hostnet"]


def test_host_network_shares_the_abstract_unix_sockets(run, servers):
    # The abstract socket namespace belongs to the network namespace: "host" shares it.
    result = _probe(run, "hostnet", "connect_unix")
    assert result["blocked"] is False, result
    assert servers["unix"].seen == ["hostnet"]


# --------------------------------------------------------------------------- the kernel


@pytest.mark.parametrize("label", SANDBOXED)
def test_dangerous_system_calls_are_refused(run, label):
    _blocked(_probe(run, label, "syscalls"))


def test_control_the_same_system_calls_reach_the_kernel_outside_the_sandbox():
    result = breakout.syscalls()
    reached = [t["target"] for t in result["targets"] if t["blocked"] is False]
    assert result["blocked"] is False and len(reached) >= len(result["targets"]) // 2, result


@pytest.mark.parametrize("label", SANDBOXED)
def test_foreign_system_call_entry_points_are_refused(run, label):
    _blocked(_probe(run, label, "foreign_abi"))


@pytest.mark.parametrize("label", SANDBOXED)
def test_kernel_settings_are_read_only(run, label):
    # kernel.core_pattern, kernel.modprobe & co: a program of the task's choice run as root on the host.
    _blocked(_probe(run, label, "proc_writes"))


@pytest.mark.parametrize("label", SANDBOXED)
def test_no_raw_disk_through_a_device_node(run, label):
    _blocked(_probe(run, label, "device_node"))


# --------------------------------------------------------------------------- processes left behind


@pytest.mark.parametrize("label", SANDBOXED)
def test_a_double_forked_daemon_ends_with_the_task(run, label):
    result = _probe(run, label, "leave_daemon")
    # It did start, in the sandbox's own PID namespace...
    assert result["blocked"] is False, result
    pidns = result["evidence"]["pidns"]
    assert result["evidence"]["daemon_pidns"] == pidns != os.stat("/proc/self/ns/pid").st_ino
    # ... and nothing of that namespace outlived the task.
    started = result["evidence"]["daemon_started"]
    assert wait_namespace_empty(pidns, 10, started_by=started) == []


_LEFT = re.compile(r"breakout: left (\[.*?\]) daemon=(\{.*\}) pid=(\d+) pidns=(\d+)")


def _files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if not path.is_dir()}


def test_a_sigkilled_host_leaves_no_file_and_no_process(airflow_env, monkeypatch, start_path):
    monkeypatch.setenv("E2E_BREAKOUT_KILL", "1")
    before = _files_under(TMP)
    proc = start_dag("e2e_breakout")
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        match = None
        deadline = time.monotonic() + 120
        while match is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = _LEFT.search(line)
        assert match is not None, "".join(lines)[-3000:]
        written, daemon, pidns = json.loads(match.group(1)), json.loads(match.group(2)), int(match.group(4))
        assert daemon["blocked"] is False and daemon["evidence"]["pidns"] == pidns, daemon
        inside = namespace_processes(pidns)
        # Cold: bubblewrap, the runtime and the daemon; warm: the runtime (pid 1) and the daemon.
        assert len(inside) >= (3 if start_path == "cold" else 2), inside
        # The files are really there, in the sandbox's own file system (seen through its /proc root).
        assert "/tmp/home/isolation-breakout-left-behind" in written, written
        seen = {path for path in written for pid in inside if os.path.exists(f"/proc/{pid}/root{path}")}
        assert seen == set(written), (written, seen)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_namespace_empty(pidns, 15) == [], "a sandboxed process outlived the SIGKILLed host"
    assert sorted(_files_under(TMP) - before) == []
    assert leftover_temp(TMP) == []
    assert [p for p in _files_under(SESSION) if p.name.startswith(breakout.MARKER_PREFIX)] == []


# --------------------------------------------------------------------------- secrets


def _airflow_secrets() -> dict[str, str]:
    """The host's own secrets: the one only the host has, its DB URL, Fernet key, JWT secret, private keys."""
    found = {"host-only secret": HOST_ONLY_SECRET, "database URL": DB_URL}
    config = configparser.ConfigParser(interpolation=None)
    config.read(HOME / "airflow.cfg")
    for section, key in (("core", "fernet_key"), ("api_auth", "jwt_secret"), ("webserver", "secret_key")):
        value = config.get(section, key, fallback="") or ""
        if len(value) >= 8:
            found[f"[{section}] {key}"] = value
    if os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
        found["Fernet key"] = os.environ["AIRFLOW__CORE__FERNET_KEY"]
    keysets = [KEYRING / "signer.json"] + [
        ENVS_HOME / name / "keys" / "recipient.json" for name in ENVIRONMENT.values()
    ]
    for path in keysets:
        for index, key in enumerate(json.loads(path.read_text())["keys"]):
            if key.get("private"):
                found[f"private key {index} of {path.relative_to(SESSION)}"] = key["private"]
    return found


def test_no_host_secret_in_any_log_or_xcom(run):
    host_secrets = _airflow_secrets()
    assert {"host-only secret", "database URL", "[api_auth] jwt_secret"} <= set(host_secrets), sorted(host_secrets)
    assert len([name for name in host_secrets if name.startswith("private key")]) >= 4, sorted(host_secrets)
    secrets_found = {name: value for name, value in host_secrets.items() if value in run.output}
    assert secrets_found == {}, "host secrets in the task logs or XComs: " + ", ".join(secrets_found)


def _forms() -> dict[str, str]:
    """The bodies of the escaped forms (without the quotes repr and JSON put around them)."""
    forms = breakout.secret_forms(ESCAPED_PASSWORD)
    for name in ("repr", "ascii", "json", "json_unicode"):
        forms[name] = forms[name][1:-1]
    forms["bytes_repr"] = forms["bytes_repr"][2:-1]
    return forms


def _leaked(run, environment: str, names: set[str]) -> dict[str, list[str]]:
    task = f"secret_forms_{environment}"
    log = run.logs[task]
    # It ran, printed every form (masked) and failed with all of them in its message.
    assert run.states[task] == "failed", log[-3000:]
    assert "form json_unicode:" in log and "RuntimeError: secret forms:" in log, log[-3000:]
    leaked = {}
    for name, form in _forms().items():
        lines = [line.strip()[:160] for line in run.output.splitlines() if form in line]
        if name in names and lines:
            leaked[name] = lines[:3]
    return leaked


@pytest.mark.parametrize("environment", ["legacy", "modern"])
def test_escaped_forms_of_a_secret_never_reach_the_host(run, environment):
    # print, os.write(1) and (2), sys.__stderr__, logging, a Python child, a shell child, the exception.
    names = set(_forms()) - {"ascii"}
    leaked = _leaked(run, environment, names)
    assert leaked == {}, "escaped forms of the password reached the host:\n" + json.dumps(
        leaked, indent=1, ensure_ascii=False
    )


@pytest.mark.parametrize("environment", ["legacy", "modern"])
def test_the_ascii_form_of_a_secret_never_reaches_the_host(run, environment):
    # ascii() and "%a": repr with \xe4-style escapes for every non-ASCII letter.
    leaked = _leaked(run, environment, {"ascii"})
    assert leaked == {}, "the ascii() form of the password reached the host:\n" + json.dumps(
        leaked, indent=1, ensure_ascii=False
    )
