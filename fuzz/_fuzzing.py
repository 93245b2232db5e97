"""Shared by the fuzz targets: the fixed keys and clock, and the libFuzzer entry point.

Targets import nothing from ``isolation`` at module level: ``run`` imports it inside
``atheris.instrument_imports`` so that only the project's own code is instrumented
(instrumenting everything loaded, pydantic included, takes most of a minute).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"
CORPUS = HERE / "corpus"
NOW = 1_767_225_600
"""Seeds are sealed at this time and opened one second later."""
SUBJECT = ("dag", "task", "run", -1, 1)
"""The task instance every seed payload is for."""

Target = Callable[[bytes], None]


def run(build: Callable[[], Target]) -> None:
    """Instrument the project, build the target, hand it to libFuzzer (argv passed on)."""
    import atheris

    with atheris.instrument_imports(include=["isolation"]):
        one_input = build()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
