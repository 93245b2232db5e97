"""What defines an environment: ``environments/<name>/`` in a project.

environments/<name>/
  python-version       one line, e.g. ``3.12``
  requirements.txt     pip requirements (Airflow and the operator's libraries)
  system-packages.txt  optional: Debian packages for the image (Kubernetes)
  Dockerfile           optional: image build for Kubernetes
  suite                optional: envelope suite for its keys, ``1`` (default) or ``2``
  isolation.toml       optional: sandbox, network and limits (isolation.environments.settings)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from isolation.environments.settings import SandboxSettings, load_settings
from isolation.errors import ConfigurationError
from isolation.keyring import ENVIRONMENT_NAME, check_environment_name

NAME = ENVIRONMENT_NAME
_PYTHON_VERSION = re.compile(r"3\.\d{1,2}")


@dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    directory: Path
    python_version: str
    requirements: tuple[str, ...]
    suite: int = 1
    # Not part of the fingerprint: changing them re-records, never reinstalls.
    settings: SandboxSettings = field(default_factory=SandboxSettings)

    def fingerprint(self) -> str:
        """Changes whenever what the environment is built from changes."""
        digest = hashlib.sha256()
        digest.update(f"{self.python_version}\n{self.suite}\n".encode())
        for line in self.requirements:
            digest.update(line.encode() + b"\n")
        return digest.hexdigest()[:16]


check_name = check_environment_name


def load_spec(directory: str | Path) -> EnvironmentSpec:
    """Read ``environments/<name>/``; the directory name is the environment name."""
    path = Path(directory)
    name = check_name(path.name)
    if not path.is_dir():
        raise ConfigurationError(f"environment {name!r}: {path} is not a directory")
    version_file = path / "python-version"
    if not version_file.is_file():
        raise ConfigurationError(
            f"environment {name!r} has no python-version file", hint=f"write e.g. 3.12 into {version_file}"
        )
    version = version_file.read_text().strip()
    if not _PYTHON_VERSION.fullmatch(version):
        raise ConfigurationError(f"environment {name!r}: python-version must look like 3.12, not {version!r}")
    requirements: list[str] = []
    req_file = path / "requirements.txt"
    if req_file.is_file():
        for raw in req_file.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                requirements.append(line)
    suite_file = path / "suite"
    suite = 1
    if suite_file.is_file():
        text = suite_file.read_text().strip()
        if text not in ("1", "2"):
            raise ConfigurationError(f"environment {name!r}: suite must be 1 or 2, not {text!r}")
        suite = int(text)
    return EnvironmentSpec(name, path, version, tuple(requirements), suite, load_settings(path))
