"""The ``isolationctl`` command: global options, the command tree and error handling."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import click
import typer
import typer.core

import isolation
from isolation.errors import IsolationError
from isolationctl import deploy, doctor, env, envelope, init, keys
from isolationctl._project import Locations
from isolationctl._ui import CliError, ExitCode, code_of, report_error

app = typer.Typer(
    name="isolationctl",
    help="Run Airflow operators in isolated environments: set up projects and environments, "
    "deploy them, manage keys with staged rotation, inspect envelopes.\n\n"
    "Quick start: `isolationctl init --example --local --git` then `isolationctl deploy --local`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"isolationctl {isolation.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    project: Annotated[
        Path | None,
        typer.Option("--project", "-C", help="The project folder (default: the current folder).", show_default=False),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option(
            "--keyring",
            help="The host keyring folder (default: what the operator uses: \\[isolation] keyring_path, "
            "ISOLATION_KEYRING, else ~/.config/isolation/keyring).",
            show_default=False,
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="ISOLATION_ENVS_HOME",
            help="Where local environments are built (default: ~/.local/share/isolation/envs).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = Locations(project, keyring, home)


app.command("init")(init.init)
app.add_typer(env.app, name="env")
app.command("deploy")(deploy.deploy)
app.add_typer(keys.app, name="keys")
app.add_typer(envelope.app, name="envelope")
app.command("doctor")(doctor.doctor)


# Typer 0.2x parses with its own copy of Click and has its own Abort; older ones use Click's.
_click: Any = getattr(typer.core, "_click", None) or click
_ABORTS: tuple[type[BaseException], ...] = tuple(
    {getattr(typer.core, "Abort", click.exceptions.Abort), click.exceptions.Abort, KeyboardInterrupt}
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every failure ends in one line, the fix and its exit code."""
    command = typer.main.get_command(app)
    arguments = list(argv) if argv is not None else sys.argv[1:]
    try:
        result = command.main(args=arguments, prog_name="isolationctl", standalone_mode=False)
    except CliError as exc:
        report_error(exc.message, exc.hint)
        return int(exc.code)
    except IsolationError as exc:
        report_error(exc.message, exc.hint)
        return int(code_of(exc))
    except _click.exceptions.UsageError as exc:
        exc.show()
        return int(ExitCode.USAGE)
    except _click.exceptions.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except _ABORTS:
        result = int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nobody to say it to.
        return 0
    except Exception as exc:  # a defect: still one line, never a traceback
        report_error(
            f"unexpected {type(exc).__name__} in isolationctl {' '.join(arguments[:2])}: {exc}",
            "this is a bug in isolationctl: please report it with the command you ran",
        )
        return int(ExitCode.CONFIGURATION)
    if result == ExitCode.INTERRUPTED:
        # Typer turns Ctrl-C into a silent exit code 130: say what it means.
        report_error(
            "interrupted; every file this command writes is replaced whole or not at all",
            "run the command again to finish",
        )
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
