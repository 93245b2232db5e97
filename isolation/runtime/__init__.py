"""The isolated runtime: ``python -m isolation.runtime`` inside an isolated environment.

It opens one envelope, runs the one operator it describes with no way back into
Airflow, writes the result and exits with a code that says what happened. The
contract (inputs, result file, exit codes) is ``docs/runtime.md``.

Nothing here imports Airflow at module level: Airflow is imported only after the
envelope has been verified and opened.
"""

from __future__ import annotations

__all__ = ["ExitCode"]

from isolation.runtime.exitcodes import ExitCode
