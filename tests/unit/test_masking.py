"""The one masker of host and runtime: every spelling of a secret, and byte streams cut into lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from isolation.masking import (
    DEFAULT_LINE_LIMIT,
    MIN_LENGTH,
    LineMasker,
    SecretMasker,
    secret_strings,
    variants,
)
from isolation.runtime import secrets
from isolation.transport.payload import ConnectionSpec, OperatorSpec, Payload, TaskContext

# A backslash, a double quote, a space, non-ASCII letters and URL specials.
HARD = 'p\\ä"ss wörd/&+'

SPELLINGS = {
    "itself": HARD,
    "repr": repr(HARD)[1:-1],
    "ascii": ascii(HARD)[1:-1],
    "json": json.dumps(HARD)[1:-1],
    "json_unicode": json.dumps(HARD, ensure_ascii=False)[1:-1],
    "quote_safe_none": quote(HARD, safe=""),
    "quote": quote(HARD),
    "quote_plus": quote_plus(HARD),
    "bytes_repr": repr(HARD.encode())[2:-1],
}

# Secrets without "*", which the mask itself is made of (see the module's limits).
secret_text = st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), min_size=3, max_size=12)
filler = st.text(max_size=40)


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        if i >= len(data):
            break
        out.append(data[i : i + size])
        i += size
    if i < len(data):
        out.append(data[i:])
    return out


def _run_lines(masker: SecretMasker | None, chunks: list[bytes], limit: int = DEFAULT_LINE_LIMIT) -> list[bytes]:
    lines = LineMasker(masker, limit=limit)
    out: list[bytes] = []
    for chunk in chunks:
        out += lines.feed(chunk)
    return out + lines.flush()


def test_the_spellings_are_all_different() -> None:
    # Each case below tests something of its own.
    assert len(set(SPELLINGS.values())) == len(SPELLINGS)
    assert variants(HARD) == set(SPELLINGS.values())


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_of_a_secret_is_masked(spelling: str) -> None:
    masker = SecretMasker([HARD])
    form = SPELLINGS[spelling]
    assert masker.mask(f"before {form} after") == "before *** after"
    assert masker.mask_bytes(f"before {form} after".encode()) == b"before *** after"


def test_repr_json_and_uri_of_real_containers_are_masked() -> None:
    masker = SecretMasker([HARD])
    for text in (
        repr({"password": HARD}),
        str([HARD]),
        json.dumps({"password": HARD}),
        json.dumps({"password": HARD}, ensure_ascii=False),
        f"postgresql://user:{quote(HARD, safe='')}@db:5432/x",
        "login?" + "pw=" + quote_plus(HARD),
        repr(HARD.encode()),
    ):
        masked = masker.mask(text)
        assert "***" in masked
        assert all(form not in masked for form in SPELLINGS.values()), masked


def test_short_values_skipped_and_airflow_never_masked() -> None:
    masker = SecretMasker(["ab", "", "airflow", "AirFlow", "abc"])
    assert MIN_LENGTH == 3
    assert masker.patterns == {"abc"}
    assert masker.mask("ab airflow abc") == "ab airflow ***"


def test_longest_first_and_overlapping_secrets_mask_fully() -> None:
    masker = SecretMasker(["abc", "abcdef", "defghi"])
    assert masker.mask("x abcdef x") == "x *** x"
    # One secret's tail is another's head: neither part shows.
    assert masker.mask("x abcdefghi x") == "x *** x"
    assert masker.mask("abc abc") == "*** ***"
    assert masker.max_length == 6


def test_max_length_counts_characters_and_bytes() -> None:
    masker = SecretMasker([HARD, "äää"])
    assert masker.max_length == max(len(v) for v in masker.patterns)
    assert masker.max_bytes == max(len(v.encode()) for v in masker.patterns)
    assert SecretMasker().max_length == SecretMasker().max_bytes == 0


def test_duplicates_collapse_and_add_extends() -> None:
    masker = SecretMasker(["secret", "secret"])
    before = masker.patterns
    masker.add(["secret"])
    assert masker.patterns == before
    masker.add(["other-secret"])
    assert masker.mask("secret other-secret") == "*** ***"
    assert masker("secret") == "***"


def test_adapter_adds_spellings() -> None:
    masker = SecretMasker(["Secret"], adapter=lambda s: [s.upper(), "x"])
    assert masker.mask("Secret SECRET x") == "*** *** x"
    assert SecretMasker(["Secret"], adapter=str.lower).mask("secret") == "***"


def test_bytes_that_are_not_utf8_pass_except_the_secret() -> None:
    masker = SecretMasker([HARD])
    data = b"\xff\xfe " + HARD.encode() + b" \xc3"
    assert masker.mask_bytes(data) == b"\xff\xfe *** \xc3"
    assert masker.mask_bytes(b"\xff\xfe") == b"\xff\xfe"


def test_secret_strings_matches_the_runtime() -> None:
    extra = json.dumps({"token": "tok-123", "nested": {"list": ["deep-1", 5]}, "k": "ab"})
    raw = ["password-1", extra, "multi\n  line-one  \nline-two", "ab", ""]
    found = secret_strings(raw)
    assert {"password-1", extra, "tok-123", "deep-1", "line-one", "line-two"} <= set(found)
    assert "ab" not in found and "" not in found
    payload = Payload(
        operator=OperatorSpec(import_path="a.b.C"),
        context=TaskContext(dag_id="d", task_id="t", run_id="r"),
        connections={"c": ConnectionSpec(conn_type="x", login="login-1", password="password-1", extra=extra)},
        variables={"v": "multi\n  line-one  \nline-two"},
    )
    assert secrets.secret_values(payload) == secret_strings(payload.secret_values())
    assert secrets.MIN_MASKED_LENGTH == MIN_LENGTH


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    secrets_=st.lists(secret_text, min_size=1, max_size=3),
    pieces=st.lists(st.tuples(filler, st.integers(0, 2), st.integers(0, 7)), min_size=1, max_size=5),
)
def test_no_spelling_survives_in_random_text(secrets_: list[str], pieces: list[tuple[str, int, int]]) -> None:
    masker = SecretMasker(secrets_)
    assume(masker)
    text = ""
    for before, which, form in pieces:
        spellings = sorted(variants(secrets_[which % len(secrets_)]))
        text += before + spellings[form % len(spellings)]
    masked = masker.mask(text)
    for pattern in masker.patterns:
        assert pattern not in masked
    raw = masker.mask_bytes(text.encode())
    for pattern in masker.patterns:
        assert pattern.encode() not in raw
    assert masker.mask(masked) == masked  # nothing left to mask


@given(filler)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assume("secret-1" not in text)
    assert SecretMasker(["secret-1"]).mask(text) == text


# -- LineMasker -----------------------------------------------------------------------


def test_lines_are_split_and_masked() -> None:
    masker = SecretMasker(["secret"])
    out = _run_lines(masker, [b"one sec", b"ret\ntwo\r\n", b"", b"three secret"])
    assert out == [b"one ***\n", b"two\r\n", b"three ***"]


def test_without_secrets_it_only_splits() -> None:
    data = b"a\n\nbb\n" + b"x" * 20 + b"\xff\xfe\ntail"
    out = _run_lines(None, [data], limit=8)
    assert b"".join(out) == data
    assert out[:3] == [b"a\n", b"\n", b"bb\n"]
    assert all(len(item) <= 8 for item in out)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("offset", [-len(HARD.encode()) + 1, -3, 0])
def test_secret_straddling_the_line_limit_is_masked(chunk: int, offset: int) -> None:
    masker = SecretMasker([HARD])
    start = DEFAULT_LINE_LIMIT + offset
    data = b"x" * (start - 1) + b" " + HARD.encode() + b" after\n" + b"y" * (2 * DEFAULT_LINE_LIMIT) + b"\n"
    if chunk == 1:  # byte by byte around the limit only: the rest in one piece
        head = start - 100
        chunks = [data[:head], *(data[i : i + 1] for i in range(head, start + 100)), data[start + 100 :]]
    else:
        chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    out = _run_lines(masker, chunks)
    joined = b"".join(out)
    assert HARD.encode() not in joined
    assert b" *** after\n" in joined
    assert joined == masker.mask_bytes(data)
    assert len(out) > 2  # it really was cut


def test_pieces_never_split_a_utf8_character() -> None:
    data = ("ä" * 100 + "€" * 100 + "\U0001f600" * 100).encode()
    for limit in (4, 5, 6, 7, 64):
        out = _run_lines(None, [data[i : i + 3] for i in range(0, len(data), 3)], limit=limit)
        assert b"".join(out) == data
        for item in out:
            item.decode("utf-8")


def test_a_chain_of_overlapping_secrets_is_not_cut() -> None:
    masker = SecretMasker(["aaa"])
    data = b"a" * 30 + b"b" * 40
    out = _run_lines(masker, [data[i : i + 1] for i in range(len(data))], limit=8)
    assert b"".join(out) == b"***" + b"b" * 40
    # Past four pieces' worth it is cut at the end of what is known: a fragment may show,
    # never the secret.
    data = b"a" * 100 + b"b" * 40
    joined = b"".join(_run_lines(masker, [data[i : i + 1] for i in range(len(data))], limit=8))
    assert b"aaa" not in joined and joined.startswith(b"***") and joined.endswith(b"b" * 40)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), limit=st.integers(4, 64), sizes=st.lists(st.integers(1, 80), max_size=40))
def test_without_secrets_output_equals_input(data: bytes, limit: int, sizes: list[int]) -> None:
    out = _run_lines(None, _chunks(data, sizes), limit=limit)
    assert b"".join(out) == data
    for item in out[:-1]:
        assert item.endswith(b"\n") or len(item) <= limit
        assert b"\n" not in item[:-1]


@st.composite
def masked_streams(draw: st.DrawFn) -> tuple[SecretMasker, bytes, int, list[int]]:
    secrets_ = draw(st.lists(secret_text.filter(lambda s: "\n" not in s), min_size=1, max_size=3))
    masker = SecretMasker(secrets_)
    limit = draw(st.integers(4, 48))
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        parts.append(draw(st.text(max_size=30)).encode())
        which = draw(st.sampled_from(secrets_))
        parts.append(draw(st.sampled_from(sorted(variants(which)))).encode())
    if draw(st.booleans()):
        parts.append(b"\xff\xc3")  # not UTF-8
    data = b"".join(parts)[: 4 * limit]
    sizes = draw(st.lists(st.integers(1, 2 * limit), max_size=60))
    return masker, data, limit, sizes


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(masked_streams())
def test_any_chunking_masks_like_the_whole_stream(stream: tuple[SecretMasker, bytes, int, list[int]]) -> None:
    masker, data, limit, sizes = stream
    assume(masker)
    out = _run_lines(masker, _chunks(data, sizes), limit=limit)
    joined = b"".join(out)
    for pattern in masker.patterns:
        assert pattern.encode() not in joined
    assert joined == masker.mask_bytes(data)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    for item in out:
        item.decode("utf-8")  # no piece ends inside a character


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secret_text, run=st.integers(1, 200), sizes=st.lists(st.integers(1, 50), max_size=40))
def test_long_repetitions_never_show_a_secret(secret: str, run: int, sizes: list[int]) -> None:
    # Repeating the secret chains overlapping matches past any piece limit.
    assume("\n" not in secret)  # lines are masked one by one: see the next test
    masker = SecretMasker([secret])
    assume(masker)
    data = (secret * run).encode() + b" end"
    out = _run_lines(masker, _chunks(data, sizes), limit=8)
    joined = b"".join(out)
    for pattern in masker.patterns:
        assert pattern.encode() not in joined
    assert joined.endswith(b" end")


def test_multi_line_secrets_are_masked_line_by_line() -> None:
    masker = SecretMasker(["-----BEGIN KEY-----\n  abcdefgh  \nzz\n-----END KEY-----"])
    out = _run_lines(masker, [b"-----BEGIN KEY-----\n", b"abcdefgh\nzz\n", b"-----END KEY-----\n"])
    assert out == [b"***\n", b"***\n", b"zz\n", b"***\n"]  # "zz" alone is too short to mask


# -- the runtime's descriptors (isolation.runtime.logs), in a fresh interpreter --------

_CHILD = r"""
import json, logging, os, subprocess, sys
from isolation.runtime import logs

secret = sys.argv[1]
logs.REDACT.add([secret])
assert logs.mask_descriptors(logs.REDACT)
stream = logs.redirect_std_streams()
logs.route_logging(stream, "INFO")
print("print", secret, repr(secret), json.dumps(secret))
sys.__stdout__.write("dunder-stdout " + secret + "\n")
sys.__stderr__.write("dunder-stderr " + secret + "\n")
os.write(1, ("fd1 " + secret + "\n").encode())
os.write(2, ("fd2 " + secret + "\n").encode())
os.write(2, ("split " + secret[:2]).encode())
os.write(2, (secret[2:] + " joined\n").encode())
logging.getLogger("x").warning("logged %s", secret)
subprocess.run(["sh", "-c", 'echo "child-out $S"; echo "child-err $S" >&2'], env={"S": secret}, check=True)
subprocess.Popen(["sh", "-c", 'sleep 2; echo "late $S"'], env={"S": secret})
os.write(2, ("no newline at the end " + secret).encode())
stream.drain()
logs.release_descriptors(timeout=0.2)
os.write(2, b"after release\n")
os._exit(0)
"""


def test_every_write_path_of_the_runtime_is_masked(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, HARD], capture_output=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""  # one stream: everything arrives on standard error
    err = done.stderr.decode()
    for form in variants(HARD):
        assert form not in err
    for marker in (
        "print *** '***' \"***\"",
        "dunder-stdout ***",
        "dunder-stderr ***",
        "fd1 ***",
        "fd2 ***",
        "split *** joined",
        "logged ***",
        "child-out ***",
        "child-err ***",
        "no newline at the end ***",
    ):
        assert marker in err, err
    # Released: a child still holding the pipe does not hold the exit, and nothing after it shows.
    assert "late" not in err and "after release" not in err
