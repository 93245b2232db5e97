from __future__ import annotations

import pytest
from _cli import Sandbox


@pytest.fixture
def cli(tmp_path) -> Sandbox:
    """A fresh machine for the CLI, commands run in this process: see ``_cli.Sandbox``."""
    return Sandbox(tmp_path)


@pytest.fixture
def cli_real(tmp_path) -> Sandbox:
    """The same, every command run as the installed console script in a subprocess."""
    return Sandbox(tmp_path, real=True)
