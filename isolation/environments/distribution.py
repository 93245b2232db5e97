"""Where environments get this project from: the host's own code, never a package index.

The name ``apache-airflow-providers-isolation`` exists on the public index at 1.0.1, the
earlier proof of concept. An environment that resolved the name would run that old
release, so its requirements must not name it (:func:`refuse_runtime_requirements`).
Instead every build installs what this host runs (:func:`host_runtime`):

- the **source tree**, when the host imports ``isolation`` from a checkout (an editable
  install or ``PYTHONPATH``: ``pyproject.toml`` of this project next to the package);
- otherwise the **installed distribution**, repacked from its own installed files into a
  wheel (:func:`build_wheel`) and installed with ``--no-index --no-deps``.

The build then checks that the version the environment imports equals the host's.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import isolation
from isolation.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 hosts
    import tomli as tomllib

DISTRIBUTION = "apache-airflow-providers-isolation"
SOURCE_TREE = "source tree"
INSTALLED = "installed distribution"
# What a source install packs (pyproject.toml's wheel target): a change to any of them reinstalls.
_SOURCE_PACKAGES = ("isolation", "cli/isolationctl", "airflow/providers/isolation")
# dist-info files that describe the distribution; the rest (RECORD, INSTALLER, REQUESTED,
# direct_url.json, an installer's own files) describe one installation and are not repacked.
_DIST_INFO_KEPT = ("METADATA", "entry_points.txt", "top_level.txt")
_WHEEL = "Wheel-Version: 1.0\nGenerator: isolation (repacked from the installed files)\nRoot-Is-Purelib: true\n"
_WHEEL += "Tag: py3-none-any\n"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_DIST_INFO = "{dist_info}/"  # stands for the dist-info directory in _payload's names

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_LEADING_NAME = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?=$|[\[(@;<>=!~\s])")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_SDIST = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip")
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def canonical_name(name: str) -> str:
    """PEP 503: case and runs of ``-``, ``_``, ``.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(line: str) -> set[str]:
    """Every distribution name a requirement line may install, canonicalised.

    Covers a plain name (extras, specifiers, markers), ``name @ url``, ``#egg=``, and a
    wheel, sdist or repository named by URL or path. Over-inclusive on purpose: it only
    decides what is refused.
    """
    text = line.strip()
    for prefix in ("-e ", "--editable ", "--editable="):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    names: set[str] = set()
    leading = _LEADING_NAME.match(text)
    if leading:
        names.add(leading.group(1))
    names.update(_EGG.findall(text))
    after = text[leading.end() :].lstrip() if leading else ""
    location = after[1:].strip() if after.startswith("@") else text
    path = unquote(urlsplit(location).path if "://" in location else location.split("#", 1)[0])
    last = PurePosixPath(path.rstrip("/")).name.split("@", 1)[0]
    if last.endswith(".whl"):
        names.add(last.split("-", 1)[0])
    elif last.endswith(_SDIST):
        stem = next(last[: -len(suffix)] for suffix in _SDIST if last.endswith(suffix))
        names.add(stem.rpartition("-")[0] or stem)
    elif last:
        names.add(last.removesuffix(".git"))
    return {canonical_name(name) for name in names if _NAME.fullmatch(name)}


def refuse_runtime_requirements(environment: str, requirements: tuple[str, ...] | list[str]) -> None:
    """Refuse requirements that name this project: the index has only the old 1.0.1 under it."""
    for line in requirements:
        if canonical_name(DISTRIBUTION) in requirement_names(line):
            raise ConfigurationError(
                f"environment {environment!r}: its requirements name {DISTRIBUTION} ({line.strip()!r}); "
                f"that name on the public index is the old 1.0.1 proof of concept, not this runtime",
                hint=f"remove the line from environments/{environment}/requirements.txt: every build installs "
                f"the runtime from this host's own distribution ({DISTRIBUTION} {isolation.__version__})",
            )


@dataclass(frozen=True)
class HostRuntime:
    """This project as a build installs it: a source tree, or an installed distribution."""

    version: str
    origin: str  # SOURCE_TREE or INSTALLED
    location: Path  # the tree, or the directory the distribution is installed in
    installed: Distribution | None = None

    @classmethod
    def from_source(cls, tree: Path) -> HostRuntime:
        tree = Path(tree).resolve()
        project = _project_table(tree)
        if project is None:
            raise ConfigurationError(
                f"{tree} is not a source tree of {DISTRIBUTION} (no pyproject.toml naming it)",
                hint="pass the directory that holds this project's pyproject.toml",
            )
        version = project.get("version") or _declared_version(tree / "isolation" / "__init__.py")
        return cls(str(version), SOURCE_TREE, tree)

    @classmethod
    def from_distribution(cls, dist: Distribution) -> HostRuntime:
        if canonical_name(dist.metadata["Name"] or "") != canonical_name(DISTRIBUTION):
            raise ConfigurationError(f"{dist.metadata['Name']!r} is not the {DISTRIBUTION} distribution")
        return cls(dist.version, INSTALLED, Path(str(dist.locate_file(""))).resolve(), dist)

    def describe(self) -> str:
        """One line: what version, and from where it is installed into environments."""
        how = "from the source tree" if self.origin == SOURCE_TREE else "as a wheel of the installed distribution in"
        return f"{DISTRIBUTION} {self.version}, installed into environments {how} {self.location}"

    def fingerprint(self) -> str:
        """Changes whenever what would be installed changes (a rebuild reinstalls then)."""
        digest = hashlib.sha256(f"{self.origin}\n{self.version}\n".encode())
        if self.installed is not None:
            for name, data in _payload(self.installed):
                digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
            return digest.hexdigest()[:16]
        for package in _SOURCE_PACKAGES:
            for path in sorted((self.location / package).rglob("*.py")):
                digest.update(str(path.relative_to(self.location)).encode() + b"\0" + path.read_bytes())
        digest.update((self.location / "pyproject.toml").read_bytes())
        return digest.hexdigest()[:16]

    def installable(self, directory: Path) -> Path:
        """What to hand the installer: the tree itself, or a wheel built into ``directory``."""
        if self.installed is None:
            return self.location
        return build_wheel(self.installed, directory)


def host_runtime() -> HostRuntime:
    """The code this host runs, as environments get it (see the module docstring)."""
    package = Path(isolation.__file__).resolve().parent
    if _project_table(package.parent) is not None:
        return HostRuntime.from_source(package.parent)
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise ConfigurationError(
            f"this host imports isolation from {package}, which is neither a source tree (no pyproject.toml "
            f"next to it) nor part of an installed {DISTRIBUTION}",
            hint=f"install {DISTRIBUTION} on the host, or run it from a source checkout",
        ) from None
    located = Path(str(dist.locate_file("isolation/__init__.py"))).resolve()
    if located.parent != package:
        raise ConfigurationError(
            f"this host imports isolation from {package}, but the installed {DISTRIBUTION} "
            f"{dist.version} is in {dist.locate_file('')}",
            hint="remove one of the two, so environments get exactly the code the host runs",
        )
    if dist.version != isolation.__version__:
        raise ConfigurationError(
            f"the installed {DISTRIBUTION} says version {dist.version}, its code says {isolation.__version__}",
            hint=f"reinstall {DISTRIBUTION} on the host",
        )
    return HostRuntime.from_distribution(dist)


def check_installed(environment: str, found: str | None, runtime: HostRuntime, *, just_installed: bool) -> None:
    """The version an environment imports must be the host's."""
    host = isolation.__version__
    if found == host:
        return
    what = f"{DISTRIBUTION} {found}" if found else f"no {DISTRIBUTION}"
    if just_installed:
        raise ConfigurationError(
            f"environment {environment!r} imports {what} after installing it from the {runtime.origin} "
            f"{runtime.location} ({runtime.version}); this host runs {host}",
            hint="install environments from the host's own code: leave out the project source "
            "(isolationctl deploy picks it), or reinstall the host",
        )
    raise ConfigurationError(
        f"environment {environment!r} imports {what}, not this host's {host}: something replaced the runtime "
        f"installed from the host",
        hint=f"rebuild it: isolationctl deploy --local -e {environment} --force",
    )


def build_wheel(dist: Distribution, directory: Path) -> Path:
    """A wheel of ``dist`` from its installed files, with a fresh, valid RECORD.

    Only what the distribution installed into its site directory is packed (scripts are
    regenerated from ``entry_points.txt`` by the installer, bytecode by ``--compile``).
    Deterministic: the same files give the same archive.
    """
    stem = f"{re.sub(r'[-_.]+', '_', canonical_name(dist.metadata['Name'] or DISTRIBUTION))}-{dist.version}"
    dist_info = f"{stem}.dist-info"
    entries = [
        (f"{dist_info}/{name.removeprefix(_DIST_INFO)}" if name.startswith(_DIST_INFO) else name, data)
        for name, data in _payload(dist)
    ]
    entries.append((f"{dist_info}/WHEEL", _WHEEL.encode()))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))
    wheel = Path(directory) / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel


def _payload(dist: Distribution) -> list[tuple[str, bytes]]:
    """(archive name, bytes) of the installed files to repack; dist-info under ``{dist_info}``."""
    files = dist.files
    if files is None:
        raise ConfigurationError(
            f"the installed {DISTRIBUTION} has no RECORD of its files", hint=f"reinstall {DISTRIBUTION} on the host"
        )
    paths = [PurePosixPath(str(f)) for f in files]
    # Top-level packages and modules: what holds Python code (not bin/, not a .pth).
    code = {p.parts[0] for p in paths if p.suffix == ".py" and ".." not in p.parts and not p.is_absolute()}
    code = {top for top in code if not top.endswith(".dist-info")}
    picked: list[tuple[str, PurePosixPath]] = []
    for path in paths:
        if path.is_absolute() or ".." in path.parts or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        top, rest = path.parts[0], path.parts[1:]
        if top.endswith(".dist-info"):
            if rest and (rest[0] == "licenses" or (len(rest) == 1 and rest[0] in _DIST_INFO_KEPT)):
                picked.append((_DIST_INFO + "/".join(rest), path))
        elif top in code:
            picked.append((str(path), path))
    if not any(name == "isolation/__init__.py" for name, _ in picked):
        raise ConfigurationError(
            f"the installed {DISTRIBUTION} does not hold the isolation package (an editable install?)",
            hint="run the host from its source tree, or install the distribution normally",
        )
    if not any(name == _DIST_INFO + "METADATA" for name, _ in picked):
        raise ConfigurationError(f"the installed {DISTRIBUTION} has no METADATA", hint="reinstall it on the host")
    payload: list[tuple[str, bytes]] = []
    for name, path in sorted(picked):
        located = Path(str(dist.locate_file(path)))
        try:
            payload.append((name, located.read_bytes()))
        except OSError as exc:
            raise ConfigurationError(
                f"the installed {DISTRIBUTION} is incomplete: {located} ({exc.strerror})",
                hint=f"reinstall {DISTRIBUTION} on the host",
            ) from None
    return payload


def _project_table(tree: Path) -> dict[str, object] | None:
    """``[project]`` of ``tree/pyproject.toml`` when it is this project's, else None."""
    try:
        data = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = data.get("project")
    if not isinstance(project, dict) or canonical_name(str(project.get("name", ""))) != canonical_name(DISTRIBUTION):
        return None
    return project


def _declared_version(init: Path) -> str:
    try:
        match = _VERSION.search(init.read_text(encoding="utf-8"))
    except OSError:
        match = None
    if match is None:
        raise ConfigurationError(f"{init} declares no __version__", hint="is this a complete source tree?")
    return match.group(1)
