"""`isolationctl env warm start|stop|status [NAME]`: the warm servers of local environments.

A warm server forks each task of its environment from a pre-loaded runtime (see
docs/howto-local.md). The local backend starts one on demand; these commands start one
ahead of the first task, stop one (it drains: running tasks finish), or show each
server's pid, build fingerprint, uptime, tasks served and memory.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from isolation.backends import LocalBackend, _warm
from isolation.environments.local import LocalEnvironment
from isolation.errors import IsolationError
from isolationctl._project import Locations
from isolationctl._ui import done, emit_json, fail, note, table

app = typer.Typer(no_args_is_help=True, help="Start, stop and show the warm servers of local environments.")

_NAME = Annotated[str | None, typer.Argument(help="The environment (default: every built one).")]


def _environments(locations: Locations, name: str | None) -> list[LocalEnvironment]:
    backend = LocalBackend(locations.home)
    names = [name] if name else sorted(p.name for p in locations.home.glob("*") if (p / "environment.json").is_file())
    found = []
    for each in names:
        try:
            found.append(backend.locate(each))
        except IsolationError as exc:
            if name:
                fail(exc.message, hint=exc.hint)
    return found


@app.command("start")
def start(ctx: typer.Context, name: _NAME = None) -> None:
    """Start the warm server of NAME (or of every built environment) unless one runs.

    Example: isolationctl env warm start modern
    """
    locations: Locations = ctx.obj
    for env in _environments(locations, name):
        if not env.settings.sandboxed:
            note(f"{env.name}: sandbox = none, so no warm server (a warm task needs the sandbox)")
            continue
        backend = LocalBackend(locations.home)
        try:
            _warm.ensure(env, backend._base_environment()).close()
        except IsolationError as exc:
            fail(f"{env.name}: {exc.message}", hint=exc.hint or "its tasks start cold meanwhile")
        done(f"{env.name}: warm server running")


@app.command("stop")
def stop(ctx: typer.Context, name: _NAME = None) -> None:
    """Stop the warm server of NAME (or every one): it takes no new task and exits when its tasks are done.

    Example: isolationctl env warm stop modern
    """
    locations: Locations = ctx.obj
    for env in _environments(locations, name):
        reply = _warm.stop(env)
        if reply is None:
            note(f"{env.name}: no warm server running")
        else:
            done(f"{env.name}: warm server stopping ({reply.get('running', 0)} task(s) still running)")


@app.command("status")
def status(
    ctx: typer.Context,
    name: _NAME = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the servers as JSON.")] = False,
) -> None:
    """Show each warm server: pid, build fingerprint (and whether it is current), uptime, tasks, RSS.

    Example: isolationctl env warm status --json
    """
    locations: Locations = ctx.obj
    rows: list[dict[str, Any]] = []
    for env in _environments(locations, name):
        report = _warm.status(env)
        rows.append({"name": env.name, "server": report is not None, **(report or {})})
    if as_json:
        emit_json(rows)
        return
    table(
        None,
        ["name", "server", "pid", "fingerprint", "current", "uptime", "served", "running", "rss"],
        [
            [
                r["name"],
                "running" if r["server"] else "-",
                r.get("pid", "-"),
                r.get("fingerprint", "-"),
                ("yes" if r.get("current") else "no") if r["server"] else "-",
                f"{r['uptime']:.0f}s" if r["server"] else "-",
                r.get("served", "-"),
                r.get("running", "-"),
                f"{r['rss'] / 2**20:.0f} MiB" if r["server"] else "-",
            ]
            for r in rows
        ],
    )
