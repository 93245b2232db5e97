"""Build local environments: ``python -m isolation.environments build NAME [--source .]``.

A stop-gap until ``isolationctl deploy --local`` exists. It reads
``environments/<NAME>/`` under ``--source`` (default: the current directory), builds
the virtualenv under ``ISOLATION_ENVS_HOME`` (or ``--home``), provisions the
environment's keys and exports its public keys into the host keyring
(``[isolation] keyring_path`` / ``AIRFLOW__ISOLATION__KEYRING_PATH`` / ``ISOLATION_KEYRING``,
or ``--keyring``). ``--source`` also installs this project into the environment from
that source tree; without it the environment's requirements must name
``apache-airflow-providers-isolation``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from isolation.environments.local import build_local, envs_home, find_local
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
    build.add_argument("--source", type=Path, help="project tree to read environments/ from and install isolation from")
    build.add_argument("--environments", type=Path, help="directory holding <name>/ (default: SOURCE/environments)")
    build.add_argument("--home", type=Path, help="where local environments live (default: ISOLATION_ENVS_HOME)")
    build.add_argument("--keyring", type=Path, help="host keyring directory (default: the configured one)")
    build.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    show = commands.add_parser("show", help="print where a built local environment is and what it runs")
    show.add_argument("name")
    show.add_argument("--home", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            source = args.source.resolve() if args.source else None
            directory = args.environments or (source or Path.cwd()) / "environments"
            spec = load_spec(directory / args.name)
            keyring = HostKeyring.open(args.keyring or keyring_path_from_settings())
            print(f"building environment {spec.name!r} (Python {spec.python_version}) ...", file=sys.stderr)
            env = build_local(spec, keyring=keyring, home=args.home, project_source=source, force=args.force)
            print(f"keyring:     {keyring.path}")
        else:
            env = find_local(args.name, home=args.home)
        print(f"environment: {env.name}")
        print(f"python:      {env.python} ({env.python_version})")
        print(f"airflow:     {env.airflow_version or 'not installed'}")
        print(f"keys:        {env.keys_dir}")
        print(f"home:        {args.home or envs_home()}")
    except IsolationError as exc:
        print(f"error: {exc.diagnostics()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
