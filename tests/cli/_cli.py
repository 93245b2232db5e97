"""Running ``isolationctl`` in throw-away folders: in this process, or as the real console script.

Every command gets its own HOME, keyring, environments' home and AIRFLOW_HOME, and none of
the caller's ``AIRFLOW_*`` or ``ISOLATION_*`` variables, so nothing leaks between tests or
from the machine.

By default a command runs in this process, through ``isolationctl.main:main`` itself (the
function the console script calls, so the exit code and the one-line errors are the
script's), with what a fresh process would have: exactly the sandbox's environment
variables in ``os.environ``, its working folder, its standard input, separate standard
output and error, fresh Rich consoles and Python's default warning filters. It is restored
afterwards.

``real=True`` (on ``Sandbox.run`` or the sandbox itself, see the ``cli_real`` fixture) runs
the installed console script in a subprocess instead. Tests use it where a process of its
own is what they check: the entry point itself, signals and exit 130, timings, whole flows
that start Airflow. ``CLI_TESTS_REAL=1`` runs every command that way.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import locale
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "isolationctl"
# CLI_TESTS_REAL=1 runs every command through the console script, to compare both ways.
ALL_REAL = os.environ.get("CLI_TESTS_REAL", "") not in ("", "0")


@functools.lru_cache(maxsize=1)
def machine_caches() -> dict[str, str]:
    """What a fresh HOME would lose: uv's cache (a cold one costs minutes) and pyenv's interpreters."""
    found: dict[str, str] = {}
    uv = shutil.which("uv")
    if uv is not None:
        done = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            found["UV_CACHE_DIR"] = done.stdout.strip()
    pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if Path(pyenv).is_dir():
        found["PYENV_ROOT"] = pyenv
    return found


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"isolationctl {command} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Sandbox:
    """A temporary machine for the CLI: a home, a keyring, an environments' home, a project.

    ``real``: run every command as the installed console script, in a subprocess.
    """

    root: Path
    real: bool = False

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def keyring(self) -> Path:
        return self.root / "keyring"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def project(self) -> Path:
        return self.root / "project"

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ISOLATION_", "VIRTUAL_ENV"))}
        self.home.mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "HOME": str(self.home),
                "ISOLATION_KEYRING": str(self.keyring),
                "ISOLATION_ENVS_HOME": str(self.envs),
                "AIRFLOW_HOME": str(self.root / "airflow"),
                # Rich: no colours, a fixed width, so output is plain text.
                "NO_COLOR": "1",
                "TERM": "dumb",
                "COLUMNS": "200",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(machine_caches())
        env.update(extra)
        return env

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 600,
        real: bool | None = None,
    ) -> Result:
        """Run ``isolationctl *args``; ``real`` (default: the sandbox's) runs the console script.

        ``timeout`` only bounds a real run: a command in this process cannot be stopped.
        """
        if cwd is None:
            self.project.mkdir(parents=True, exist_ok=True)
        folder = cwd or self.project
        environment = env or self.environ()
        if not (ALL_REAL or (self.real if real is None else real)):
            return run_in_process(args, cwd=folder, env=environment, input=input)
        if not SCRIPT.exists():
            raise AssertionError(f"the isolationctl console script is not installed at {SCRIPT}: run make bootstrap")
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=folder,
            env=environment,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(tuple(args), done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and assert exit code 0, showing everything the command printed if not."""
        result = self.run(*args, **kwargs)
        assert result.code == 0, str(result)
        return result


# --------------------------------------------------------------------------- in this process

# What a pipe to a child process is: its encoding, and the errors policy of each stream.
_ENCODING = locale.getpreferredencoding(False)
# Python's warning filters when started without -W or PYTHONWARNINGS.
_DEFAULT_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


def run_in_process(args: Sequence[str], *, cwd: Path, env: Mapping[str, str], input: str | None) -> Result:
    """``isolationctl *args`` through ``isolationctl.main:main``, as the console script runs it."""
    from isolationctl.main import main

    stdout, stderr = io.BytesIO(), io.BytesIO()
    with (
        _process(args, env, cwd),
        _streams(input, stdout, stderr),
        _fresh_consoles(),
        _default_warnings(),
        _empty_caches(),
    ):
        try:
            status: object = main(list(args))
        except SystemExit as exc:  # what the interpreter does with it at exit
            status = exc.code
        code = _exit_code(status)
    return Result(tuple(args), code, _as_read_from_a_pipe(stdout), _as_read_from_a_pipe(stderr))


@contextlib.contextmanager
def _process(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """The console script's ``sys.argv``, exactly ``env`` as the environment, ``cwd`` as the working folder."""
    saved_argv, saved_env, saved_cwd = sys.argv, dict(os.environ), os.getcwd()
    sys.argv = [str(SCRIPT), *args]
    os.environ.clear()
    os.environ.update(env)
    try:
        os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv


@contextlib.contextmanager
def _streams(input: str | None, stdout: io.BytesIO, stderr: io.BytesIO) -> Iterator[None]:
    """Standard streams as a child's: ``input`` then end of file, unbuffered output (PYTHONUNBUFFERED)."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO((input or "").encode(_ENCODING)), encoding=_ENCODING)
    sys.stdout = io.TextIOWrapper(stdout, encoding=_ENCODING, write_through=True)
    sys.stderr = io.TextIOWrapper(stderr, encoding=_ENCODING, errors="backslashreplace", write_through=True)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.detach()  # keep the buffers readable
        sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _fresh_consoles() -> Iterator[None]:
    """The CLI's Rich consoles as its import makes them in a new process, under these streams and variables.

    They are created once, at import, and read the width, NO_COLOR and whether they write to
    a terminal then: a fresh copy of ``isolationctl._ui`` makes them again here, and the
    consoles every command module holds take on their state for the run.
    """
    from isolationctl import _ui

    spec = importlib.util.spec_from_file_location("_isolationctl_ui_fresh", _ui.__file__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    saved = {name: getattr(_ui, name).__dict__ for name in ("out", "err")}
    for name in saved:
        getattr(_ui, name).__dict__ = getattr(fresh, name).__dict__
    try:
        yield
    finally:
        for name, state in saved.items():
            getattr(_ui, name).__dict__ = state


@contextlib.contextmanager
def _default_warnings() -> Iterator[None]:
    """A warning is printed on standard error, as in a new process, not collected by pytest."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in reversed(_DEFAULT_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        warnings.showwarning = _print_warning
        yield


@contextlib.contextmanager
def _empty_caches() -> Iterator[None]:
    """The project's per-process caches (``functools.lru_cache``: the sandbox probe, ...) start and end empty.

    A new process probes bubblewrap under its own environment; nothing a command caches is
    left for the tests that follow.
    """
    _clear_caches()
    try:
        yield
    finally:
        _clear_caches()


def _clear_caches() -> None:
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("isolation", "isolationctl"):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()


def _print_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _exit_code(status: object) -> int:
    """The exit status ``sys.exit(status)`` gives, as the parent sees it."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status % 256
    sys.stderr.write(f"{status}\n")
    return 1


def _as_read_from_a_pipe(stream: io.BytesIO) -> str:
    """What ``subprocess.run(..., text=True)`` reads: decoded, with universal newlines."""
    return stream.getvalue().decode(_ENCODING).replace("\r\n", "\n").replace("\r", "\n")
