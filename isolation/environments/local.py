"""Local environments: a virtualenv per environment, built from its spec and cached.

Layout under ``ISOLATION_ENVS_HOME`` (default ``~/.local/share/isolation/envs``)::

    <name>/venv/               the interpreter the local backend runs
    <name>/keys/               the environment's keys directory (see isolation.keyring)
    <name>/environment.json    what was built: fingerprint, python, airflow and runtime versions

The runtime (this project) always comes from the host's own code, never from an index:
see :mod:`isolation.environments.distribution`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isolation._atomic import write_atomic
from isolation.environments.distribution import (
    DISTRIBUTION,
    HostRuntime,
    check_installed,
    host_runtime,
    refuse_runtime_requirements,
)
from isolation.environments.settings import SandboxSettings
from isolation.environments.spec import EnvironmentSpec, check_name
from isolation.errors import ConfigurationError
from isolation.keyring import EnvironmentKeys, HostKeyring
from isolation.transport.keyset import Keyset

MARKER = "environment.json"
# The steps of a build, in order, as reported to a ``progress`` callback.
STEP_RESOLVE = "resolving"
STEP_DOWNLOAD = "downloading Python"
STEP_VENV = "creating venv"
STEP_REQUIREMENTS = "installing requirements"
STEP_RUNTIME = "installing runtime"
STEP_KEYS = "provisioning keys"
Progress = Callable[[str, str], None]
"""Called with ``(step, what)`` as a build moves on: one of the ``STEP_*`` names and a line for a person."""
RUNTIME_REQUIREMENTS = ("cryptography>=48", "msgpack>=1.0.5", "pydantic>=2.6")
_PROBE = (
    "import json, sys\n"
    "try:\n    import airflow; v = airflow.__version__\n"
    "except Exception: v = None\n"
    f"try:\n    import importlib.metadata as m; r = m.version({DISTRIBUTION!r})\n"
    "except Exception: r = None\n"
    "print(json.dumps({'python_version': '%d.%d.%d' % sys.version_info[:3], 'airflow': v, 'runtime': r}))\n"
)


def envs_home() -> Path:
    configured = os.environ.get("ISOLATION_ENVS_HOME")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "isolation" / "envs"


@dataclass(frozen=True)
class LocalEnvironment:
    """A built local environment, as recorded in its marker file."""

    name: str
    root: Path
    python: Path
    keys_dir: Path
    python_version: str
    airflow_version: str | None
    fingerprint: str
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    # The version of this project installed in it (None: built before it was recorded).
    runtime_version: str | None = None

    @property
    def venv(self) -> Path:
        """The virtualenv's root: the interpreter is ``venv/bin/python``."""
        return self.python.parent.parent


class BuildError(ConfigurationError):
    """An environment cannot be built: no interpreter, or an installer failed."""


def _no_progress(step: str, what: str) -> None:
    pass


def find_python(version: str, *, download: bool = False, progress: Progress | None = None) -> Path:
    """Find an interpreter for ``3.X``: PATH, pyenv's versions, then uv's managed ones.

    With ``download`` (and uv on PATH, and ``UV_PYTHON_DOWNLOADS`` not ``never``) a
    missing CPython is fetched with ``uv python install 3.X``; ``progress`` hears of it first.
    """
    candidates: list[str] = []
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")))
    if sys.version.startswith(f"{version}."):
        candidates.append(sys.executable)
    for candidate in [*candidates, *_uv_found(version)]:
        if _reports_version(candidate, version):
            return Path(candidate)
    uv = shutil.which("uv")
    if download and uv and os.environ.get("UV_PYTHON_DOWNLOADS", "").lower() != "never":
        (progress or _no_progress)(
            STEP_DOWNLOAD, f"downloading CPython {version} with uv (set UV_PYTHON_DOWNLOADS=never to forbid)"
        )
        _run(
            [uv, "python", "install", version],
            f"downloading CPython {version} with uv",
            _install_hint(version, downloadable=False),
            downloads=True,
        )
        for candidate in _uv_found(version):
            if _reports_version(candidate, version):
                return Path(candidate)
    raise BuildError(f"no Python {version} interpreter found", hint=_install_hint(version, downloadable=bool(uv)))


def _install_hint(version: str, *, downloadable: bool) -> str:
    ways = f"`pyenv install {version}`, or `sudo apt-get install python{version}`"
    if not shutil.which("uv"):
        return f"install it: {ways}, or install uv and run `uv python install {version}`"
    more = " (or allow uv to download it)" if downloadable else ""
    return f"install it: `uv python install {version}`, {ways}{more}"


def _uv_found(version: str) -> list[str]:
    """uv's own interpreters (``uv python install``), found without downloading or a project's venv."""
    uv = shutil.which("uv")
    if not uv:
        return []
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    try:
        out = subprocess.run(
            [uv, "python", "find", "--no-project", "--system", version],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    path = out.stdout.strip()
    return [path] if out.returncode == 0 and path else []


def _reports_version(candidate: str, version: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _run(
    cmd: list[str], what: str, hint: str = "check the environment's requirements.txt", *, downloads: bool = False
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    if not downloads:
        # Installs use the interpreter found for them, never one uv fetches on the side.
        env["UV_PYTHON_DOWNLOADS"] = "never"
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed:\n{tail}", hint=hint)


def _install(
    python: Path,
    packages: list[str],
    what: str,
    *,
    no_deps: bool = False,
    reinstall: bool = False,
    no_index: bool = False,
    hint: str = "check the environment's requirements.txt",
) -> None:
    uv = shutil.which("uv")
    if uv:
        # Compiled bytecode: the first task in a fresh environment should not pay for it.
        cmd = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python)]
        cmd += ["--no-deps"] if no_deps else []
        cmd += ["--reinstall-package", DISTRIBUTION] if reinstall else []
    else:
        cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--compile"]
        cmd += ["--no-deps"] if no_deps else []
        cmd += ["--force-reinstall"] if reinstall else []
    cmd += ["--no-index"] if no_index else []
    _run(cmd + packages, what, hint)


def _create_venv(interpreter: Path, venv: Path) -> Path:
    if venv.exists():
        shutil.rmtree(venv)
    uv = shutil.which("uv")
    if uv:
        _run([uv, "venv", "--quiet", "--seed", "--python", str(interpreter), str(venv)], "creating the virtualenv")
    else:
        _run([str(interpreter), "-m", "venv", str(venv)], "creating the virtualenv")
    return venv / "bin" / "python"


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_local_report` did, besides returning the environment."""

    environment: LocalEnvironment
    # The virtualenv was (re)created and the requirements installed.
    rebuilt: bool
    runtime_installed: bool
    # A key file of the environment or its host copy was written with new content.
    keys_changed: bool

    @property
    def changed(self) -> bool:
        return self.rebuilt or self.runtime_installed or self.keys_changed


def build_local(
    spec: EnvironmentSpec,
    *,
    keyring: HostKeyring,
    home: Path | None = None,
    project_source: Path | None = None,
    force: bool = False,
    runtime: HostRuntime | None = None,
    progress: Progress | None = None,
    download: bool = False,
) -> LocalEnvironment:
    """Build (or reuse) the virtualenv of ``spec`` and provision its keys.

    This project (the runtime) is installed from the host's own code
    (:func:`~isolation.environments.distribution.host_runtime`: its source tree, or a
    wheel of its installed distribution), never from an index; requirements that name it
    are refused. ``project_source`` installs it from that source tree instead (tests,
    demo), ``runtime`` from a given :class:`HostRuntime`. Either way the version the
    environment imports must be the host's. Rebuilds only when the spec's fingerprint
    changed; re-installs the runtime when its version or files changed. ``progress``
    hears of each step; ``download`` lets uv fetch a missing CPython (:func:`find_python`).
    """
    return build_local_report(
        spec,
        keyring=keyring,
        home=home,
        project_source=project_source,
        force=force,
        runtime=runtime,
        progress=progress,
        download=download,
    ).environment


def build_local_report(
    spec: EnvironmentSpec,
    *,
    keyring: HostKeyring,
    home: Path | None = None,
    project_source: Path | None = None,
    force: bool = False,
    runtime: HostRuntime | None = None,
    progress: Progress | None = None,
    download: bool = False,
) -> BuildReport:
    """:func:`build_local`, saying what changed.

    The marker is removed before anything is rebuilt and written (atomically) last, so an
    interrupted build is never taken for a good one: the next build starts over.
    """
    step = progress or _no_progress
    step(STEP_RESOLVE, f"resolving environment {spec.name!r} (Python {spec.python_version})")
    refuse_runtime_requirements(spec.name, spec.requirements)
    if runtime is None:
        runtime = HostRuntime.from_source(project_source) if project_source is not None else host_runtime()
    root = (home or envs_home()) / spec.name
    root.mkdir(parents=True, exist_ok=True)
    marker: dict[str, Any] = _read_marker(root) or {}
    python = root / "venv" / "bin" / "python"
    fingerprint = spec.fingerprint()
    rebuilt = force or marker.get("fingerprint") != fingerprint or not python.exists()
    if rebuilt:
        interpreter = find_python(spec.python_version, download=download, progress=step)
        (root / MARKER).unlink(missing_ok=True)
        step(STEP_VENV, f"creating the virtualenv with {interpreter}")
        python = _create_venv(interpreter, root / "venv")
        requirements = list(spec.requirements) + list(RUNTIME_REQUIREMENTS)
        step(STEP_REQUIREMENTS, f"installing {len(spec.requirements)} requirement(s) and the runtime's dependencies")
        _install(python, requirements, f"installing the requirements of environment {spec.name!r}")
        marker = {"fingerprint": fingerprint}
    runtime_print = runtime.fingerprint()
    installed = marker.get("source") != runtime_print
    if installed:
        step(STEP_RUNTIME, f"installing {DISTRIBUTION} {runtime.version} from the host's {runtime.origin}")
        with tempfile.TemporaryDirectory(dir=root, prefix=".runtime-") as scratch:
            target = runtime.installable(Path(scratch))
            _install(
                python,
                [str(target)],
                f"installing {DISTRIBUTION} {runtime.version} from the host's {runtime.origin}",
                no_deps=True,
                reinstall=True,
                # A wheel needs nothing else; a source tree needs its build backend.
                no_index=runtime.installed is not None,
                hint=f"is {runtime.location} complete? python -m isolation.environments doctor shows what is used",
            )
        marker["source"] = runtime_print
    # In the environment's own directory: the caller's working directory must not shadow a module.
    probe = subprocess.run(
        [str(python), "-c", _PROBE], capture_output=True, text=True, check=False, timeout=120, cwd=root
    )
    if probe.returncode != 0:
        raise BuildError(f"environment {spec.name!r} does not start: {probe.stderr.strip()[-500:]}")
    versions = json.loads(probe.stdout)
    found = versions.pop("runtime")
    check_installed(spec.name, found, runtime, just_installed=installed)
    step(STEP_KEYS, f"provisioning the keys of environment {spec.name!r}")
    before = _key_files(root / "keys", keyring, spec.name)
    keys_dir = provision_keys(spec.name, root / "keys", keyring, suite=spec.suite)
    keys_changed = _key_files(keys_dir, keyring, spec.name) != before
    marker.update({"name": spec.name, "python": str(python), **versions, "sandbox": spec.settings.to_dict()})
    marker.update({"runtime_version": found, "runtime_from": runtime.origin})
    _write_marker(root, marker)
    env = LocalEnvironment(
        spec.name,
        root,
        python,
        keys_dir,
        versions["python_version"],
        versions["airflow"],
        fingerprint,
        spec.settings,
        found,
    )
    return BuildReport(env, rebuilt, installed, keys_changed)


def _key_files(keys_dir: Path, keyring: HostKeyring, name: str) -> dict[str, bytes | None]:
    """The bytes of every file key provisioning writes, to tell whether it changed anything."""
    paths = {
        "recipient": keys_dir / "recipient.json",
        "signers": keys_dir / "signers.json",
        "host signer": keyring.path / "signer.json",
        "host copy": keyring.path / "environments" / f"{name}.json",
    }
    contents: dict[str, bytes | None] = {}
    for what, path in paths.items():
        try:
            contents[what] = path.read_bytes()
        except OSError:
            contents[what] = None
    return contents


def _write_marker(root: Path, marker: dict[str, Any]) -> None:
    # Whole or not at all: a half-written marker must never describe a good environment.
    write_atomic(root / MARKER, json.dumps(marker, indent=2) + "\n", mode=0o644)


def provision_keys(name: str, keys_dir: Path, keyring: HostKeyring, *, suite: int = 1) -> Path:
    """Give environment ``name`` its keys: keep its private keyset, export public halves both ways.

    Creates the host signer keyset and the environment's recipient keyset (of ``suite``)
    when they do not exist; never replaces an existing one. Writes the host's public
    signer keyset into ``keys_dir`` and the environment's public keyset into the keyring.
    """
    signer = keyring.init()
    recipient_file = keys_dir / "recipient.json"
    if recipient_file.exists():
        recipient = Keyset.load(recipient_file)
        if recipient.name != name:
            raise ConfigurationError(f"{recipient_file} belongs to environment {recipient.name!r}, not {name!r}")
    else:
        recipient = Keyset.generate_recipient(name, suite=suite)
    EnvironmentKeys.provision(keys_dir, recipient, signer)
    keyring.save_recipient(recipient)
    return keys_dir


def keys_dir_of(name: str, *, home: Path | None = None) -> Path:
    """Where local environment ``name`` keeps its keys directory (built or not yet)."""
    return (home or envs_home()) / check_name(name) / "keys"


def find_local(name: str, *, home: Path | None = None) -> LocalEnvironment:
    """The built local environment called ``name``; a clear error if it is not there."""
    check_name(name)
    root = (home or envs_home()) / name
    marker = _read_marker(root)
    if marker is None:
        raise ConfigurationError(
            f"local environment {name!r} is not built (looked in {root})",
            hint=f"build it: isolationctl deploy --local -e {name} (in the project folder), or set ISOLATION_ENVS_HOME",
        )
    python = Path(marker.get("python", root / "venv" / "bin" / "python"))
    if not os.access(python, os.X_OK):
        raise ConfigurationError(
            f"local environment {name!r} has no working interpreter at {python}",
            hint=f"rebuild it: isolationctl deploy --local -e {name} --force",
        )
    recorded = marker.get("sandbox")
    # Markers written before sandbox settings existed mean the defaults (sandboxed).
    settings = SandboxSettings() if recorded is None else SandboxSettings.from_dict(recorded, str(root / MARKER))
    return LocalEnvironment(
        name,
        root,
        python,
        root / "keys",
        str(marker.get("python_version", "")),
        marker.get("airflow"),
        str(marker.get("fingerprint", "")),
        settings,
        marker.get("runtime_version"),
    )
