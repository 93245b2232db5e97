from __future__ import annotations

import pytest
from _cli import Sandbox


@pytest.fixture
def cli(tmp_path) -> Sandbox:
    """A fresh machine for the CLI: see ``_cli.Sandbox``."""
    return Sandbox(tmp_path)
