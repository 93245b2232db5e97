"""The isolated task's lines in the host's log: their own level, no second timestamp, tracebacks together."""

from __future__ import annotations

import logging

import pytest

from isolation.operators._logs import IsolatedLog

LINES = [
    "isolation: environment 'legacy': sandbox: bubblewrap; network: none",
    "isolation: WARNING: environment 'x' sets sandbox = \"none\"",
    "[2024-03-04 10:00:00,123] INFO isolation.runtime: running pkg.Op for ('d', 't')",
    "printed by the task",
    "[2024-03-04 10:00:01,000] ERROR isolation.runtime: task failed",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in f',
    "ValueError: boom",
    "[2024-03-04 10:00:01,001] DEBUG airflow.task: detail",
    "[2024-03-04 10:00:01,002] WARNING airflow.task: careful",
    "isolation-runtime: failed (exit 1): ValueError: boom",
]


def test_each_line_at_its_level_with_the_hosts_timestamp_only(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.isolated.log")
    forward = IsolatedLog(logger, lambda text: text.replace("boom", "***"))
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        for line in LINES:
            forward(line)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, LINES[0]),
        (logging.WARNING, LINES[1]),
        (logging.INFO, "isolation.runtime: running pkg.Op for ('d', 't')"),
        # Raw output on the isolated standard error, as Airflow logs a task's stderr: above INFO.
        (logging.WARNING, "printed by the task"),
        (logging.ERROR, "isolation.runtime: task failed"),
        # The traceback stays with its record, at its level.
        (logging.ERROR, "Traceback (most recent call last):"),
        (logging.ERROR, '  File "x.py", line 1, in f'),
        (logging.ERROR, "ValueError: ***"),
        (logging.DEBUG, "airflow.task: detail"),
        (logging.WARNING, "airflow.task: careful"),
        (logging.WARNING, "isolation-runtime: failed (exit 1): ValueError: ***"),
    ]
