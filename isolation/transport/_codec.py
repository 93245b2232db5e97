"""The pickle-free value codec: msgpack natives plus a few typed extensions.

Allowed values: ``None``, ``bool``, ``int`` (-2**63 .. 2**64-1), ``float``, ``str``,
``bytes``, ``list``/``tuple`` (tuples arrive as lists), ``dict`` with ``str`` keys,
``datetime``, ``date``, ``timedelta`` and :class:`CallableRef`. Everything else is
refused with :class:`~isolation.errors.PayloadError` naming where it was found.
Decoding is strict: the bytes must be exactly what :func:`pack` would produce.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from typing import Any

import msgpack

from isolation.errors import PayloadError

EXT_DATETIME = 1
EXT_DATE = 2
EXT_TIMEDELTA = 3
EXT_CALLABLE = 4

MAX_DEPTH = 32
MAX_ITEMS = 100_000

# ASCII only. Python identifiers may hold non-ASCII letters, but those allow look-alike
# names (Cyrillic U+0430 for a Latin "a") in what a reviewer reads in logs and DAGs, and
# "word character" means different things in different readers' regex engines.
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_CALLABLE_PATH = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*", re.ASCII)
_TIMEDELTA = struct.Struct(">iiI")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class CallableRef:
    """A callable carried by import path, ``"package.module:qualified.name"``.

    A plain class rather than a dataclass so that pydantic passes it through as is.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not _CALLABLE_PATH.fullmatch(path):
            raise PayloadError(
                f"invalid callable reference {path!r}",
                hint="use 'package.module:function' for a module-level function",
            )
        self.path = path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallableRef) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("CallableRef", self.path))

    def __repr__(self) -> str:
        return f"CallableRef({self.path!r})"

    @classmethod
    def from_callable(cls, func: Any) -> CallableRef:
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", None)
        if not module or not qualname or "<" in qualname or module == "__main__":
            raise PayloadError(
                f"callable {getattr(func, '__name__', func)!r} cannot be referenced by import path",
                hint="define it at module level in an importable module (not a lambda, "
                "closure or __main__) so the isolated environment can import it",
            )
        return cls(f"{module}:{qualname}")

    def resolve(self) -> Any:
        import importlib

        module_name, _, qualname = self.path.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj


def check(value: Any, where: str = "value") -> None:
    """Validate ``value`` against the codec's types and limits without packing it."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    items = 0
    while stack:
        obj, path, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise PayloadError(f"{where} holds more than {MAX_ITEMS} values")
        if depth > MAX_DEPTH:
            raise PayloadError(f"{path} is nested deeper than {MAX_DEPTH} levels")
        if obj is None or isinstance(obj, (bool, float, str, bytes, dt.date, dt.timedelta, CallableRef)):
            continue
        if isinstance(obj, int):
            if not _INT_MIN <= obj <= _INT_MAX:
                raise PayloadError(f"{path} is an integer outside the 64-bit range")
            continue
        if isinstance(obj, (list, tuple)):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj))
            continue
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not isinstance(k, str):
                    raise PayloadError(f"{path} has a non-string key of type {type(k).__name__}")
                stack.append((v, f"{path}[{k!r}]", depth + 1))
            continue
        raise PayloadError(
            f"{path} has type {type(obj).__module__}.{type(obj).__qualname__}, which cannot travel in an envelope",
            hint="pass plain data (str, int, float, bool, None, bytes, list, dict, datetime, "
            "date, timedelta) or a module-level function",
        )


def _default(obj: Any) -> msgpack.ExtType:
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(EXT_TIMEDELTA, _TIMEDELTA.pack(obj.days, obj.seconds, obj.microseconds))
    if isinstance(obj, CallableRef):
        return msgpack.ExtType(EXT_CALLABLE, obj.path.encode())
    raise PayloadError(f"type {type(obj).__name__} cannot travel in an envelope")


def _ext_hook(code: int, data: bytes) -> Any:
    text = data.decode("utf-8") if code in (EXT_DATETIME, EXT_DATE, EXT_CALLABLE) else ""
    value: Any
    if code == EXT_DATETIME:
        value = dt.datetime.fromisoformat(text)
        if value.isoformat() != text:
            raise ValueError("non-canonical datetime")
        return value
    if code == EXT_DATE:
        value = dt.date.fromisoformat(text)
        if value.isoformat() != text:
            raise ValueError("non-canonical date")
        return value
    if code == EXT_TIMEDELTA:
        days, seconds, micros = _TIMEDELTA.unpack(data)
        value = dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        if (value.days, value.seconds, value.microseconds) != (days, seconds, micros):
            raise ValueError("non-canonical timedelta")
        return value
    if code == EXT_CALLABLE:
        return CallableRef(text)
    raise ValueError(f"unknown extension type {code}")


def pack(value: Any) -> bytes:
    """Encode a checked value; the output is canonical for the value."""
    check(value)
    try:
        packed: bytes = msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"value cannot be encoded: {type(exc).__name__}") from None
    return packed


def unpack(data: bytes) -> Any:
    """Decode bytes produced by :func:`pack`; raise ``ValueError`` on anything else.

    The caller turns ``ValueError`` into its own typed error; messages never quote data.
    """
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, ext_hook=_ext_hook, timestamp=0)
    except (ValueError, TypeError, OverflowError, UnicodeDecodeError, struct.error, PayloadError) as exc:
        raise ValueError(f"malformed msgpack ({type(exc).__name__})") from None
    try:
        check(value)
    except PayloadError as exc:
        raise ValueError(exc.message) from None
    if pack(value) != data:
        raise ValueError("non-canonical msgpack")
    return value
