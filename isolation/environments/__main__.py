"""Local environments: ``python -m isolation.environments build NAME``, ``show NAME``, ``doctor``.

The module-level form of ``isolationctl deploy --local`` and ``isolationctl doctor``
(``build`` runs the same :func:`~isolation.environments.local.build_local`, without
progress, CPython downloads or the self-test).
``build`` reads ``environments/<NAME>/`` under ``--source`` (default: the current
directory), builds the virtualenv under ``ISOLATION_ENVS_HOME`` (or ``--home``), installs
this project into it from the host's own code (its source tree, or a wheel of its
installed distribution: never from an index, where the name is an older release),
provisions the environment's keys and exports its public keys into the host keyring
(``[isolation] keyring_path`` / ``AIRFLOW__ISOLATION__KEYRING_PATH`` / ``ISOLATION_KEYRING``,
or ``--keyring``). ``doctor`` says whether the sandbox works on this machine, how limits
are enforced, where environments get the runtime from and what each built environment
runs; its exit code is 1 (with the fix) when the sandbox does not work or the host's
runtime cannot be installed into environments.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import isolation
from isolation.environments.distribution import DISTRIBUTION, SOURCE_TREE, host_runtime
from isolation.environments.local import MARKER, build_local, envs_home, find_local
from isolation.environments.settings import SandboxSettings
from isolation.environments.spec import load_spec
from isolation.errors import IsolationError
from isolation.keyring import HostKeyring, default_keyring_path


def keyring_path_from_settings() -> Path:
    """The host keyring the operator uses, read from the environment without importing Airflow."""
    configured = os.environ.get("AIRFLOW__ISOLATION__KEYRING_PATH")
    return Path(configured) if configured else default_keyring_path()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m isolation.environments", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build (or reuse) a local environment")
    build.add_argument("name", help="the environment, a directory under environments/")
    build.add_argument("--source", type=Path, help="project tree to read environments/ from (default: .)")
    build.add_argument("--environments", type=Path, help="directory holding <name>/ (default: SOURCE/environments)")
    build.add_argument("--home", type=Path, help="where local environments live (default: ISOLATION_ENVS_HOME)")
    build.add_argument("--keyring", type=Path, help="host keyring directory (default: the configured one)")
    build.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    show = commands.add_parser("show", help="print where a built local environment is and what it runs")
    show.add_argument("name")
    show.add_argument("--home", type=Path)
    doctor = commands.add_parser("doctor", help="does the sandbox work here? how are limits enforced?")
    doctor.add_argument("--home", type=Path, help="list the environments built here (default: ISOLATION_ENVS_HOME)")
    return parser


def _doctor(home: Path | None) -> int:
    # Imported here: build and show must not need bubblewrap's support modules.
    from isolation.backends import _seccomp, sandbox

    status = sandbox.probe()
    healthy = status.available
    print(f"sandbox:     {'works' if status.available else 'NOT available'}: {status.detail}")
    print(f"bubblewrap:  {status.bwrap or 'not found'}" + (f" ({status.version})" if status.version else ""))
    try:
        program = _seccomp.filter_program()
        print(f"seccomp:     libseccomp loads; the filter has {len(program) // 8} instructions")
    except IsolationError as exc:
        healthy = False
        print(f"seccomp:     {exc.diagnostics()}")
    # Exactly what a task would get: a cgroup only for a root worker, processes only.
    cgroup = sandbox.task_cgroup(SandboxSettings())
    if cgroup is None:
        reason = "not needed: RLIMIT_NPROC bounds an ordinary user's sandbox" if os.getuid() else "none can be made"
        print(f"cgroup:      no per-task cgroup ({reason})")
    else:
        cgroup.remove()
        print(f"cgroup:      each task joins a cgroup of its own (it enforces {', '.join(cgroup.enforces)})")
    print(f"limits:      {sandbox.enforcement(sandbox.Launch([], (), cgroup=cgroup))}")
    try:
        runtime = host_runtime()
        print(f"runtime:     {runtime.describe()}")
        try:
            recorded = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            recorded = None
        if runtime.origin == SOURCE_TREE and recorded not in (None, runtime.version):
            print(f"note:        the host's installed metadata says {recorded}: reinstall it (pip install -e .)")
    except IsolationError as exc:
        healthy = False
        print(f"runtime:     {exc.diagnostics()}")
    _list_environments(home or envs_home())
    if not status.available:
        print(f"fix:         {sandbox.INSTALL_HINT}")
    return 0 if healthy else 1


def _list_environments(home: Path) -> None:
    built = sorted(path.parent.name for path in home.glob(f"*/{MARKER}")) if home.is_dir() else []
    print(f"home:        {home} ({len(built)} environment{'' if len(built) == 1 else 's'})")
    for name in built:
        try:
            env = find_local(name, home=home)
        except IsolationError as exc:
            print(f"environment: {name}: {exc.message}")
            continue
        runtime = env.runtime_version or "not recorded"
        if env.runtime_version not in (None, isolation.__version__):
            runtime += f" (the host runs {isolation.__version__}: rebuild it)"
        settings = env.settings
        print(f"environment: {name}: sandbox {settings.sandbox}, network {settings.network}, runtime {runtime}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        return _doctor(args.home)
    try:
        if args.command == "build":
            source = args.source.resolve() if args.source else None
            directory = args.environments or (source or Path.cwd()) / "environments"
            spec = load_spec(directory / args.name)
            keyring = HostKeyring.open(args.keyring or keyring_path_from_settings())
            print(f"building environment {spec.name!r} (Python {spec.python_version}) ...", file=sys.stderr)
            env = build_local(spec, keyring=keyring, home=args.home, force=args.force)
            print(f"keyring:     {keyring.path}")
        else:
            env = find_local(args.name, home=args.home)
        print(f"environment: {env.name}")
        print(f"python:      {env.python} ({env.python_version})")
        print(f"airflow:     {env.airflow_version or 'not installed'}")
        print(f"runtime:     {DISTRIBUTION} {env.runtime_version or '(version not recorded)'}")
        print(f"keys:        {env.keys_dir}")
        print(f"home:        {args.home or envs_home()}")
    except IsolationError as exc:
        print(f"error: {exc.diagnostics()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
