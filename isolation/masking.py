"""The one secret masker of the host and the runtime: strings, and byte streams cut into lines.

A task's secrets reach a log in more spellings than their own. ``print(conn)`` shows a
password inside a ``repr``; a JSON document shows it with ``\\"`` and ``\\u00e4``; a
connection URI shows it percent-encoded. :class:`SecretMasker` therefore hides, for every
secret, each spelling in :func:`variants`, and replaces every occurrence with ``***``.
Occurrences that overlap (one secret's tail is another's head) are merged and hidden as
one, so no part of either shows.

The runtime masks at the file-descriptor level: whatever reaches its standard output or
error arrives as bytes, possibly not UTF-8, in chunks cut anywhere. :class:`LineMasker`
turns such a stream into masked log lines. It matches the secrets' UTF-8 bytes, so output
that is not valid UTF-8 passes through unchanged except for the secrets in it. A line
longer than the limit is emitted in pieces; before a piece is cut, enough bytes are held
back (the longest secret, in bytes) that every match which could cross the cut is seen
whole, and the cut moves off any match and off any UTF-8 sequence. Without secrets it is
a plain line splitter: the concatenation of its output equals its input.

Limits, stated honestly: a secret is found only in the spellings listed here (not, say,
base64 or lowercase percent-encoding), and in byte streams only in UTF-8 (output in
another locale's encoding is not matched); values shorter than :data:`MIN_LENGTH`
characters are not masked (they would hide ordinary words and numbers); a secret with
newlines is masked line by line too, so a line of it shorter than that shows;
``"airflow"`` is never masked, as in Airflow, because it is every default login and half
of every log line; a "secret" made of ``*`` characters may reappear next to a mask; and a
partial line that is one chain of overlapping secrets for more than four pieces is cut at
the end of the chain known so far, so a fragment (never the whole) of a secret may show.

This module uses the standard library only and imports no Airflow: the runtime uses it
before Airflow is imported, the host after.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, AnyStr
from urllib.parse import quote, quote_plus

__all__ = [
    "DEFAULT_LINE_LIMIT",
    "MASK",
    "MIN_LENGTH",
    "LineMasker",
    "SecretMasker",
    "secret_strings",
    "variants",
]

MASK = "***"
MIN_LENGTH = 3
"""Shorter values (and shorter variants) are not masked: they would mask ordinary words and digits."""
DEFAULT_LINE_LIMIT = 64 * 1024
"""Bytes of one log line; a longer line is emitted in pieces."""
# Airflow does not mask these either: a login "airflow" would otherwise hide every logger name.
_NEVER_MASKED = frozenset({"airflow"})
_MASK_BYTES = MASK.encode()

Adapter = Callable[[str], "str | Iterable[str]"]


def variants(secret: str) -> set[str]:
    """The spellings of ``secret`` a log may show: itself, escaped and quoted forms.

    The ``repr`` and ``ascii`` bodies (of the string; ``repr`` also of its UTF-8 bytes),
    the JSON string body with and
    without ``ensure_ascii``, and the URL-quoted forms: ``quote`` with ``safe=""`` (how
    Airflow writes a connection URI), ``quote`` with its default ``safe="/"`` (what Airflow
    itself registers for passwords) and ``quote_plus`` (form encoding).
    """
    forms = {
        secret,
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    # A string with lone surrogates has no UTF-8 form, so no quoted or bytes form either.
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(repr(secret.encode("utf-8"))[2:-1])
        forms.add(quote(secret, safe=""))
        forms.add(quote(secret))
        forms.add(quote_plus(secret))
    return forms


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


def secret_strings(values: Iterable[str], *, min_length: int = MIN_LENGTH) -> list[str]:
    """Every string to hide, from raw secret values (passwords, logins, extras, variables).

    Each value, plus the string leaves of a value that is JSON (a token inside an extra is
    logged on its own), plus each line of a multi-line value (logs are masked line by
    line); sorted, without duplicates and without values shorter than ``min_length``.
    """
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        found.add(value)
        with contextlib.suppress(ValueError, RecursionError):
            found.update(_string_leaves(json.loads(value)))
    for value in list(found):
        if "\n" in value:
            found.update(line.strip() for line in value.splitlines())
    return sorted(v for v in found if len(v) >= min_length)


class _Compiled:
    """The patterns of one set of secrets, swapped in whole so readers never see half an update."""

    __slots__ = ("bytes", "max_bytes", "max_length", "text")

    def __init__(self, patterns: Iterable[str]) -> None:
        texts = sorted(patterns, key=len, reverse=True)
        raw = sorted((p.encode("utf-8", "surrogatepass") for p in texts), key=len, reverse=True)
        self.max_length = len(texts[0]) if texts else 0
        self.max_bytes = len(raw[0]) if raw else 0
        # Longest first: at any one position the alternation matches the longest secret.
        self.text = re.compile("|".join(re.escape(p) for p in texts)) if texts else None
        self.bytes = re.compile(b"|".join(re.escape(p) for p in raw)) if raw else None


def _spans(
    pattern: re.Pattern[Any], data: str | bytes | bytearray, pos: int = 0, endpos: int | None = None
) -> list[tuple[int, int]]:
    """Where ``pattern`` occurs in ``data[pos:endpos]``; overlapping occurrences merged into one span."""
    stop = len(data) if endpos is None else endpos
    spans: list[tuple[int, int]] = []
    found = pattern.search(data, pos, stop)
    while found is not None:
        start, end = found.span()
        # The next occurrence may start inside this one (one secret's tail is another's head).
        found = pattern.search(data, start + 1, stop)
        while found is not None and found.start() < end:
            end = max(end, found.end())
            found = pattern.search(data, found.start() + 1, stop)
        spans.append((start, end))
    return spans


class SecretMasker:
    """Replaces every known secret, in every spelling of :func:`variants`, with ``***``.

    Thread-safe: :meth:`add` may run while other threads mask. Calling the masker is the
    same as :meth:`mask`.

    :param values: secrets to add at once (see :meth:`add`).
    :param min_length: secrets and variants shorter than this many characters are skipped.
    :param adapter: more spellings per secret, like Airflow's ``[logging]
        secret_mask_adapter``: a function of the secret returning a string or strings.
    """

    def __init__(
        self, values: Iterable[str] = (), *, min_length: int = MIN_LENGTH, adapter: Adapter | None = None
    ) -> None:
        self._min_length = min_length
        self._adapter = adapter
        self._patterns: set[str] = set()
        self._lock = threading.Lock()
        self._compiled = _Compiled(())
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Mask each of ``values`` (and its variants) from now on.

        A value with newlines is also masked line by line (logs are masked by the line):
        each stripped line long enough on its own.
        """
        with self._lock:
            patterns = set(self._patterns)
            for value in values:
                patterns.update(self._spellings(value))
                if isinstance(value, str) and "\n" in value:
                    for line in value.splitlines():
                        patterns.update(self._spellings(line.strip()))
            if patterns != self._patterns:
                self._patterns = patterns
                self._compiled = _Compiled(patterns)

    def _spellings(self, value: str) -> Iterator[str]:
        if not isinstance(value, str) or len(value) < self._min_length or value.lower() in _NEVER_MASKED:
            return
        forms = variants(value)
        if self._adapter is not None:
            adapted = self._adapter(value)
            forms.update([adapted] if isinstance(adapted, str) else adapted)
        for form in forms:
            if isinstance(form, str) and len(form) >= self._min_length and form.lower() not in _NEVER_MASKED:
                yield form

    @property
    def patterns(self) -> frozenset[str]:
        """Every string currently masked (secrets and their variants)."""
        return frozenset(self._patterns)

    @property
    def max_length(self) -> int:
        """Length of the longest masked string, in characters (0 without secrets)."""
        return self._compiled.max_length

    @property
    def max_bytes(self) -> int:
        """Length of the longest masked string, in UTF-8 bytes (0 without secrets)."""
        return self._compiled.max_bytes

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def mask(self, text: str) -> str:
        """``text`` with every occurrence of a secret replaced by ``***``."""
        pattern = self._compiled.text
        if pattern is None or not text:
            return text
        spans = _spans(pattern, text)
        return _replace(text, spans, MASK) if spans else text

    __call__ = mask

    def mask_bytes(self, data: bytes) -> bytes:
        """``data`` with every secret's UTF-8 form (and its variants') replaced by ``***``."""
        pattern = self._compiled.bytes
        if pattern is None or not data:
            return data
        spans = _spans(pattern, data)
        return _replace(data, spans, _MASK_BYTES) if spans else data

    def _byte_spans(self, data: bytes | bytearray, pos: int = 0, endpos: int | None = None) -> list[tuple[int, int]]:
        pattern = self._compiled.bytes
        return [] if pattern is None else _spans(pattern, data, pos, endpos)

    def line_masker(self, limit: int = DEFAULT_LINE_LIMIT) -> LineMasker:
        """A :class:`LineMasker` for a byte stream, masking with this masker."""
        return LineMasker(self, limit=limit)


def _replace(data: AnyStr, spans: list[tuple[int, int]], mask: AnyStr) -> AnyStr:
    parts: list[AnyStr] = []
    last = 0
    for start, end in spans:
        parts += [data[last:start], mask]
        last = end
    parts.append(data[last:])
    return data[:0].join(parts)


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _char_boundary(data: bytes | bytearray, cut: int) -> int:
    """``cut``, or the start of the UTF-8 sequence it falls inside (if the bytes are UTF-8)."""
    for back in range(4):
        at = cut - back
        if at <= 0:
            return cut
        if at >= len(data) or not _is_continuation(data[at]):
            return at
    return cut  # not UTF-8 here: any cut is as good as another


class LineMasker:
    """Turns a byte stream into masked log lines; each item returned is one log line.

    An item is a complete line with its ``\\n``, a piece of a line longer than ``limit``
    bytes (no ``\\n``), or what :meth:`flush` finds after the last newline. Pieces are
    at most ``limit`` bytes of input unless a secret crosses the limit, and never end
    inside a secret or inside a UTF-8 sequence. Without a masker (or without secrets) it
    only splits: ``b"".join(output) == input``.

    Not thread-safe: one reader thread feeds it.
    """

    def __init__(self, masker: SecretMasker | None = None, limit: int = DEFAULT_LINE_LIMIT) -> None:
        if limit < 4:
            raise ValueError("the line limit must leave room for one UTF-8 character (4 bytes)")
        self._masker = masker
        self._limit = limit
        self._buffer = bytearray()

    def _mask(self, data: bytes) -> bytes:
        return data if self._masker is None else self._masker.mask_bytes(data)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next chunk; return the lines (and long-line pieces) it completes."""
        buffer = self._buffer
        held = len(buffer)
        buffer += data
        out: list[bytes] = []
        # Only the new bytes can hold a newline: a long line fed byte by byte stays linear.
        newline = data.rfind(b"\n")
        if newline != -1:
            end = held + newline + 1
            out += self._lines(bytes(buffer[:end]))
            del buffer[:end]
        if len(buffer) > self._limit:
            out += self._pieces(final=False)
        return out

    def flush(self) -> list[bytes]:
        """Everything still held (a last line without newline), masked; the masker is then empty."""
        out = self._pieces(final=True)
        if self._buffer:
            out.append(self._mask(bytes(self._buffer)))
            self._buffer.clear()
        return out

    def _lines(self, block: bytes) -> list[bytes]:
        # Complete lines are masked as one block (one regex pass; a secret with a newline
        # is found across lines), then split; a long line is cut after masking, where no
        # secret is left to cut.
        masked = self._mask(block)
        lines = masked.split(b"\n")
        out = [line + b"\n" for line in lines[:-1]]
        if lines[-1]:  # a mask swallowed the last newline
            out.append(lines[-1])
        if any(len(line) > self._limit for line in out):
            out = [piece for line in out for piece in self._split_masked(line)]
        return out

    def _split_masked(self, line: bytes) -> Iterator[bytes]:
        while len(line) > self._limit:
            cut = _char_boundary(line, self._limit)
            yield line[:cut]
            line = line[cut:]
        if line:
            yield line

    def _pieces(self, *, final: bool) -> list[bytes]:
        """Cut pieces of ``limit`` bytes off a partial line that has grown past the limit."""
        out: list[bytes] = []
        buffer = self._buffer
        limit = self._limit
        while len(buffer) > limit:
            keep = self._masker.max_bytes if self._masker is not None else 0
            # Every match that starts before the cut must be seen whole before cutting.
            if not final and len(buffer) < limit + keep:
                break
            cut = self._safe_cut(limit, keep, final)
            if cut is None:
                break
            out.append(self._mask(bytes(buffer[:cut])))
            del buffer[:cut]
        return out

    def _safe_cut(self, limit: int, keep: int, final: bool) -> int | None:
        buffer = self._buffer
        cut = _char_boundary(buffer, limit)
        masker = self._masker
        if masker is None or not keep:
            return cut
        first = cut
        while True:
            # A match crossing the cut starts after cut - keep: this window holds it whole.
            low = max(0, cut - keep)
            crossing = [s for s, e in masker._byte_spans(buffer, low, cut + keep) if s < cut < e]
            if not crossing:
                return cut
            if crossing[0] == 0:
                # Overlapping secrets chained from the start of the piece: cut after the chain.
                return self._after_chain(first, final)
            # Before the match; a match further left may overlap it, so look again.
            cut = crossing[0]

    def _after_chain(self, cut: int, final: bool) -> int | None:
        assert self._masker is not None
        buffer = self._buffer
        for start, end in self._masker._byte_spans(buffer):
            if start < cut < end:
                if end + self._masker.max_bytes <= len(buffer) or final:
                    return end
                # Not yet seen to end; with too much held, cut at its end anyway: what
                # follows can only be the rest of a secret that overlaps a masked one.
                return end if len(buffer) > 4 * self._limit else None
        return cut
