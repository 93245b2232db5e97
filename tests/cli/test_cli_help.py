"""Every command's ``--help`` renders, with an example; the command tree is what docs/cli.md lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from isolationctl.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
# A snapshot of the command list (not of the prose): a new or renamed command must be
# added here and to docs/cli.md on purpose.
COMMANDS = {
    "init",
    "deploy",
    "doctor",
    "env add",
    "env list",
    "env show",
    "env remove",
    "env warm start",
    "env warm stop",
    "env warm status",
    "keys list",
    "keys add",
    "keys distribute",
    "keys promote",
    "keys retire",
    "keys revoke",
    "keys remove",
    "keys overlap",
    "keys rotate",
    "keys export-public",
    "keys export",
    "keys import",
    "keys untrust",
    "keys audit",
    "envelope inspect",
    "envelope verify",
    "envelope open",
    "envelope seal",
}


def _leaves(command: Any, prefix: str = "") -> dict[str, Any]:
    # Typer's groups are not click.Group subclasses in every version: look for the commands.
    if getattr(command, "commands", None):
        found: dict[str, Any] = {}
        for name, sub in command.commands.items():
            found.update(_leaves(sub, f"{prefix} {name}".strip()))
        return found
    return {prefix: command}


LEAVES = _leaves(typer.main.get_command(app))


def test_the_command_tree_is_the_documented_one():
    assert set(LEAVES) == COMMANDS


def test_root_help_through_the_console_script_lists_every_group(cli_real):
    result = cli_real.ok("--help")
    for group in ("init", "env", "deploy", "keys", "envelope", "doctor"):
        assert re.search(rf"\b{group}\b", result.stdout), result.stdout
    assert "Traceback" not in result.output
    assert cli_real.ok("--version").stdout.startswith("isolationctl ")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Example" in result.output, result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_documented(name):
    assert f"isolationctl {name}" in DOCS.read_text(encoding="utf-8"), f"docs/cli.md does not document {name}"
