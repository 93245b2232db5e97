"""``isolationctl deploy``: build the project's environments, provision their keys, prove they run.

Local environments (``--local``, or a project whose ``isolationctl.toml`` says
``backend = "local"``, the default), or images for the Kubernetes backend (``--kubernetes``,
a Kubernetes option, or ``backend = "kubernetes"``; see :func:`deploy_images`).

Local: each environment is built with
:func:`isolation.environments.local.build_local_report`; an environment whose definition,
runtime and keys did not change is left alone and reported as unchanged. After a build the
runtime is started once in the environment, through the real local backend (in its
sandbox), with a sealed envelope that runs a no-op operator: the deploy is good only if
that envelope opens and the operator succeeds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from isolation.environments import image as images
from isolation.environments.local import STEP_DOWNLOAD, BuildError, BuildReport, Progress, build_local_report
from isolation.environments.spec import EnvironmentSpec
from isolation.errors import IsolationError
from isolation.keyring import HostKeyring
from isolationctl import _audit
from isolationctl._project import Locations, Project
from isolationctl._ui import ExitCode, done, emit_json, err, fail, note

STEP_SELF_TEST = "self-test"
# Exists on Airflow 2 (airflow.operators.empty) and 3 (the standard provider): the runtime
# tries the other spelling when one does not import.
NO_OP = "airflow.operators.empty.EmptyOperator"
_SELF_TEST_LIFETIME = 300


@dataclass(frozen=True)
class Deployed:
    """One environment's line of the summary."""

    name: str
    status: str  # "built", "runtime updated", "keys updated", "unchanged"
    seconds: float
    python: str
    airflow: str | None
    runtime: str | None
    self_test: str  # "passed", "skipped"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 1),
            "python": self.python,
            "airflow": self.airflow,
            "runtime": self.runtime,
            "self_test": self.self_test,
        }


def deploy(
    ctx: typer.Context,
    *,
    local: Annotated[
        bool, typer.Option("--local", help="Build local environments (virtualenvs on this machine).")
    ] = False,
    environments: Annotated[
        list[str] | None,
        typer.Option(
            "--environment", "-e", help="Deploy only this environment (repeatable; default: all).", show_default=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if nothing changed.")] = False,
    no_download: Annotated[
        bool,
        typer.Option("--no-download", help="Never let uv download a missing CPython; fail with how to install it."),
    ] = False,
    self_test: Annotated[
        bool | None,
        typer.Option(
            "--self-test/--no-self-test",
            help="Run the self-test envelope (default: after a build, not for unchanged environments).",
            show_default=False,
        ),
    ] = None,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="Build one container image per environment for the Kubernetes backend (default when "
            'isolationctl.toml says backend = "kubernetes").',
        ),
    ] = False,
    builder: Annotated[
        str | None,
        typer.Option(
            "--builder",
            metavar="podman|docker",
            help="Kubernetes: the image builder (default: podman if installed, else docker).",
            show_default=False,
        ),
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            "--base-image",
            metavar="IMAGE",
            help="Kubernetes: the base image, in the builder's local store, with the environment's Python at "
            "/usr/bin/python3 (default: a Debian bookworm root filesystem made with debootstrap).",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            metavar="HOST/PATH",
            help="Kubernetes: push each image there (default: keep it in the builder's local store, for kind, "
            "minikube or Docker Desktop).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Build the project's environments, provision their keys and prove each one runs a task.

    --kubernetes: one image per environment instead, tagged by its content hash.
    Example: `isolationctl deploy --local -e legacy`
    """
    locations: Locations = ctx.obj
    project = locations.project()
    if _wants_kubernetes(project, local=local, kubernetes=kubernetes, options=(builder, base_image, registry)):
        deploy_images(
            locations.home,
            _specs(project, environments or []),
            builder=builder,
            base=base_image,
            registry=registry,
            force=force,
            as_json=as_json,
        )
        return
    specs = _specs(project, environments or [])
    keyring = locations.keyring
    results: list[Deployed] = []
    for spec in specs:
        try:
            results.append(
                _deploy_one(spec, keyring, locations.home, force=force, download=not no_download, self_test=self_test)
            )
        except KeyboardInterrupt:
            # Typer would turn Ctrl-C into a silent exit 130: say what state is left.
            fail(
                f"interrupted while deploying {spec.name!r}; an unfinished build is never marked built",
                hint="run `isolationctl deploy --local` again: it builds what was not finished",
                code=ExitCode.INTERRUPTED,
            )
    if as_json:
        emit_json({"backend": "local", "home": str(locations.home), "environments": [r.to_json() for r in results]})
    if results:
        note(
            f"next: run a DAG whose tasks use these environments, e.g. with AIRFLOW__CORE__DAGS_FOLDER={project.dags}: "
            "`airflow dags test DAG_ID` (after `airflow db migrate` in a fresh AIRFLOW_HOME)"
        )


def _wants_kubernetes(project: Project, *, local: bool, kubernetes: bool, options: tuple[str | None, ...]) -> bool:
    """``--kubernetes``, a Kubernetes option, or a project whose backend is ``kubernetes`` (without ``--local``)."""
    if local and kubernetes:
        fail("--local and --kubernetes exclude each other", code=ExitCode.USAGE)
    if local and any(option is not None for option in options):
        fail("--local cannot be combined with --builder, --base-image or --registry", code=ExitCode.USAGE)
    if kubernetes or any(option is not None for option in options):
        return True
    return not local and project.config.backend == "kubernetes"


def _specs(project: Project, names: list[str]) -> list[EnvironmentSpec]:
    """Every named environment (checked before anything is built), else all of the project's."""
    if not names:
        names = project.names()
        if not names:
            fail(
                f"the project defines no environments (nothing in {project.environments})",
                hint="add one with `isolationctl env add NAME --python 3.12`",
            )
    return [project.spec(name) for name in dict.fromkeys(names)]


def _deploy_one(
    spec: EnvironmentSpec, keyring: HostKeyring, home: Path, *, force: bool, download: bool, self_test: bool | None
) -> Deployed:
    started = time.monotonic()
    with _progress(spec.name) as progress:
        try:
            with _audit.key_creation(keyring, home, "deploy"):
                report = build_local_report(
                    spec, keyring=keyring, home=home, force=force, progress=progress, download=download
                )
        except BuildError as exc:
            fail(f"environment {spec.name!r}: {exc.message}", hint=exc.hint, code=ExitCode.BUILD)
        seconds = time.monotonic() - started
        status = _status(report)
        env = report.environment
        versions = f"Python {env.python_version}, Airflow {env.airflow_version or 'not installed'}"
        if status == "unchanged":
            done(f"{spec.name}: unchanged ({versions})")
        else:
            done(f"{spec.name}: {status} in {seconds:.1f} s ({versions}, runtime {env.runtime_version})")
        ran = "skipped"
        if self_test if self_test is not None else report.changed:
            progress(STEP_SELF_TEST, f"self-test: running {NO_OP.rsplit('.', 1)[1]} in {spec.name!r}")
            took = run_self_test(spec.name, keyring, home)
            done(f"{spec.name}: self-test passed (a sealed no-op task ran in {took:.1f} s)")
            ran = "passed"
    return Deployed(spec.name, status, seconds, env.python_version, env.airflow_version, env.runtime_version, ran)


def _status(report: BuildReport) -> str:
    if report.rebuilt:
        return "built"
    if report.runtime_installed:
        return "runtime updated"
    return "keys updated" if report.keys_changed else "unchanged"


@contextmanager
def _progress(name: str) -> Iterator[Progress]:
    """A spinner on a terminal, one line per step elsewhere (logs, CI, pipes)."""
    if not err.is_terminal:

        def line(step: str, what: str) -> None:
            note(f"{name}: {what}" if step != STEP_DOWNLOAD else what)

        yield line
        return
    with err.status(f"{name}: starting") as status:

        def spin(step: str, what: str) -> None:
            if step == STEP_DOWNLOAD:
                note(what)  # kept on screen: it says how to forbid it
            status.update(f"{name}: {what}")

        yield spin


def run_self_test(name: str, keyring: HostKeyring, home: Path) -> float:
    """Seal a no-op task for ``name`` and run it through the local backend; the seconds it took.

    Fails with ``ExitCode.CHECK_FAILED`` (and the last lines the runtime printed) unless the
    envelope opened and the operator succeeded.
    """
    from isolation.backends.local import LocalBackend
    from isolation.operators.result import EXIT_SUCCESS, parse_result
    from isolation.transport import seal_envelope

    signer, recipient = keyring.signer(), keyring.recipient(name)
    lines: list[str] = []

    def seal(result_path: str | None) -> str:
        payload = _no_op_payload(name, result_path)
        return seal_envelope(payload, signer=signer, recipient=recipient, lifetime=_SELF_TEST_LIFETIME)

    started = time.monotonic()
    fix = f"see what the runtime printed above; rebuild with `isolationctl deploy --local -e {name} --force`"
    try:
        outcome = LocalBackend(home).run(name, seal, lines.append)
        result = parse_result(outcome.result, environment=name) if outcome.result is not None else None
    except IsolationError as exc:
        fail(
            f"environment {name!r}: the self-test could not run: {exc.message}",
            hint=exc.hint or fix,
            code=ExitCode.CHECK_FAILED,
        )
    if outcome.exit_code != EXIT_SUCCESS or result is None or result.outcome != "success":
        error = f": {result.error.type}: {result.error.message}" if result is not None and result.error else ""
        tail = "\n".join(line for line in lines[-8:] if line.strip())
        fail(
            f"environment {name!r}: the self-test failed (runtime exit code {outcome.exit_code}){error}\n{tail}",
            hint=fix,
            code=ExitCode.CHECK_FAILED,
        )
    return time.monotonic() - started


def _no_op_payload(name: str, result_path: str | None) -> Any:
    from isolation.transport.payload import OperatorSpec, Payload, RuntimeOptions, TaskContext

    now = dt.datetime.now(dt.timezone.utc)
    context = TaskContext(
        dag_id="isolationctl_self_test",
        task_id=f"self_test_{name.replace('-', '_').replace('.', '_')}",
        run_id=f"self_test__{now.strftime('%Y-%m-%dT%H:%M:%S')}",
        logical_date=now,
        start_date=now,
        run_type="manual",
    )
    return Payload(
        operator=OperatorSpec(import_path=NO_OP, kwargs={}),
        context=context,
        options=RuntimeOptions(result_path=result_path),
    )


# --------------------------------------------------------------------------- Kubernetes images


@dataclass(frozen=True)
class Imaged:
    """One environment's line of the Kubernetes summary."""

    name: str
    status: str  # "built", "unchanged"
    image: str  # what the backend runs: the pushed reference, or the local one
    local_image: str
    pushed: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "image": self.image,
            "local_image": self.local_image,
            "pushed": self.pushed,
            "seconds": round(self.seconds, 1),
        }


def image_cache() -> Path:
    """Where builds stage their files and log (the images themselves live in the builder's store)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "isolation" / "images"


def deploy_images(
    home: Path,
    specs: list[EnvironmentSpec],
    *,
    builder: str | None,
    base: str | None,
    registry: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Build (or reuse) each environment's image, push it with ``registry``, record where the backend finds it."""
    cache = image_cache()
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "build.log"
    recorded = images.recorded_images(home)
    results: list[Imaged] = []
    try:
        tool = images.Builder(builder, log=log)
        tool.check()
        if registry is not None and ("://" in registry or not registry.strip("/")):
            fail(
                f"--registry {registry!r} is not a registry path",
                hint="give HOST[:PORT]/PATH without a scheme, e.g. --registry registry.example/team",
                code=ExitCode.USAGE,
            )
        for spec in specs:
            started = time.monotonic()
            with _progress(spec.name) as progress:
                if force:
                    note(f"{spec.name}: --force: images are tagged by their content and rebuilt only when it changes")
                built = images.build_image(spec, tool, cache, base=base, say=_step(progress))
                target = images.remote_reference(built.image, registry) if registry else built.image
                if not built.built and recorded.get(spec.name) == target:
                    done(f"{spec.name}: unchanged ({target})")
                    results.append(Imaged(spec.name, "unchanged", target, built.image, False, 0.0))
                    continue
                if registry:
                    progress("push", f"pushing {target}")
                    tool.push(built.image, target)
                seconds = time.monotonic() - started
                status = "built" if built.built else "recorded"
                where = f"pushed as {target}" if registry else "in the local store"
                done(f"{spec.name}: {status} {built.image} ({where}) in {seconds:.1f} s")
                results.append(Imaged(spec.name, status, target, built.image, bool(registry), seconds))
            images.record_images({spec.name: {"image": target, "local_image": built.image}}, home)
    except BuildError as exc:
        fail(f"{exc.message}", hint=(exc.hint + f" (the build log: {log})").strip(), code=ExitCode.BUILD)
    except KeyboardInterrupt:
        fail(
            "interrupted while building images; an image is tagged only once complete",
            hint="run `isolationctl deploy --kubernetes` again: it builds what was not finished",
            code=ExitCode.INTERRUPTED,
        )
    path = images.images_file(home)
    mapping = {result.name: result.image for result in results}
    if as_json:
        emit_json(
            {
                "backend": "kubernetes",
                "builder": tool.name,
                "registry": registry,
                "images_file": str(path),
                "environments": [r.to_json() for r in results],
            }
        )
    if results:
        note(f"recorded in {path}: the Kubernetes backend reads it when neither images= nor the setting names one")
        note(f"for Airflow workers on other machines: AIRFLOW__ISOLATION__KUBERNETES_IMAGES='{json.dumps(mapping)}'")
        if not registry:
            note(
                f"kind: `{tool.name} save IMAGE -o image.tar && kind load image-archive image.tar`; "
                "minikube: `minikube image load IMAGE`; Docker Desktop uses the local store as is"
            )


def _step(progress: Progress) -> images.Say:
    def say(what: str) -> None:
        progress("image", what)

    return say
