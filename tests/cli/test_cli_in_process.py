"""The tests' in-process runs (``_cli``) give what the console script gives, to the byte.

Tables at the sandbox's width, data on stdout, the one-line errors on stderr, usage errors,
standard input and every exit code: one project, each command run both ways.
"""

from __future__ import annotations

import pytest
from _cli import Sandbox

COMMANDS = [
    pytest.param(("--help",), None, id="help"),
    pytest.param(("env", "list"), None, id="table"),
    pytest.param(("keys", "list", "--json"), None, id="json"),
    pytest.param(("env", "show", "nope"), None, id="error"),
    pytest.param(("nosuch",), None, id="usage"),
    pytest.param(("envelope", "inspect", "-"), "not an envelope\r\n", id="stdin"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    cli = Sandbox(tmp_path_factory.mktemp("in-process"))
    cli.ok("init", "--example", "--yes")
    # A row wider than 80 columns: the width decides where it wraps.
    cli.ok("env", "add", "wide", "--python", "3.12", "-r", "a-requirement-with-a-long-name" * 4)
    return cli


@pytest.mark.parametrize(("args", "input"), COMMANDS)
def test_in_process_is_the_console_script(project: Sandbox, args: tuple[str, ...], input: str | None) -> None:
    real = project.run(*args, input=input, real=True)
    in_process = project.run(*args, input=input)
    assert (in_process.code, in_process.stdout, in_process.stderr) == (real.code, real.stdout, real.stderr)
    assert real.output.strip(), str(real)
