"""Run every fuzz target for a while; exit non-zero if any of them crashes.

    python fuzz/run_all.py [--seconds N] [--jobs J] [--timeout T] [target ...]

Each target runs in its own subprocess under libFuzzer for N seconds, starting from
a scratch copy of its seed corpus (so the committed seeds never change), with a
per-input time limit of T seconds. Crashing inputs are kept in fuzz/crashes/.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("open_envelope", "load_keyset", "codec_roundtrip")
MAX_LEN = 8192
"""Longest input libFuzzer builds: a suite 2 envelope text is about 3.5 KB."""


@dataclass
class Result:
    target: str
    returncode: int
    seconds: float
    runs: str
    coverage: str
    crash: str
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _last(pattern: str, text: str) -> str:
    found = re.findall(pattern, text)
    return found[-1] if found else "?"


def run_target(target: str, seconds: int, timeout: int) -> Result:
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
        corpus = Path(scratch) / "corpus"
        shutil.copytree(HERE / "corpus" / target, corpus)
        command = [
            sys.executable,
            str(HERE / f"{target}.py"),
            str(corpus),
            f"-max_total_time={seconds}",
            f"-timeout={timeout}",
            f"-max_len={MAX_LEN}",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={crashes}/{target}-",
            "-print_final_stats=1",
        ]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, errors="replace", timeout=seconds + 120, check=False
            )
            returncode, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            returncode, output = -1, f"{exc.stdout or ''}{exc.stderr or ''}\nrun_all: {target} did not stop in time"
        elapsed = time.monotonic() - started
    return Result(
        target=target,
        returncode=returncode,
        seconds=elapsed,
        runs=_last(r"stat::number_of_executed_units:\s*(\d+)", output),
        coverage=_last(r"\bcov: (\d+)", output),
        crash=_last(r"Test unit written to (\S+)", output) if returncode else "",
        output=output,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="fuzzing time per target (default 20)")
    parser.add_argument("--timeout", type=int, default=10, help="time limit per input in seconds (default 10)")
    parser.add_argument("--jobs", type=int, default=min(len(TARGETS), os.cpu_count() or 1))
    parser.add_argument("targets", nargs="*", metavar="target", help=f"default: all of {', '.join(TARGETS)}")
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda t: run_target(t, args.seconds, args.timeout), targets))

    for result in results:
        if not result.ok:
            print(f"===== {result.target}: output (last 60 lines) =====")
            print("\n".join(result.output.splitlines()[-60:]))
    print(f"{'target':<18}{'result':<10}{'runs':>12}{'cov':>8}{'seconds':>10}  crash input")
    for r in results:
        status = "ok" if r.ok else f"FAIL({r.returncode})"
        print(f"{r.target:<18}{status:<10}{r.runs:>12}{r.coverage:>8}{r.seconds:>10.1f}  {r.crash}")
    failed = [r.target for r in results if not r.ok]
    if failed:
        print(f"fuzz: {len(failed)} target(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"fuzz: {len(results)} target(s) ran {args.seconds} s each without a crash")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
