"""``python -m isolation.runtime``: open one envelope, run its operator, write the result.

The steps and their order are the contract of ``docs/runtime.md``; so are the exit
codes. Every failure the runtime anticipates ends in one line on standard error and
its exit code, never in a bare traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from isolation.errors import (
    ConfigurationError,
    DeferralNotSupported,
    EnvelopeRejected,
    IsolationError,
    IsolationViolation,
    KeysetError,
    OperatorLoadError,
    ResultError,
)
from isolation.runtime import lifeline, logs, source
from isolation.runtime.exitcodes import ExitCode

if TYPE_CHECKING:
    from isolation.transport import OpenedEnvelope

log = logging.getLogger("isolation.runtime")
_STARTED = time.perf_counter()


class _Phases:
    """Milliseconds per step, printed when ISOLATION_RUNTIME_TIMINGS is set (start-up tuning)."""

    def __init__(self) -> None:
        self._last = _STARTED
        self.spent: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.spent.append((name, (now - self._last) * 1000))
        self._last = now

    def report(self) -> None:
        if os.environ.get("ISOLATION_RUNTIME_TIMINGS"):
            parts = " ".join(f"{name}={ms:.0f}" for name, ms in self.spent)
            sys.stderr.write(f"isolation-runtime: timings ms: {parts}\n")


PHASES = _Phases()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isolation-runtime",
        description="Open an isolation envelope and run the operator it carries (see docs/runtime.md).",
    )
    parser.add_argument("--stdin", action="store_true", help="read the envelope from standard input")
    parser.add_argument(
        "--envelope-file", metavar="PATH", help=f"read the envelope from PATH (${source.ENVELOPE_FILE_VAR})"
    )
    parser.add_argument("--keys-dir", metavar="PATH", help=f"the environment's keys directory (${source.KEYS_DIR_VAR})")
    parser.add_argument("--result-path", metavar="PATH", help=f"where to write the result (${source.RESULT_PATH_VAR})")
    parser.add_argument("--serve", action="store_true", help="run as the warm server (isolation.runtime.warm)")
    return parser


def _one_line(error: BaseException) -> str:
    text = error.diagnostics() if isinstance(error, IsolationError) else f"{type(error).__name__}: {error}"
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _say(error: BaseException, code: ExitCode) -> None:
    """The final line on standard error: what happened and what to do (redacted)."""
    stream = sys.stderr
    stream.write(logs.REDACT(f"isolation-runtime: {code.outcome} (exit {int(code)}): {_one_line(error)}") + "\n")
    stream.flush()


def _classify(error: BaseException) -> ExitCode:
    if isinstance(error, IsolationViolation):
        return ExitCode.VIOLATION
    if isinstance(error, EnvelopeRejected):
        return ExitCode.REJECTED
    if isinstance(error, (ConfigurationError, KeysetError, OperatorLoadError)):
        return ExitCode.CONFIGURATION
    if isinstance(error, (DeferralNotSupported, ResultError)):
        return ExitCode.FAILED
    compat = sys.modules.get("isolation.runtime.compat")
    if compat is not None and isinstance(error, compat.skip_exceptions()):
        return ExitCode.SKIPPED
    return ExitCode.FAILED


def _write_result(path: str | None, doc: dict[str, Any]) -> None:
    if path is None:
        return
    from isolation.runtime import result

    try:
        result.write(path, doc)
    except OSError as exc:
        sys.stderr.write(f"isolation-runtime: cannot write the result file {path}: {exc.strerror}\n")


def _open(args: argparse.Namespace) -> OpenedEnvelope:
    from isolation.runtime import hardening

    # Before any secret is in memory: no core file, no ptrace or /proc/<pid>/mem by the
    # worker's other processes, and the host's limits, which nothing later can raise.
    hardening.harden_process()
    hardening.apply_limits(*hardening.limits_from_environ(os.environ))
    text = source.read_envelope(use_stdin=args.stdin, envelope_file=args.envelope_file)
    keys = source.load_keys(args.keys_dir)
    PHASES.mark("read")
    opened = source.open_text(text, keys, source.expected_subject())
    from isolation.runtime import identity

    identity.check_pod_identity(opened.header.subject)  # in a pod: its labels name the same task
    PHASES.mark("open")
    return opened


def run(argv: Sequence[str] | None = None) -> int:
    """Everything ``main`` does, returning the exit code (callable from tests)."""
    args = _parser().parse_args(argv)
    if args.serve:
        from isolation.runtime.warm.server import main as serve

        return serve()
    lifeline.watch()
    from isolation.runtime import result

    result.keep_from_children(args.result_path or os.environ.get(source.RESULT_PATH_VAR))
    try:
        opened = _open(args)
    except Exception as exc:
        # Anything else here is a defect of the runtime or its environment, still one line.
        code = _classify(exc) if isinstance(exc, IsolationError) else ExitCode.CONFIGURATION
        from isolation.runtime import result

        _write_result(
            source.result_path(None, args.result_path, opened=False),
            result.document(code.outcome, error=exc),
        )
        _say(exc, code)
        return int(code)
    return _run_opened(opened, args)


def _run_opened(opened: OpenedEnvelope, args: argparse.Namespace) -> int:
    from isolation.runtime import result, sandbox, secrets

    payload = opened.payload
    # Secrets are known to the redactor before anything can print them; from here on
    # fds 1 and 2 (children's too) pass through it.
    logs.REDACT.add(secrets.secret_values(payload))
    logs.mask_descriptors(logs.REDACT)
    stream = logs.redirect_std_streams()
    logs.route_logging(stream, payload.options.log_level)
    path = source.result_path(payload.options.result_path, args.result_path, opened=True)
    info: dict[str, Any] = {"redact": logs.REDACT, "environment": opened.header.audience}
    try:
        sandbox.check_no_database_url()
        sandbox.prepare()
        PHASES.mark("sandbox")
        from isolation.runtime import compat  # the first Airflow import

        PHASES.mark("airflow")
        info["airflow_version"] = compat.AIRFLOW_VERSION
        compat.install_guards()
        PHASES.mark("guards")
        secrets.provide(payload)
        if payload.options.export_secrets_to_env:
            secrets.export_to_environment(os.environ)
        for value in secrets.secret_values(payload):
            compat.mask_secret(value)
        # Airflow configured logging on import; put the one redacting handler back.
        logs.route_logging(stream, payload.options.log_level)
        compat.route_structlog()
        log.info("running %s for %s", payload.operator.import_path, opened.header.subject)

        from isolation.runtime.operator import PreparedTask

        PHASES.mark("secrets")
        task = PreparedTask(payload)
        PHASES.mark("build")
        task.render()
        PHASES.mark("render")
        task.execute()
        PHASES.mark("execute")
        return_value, xcoms = result.values(task.record.return_value, task.record.pushed)
    except Exception as exc:
        code = _classify(exc)
        if code is ExitCode.SKIPPED:
            log.info("task skipped: %s", exc)
        elif code is ExitCode.FAILED and not isinstance(exc, IsolationError):
            log.error("task failed", exc_info=True)
        _write_result(path, result.document(code.outcome, error=exc, **info))
        _say(exc, code)
        stream.drain()
        return int(code)
    downstream = [decision.to_json() for decision in task.decisions.decisions]
    _write_result(
        path, result.document("success", return_value=return_value, xcoms=xcoms, downstream=downstream, **info)
    )
    log.info("task succeeded")
    PHASES.mark("result")
    PHASES.report()
    stream.drain()
    return int(ExitCode.SUCCESS)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: run, then end the process at once with the exit code."""
    code = run(argv)
    _exit_now(code)
    return code  # pragma: no cover - _exit_now does not return


def _exit_now(code: int) -> None:
    # The result is written and the logs are drained. A normal interpreter shutdown
    # after importing Airflow costs most of a second (module teardown and the atexit
    # hooks of Airflow and its libraries) and can still hang on an operator's stray
    # non-daemon thread, so flush what matters ourselves and leave.
    from isolation.runtime import sandbox

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            continue
    # os._exit skips every flush: the masker thread must write out what it holds first.
    logs.release_descriptors()
    sandbox.cleanup()
    os._exit(code)


if __name__ == "__main__":
    main()
