"""``isolationctl doctor``: is everything an isolated task needs in place? Each failure says its fix.

Four areas: the host's configuration (which keyring the operator reads, the
``isolation_default`` connection), the keys (:mod:`isolationctl._keychecks`), each
environment (built, up to date, its runtime importable and of the host's version) and the
sandbox (what ``python -m isolation.environments doctor`` checks).
"""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

import isolation
from isolation.environments.local import MARKER, LocalEnvironment, find_local
from isolation.errors import IsolationError
from isolation.keyring import RECIPIENT_FILE, HostKeyring
from isolationctl import _keychecks
from isolationctl._checks import Check
from isolationctl._project import PROJECT_FILE, Locations, Project, configured_keyring_path
from isolationctl._ui import CliError, ExitCode, emit_json, err, table

COLUMNS = ("area", "check", "result", "detail", "fix")
# Run in the environment's interpreter: does the runtime import, which versions are there?
_RUNTIME_PROBE = (
    "import json, importlib.metadata as m\n"
    "out = {}\n"
    "try:\n    import isolation.runtime, isolation; out['runtime'] = isolation.__version__\n"
    "except Exception as exc: out['error'] = '%s: %s' % (type(exc).__name__, exc)\n"
    "try: out['airflow'] = m.version('apache-airflow')\n"
    "except Exception: out['airflow'] = None\n"
    "print(json.dumps(out))\n"
)
# Run in a child of the host's interpreter: Airflow's import is slow and may print.
_CONNECTION_PROBE = (
    "import json, sys\n"
    "from isolation.operators.keyring_hook import load_host_keys\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try: out[name] = {'ok': True, 'source': load_host_keys(name).source}\n"
    "    except Exception as exc:\n"
    "        out[name] = {'ok': False, 'error': getattr(exc, 'message', str(exc)), 'hint': getattr(exc, 'hint', '')}\n"
    "print('ISOLATION-DOCTOR ' + json.dumps(out))\n"
)


def doctor(
    ctx: typer.Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON instead of a table.")] = False,
    airflow: Annotated[
        bool | None,
        typer.Option(
            "--airflow/--no-airflow",
            help="Resolve the isolation_default connection through Airflow (slow: imports Airflow). "
            "Default: only when AIRFLOW_CONN_ISOLATION_DEFAULT or a secrets backend is configured.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check keys, environments, host configuration and the sandbox; exit 1 with the fixes if anything fails.

    Example: `isolationctl doctor --json`
    """
    locations: Locations = ctx.obj
    checks: list[Check] = []
    project = _project(locations, checks)
    keyring = locations.keyring
    names = project.names() if project is not None else _provisioned(locations.home)
    checks += _host_checks(locations, keyring, names, airflow)
    signer_checks, signer = _keychecks.signer_checks(keyring)
    checks += [_keyring_folder_check(keyring), *signer_checks]
    for name in names:
        checks += _environment_checks(name, project, locations.home)
        keys_dir = locations.home / name / "keys"
        # An environment never deployed has one failure, "built", not one per key file too.
        if keys_dir.is_dir() or (locations.home / name / MARKER).is_file():
            checks += _keychecks.environment_checks(name, keys_dir, keyring, signer)
    checks += _sandbox_checks()
    _report(checks, as_json)
    if not all(check.ok for check in checks):
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def _report(checks: list[Check], as_json: bool) -> None:
    failed = [check for check in checks if not check.ok]
    if as_json:
        emit_json({"ok": not failed, "checks": [check.to_json() for check in checks]})
    else:
        rows = [(c.area, c.name, "pass" if c.ok else "FAIL", c.detail, c.fix) for c in checks]
        table(None, COLUMNS, rows)
    if failed:
        err.print(f"[bold red]{len(failed)} of {len(checks)} checks failed[/]; the fixes:")
        for check in failed:
            err.print(f"  {check.fix or 'see the detail above'}", markup=False)
    else:
        err.print(f"[green]✓[/] all {len(checks)} checks passed")


def _project(locations: Locations, checks: list[Check]) -> Project | None:
    """The project, if there is one here; an unreadable one is a failure, none at all is not."""
    try:
        return locations.project()
    except CliError as exc:
        folder = (locations.project_folder or Path.cwd()).resolve()
        if locations.project_folder is not None or (folder / PROJECT_FILE).exists():
            checks.append(Check("project", "project readable", False, exc.message, exc.hint))
        else:
            checks.append(Check("project", "project", True, f"none at {folder}: checking the environments built"))
        return None


def _provisioned(home: Path) -> list[str]:
    """Without a project: every environment built or provisioned under the home."""
    if not home.is_dir():
        return []
    found = [p.name for p in home.iterdir() if (p / MARKER).is_file() or (p / "keys" / RECIPIENT_FILE).is_file()]
    return sorted(found)


# -- host configuration ------------------------------------------------------------------


def _host_checks(locations: Locations, keyring: HostKeyring, names: list[str], airflow: bool | None) -> list[Check]:
    checks = [_keyring_path_check(locations, keyring), _settings_agree_check()]
    if airflow is None:
        airflow = bool(os.environ.get("AIRFLOW_CONN_ISOLATION_DEFAULT") or _airflow_setting("secrets", "backend"))
    if not airflow:
        checks.append(
            Check(
                "host",
                "isolation_default connection",
                True,
                "not checked (none in the environment, no secrets backend); --airflow asks Airflow itself",
            )
        )
    elif names:
        checks += _connection_checks(names)
    return checks


def _keyring_path_check(locations: Locations, keyring: HostKeyring) -> Check:
    operator = configured_keyring_path()
    what = "the keyring the operator reads is the one checked"
    if keyring.path.resolve() != operator.resolve():
        return Check(
            "host",
            what,
            False,
            f"checked {keyring.path} (--keyring), the operator reads {operator}",
            f"drop --keyring, or set [isolation] keyring_path = {keyring.path} in airflow.cfg",
        )
    return Check("host", what, True, f"{operator} ({_keyring_source()})")


def _keyring_source() -> str:
    if os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH"):
        return "AIRFLOW__ISOLATION__KEYRING_PATH"
    if _airflow_setting("isolation", "keyring_path"):
        return "[isolation] keyring_path in airflow.cfg"
    return "ISOLATION_KEYRING" if os.environ.get("ISOLATION_KEYRING") else "the default"


def _settings_agree_check() -> Check:
    variable = os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH", "").strip()
    configured = _airflow_setting("isolation", "keyring_path")
    what = "AIRFLOW__ISOLATION__KEYRING_PATH and airflow.cfg agree"
    if variable and configured and Path(variable).resolve() != Path(configured).resolve():
        return Check(
            "host",
            what,
            False,
            f"the variable says {variable}, airflow.cfg says {configured} (the variable wins)",
            "set [isolation] keyring_path in airflow.cfg and AIRFLOW__ISOLATION__KEYRING_PATH to the same folder",
        )
    return Check("host", what, True, "only one is set" if not (variable and configured) else "the same folder")


def _keyring_folder_check(keyring: HostKeyring) -> Check:
    what = "keyring folder is private (0700)"
    if not keyring.path.is_dir():
        return Check("keys", what, False, f"no folder {keyring.path}", "isolationctl deploy --local (creates it)")
    mode = stat.S_IMODE(os.stat(keyring.path).st_mode)
    ok = not mode & 0o077
    return Check("keys", what, ok, f"{keyring.path}: mode {mode:04o}", "" if ok else f"chmod 700 {keyring.path}")


def _airflow_setting(section: str, option: str) -> str:
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    variable = os.environ.get(f"AIRFLOW__{section.upper()}__{option.upper()}", "").strip()
    if variable and section != "isolation":
        return variable
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(airflow_home / "airflow.cfg", encoding="utf-8")
    except (configparser.Error, UnicodeError):
        return ""
    return parser.get(section, option, fallback="").strip()


def _connection_checks(names: list[str]) -> list[Check]:
    """Resolve each environment's keys as the operator does, in a child process that imports Airflow."""
    what = "the operator finds the host keys"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CONNECTION_PROBE, *names], capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        return [Check("host", what, False, "importing Airflow took over 300 s", "check the host's Airflow install")]
    lines = [line for line in done.stdout.splitlines() if line.startswith("ISOLATION-DOCTOR ")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Check("host", what, False, f"Airflow could not be asked: {tail}", "check the host's Airflow install")]
    found = json.loads(lines[-1].split(" ", 1)[1])
    checks = []
    for name in names:
        entry = found.get(name, {})
        if entry.get("ok"):
            checks.append(Check("host", f"{name}: {what}", True, f"from {entry.get('source')}"))
        else:
            checks.append(Check("host", f"{name}: {what}", False, entry.get("error", "?"), entry.get("hint", "")))
    return checks


# -- environments ------------------------------------------------------------------------


def _environment_checks(name: str, project: Project | None, home: Path) -> list[Check]:
    area = f"environment {name}"
    fix = _keychecks.deploy_fix(name)
    try:
        env = find_local(name, home=home)
    except IsolationError as exc:
        return [Check(area, "built", False, exc.message, fix)]
    checks = [Check(area, "built", True, str(env.root))]
    if project is not None:
        checks.append(_fingerprint_check(area, name, project, env, fix))
    checks += _runtime_checks(area, env, fix)
    return checks


def _fingerprint_check(area: str, name: str, project: Project, env: LocalEnvironment, fix: str) -> Check:
    what = "built from the current definition"
    try:
        spec = project.spec(name)
    except (IsolationError, CliError) as exc:
        return Check(area, what, False, f"its definition does not read: {exc.message}", exc.hint)
    current = spec.fingerprint()
    if current != env.fingerprint:
        detail = f"environments/{name}/ changed since the build (fingerprint {env.fingerprint}, now {current})"
        return Check(area, what, False, detail, fix)
    return Check(area, what, True, f"fingerprint {current}")


def _runtime_checks(area: str, env: LocalEnvironment, fix: str) -> list[Check]:
    forced = f"{fix} --force"
    try:
        done = subprocess.run(
            [str(env.python), "-I", "-c", _RUNTIME_PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=env.root,
        )
        found = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-300:]}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        found = {"error": f"{env.python} does not run: {exc}"}
    if "runtime" not in found:
        return [Check(area, "runtime importable", False, str(found.get("error", "no output")), forced)]
    checks = [Check(area, "runtime importable", True, f"isolation.runtime in {env.python}")]
    version, host = found["runtime"], isolation.__version__
    ok = version == host
    detail = f"{version}" if ok else f"{version}, the host runs {host}"
    checks.append(Check(area, "runtime version is the host's", ok, detail, "" if ok else fix))
    airflow = found.get("airflow")
    detail = f"Airflow {airflow}, Python {env.python_version}" if airflow else "Airflow is not installed"
    add = f"add apache-airflow to environments/{env.name}/requirements.txt, then {fix}"
    checks.append(Check(area, "Airflow installed", bool(airflow), detail, "" if airflow else add))
    return checks


# -- sandbox -----------------------------------------------------------------------------


def _sandbox_checks() -> list[Check]:
    """What ``python -m isolation.environments doctor`` checks, as rows."""
    from isolation.backends import _seccomp, sandbox
    from isolation.environments.distribution import host_runtime

    status = sandbox.probe()
    checks = [
        Check(
            "sandbox",
            "bubblewrap works",
            status.available,
            status.detail,
            "" if status.available else sandbox.INSTALL_HINT,
        )
    ]
    try:
        program = _seccomp.filter_program()
        checks.append(Check("sandbox", "seccomp filter loads", True, f"{len(program) // 8} instructions"))
    except IsolationError as exc:
        checks.append(Check("sandbox", "seccomp filter loads", False, exc.message, exc.hint))
    try:
        checks.append(Check("host", "runtime installable into environments", True, host_runtime().describe()))
    except IsolationError as exc:
        checks.append(Check("host", "runtime installable into environments", False, exc.message, exc.hint))
    return checks
