"""`isolationctl env`: define, list, show and remove the environments of a project.

An environment's definition is ``environments/<name>/`` in the project (what
``isolation.environments.spec.load_spec`` reads); what is built from it, its virtualenv
and private keys, lives under the environments' home, outside the project tree.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from isolation.environments.distribution import canonical_name, refuse_runtime_requirements, requirement_names
from isolation.environments.local import MARKER, keys_dir_of, provision_keys
from isolation.environments.settings import NETWORKS, SETTINGS_FILE, parse_settings
from isolation.environments.settings import describe as confinement
from isolation.environments.spec import EnvironmentSpec, load_spec
from isolation.errors import ConfigurationError, IsolationError
from isolation.keyring import RECIPIENT_FILE, HostKeyring, check_environment_name
from isolation.transport.keyset import Keyset
from isolationctl import _audit, warm
from isolationctl._files import write_atomic
from isolationctl._project import Locations, Project
from isolationctl._ui import ExitCode, done, emit_json, fail, note, table, warn

app = typer.Typer(
    no_args_is_help=True,
    help="Define, list, show and remove the isolated environments of a project (environments/<name>/).",
)
app.add_typer(warm.app, name="warm")

# The runtime needs Python 3.10 or later inside every environment.
MIN_PYTHON = (3, 10)
_PYTHON = re.compile(r"3\.(\d{1,2})")
_AIRFLOW_VERSION = re.compile(r"\d+\.\d+(\.\d+)?([a-z]+\d+)?")
# Debian package names (policy manual 5.6.1), optionally with "=version".
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?")
AIRFLOW = "apache-airflow"


def template(name: str) -> str:
    """A file of ``isolationctl/templates`` (package data, also in the wheel)."""
    return resources.files("isolationctl").joinpath("templates", name).read_text(encoding="utf-8")


def fill(text: str, **values: str) -> str:
    # "{{key}}" without spaces, so Jinja templates ("{{ ds }}") in the same file stay as they are.
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


@dataclass(frozen=True)
class Definition:
    """What ``env add`` (and ``init --example``) writes into ``environments/<name>/``."""

    name: str
    python: str
    requirements: tuple[str, ...]
    system_packages: tuple[str, ...] = ()
    suite: int = 1
    network: str = "none"
    comment: str = ""  # a line explaining the requirements, for the example

    def files(self) -> dict[str, str]:
        """File name → content; every file is checked before any is written."""
        header = f"# {self.comment}\n" if self.comment else ""
        files = {
            "python-version": f"{self.python}\n",
            "requirements.txt": header + "".join(f"{line}\n" for line in self.requirements),
            "suite": f"{self.suite}\n",
            SETTINGS_FILE: fill(template("isolation.toml"), name=self.name, network_line=_network_line(self.network)),
            "Dockerfile": fill(template("env.Dockerfile"), name=self.name, python=self.python),
        }
        if self.system_packages:
            files["system-packages.txt"] = "".join(f"{p}\n" for p in self.system_packages)
        return files

    def check(self) -> None:
        """Refuse what ``load_spec`` or a build would refuse, before anything is written."""
        check_name(self.name)
        check_python(self.python)
        for line in self.requirements:
            if not line.strip() or "\n" in line or "\r" in line:
                fail(
                    f"requirement {line!r} is empty or spans lines",
                    hint="pass one requirement per --requirement",
                    code=ExitCode.USAGE,
                )
        try:
            refuse_runtime_requirements(self.name, list(self.requirements))
        except ConfigurationError as exc:
            fail(
                exc.message,
                hint="drop that --requirement: every deploy installs the runtime from this host",
                code=ExitCode.USAGE,
            )
        for package in self.system_packages:
            if not _DEBIAN_PACKAGE.fullmatch(package):
                fail(
                    f"{package!r} is not a Debian package name",
                    hint="e.g. --system-package libpq5",
                    code=ExitCode.USAGE,
                )
        if self.suite not in (1, 2):
            fail(f"suite must be 1 or 2, not {self.suite}", hint="1: X25519; 2: hybrid ML-KEM-768+X25519")
        parse_settings(self.files()[SETTINGS_FILE], f"{self.name}/{SETTINGS_FILE}")


def _network_line(network: str) -> str:
    if network == "none":
        return '# network = "none"         # "host": the worker\'s network (databases, APIs, cloud services)'
    return f'network = "{network}"           # "none" (the default): no network at all, not even 127.0.0.1'


def check_name(name: str) -> str:
    try:
        return check_environment_name(name)
    except ConfigurationError as exc:
        fail(exc.message, hint=exc.hint, code=ExitCode.USAGE)


def check_python(version: str) -> str:
    match = _PYTHON.fullmatch(version)
    if match is None:
        fail(
            f"--python must look like 3.12, not {version!r}",
            hint="pass the minor version: --python 3.12",
            code=ExitCode.USAGE,
        )
    if (3, int(match.group(1))) < MIN_PYTHON:
        fail(
            f"Python {version} is too old for the isolation runtime (it needs 3.10 or later)",
            hint="pass --python 3.10 or later",
            code=ExitCode.USAGE,
        )
    return version


def write_definition(folder: Path, definition: Definition) -> list[Path]:
    """Write the files of ``definition`` into ``folder``; stale optional files go."""
    files = definition.files()
    written = [write_atomic(folder / name, text) for name, text in files.items()]
    # A rewrite (--force) without system packages must not keep the old list.
    stale = folder / "system-packages.txt"
    if "system-packages.txt" not in files and stale.is_file():
        stale.unlink()
    return written


@dataclass(frozen=True)
class Provisioned:
    name: str
    keys_dir: Path
    created: bool


def provision(locations: Locations, spec: EnvironmentSpec) -> Provisioned:
    """Give ``spec`` its keys (and the host its signer); never replaces an existing key."""
    keys_dir = keys_dir_of(spec.name, home=locations.home)
    existed = (keys_dir / RECIPIENT_FILE).is_file()
    with _audit.key_creation(locations.keyring, locations.home, "provision"):
        provision_keys(spec.name, keys_dir, locations.keyring, suite=spec.suite)
    return Provisioned(spec.name, keys_dir, created=not existed)


def report_keys(locations: Locations, project_root: Path, provisioned: list[Provisioned]) -> None:
    """Say where the keys live, and that the private ones are outside the project."""
    keyring = locations.keyring.path
    note(f"host keyring (private signer, public environment keys): {keyring}")
    for item in provisioned:
        what = "created" if item.created else "kept"
        note(f"keys of environment {item.name!r} ({what}): {item.keys_dir}")
    inside = [p for p in [keyring, *(i.keys_dir for i in provisioned)] if _within(p, project_root)]
    if inside:
        warn(
            f"private keys are inside the project tree ({', '.join(map(str, inside))}): "
            "keep them out of version control, or set --keyring / --home elsewhere"
        )
    elif provisioned or (keyring / "signer.json").exists():
        note("private keys are outside the project tree; nothing secret is written into it")


def _within(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def host_airflow_version() -> str:
    try:
        return importlib.metadata.version(AIRFLOW)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - the host always has Airflow
        return "2.11.2"


def airflow_requirement(requirements: tuple[str, ...]) -> str | None:
    """The requirement line that installs Airflow itself, if any."""
    for line in requirements:
        if canonical_name(AIRFLOW) in requirement_names(line):
            return line
    return None


# --------------------------------------------------------------------------- add


@app.command("add")
def add(  # noqa: PLR0917 - Typer: one parameter per option
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The environment's name: lowercase letters, digits, '.', '_', '-'.")],
    python: Annotated[str, typer.Option("--python", help="The Python version of the environment, e.g. 3.12.")],
    airflow: Annotated[
        str | None,
        typer.Option(
            "--airflow",
            help="The Airflow version to install in it (default: the host's); 'none' for no Airflow requirement.",
            show_default=False,
        ),
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option("--requirement", "-r", help="A pip requirement line (repeatable), e.g. 'requests==2.31.0'."),
    ] = None,
    system_package: Annotated[
        list[str] | None,
        typer.Option("--system-package", help="A Debian package for its Kubernetes image (repeatable)."),
    ] = None,
    suite: Annotated[
        int, typer.Option("--suite", min=1, max=2, help="Envelope suite of its keys: 1 X25519, 2 hybrid ML-KEM.")
    ] = 1,
    network: Annotated[
        str, typer.Option("--network", help="'none' (no network at all) or 'host' (the worker's network).")
    ] = "none",
    force: Annotated[bool, typer.Option("--force", help="Rewrite the files of an existing environment.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new environment as JSON.")] = False,
) -> None:
    """Define a new environment and provision its keys.

    Example: isolationctl env add reports --python 3.12 --airflow 2.11.2 -r requests==2.31.0
    """
    locations: Locations = ctx.obj
    project = locations.project()
    if network not in NETWORKS:
        fail(
            f"--network must be {' or '.join(NETWORKS)}, not {network!r}",
            hint="--network host gives it the network",
            code=ExitCode.USAGE,
        )
    requirements = list(requirement or [])
    airflow_line = _airflow_line(airflow, requirements)
    definition = Definition(
        name=check_name(name),
        python=check_python(python),
        requirements=tuple(([airflow_line] if airflow_line else []) + requirements),
        system_packages=tuple(system_package or []),
        suite=suite,
        network=network,
    )
    definition.check()
    folder = project.environments / name
    if folder.exists() and not force:
        fail(
            f"environment {name!r} already exists in {folder}",
            hint=f"edit its files, pass --force to rewrite them, or remove it: isolationctl env remove {name}",
        )
    write_definition(folder, definition)
    spec = load_spec(folder)
    provisioned = provision(locations, spec)
    if as_json:
        emit_json(describe(locations, project, spec))
        return
    done(f"{'rewrote' if force else 'created'} environment {name!r} in {folder}")
    report_keys(locations, project.root, [provisioned])
    note(f"next: isolationctl deploy --local   (builds {name!r} into a virtualenv)")


def _airflow_line(airflow: str | None, requirements: list[str]) -> str | None:
    if airflow is not None and airflow.lower() == "none":
        return None
    if airflow is None:
        # A requirement that already names Airflow wins over the default.
        return None if airflow_requirement(tuple(requirements)) else f"{AIRFLOW}=={host_airflow_version()}"
    if not _AIRFLOW_VERSION.fullmatch(airflow):
        fail(
            f"--airflow must be a version like 2.11.2, not {airflow!r}",
            hint="e.g. --airflow 2.11.2",
            code=ExitCode.USAGE,
        )
    if airflow_requirement(tuple(requirements)):
        fail(
            "--airflow and a --requirement naming apache-airflow both say which Airflow to install",
            hint="keep one of them",
            code=ExitCode.USAGE,
        )
    return f"{AIRFLOW}=={airflow}"


# --------------------------------------------------------------------------- list and show


def _marker(locations: Locations, name: str) -> dict[str, Any] | None:
    path = locations.home / name / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _public_recipient(keyring: HostKeyring, name: str) -> Keyset | None:
    try:
        return keyring.recipient(name)
    except IsolationError:
        return None


def describe(locations: Locations, project: Project, spec: EnvironmentSpec) -> dict[str, Any]:
    """Everything about one environment; public key material only."""
    marker = _marker(locations, spec.name)
    fingerprint = spec.fingerprint()
    keys_dir = keys_dir_of(spec.name, home=locations.home)
    recipient = _public_recipient(locations.keyring, spec.name)
    system_file = spec.directory / "system-packages.txt"
    return {
        "name": spec.name,
        "folder": str(spec.directory),
        "python": spec.python_version,
        "airflow": airflow_requirement(spec.requirements),
        "requirements": list(spec.requirements),
        "system_packages": _lines(system_file),
        "suite": spec.suite,
        "settings": spec.settings.to_dict(),
        "confinement": confinement(spec.settings),
        "fingerprint": fingerprint,
        "built": marker is not None,
        "built_at": str(locations.home / spec.name),
        "fingerprint_current": None if marker is None else marker.get("fingerprint") == fingerprint,
        "built_versions": None
        if marker is None
        else {k: marker.get(k) for k in ("python_version", "airflow", "runtime_version")},
        "keys_dir": str(keys_dir),
        "keys_provisioned": (keys_dir / RECIPIENT_FILE).is_file(),
        "keyring_public_keyset": str(locations.keyring.path / "environments" / f"{spec.name}.json"),
        "keys": [] if recipient is None else [_key_row(key) for key in recipient],
    }


def _key_row(key: Any) -> dict[str, Any]:
    return {"kid": key.kid, "algorithm": key.algorithm.value, "status": key.status.value}


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [s for s in (raw.split("#", 1)[0].strip() for raw in path.read_text(encoding="utf-8").splitlines()) if s]


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the environments as JSON.")] = False,
) -> None:
    """List the project's environments: versions, sandbox, and whether their build is current.

    Example: isolationctl env list --json
    """
    locations: Locations = ctx.obj
    project = locations.project()
    rows = [describe(locations, project, project.spec(name)) for name in project.names()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        note(f"no environments in {project.environments}; add one: isolationctl env add NAME --python 3.12")
        return
    table(
        None,
        ["name", "python", "airflow", "suite", "sandbox/network", "built", "current"],
        [
            [
                r["name"],
                r["python"],
                r["airflow"] or "-",
                r["suite"],
                f"{r['settings']['sandbox']}/{r['settings']['network']}",
                _yes_no(r["built"]),
                _yes_no(r["fingerprint_current"]),
            ]
            for r in rows
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The environment's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Show one environment: requirements, settings, build, keys (public key ids only).

    Example: isolationctl env show example
    """
    locations: Locations = ctx.obj
    project = locations.project()
    info = describe(locations, project, project.spec(check_name(name)))
    if as_json:
        emit_json(info)
        return
    built = info["built_versions"] or {}
    rows: list[list[Any]] = [
        ["folder", info["folder"]],
        ["python", info["python"]],
        ["requirements", "\n".join(info["requirements"]) or "-"],
        ["system packages", " ".join(info["system_packages"]) or "-"],
        ["suite", info["suite"]],
        ["confinement", info["confinement"]],
        ["fingerprint", info["fingerprint"]],
        ["built", f"{_yes_no(info['built'])} ({info['built_at']})"],
        ["build current", _yes_no(info["fingerprint_current"])],
        ["built with", ", ".join(f"{k} {v}" for k, v in built.items()) or "-"],
        ["keys dir", f"{info['keys_dir']} ({'provisioned' if info['keys_provisioned'] else 'missing'})"],
        ["public keyset", info["keyring_public_keyset"]],
        ["key ids", "\n".join(f"{k['kid']} {k['algorithm']} {k['status']}" for k in info["keys"]) or "-"],
    ]
    table(f"environment {info['name']}", ["", ""], rows)


# --------------------------------------------------------------------------- remove


def ask(question: str, *, default: bool) -> bool:
    """A yes/no question on stderr; a closed stdin (a script) is the default, never a hang."""
    sys.stderr.write(f"{question} [{'Y/n' if default else 'y/N'}] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        sys.stderr.write("\n")
        return default
    answer = answer.strip().lower()
    return default if not answer else answer in ("y", "yes")


def _removable(path: Path, what: str) -> bool:
    """Whether ``path`` is a real folder we may delete; a symbolic link is refused."""
    if path.is_symlink():
        fail(f"{what} {path} is a symbolic link; refusing to delete through it", hint="remove it by hand")
    return path.is_dir()


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The environment's name.")],
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete its built virtualenv and its keys under the home.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove an environment's definition from the project (--purge: its build and keys too).

    Example: isolationctl env remove reports --purge --yes
    """
    locations: Locations = ctx.obj
    project = locations.project()
    check_name(name)
    definition = project.environments / name
    built = locations.home / name
    targets = [p for p, what in ((definition, "definition"), (built, "built environment")) if _removable(p, what)]
    if not purge:
        targets = [p for p in targets if p == definition]
    if definition not in targets and not (purge and targets):
        known = ", ".join(project.names()) or "none"
        fail(f"no environment {name!r} in {project.environments} (defined: {known})", hint="isolationctl env list")
    note("this deletes:")
    for path in targets:
        note(f"  {path}{'  (virtualenv, private keys, build record)' if path == built else ''}")
    if not yes and not ask(f"remove environment {name!r}?", default=False):
        note("nothing was removed")
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
    for path in targets:
        shutil.rmtree(path)
        done(f"deleted {path}")
    if not purge and built.is_dir():
        note(f"kept its build and keys in {built} (--purge deletes them)")
    public = locations.keyring.path / "environments" / f"{name}.json"
    if public.exists():
        note(f"kept its public keyset in the host keyring: {public}")
