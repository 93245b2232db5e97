"""Where things are: the project folder, the host keyring and the local environments' home.

A project is an Airflow project folder with ``isolationctl.toml`` (written by ``init``)
or, for projects set up by hand, an ``environments/`` folder. The keyring and the
environments' home are the ones the operator uses, so the CLI and the tasks always agree.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isolation.environments.local import envs_home
from isolation.environments.spec import EnvironmentSpec, load_spec
from isolation.keyring import HostKeyring, check_environment_name, default_keyring_path
from isolationctl._ui import ExitCode, fail

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 hosts
    import tomli as tomllib

PROJECT_FILE = "isolationctl.toml"
ENVIRONMENTS = "environments"
BACKENDS = ("local", "kubernetes")


@dataclass(frozen=True)
class ProjectConfig:
    """``isolationctl.toml``: what ``init`` chose, read back by the other commands."""

    backend: str = "local"
    environments: str = ENVIRONMENTS
    dags: str = "dags"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_toml(self) -> str:
        return (
            "# isolationctl project settings (docs/cli.md).\n"
            "[project]\n"
            f"# The backend isolated tasks of this project run on by default: {' or '.join(BACKENDS)}.\n"
            f'backend = "{self.backend}"\n'
            "# Where environment definitions and DAG files live, relative to this file.\n"
            f'environments = "{self.environments}"\n'
            f'dags = "{self.dags}"\n'
        )


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig

    @property
    def environments(self) -> Path:
        return self.root / self.config.environments

    @property
    def dags(self) -> Path:
        return self.root / self.config.dags

    def names(self) -> list[str]:
        """The environments defined in this project, sorted."""
        if not self.environments.is_dir():
            return []
        return sorted(p.name for p in self.environments.iterdir() if p.is_dir() and (p / "python-version").is_file())

    def spec(self, name: str) -> EnvironmentSpec:
        check_environment_name(name)
        folder = self.environments / name
        if not folder.is_dir():
            known = ", ".join(self.names()) or "none"
            fail(
                f"no environment {name!r} in {self.environments} (defined: {known})",
                hint=f"create it with `isolationctl env add {name} --python 3.12`",
            )
        return load_spec(folder)


def read_config(root: Path) -> ProjectConfig:
    path = root / PROJECT_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ProjectConfig()
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
        fail(f"cannot read {path}: {exc}", hint="fix the file, or delete it and run `isolationctl init` again")
    section = data.get("project", {})
    if not isinstance(section, dict):
        fail(f"{path}: [project] must be a table", hint="see docs/cli.md for the settings", code=ExitCode.CONFIGURATION)
    unknown = sorted(set(section) - {"backend", "environments", "dags"})
    if unknown:
        fail(f"{path}: unknown settings {unknown} in [project]", hint="the settings are backend, environments, dags")
    backend = section.get("backend", "local")
    if backend not in BACKENDS:
        fail(f"{path}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    environments = _inside(root, path, "environments", section.get("environments", ENVIRONMENTS))
    return ProjectConfig(
        backend=backend, environments=environments, dags=_inside(root, path, "dags", section.get("dags", "dags"))
    )


def _inside(root: Path, path: Path, key: str, value: object) -> str:
    # A cloned project decides these paths: they must not send `env remove` elsewhere.
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        fail(f"{path}: {key} must be a folder relative to the project, not {value!r}")
    if not (root / value).resolve().is_relative_to(root.resolve()):
        fail(f"{path}: {key} = {value!r} leads outside the project", hint="keep it inside the project folder")
    return value


def find_project(folder: Path | None) -> Project:
    """The project at ``folder``, else the nearest folder above the current one with
    ``isolationctl.toml`` (as git finds its repository), else a clear error."""
    start = (folder or Path.cwd()).resolve()
    if not start.is_dir():
        fail(f"{start} is not a folder", hint="pass an existing project folder with --project")
    root = start
    if folder is None and not _is_project(start):
        root = next((parent for parent in start.parents if (parent / PROJECT_FILE).is_file()), start)
    if not _is_project(root):
        fail(
            f"{root} is not an isolation project (no {PROJECT_FILE} and no {ENVIRONMENTS}/ folder)",
            hint="run `isolationctl init` here, or pass the project folder with --project",
        )
    return Project(root, read_config(root))


def _is_project(folder: Path) -> bool:
    return (folder / PROJECT_FILE).is_file() or (folder / ENVIRONMENTS).is_dir()


def configured_keyring_path() -> Path:
    """The keyring the operator reads, found without importing Airflow.

    ``AIRFLOW__ISOLATION__KEYRING_PATH``, else ``[isolation] keyring_path`` in
    ``$AIRFLOW_HOME/airflow.cfg``, else ``ISOLATION_KEYRING``, else the default.
    """
    configured = os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH")
    if configured:
        return Path(configured)
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    parser = configparser.ConfigParser(interpolation=None)
    # An unreadable airflow.cfg falls back to the default; doctor reports it.
    with contextlib.suppress(configparser.Error, UnicodeError):
        parser.read(airflow_home / "airflow.cfg", encoding="utf-8")
    configured = parser.get("isolation", "keyring_path", fallback="").strip()
    return Path(configured) if configured else default_keyring_path()


@dataclass(frozen=True)
class Locations:
    """The global options every command may use, resolved."""

    project_folder: Path | None = None
    keyring_path: Path | None = None
    home_path: Path | None = None

    @property
    def keyring(self) -> HostKeyring:
        return HostKeyring.open(self.keyring_path or configured_keyring_path())

    @property
    def home(self) -> Path:
        return self.home_path or envs_home()

    def project(self) -> Project:
        return find_project(self.project_folder)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        fail(f"{what} {path} does not exist", code=ExitCode.CONFIGURATION)
    return path
