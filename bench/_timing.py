"""Timing helpers shared by the benchmarks.

All contenders of one comparison are measured in the same loop. Each round visits
every operation in turn (the starting operation rotates from round to round) and
makes ``1 + calls`` consecutive calls of it, each with ``time.perf_counter_ns``
around the single call:

* the first call runs right after the other contenders, with their code and data
  in the caches; it is kept apart as the *first-call* sample, closer to a worker
  that seals one envelope per task;
* the following ``calls`` are the *warm* samples (what ``timeit`` measures), the
  headline figures.

Frequency scaling, noisy neighbours and background load thus hit every contender
alike, which matters more for a ratio than any absolute figure. The garbage
collector is paused while rounds run (as ``timeit`` does) and collected between
rounds every quarter second.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_GC_EVERY_NS = 250_000_000


@dataclass(frozen=True)
class Budget:
    """How long to measure one group of operations."""

    warmup: int
    """Untimed rounds before measuring."""
    calls: int
    """Warm timed calls per operation and round (after one first call)."""
    min_rounds: int
    """Timed rounds always run, whatever the clock says."""
    max_rounds: int
    """Timed rounds never exceeded."""
    seconds: float
    """Stop after this much wall time once ``min_rounds`` are done."""


@dataclass(frozen=True)
class Stats:
    """Summary of the per-call samples of one operation, in nanoseconds."""

    samples: int
    median_ns: float
    p90_ns: float
    min_ns: int

    @classmethod
    def of(cls, samples: Sequence[int]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(len(ordered), float(statistics.median(ordered)), percentile(ordered, 0.90), ordered[0])

    @property
    def median_us(self) -> float:
        return self.median_ns / 1000

    @property
    def p90_us(self) -> float:
        return self.p90_ns / 1000

    def to_json(self) -> dict[str, float | int]:
        return {
            "median_us": round(self.median_us, 3),
            "p90_us": round(self.p90_us, 3),
            "min_us": round(self.min_ns / 1000, 3),
            "samples": self.samples,
        }


def percentile(ordered: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of already sorted samples (``q`` in 0..1)."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True)
class Measurement:
    warm: dict[str, Stats]
    """Per operation: the calls that follow a call of the same operation."""
    first: dict[str, Stats]
    """Per operation: the first call of each round, right after other operations."""
    rounds: int


def measure(ops: Mapping[str, Callable[[], object]], budget: Budget) -> Measurement:
    """Time every operation of ``ops`` in interleaved rounds (see the module docstring)."""
    names = list(ops)
    calls = [ops[name] for name in names]
    count = len(calls)
    warm: list[list[int]] = [[] for _ in names]
    first: list[list[int]] = [[] for _ in names]
    for _ in range(budget.warmup):
        for call in calls:
            call()
    clock = time.perf_counter_ns
    limit_ns = int(budget.seconds * 1e9)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    rounds = 0
    try:
        start = last_gc = clock()
        while rounds < budget.max_rounds:
            offset = rounds % count
            for step in range(count):
                index = (step + offset) % count
                call = calls[index]
                t0 = clock()
                call()
                t1 = clock()
                first[index].append(t1 - t0)
                samples = warm[index]
                for _ in range(budget.calls):
                    t0 = clock()
                    call()
                    t1 = clock()
                    samples.append(t1 - t0)
            rounds += 1
            now = clock()
            if rounds >= budget.min_rounds and now - start >= limit_ns:
                break
            if now - last_gc >= _GC_EVERY_NS:
                gc.collect()
                last_gc = clock()
    finally:
        if was_enabled:
            gc.enable()
    return Measurement(
        warm={name: Stats.of(found) for name, found in zip(names, warm, strict=True)},
        first={name: Stats.of(found) for name, found in zip(names, first, strict=True)},
        rounds=rounds,
    )


def timer_floor_ns(rounds: int = 20_000) -> float:
    """Median cost of timing an empty call the way :func:`measure` does."""

    def nothing() -> None:
        return None

    budget = Budget(warmup=100, calls=1, min_rounds=rounds, max_rounds=rounds, seconds=0.0)
    return measure({"noop": nothing}, budget).warm["noop"].median_ns


_IMPORT_PROBE = "import time\n_t = time.perf_counter_ns()\n{statement}\nprint(time.perf_counter_ns() - _t)\n"


def import_times_ms(statements: Mapping[str, str], runs: int, *, cwd: str) -> dict[str, list[float]]:
    """Time each import statement in ``runs`` fresh interpreters; milliseconds per run.

    One untimed run per statement goes first (it may compile byte code). The timed
    runs alternate between the statements so that they share machine conditions.
    The interpreter is ``sys.executable`` with ``-E`` (no ``PYTHON*`` variables),
    started in ``cwd`` so that ``-c`` imports the checkout there.
    """
    results: dict[str, list[float]] = {name: [] for name in statements}

    def once(statement: str) -> float:
        probe = _IMPORT_PROBE.format(statement=statement)
        done = subprocess.run(
            [sys.executable, "-E", "-c", probe],
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout.strip().splitlines()[-1]) / 1e6

    for statement in statements.values():
        once(statement)
    for _ in range(runs):
        for name, statement in statements.items():
            results[name].append(once(statement))
    return results
