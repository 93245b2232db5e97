"""How an environment's tasks are confined: ``environments/<name>/isolation.toml``.

::

    sandbox = "bubblewrap"   # or "none": no boundary, every task runs with the worker's authority
    network = "none"         # or "host": the worker's network namespace

    [limits]
    memory = "4GiB"          # address space of each process (RLIMIT_AS)
    processes = 256          # processes and threads of the task at once (RLIMIT_NPROC; a cgroup for root)
    wall_clock = "24h"       # the sandbox is stopped after this, whatever the host's timeout
    log = "64MiB"            # task output forwarded to the host log; the rest is dropped
    tmp = "1GiB"             # the in-memory /tmp (HOME, TMPDIR, working directory)

    [warm]                   # or warm = false: every task starts a new interpreter
    enabled = true           # fork each task from a pre-loaded runtime (docs/howto-local.md)
    idle_timeout = "15m"     # the warm server exits after this long without a task
    preload = []             # modules the server imports once, e.g. the environment's operators

Every key is optional; the defaults are the values above. The file is read when the
environment is built and recorded with it, so the backend never reads a project tree at
task time. An unknown key or value is an error, never ignored: a typo in a security
setting must not silently fall back to something weaker or stronger than was asked.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from isolation.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 hosts
    import tomli as tomllib

SETTINGS_FILE = "isolation.toml"
SANDBOXES = ("bubblewrap", "none")
NETWORKS = ("none", "host")

_SIZES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZES.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_COUNT = {"": 1}
_QUANTITY = re.compile(r"(\d+)\s*([A-Za-z]*)")
# Each limit's units, and what an error shows as an example.
_LIMIT_UNITS: dict[str, tuple[dict[str, int], str]] = {
    "memory": (_SIZES, 'a size like "4GiB" or a number of bytes'),
    "log": (_SIZES, 'a size like "64MiB" or a number of bytes'),
    "tmp": (_SIZES, 'a size like "1GiB" or a number of bytes'),
    "wall_clock": (_SECONDS, 'a duration like "90m", "24h" or seconds'),
    "processes": (_COUNT, "a whole number"),
}


@dataclass(frozen=True)
class Limits:
    """Per-task limits; every one has a default and a minimum that still runs a task."""

    memory: int = 4 * 2**30
    processes: int = 256
    wall_clock: int = 24 * 3600
    log: int = 64 * 2**20
    tmp: int = 2**30


@dataclass(frozen=True)
class WarmSettings:
    """Whether tasks fork from a warm server (see isolation.runtime.warm), and its options."""

    enabled: bool = True
    idle_timeout: int = 15 * 60
    preload: tuple[str, ...] = ()


_MINIMUM = Limits(memory=512 * 2**20, processes=16, wall_clock=1, log=4096, tmp=2**20)


@dataclass(frozen=True)
class SandboxSettings:
    """What ``isolation.toml`` declares (or the defaults)."""

    sandbox: str = "bubblewrap"
    network: str = "none"
    limits: Limits = field(default_factory=Limits)
    warm: WarmSettings = field(default_factory=WarmSettings)

    @property
    def sandboxed(self) -> bool:
        return self.sandbox != "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SandboxSettings:
        """Rebuild from :meth:`to_dict` (an environment's marker); strict."""
        if not isinstance(data, dict):
            raise ConfigurationError(f"{where}: sandbox settings are missing", hint="rebuild the environment")
        limits = data.get("limits") or {}
        malformed = ConfigurationError(f"{where}: sandbox settings are malformed", hint="rebuild the environment")
        try:
            settings = cls(str(data["sandbox"]), str(data["network"]), Limits(**{k: int(v) for k, v in limits.items()}))
            if "warm" in data:  # absent from environments built before warm servers
                warm = data["warm"]
                preload = tuple(str(m) for m in warm["preload"])
                settings = replace(
                    settings, warm=WarmSettings(bool(warm["enabled"]), int(warm["idle_timeout"]), preload)
                )
        except (KeyError, TypeError, ValueError):
            raise malformed from None
        if settings.sandbox not in SANDBOXES or settings.network not in NETWORKS:
            raise malformed
        return settings


def _quantity(value: Any, key: str, where: str, *, key_name: str | None = None) -> int:
    """A limit's value: a whole number, or (where the limit has units) a string like "4GiB"."""
    units, example = _LIMIT_UNITS[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _QUANTITY.fullmatch(value.strip()) if isinstance(value, str) and units is not _COUNT else None
    factor = units.get(match.group(2).lower()) if match else None
    if match is None or factor is None:
        raise ConfigurationError(f"{where}: {key_name or 'limits.' + key} must be {example}")
    return int(match.group(1)) * factor


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = data.get(key, allowed[0])
    if value not in allowed:
        shown = " or ".join(f'"{a}"' for a in allowed)
        raise ConfigurationError(f"{where}: {key} must be {shown}, not {value!r}")
    return str(value)


def parse_settings(text: str, where: str) -> SandboxSettings:
    """Parse the text of ``isolation.toml``; ``where`` names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"sandbox", "network", "limits", "warm"})
    if unknown:
        raise ConfigurationError(f"{where}: unknown setting(s) {', '.join(unknown)}", hint=f"see {__name__} docs")
    raw = data.get("limits", {})
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: [limits] must be a table")
    known = Limits.__dataclass_fields__
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown limit(s) {', '.join(unknown)}", hint=f"known limits: {', '.join(known)}"
        )
    values: dict[str, int] = {}
    for key, value in raw.items():
        values[key] = _quantity(value, key, where)
        minimum = getattr(_MINIMUM, key)
        if values[key] < minimum:
            raise ConfigurationError(f"{where}: limits.{key} = {value!r} is below the minimum of {minimum}")
    return SandboxSettings(
        sandbox=_choice(data, "sandbox", SANDBOXES, where),
        network=_choice(data, "network", NETWORKS, where),
        limits=Limits(**values),
        warm=_warm(data.get("warm", True), where),
    )


def _warm(raw: Any, where: str) -> WarmSettings:
    if isinstance(raw, bool):
        return WarmSettings(enabled=raw)
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: warm must be true, false or a [warm] table")
    unknown = sorted(set(raw) - set(WarmSettings.__dataclass_fields__))
    if unknown:
        raise ConfigurationError(f"{where}: unknown warm setting(s) {', '.join(unknown)}")
    enabled, preload = raw.get("enabled", True), raw.get("preload", [])
    if not isinstance(enabled, bool):
        raise ConfigurationError(f"{where}: warm.enabled must be true or false")
    if not isinstance(preload, list) or not all(isinstance(m, str) and m for m in preload):
        raise ConfigurationError(f"{where}: warm.preload must be a list of module names")
    idle = _quantity(
        raw.get("idle_timeout", WarmSettings.idle_timeout), "wall_clock", where, key_name="warm.idle_timeout"
    )
    return WarmSettings(enabled, max(idle, 1), tuple(preload))


def load_settings(directory: Path) -> SandboxSettings:
    """The settings of the environment in ``directory`` (defaults when it has no file)."""
    path = directory / SETTINGS_FILE
    if not path.is_file():
        return SandboxSettings()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    return parse_settings(text, str(path))


def describe(settings: SandboxSettings) -> str:
    """One line for every task log: how this task is confined."""
    if not settings.sandboxed:
        return "sandbox: none (the task runs with the worker's authority); network: host"
    warm = "warm (forked from a pre-loaded runtime)" if settings.warm.enabled else "cold"
    lim = settings.limits
    return (
        f"sandbox: bubblewrap; network: {settings.network}; limits: memory {_human(lim.memory)}, "
        f"{lim.processes} processes, wall clock {lim.wall_clock}s, log {_human(lim.log)}, tmp {_human(lim.tmp)}; "
        f"start: {warm}"
    )


def _human(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
