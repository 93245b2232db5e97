"""Environments get the runtime from the host's own code, never from an index.

The name ``apache-airflow-providers-isolation`` on the public index is the 1.0.1 proof of
concept. These tests build real (tiny) virtualenvs: no requirements of their own, so a
build installs only the runtime's dependencies (from uv's cache) and this project.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.version import Version

import isolation
from isolation.environments import EnvironmentSpec, build_local
from isolation.environments import local as local_module
from isolation.environments.distribution import (
    DISTRIBUTION,
    INSTALLED,
    SOURCE_TREE,
    HostRuntime,
    build_wheel,
    host_runtime,
    requirement_names,
)
from isolation.errors import ConfigurationError
from isolation.keyring import HostKeyring
from isolation.provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[3]
HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
UV = shutil.which("uv")
needs_uv = pytest.mark.skipif(UV is None, reason="uv builds the throwaway environments quickly")

SPELLINGS = [
    "apache-airflow-providers-isolation",
    "Apache_Airflow_Providers_Isolation==1.0.1",
    "apache.airflow.providers.isolation[kubernetes]>=1",
    "apache-airflow-providers-isolation ; python_version >= '3.10'",
    "apache-airflow-providers-isolation @ https://example.invalid/old.whl",
    "-e git+https://example.invalid/poc.git#egg=apache_airflow_providers_isolation",
    "https://example.invalid/apache_airflow_providers_isolation-1.0.1-py3-none-any.whl",
    "./dist/apache-airflow-providers-isolation-1.0.1.tar.gz",
    "git+https://example.invalid/org/apache-airflow-providers-isolation.git@v1.0.1",
]


def _spec(tmp_path: Path, name: str = "tiny", requirements: tuple[str, ...] = ()) -> EnvironmentSpec:
    return EnvironmentSpec(name, tmp_path / "definition" / name, HOST_PYTHON, requirements)


def _keyring(tmp_path: Path) -> HostKeyring:
    return HostKeyring.open(tmp_path / "keyring")


def _imported_version(python: Path) -> str:
    code = f"import importlib.metadata as m; print(m.version({DISTRIBUTION!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _marker(env_root: Path) -> dict:
    return json.loads((env_root / "environment.json").read_text())


def _uv_install(python: Path, *args: str) -> None:
    subprocess.run([UV, "pip", "install", "--quiet", "--python", str(python), *args], check=True)


def _old_release_wheel(directory: Path, version: str = "1.0.1") -> Path:
    """A minimal wheel that claims to be the public index's old release (no code of ours)."""
    dist_info = f"apache_airflow_providers_isolation-{version}.dist-info"
    files = {
        "poc_marker.py": b"OLD = True\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel = directory / f"apache_airflow_providers_isolation-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_the_version_is_a_pre_release_of_the_next_major() -> None:
    version = Version(isolation.__version__)
    assert version.major == 2 and version.is_prerelease and version > Version("1.0.1")
    assert get_provider_info()["versions"] == [isolation.__version__]
    # pyproject.toml takes its version from isolation/__init__.py.
    assert HostRuntime.from_source(ROOT).version == isolation.__version__


@pytest.mark.parametrize("line", SPELLINGS)
def test_requirements_naming_the_runtime_are_refused(tmp_path, line) -> None:
    home = tmp_path / "envs"
    spec = _spec(tmp_path, requirements=("requests", line))
    with pytest.raises(ConfigurationError) as info:
        build_local(spec, keyring=_keyring(tmp_path), home=home)
    message = info.value.diagnostics()
    assert f"its requirements name {DISTRIBUTION} ({line!r})" in message
    assert "the old 1.0.1 proof of concept" in message
    assert "hint: remove the line from environments/tiny/requirements.txt" in message
    assert f"({DISTRIBUTION} {isolation.__version__})" in message
    assert not home.exists()  # refused before anything was built


@pytest.mark.parametrize(
    "line",
    [
        "apache-airflow==2.9.3",
        "apache-airflow-providers-standard",
        "apache-airflow-providers-isolation-extras",
        "my-apache-airflow-providers-isolation",
        "requests @ https://example.invalid/requests-2.31.0-py3-none-any.whl",
    ],
)
def test_other_requirements_are_not_refused(line) -> None:
    assert "apache-airflow-providers-isolation" not in requirement_names(line)


def test_this_host_installs_from_its_source_tree() -> None:
    runtime = host_runtime()
    assert (runtime.origin, runtime.location, runtime.version) == (SOURCE_TREE, ROOT, isolation.__version__)
    assert runtime.installable(ROOT / "unused") == ROOT


@needs_uv
def test_a_build_installs_the_hosts_version_and_records_it(tmp_path, monkeypatch) -> None:
    """No ``project_source``: the build picks the host's own code (here, this source tree)."""
    env = build_local(_spec(tmp_path), keyring=_keyring(tmp_path), home=tmp_path / "envs")
    assert env.runtime_version == isolation.__version__
    assert _imported_version(env.python) == isolation.__version__
    marker = _marker(env.root)
    assert (marker["runtime_version"], marker["runtime_from"]) == (isolation.__version__, SOURCE_TREE)
    # Nothing changed: the next build installs nothing.
    monkeypatch.setattr(local_module, "_install", lambda *a, **k: pytest.fail(f"installed again: {a}"))
    again = build_local(_spec(tmp_path), keyring=_keyring(tmp_path), home=tmp_path / "envs")
    assert again.runtime_version == isolation.__version__


@needs_uv
def test_a_runtime_other_than_the_hosts_is_detected(tmp_path) -> None:
    """Two ways an environment ends up with another version, in one environment (builds are slow):

    - replaced after the build: a wheel claiming version 1.0.1 (no code of ours) installed over
      the runtime, as a requirement pulling the name from the index would do;
    - installed from code that is not the host's: a copy of this source tree whose
      ``__version__`` says 1.9.9.
    """
    keyring, home = _keyring(tmp_path), tmp_path / "envs"
    env = build_local(_spec(tmp_path), keyring=keyring, home=home)
    _uv_install(env.python, "--no-deps", "--no-index", str(_old_release_wheel(tmp_path)))
    assert _imported_version(env.python) == "1.0.1"
    with pytest.raises(ConfigurationError) as info:
        build_local(_spec(tmp_path), keyring=keyring, home=home)
    message = info.value.diagnostics()
    assert f"imports {DISTRIBUTION} 1.0.1, not this host's {isolation.__version__}" in message
    assert "hint: rebuild it: isolationctl deploy --local -e tiny --force" in message

    tree = tmp_path / "other"
    for name in ("isolation", "cli", "airflow"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    init = tree / "isolation" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{isolation.__version__}"', '"1.9.9"'))
    with pytest.raises(ConfigurationError) as info:
        build_local(_spec(tmp_path), keyring=keyring, home=home, project_source=tree)
    message = info.value.diagnostics()
    assert f"imports {DISTRIBUTION} 1.9.9 after installing it from the source tree {tree}" in message
    assert f"this host runs {isolation.__version__}" in message
    assert _marker(env.root)["runtime_version"] == isolation.__version__  # a failed build records nothing


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory) -> Path:
    """This project installed normally (not editable) into a directory of its own."""
    if UV is None:
        pytest.skip("uv installs the distribution quickly")
    site = tmp_path_factory.mktemp("site")
    subprocess.run([UV, "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)], check=True)
    return site


def _installed(site: Path):
    (dist,) = [d for d in distributions(path=[str(site)]) if d.metadata["Name"] == DISTRIBUTION]
    return dist


def test_the_wheel_of_the_installed_distribution_is_complete_and_valid(installed_site, tmp_path) -> None:
    wheel = build_wheel(_installed(installed_site), tmp_path)
    assert wheel.name == f"apache_airflow_providers_isolation-{isolation.__version__}-py3-none-any.whl"
    dist_info = f"apache_airflow_providers_isolation-{isolation.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        rows = list(csv.reader(io.StringIO(archive.read(f"{dist_info}/RECORD").decode())))
        for name, digest, size in rows:
            if name == f"{dist_info}/RECORD":
                assert digest == size == ""
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), name
    assert sorted(row[0] for row in rows) == sorted(names)
    assert names[-1] == f"{dist_info}/RECORD"
    installed_code = {str(f) for f in _installed(installed_site).files if str(f).endswith(".py")}
    assert installed_code == {n for n in names if n.endswith(".py")}  # every module, nothing else
    for kept in ("METADATA", "WHEEL", "entry_points.txt", "licenses/LICENSE"):
        assert f"{dist_info}/{kept}" in names
    for dropped in ("INSTALLER", "REQUESTED", "direct_url.json"):
        assert f"{dist_info}/{dropped}" not in names
    assert not [n for n in names if n.startswith("bin/") or "__pycache__" in n]
    # The same files give the same archive.
    (tmp_path / "again").mkdir()
    again = build_wheel(_installed(installed_site), tmp_path / "again")
    assert again.read_bytes() == wheel.read_bytes()


@needs_uv
def test_a_build_from_the_installed_distribution_installs_its_wheel(installed_site, tmp_path) -> None:
    """The wheel goes into a throwaway environment with ``--no-index``; its code imports there."""
    runtime = HostRuntime.from_distribution(_installed(installed_site))
    env = build_local(_spec(tmp_path), keyring=_keyring(tmp_path), home=tmp_path / "envs", runtime=runtime)
    marker = _marker(env.root)
    assert (marker["runtime_version"], marker["runtime_from"]) == (isolation.__version__, INSTALLED)
    code = "import isolation, isolation.transport; print(isolation.__file__)"
    done = subprocess.run([str(env.python), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert Path(done.stdout.strip()).is_relative_to(env.venv)
    assert (env.venv / "bin" / "isolation-runtime").exists()  # scripts come back from entry_points.txt


def test_a_host_run_from_the_installed_distribution_picks_its_wheel(installed_site, tmp_path) -> None:
    """The installed copy comes first on ``sys.path``; the host then has no source tree."""
    code = (
        "from isolation.environments.distribution import host_runtime; r = host_runtime(); print(r.origin, r.location)"
    )
    env = {**os.environ, "PYTHONPATH": str(installed_site)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=tmp_path
    )
    assert done.stdout.strip() == f"{INSTALLED} {installed_site.resolve()}"
