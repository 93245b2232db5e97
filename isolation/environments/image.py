"""Container images of environments, for the Kubernetes backend: built with podman or docker.

One image per environment, in three parts, each tagged by the content hash of its inputs and
reused when it exists in the builder's local store:

``localhost/isolation-base:<hash>``
    Debian bookworm (minbase) made with ``debootstrap`` from the machine's own Debian mirror,
    imported into the builder: no registry is needed. Its ``/usr/bin/python3`` is the one of
    Debian bookworm, so a virtualenv built on a bookworm machine with ``/usr/bin/python3``
    runs unchanged inside it. Any other image whose ``/usr/bin/python3`` is the environment's
    Python can stand in (``base=``).
``localhost/isolation-<env>-deps:<hash>``
    the environment's requirements (Airflow and its providers: minutes to install), keyed by
    the base and the requirements.
``localhost/isolation-<env>:<hash>``
    this project on top, as a wheel (seconds), keyed by the deps image and the host runtime's
    fingerprint: changing the project's code rebuilds only this layer.

The image runs as user 50000 (group 0) and has a ``/airflow/xcom`` it can write, as the
Kubernetes backend's pod expects. ``scripts/podman-images`` and ``isolationctl deploy``
both build through :func:`build_image`.

The references ``isolationctl deploy`` records for the backend live in
``<environments home>/kubernetes-images.json`` (:func:`recorded_images`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from isolation._atomic import write_atomic
from isolation.environments.distribution import HostRuntime, host_runtime, refuse_runtime_requirements
from isolation.environments.local import BuildError, envs_home
from isolation.environments.spec import EnvironmentSpec, load_spec

BUILDERS = ("podman", "docker")
IMAGES_FILE = "kubernetes-images.json"
# Changing how the base is made changes this recipe, hence the base's tag.
BASE_RELEASE = "bookworm"
BASE_PACKAGES = "python3,ca-certificates"
BASE_RECIPE = f"debootstrap --variant=minbase --include={BASE_PACKAGES} {BASE_RELEASE}; import; v1"
MACHINE_PYTHON = "/usr/bin/python3"
VENV = "/opt/isolation/venv"
INSTALL_HINTS = {
    "podman": "install podman (Debian: sudo apt-get install -y podman runc) and configure "
    "/etc/containers/containers.conf as docs/howto-kubernetes.md shows",
    "docker": "install Docker (Debian: sudo apt-get install -y docker.io) and start its daemon",
}
Say = Callable[[str], None]


def _quiet(what: str) -> None:
    pass


def hash_of(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    """One environment's image: its reference in the builder's store, and whether it was built now."""

    environment: str
    image: str
    base: str
    built: bool  # False: it existed already (its inputs did not change)

    @property
    def tag(self) -> str:
        return self.image.rsplit(":", 1)[1]


class Builder:
    """podman or docker, through its command line; every failure is a :class:`BuildError` with the fix."""

    def __init__(self, name: str | None = None, *, log: Path | None = None) -> None:
        if name is None:
            name = next((candidate for candidate in BUILDERS if shutil.which(candidate)), None)
            if name is None:
                raise BuildError(
                    "no image builder found: neither podman nor docker is on PATH",
                    hint=f"{INSTALL_HINTS['podman']}; or {INSTALL_HINTS['docker']}",
                )
        if name not in BUILDERS:
            raise BuildError(f"unknown image builder {name!r}", hint="use --builder podman or --builder docker")
        path = shutil.which(name)
        if path is None:
            raise BuildError(f"the image builder {name} is not installed (not on PATH)", hint=INSTALL_HINTS[name])
        self.name, self.path, self.log = name, path, log

    def run(self, *args: str, what: str, hint: str = "", stdin: bytes | None = None) -> str:
        done = subprocess.run(
            [self.path, *args], input=stdin, capture_output=True, check=False, env={**os.environ, "LC_ALL": "C"}
        )
        output = (done.stdout + done.stderr).decode(errors="replace")
        self._log(args, output)
        if done.returncode != 0:
            lines = [line for line in output.strip().splitlines() if line.strip()]
            # Progress lines ("Copying blob ...") say nothing about the failure: its own lines do.
            errors = [line for line in lines if line.lower().startswith(("error", "failed"))]
            tail = "\n".join((errors or lines)[-6:])
            raise BuildError(f"{what} failed ({self.name} exit code {done.returncode})\n{tail}", hint=hint)
        return done.stdout.decode(errors="replace")

    def exists(self, image: str) -> bool:
        args = ("image", "exists", image) if self.name == "podman" else ("image", "inspect", image)
        done = subprocess.run([self.path, *args], capture_output=True, check=False)
        return done.returncode == 0

    def check(self) -> None:
        """The builder answers (docker: its daemon runs; podman: its configuration works)."""
        self.run("version", what=f"{self.name} version", hint=INSTALL_HINTS[self.name])

    def build(self, image: str, context: Path) -> None:
        network = "--network=none"
        self.run("build", "-q", network, "-t", image, str(context), what=f"building {image}")

    def push(self, local: str, remote: str) -> None:
        self.run("tag", local, remote, what=f"tagging {local} as {remote}")
        registry = remote.split("/", 1)[0]
        login = f"{self.name} login {registry}"
        try:
            self.run(
                "push",
                remote,
                what=f"pushing {remote}",
                hint=f"check that the registry {registry} is reachable from here and that you are logged in "
                f"({login}; a registry without TLS must be marked insecure in the builder's configuration); "
                "or leave out --registry to keep the image in the local store (kind, minikube, Docker Desktop)",
            )
        except BuildError:
            # Only the name goes: the image stays under its local reference.
            subprocess.run([self.path, "rmi", remote], capture_output=True, check=False)
            raise

    def _log(self, args: Sequence[str], output: str) -> None:
        if self.log is not None:
            with self.log.open("a") as stream:
                stream.write(f"$ {self.name} {' '.join(args)}\n{output}\n")


def base_image(builder: Builder, cache: Path, *, say: Say = _quiet) -> str:
    """The Debian base image, made with debootstrap once and then reused (its tag is its recipe's hash)."""
    image = f"localhost/isolation-base:{hash_of(BASE_RECIPE)}"
    if builder.exists(image):
        return image
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BuildError(
            "debootstrap is not installed: the default base image is a Debian root filesystem made with it",
            hint="install it (Debian: sudo apt-get install -y debootstrap), or pass --base-image IMAGE "
            "(an image whose /usr/bin/python3 is the environment's Python)",
        )
    mirror = _debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        say(f"debootstrap {BASE_RELEASE} from {mirror} (about a minute, once)")
        done = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", BASE_RELEASE, str(rootfs), mirror],
            capture_output=True,
            check=False,
        )
        builder._log(["(debootstrap)"], (done.stdout + done.stderr).decode(errors="replace"))
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-4:]
            raise BuildError(
                f"debootstrap of the base image failed (exit code {done.returncode})\n" + "\n".join(tail),
                hint="debootstrap needs root and the Debian mirror; or pass --base-image IMAGE",
            )
        archive = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True).stdout
        builder.run("import", "-", image, what=f"importing the base image {image}", stdin=archive)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return image


def _debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and line.split()[1:]:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def image_python(builder: Builder, image: str) -> str:
    """The ``3.X`` of the image's ``/usr/bin/python3`` (run without a network)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return builder.run(
        "run",
        "--rm",
        "--network=none",
        image,
        MACHINE_PYTHON,
        "-c",
        code,
        what=f"running {MACHINE_PYTHON} in {image}",
        hint="use a base image with the environment's Python at /usr/bin/python3",
    ).strip()


def machine_python() -> str:
    if not Path(MACHINE_PYTHON).is_file():
        raise BuildError(
            f"this machine has no {MACHINE_PYTHON}: the image's virtualenv is built with it",
            hint="build images on a Debian or Ubuntu machine with python3 installed",
        )
    done = subprocess.run(
        [MACHINE_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def build_image(
    spec: EnvironmentSpec,
    builder: Builder,
    cache: Path,
    *,
    base: str | None = None,
    runtime: HostRuntime | None = None,
    say: Say = _quiet,
) -> Built:
    """The environment's image in the builder's local store: reused when its inputs did not change."""
    refuse_runtime_requirements(spec.name, list(spec.requirements))
    cache.mkdir(parents=True, exist_ok=True)
    runtime = runtime or host_runtime()
    here = machine_python()
    if spec.python_version != here:
        raise BuildError(
            f"environment {spec.name!r} wants Python {spec.python_version}; its image's virtualenv is built "
            f"with this machine's {MACHINE_PYTHON}, Python {here}",
            hint=f"set the environment's python-version to {here}, or build its image with your own Dockerfile",
        )
    if base is None:
        base = base_image(builder, cache, say=say)
    elif not builder.exists(base):
        raise BuildError(
            f"the base image {base} is not in {builder.name}'s local store",
            hint=f"{builder.name} pull {base} first (builds never pull)",
        )
    else:
        found = image_python(builder, base)
        if found != spec.python_version:
            raise BuildError(
                f"the base image {base} has Python {found} at {MACHINE_PYTHON}, environment {spec.name!r} "
                f"wants {spec.python_version}",
                hint="use a base image with the environment's Python, or leave out --base-image",
            )
    deps_tag = hash_of(base, *spec.requirements, spec.python_version)
    deps = f"localhost/isolation-{spec.name}-deps:{deps_tag}"
    if not builder.exists(deps):
        say(f"building {deps} (the environment's requirements)")
        _build_deps(spec, builder, cache, base=base, deps=deps, runtime=runtime)
    image = f"localhost/isolation-{spec.name}:{hash_of(deps, runtime.fingerprint())}"
    if builder.exists(image):
        return Built(spec.name, image, base, built=False)
    say(f"building {image} (this project on {deps})")
    _build_top(spec, builder, cache, deps=deps, image=image, runtime=runtime)
    return Built(spec.name, image, base, built=True)


def _build_deps(
    spec: EnvironmentSpec, builder: Builder, cache: Path, *, base: str, deps: str, runtime: HostRuntime
) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise BuildError("uv is not installed: image builds install requirements with it", hint="pip install uv")
    with tempfile.TemporaryDirectory(prefix=f"build-{spec.name}-deps-", dir=cache) as folder:
        work = Path(folder)
        requirements = work / "requirements.txt"
        requirements.write_text("".join(line + "\n" for line in spec.requirements))
        venv = work / "venv"
        # --seed: pip in the venv, to install this project's wheel in the top layer without a network.
        _run([uv, "venv", "--quiet", "--seed", "--python", MACHINE_PYTHON, str(venv)], f"creating the venv of {deps}")
        installable = runtime.installable(work)
        _run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(requirements),
                str(installable),
            ],
            f"installing the requirements of environment {spec.name!r}",
            hint="check the environment's requirements.txt",
        )
        # Only `python -m ...` runs in the image, so the venv's scripts' shebangs do not matter.
        (work / "Containerfile").write_text(
            f"FROM {base}\n"
            f"COPY venv {VENV}\n"
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
            "# /airflow/xcom is the pod's XCom volume; podman fills an empty volume from the image, owner included.\n"
            "RUN mkdir -p /airflow/xcom /var/run/isolation && chown 50000:0 /airflow/xcom "
            "&& chmod 0775 /airflow/xcom \\\n"
            " && echo 'isolation:x:50000:0::/tmp:/bin/sh' >> /etc/passwd\n"
        )
        (work / ".containerignore").write_text("requirements.txt\n")
        builder.build(deps, work)


def _build_top(
    spec: EnvironmentSpec, builder: Builder, cache: Path, *, deps: str, image: str, runtime: HostRuntime
) -> None:
    wheels = cache / f"wheel-{runtime.fingerprint()}"
    if not list(wheels.glob("*.whl")):
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        if runtime.installed is not None:
            runtime.installable(wheels)
        else:
            uv = shutil.which("uv") or "uv"
            _run([uv, "build", "--quiet", "--wheel", "-o", str(wheels), str(runtime.location)], "building the wheel")
    with tempfile.TemporaryDirectory(prefix=f"build-{spec.name}-", dir=cache) as folder:
        work = Path(folder)
        for wheel in wheels.glob("*.whl"):
            shutil.copy2(wheel, work / wheel.name)
        (work / "Containerfile").write_text(
            f"FROM {deps}\n"
            "COPY *.whl /tmp/wheel/\n"
            "RUN python -m pip install --quiet --no-deps --no-index --force-reinstall --no-compile \\\n"
            "  /tmp/wheel/*.whl \\\n"
            f" && python -m compileall -q {VENV}/lib/python3*/site-packages/isolation && rm -rf /tmp/wheel\n"
            "# The runtime user of the pod's securityContext; its home is the pod's /tmp (an emptyDir).\n"
            "USER 50000\n"
        )
        builder.build(image, work)
    # Older top layers of this environment are outdated builds of this project: drop them.
    listed = builder.run(
        "images", "--format", "{{.Repository}}:{{.Tag}}", f"localhost/isolation-{spec.name}", what="listing images"
    )
    for old in listed.split():
        if old != image and old.startswith(f"localhost/isolation-{spec.name}:"):
            subprocess.run([builder.path, "rmi", old], capture_output=True, check=False)


def _run(command: list[str], what: str, hint: str = "") -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise BuildError(f"{what} failed (exit code {done.returncode})\n{tail}", hint=hint)


def remote_reference(image: str, registry: str) -> str:
    """``localhost/isolation-legacy:<hash>`` pushed to ``registry.example/team`` is
    ``registry.example/team/isolation-legacy:<hash>``."""
    return f"{registry.rstrip('/')}/{image.split('/', 1)[1]}"


# -- where the Kubernetes backend finds what isolationctl deploy recorded ----------------------


def images_file(home: Path | None = None) -> Path:
    return (home or envs_home()) / IMAGES_FILE


def recorded_images(home: Path | None = None) -> dict[str, str]:
    """Environment -> image reference, as ``isolationctl deploy`` recorded them (empty when none)."""
    path = images_file(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise BuildError(
            f"{path} is not JSON", hint="deploy again (isolationctl deploy --kubernetes) or delete the file"
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        return {}
    return {str(k): v["image"] for k, v in images.items() if isinstance(v, dict) and isinstance(v.get("image"), str)}


def record_images(entries: Mapping[str, Mapping[str, str]], home: Path | None = None) -> Path:
    """Merge ``environment -> {"image", "local_image"}`` into the file the backend reads."""
    path = images_file(home)
    try:
        current = json.loads(path.read_text()).get("images", {})
    except (FileNotFoundError, ValueError, AttributeError):
        current = {}
    current.update({name: dict(entry) for name, entry in entries.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"images": dict(sorted(current.items()))}, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m isolation.environments.image CACHE ENV_DIR...``: prints ``base IMAGE``, then ``ENV IMAGE`` lines."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m isolation.environments.image CACHE_DIR ENV_DIR [ENV_DIR ...]", file=sys.stderr)
        return 2
    cache = Path(args[0]).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    def say(what: str) -> None:
        print(f"podman-images: {what}", file=sys.stderr)

    try:
        builder = Builder("podman", log=cache / "build.log")
        specs = [load_spec(directory) for directory in args[1:]]
        base = base_image(builder, cache, say=say)
        print(f"base {base}", flush=True)
        for spec in specs:
            built = build_image(spec, builder, cache, base=None, say=say)
            print(f"{spec.name} {built.image}", flush=True)
    except BuildError as exc:
        print(f"error: {exc.message}" + (f"\nfix: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
